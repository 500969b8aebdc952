"""Reading the materialised identity map for the assets downstream of it, on demand."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from cio_assets.identity.resolve import IdentityResolver
from cio_assets.lib.chunking import chunks
from cio_assets.lib.failures import StopRun
from cio_assets.lib.writes import KEYS_PER_STATEMENT
from cio_assets.schema.state import identity_map


@dataclass(frozen=True)
class MapLoader:
    """The identity map in the state database, read by primary key (identifier) or by person: a run that
    meets a thousand identifiers reads a thousand rows, not the shop's whole map. It reads through the
    asset's own state connection: a second connection would wait on the asset's write lock on SQLite."""

    conn: Connection

    def people(self, identifier_type: str, identifiers: list[str]) -> dict[str, str]:
        t = identity_map.c
        found: dict[str, str] = {}
        for chunk in chunks(identifiers, KEYS_PER_STATEMENT):
            statement = select(t.identifier, t.person_id).where(
                t.identifier_type == identifier_type, t.identifier.in_(chunk)
            )
            found.update({identifier: person_id for identifier, person_id in self.conn.execute(statement)})
        return found

    def members(self, person_ids: list[str]) -> list[tuple[str, str, str]]:
        t = identity_map.c
        rows: list[tuple[str, str, str]] = []
        for chunk in chunks(sorted(set(person_ids)), KEYS_PER_STATEMENT):
            statement = select(t.identifier_type, t.identifier, t.person_id).where(t.person_id.in_(chunk))
            rows.extend((kind, identifier, person) for kind, identifier, person in self.conn.execute(statement))
        return rows

    def is_empty(self) -> bool:
        return self.conn.execute(select(identity_map.c.person_id).limit(1)).first() is None


def load_resolver(state: Connection) -> IdentityResolver:
    """A resolver that reads the identity map, through `state`, as lookups need it."""
    return IdentityResolver(loader=MapLoader(state))


def require_identity(resolver: IdentityResolver, unresolved_rows: int) -> None:
    """Refuse to drop every row because the identity map was never built."""
    if unresolved_rows and resolver.is_empty():
        raise StopRun(
            f"{unresolved_rows} source rows could not be resolved because the identity map is empty: "
            "materialize `identity_map` first (`--select '*'` includes it)."
        )
