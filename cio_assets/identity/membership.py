"""Which source rows belong to a set of people: their customer ids and their guest e-mail spellings.

Guest orders are matched by the exact raw e-mail values they carry, as identity kept them beside their
normalised form (`cio_identity_inputs`), so no SQL-side normalisation can disagree with `normalize_email`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, or_, select

from cio_assets.identity.inputs import GUEST_ORDERS
from cio_assets.identity.resolve import IdentityResolver
from cio_assets.lib.chunking import chunks
from cio_assets.lib.writes import KEYS_PER_STATEMENT
from cio_assets.schema.shop import orders
from cio_assets.schema.state import identity_inputs

Spellings = Callable[[list[str]], dict[str, list[str]]]


def guest_spellings(state: Connection) -> Spellings:
    """A lookup: normalised e-mails → the raw spellings paid guest orders use for each.

    Read from the identity inputs (`cio_identity_inputs`, kept current by `identity_map` earlier in the
    run), for just the e-mails asked about: a chunk of people costs its own e-mails, not every guest order
    of the shop."""
    inputs = identity_inputs.c

    def lookup(emails: list[str]) -> dict[str, list[str]]:
        spellings: dict[str, list[str]] = defaultdict(list)
        for chunk in chunks(sorted(set(emails)), KEYS_PER_STATEMENT):
            rows = state.execute(
                select(inputs.email_key, inputs.email)
                .distinct()
                .where(inputs.source_table == GUEST_ORDERS, inputs.customer_id.is_(None), inputs.email_key.in_(chunk))
            )
            for email, raw in rows:
                spellings[email].append(raw)
        return spellings

    return lookup


@dataclass(frozen=True)
class PeopleChunk:
    """A chunk of people and the source keys that belong to them."""

    person_ids: list[str]
    customer_ids: list[int]
    guest_spellings: list[str]

    def owns_order(self) -> ColumnElement[bool]:
        """SQL: the order belongs to one of these people, by customer id or guest e-mail."""
        clauses = []
        if self.customer_ids:
            clauses.append(orders.c.customer_id.in_(self.customer_ids))
        if self.guest_spellings:
            clauses.append(and_(orders.c.customer_id.is_(None), orders.c.email.in_(self.guest_spellings)))
        return or_(*clauses) if clauses else orders.c.id.is_(None)


def chunk_people(
    person_ids: list[str], resolver: IdentityResolver, spellings: Spellings, size: int
) -> Iterator[PeopleChunk]:
    for start in range(0, len(person_ids), size):
        chunk = person_ids[start : start + size]
        customers_of, emails_of = resolver.members(chunk)
        emails = [e for p in chunk for e in emails_of.get(p, ())]
        spelled = spellings(emails)
        yield PeopleChunk(
            person_ids=chunk,
            customer_ids=[c for p in chunk for c in customers_of.get(p, ())],
            guest_spellings=[raw for e in emails for raw in spelled.get(e, ())],
        )
