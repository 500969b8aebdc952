"""Loading the materialised identity map for the assets downstream of it."""

from __future__ import annotations

import dagster as dg
from sqlalchemy import select

from cio_assets.identity.resolve import IdentityResolver
from cio_assets.resources import StateDatabase
from cio_assets.state.tables import identity_map


def load_resolver(state: StateDatabase) -> IdentityResolver:
    with state.connect() as conn:
        rows = conn.execute(
            select(identity_map.c.identifier_type, identity_map.c.identifier, identity_map.c.person_id)
        ).all()
    return IdentityResolver.from_rows(rows)


def require_identity(resolver: IdentityResolver, unresolved_rows: int) -> None:
    """Refuse to drop every row because the identity map was never built."""
    if not resolver.by_customer and not resolver.by_email and unresolved_rows:
        raise dg.Failure(
            description=(
                f"{unresolved_rows} source rows could not be resolved because the identity map is empty: "
                "materialize `identity_map` first (`--select '*'` includes it)."
            )
        )
