"""Which source rows belong to a set of people: their customer ids and their guest e-mail spellings.

Guest orders are matched by the exact raw e-mail values they carry (found once per run and
normalised in Python), so no SQL-side normalisation can disagree with `normalize_email`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, or_, select

from cio_assets.hygiene.rules import Bounds, row_is_valid
from cio_assets.identity.normalize import normalize_email
from cio_assets.identity.resolve import IdentityResolver
from cio_assets.settings import Settings
from cio_assets.sources.tables import orders


def guest_emails(conn: Connection, settings: Settings, bounds: Bounds) -> dict[str, list[str]]:
    """Normalised e-mail → the raw spellings paid guest orders use for it."""
    rows = conn.execute(
        select(orders.c.email)
        .distinct()
        .where(
            orders.c.customer_id.is_(None),
            orders.c.email.is_not(None),
            orders.c.status == "paid",
            row_is_valid(orders, settings, bounds),
        )
    ).scalars()
    spellings: dict[str, list[str]] = defaultdict(list)
    for raw in rows:
        email = normalize_email(raw).value
        if email:
            spellings[email].append(raw)
    return spellings


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
    person_ids: list[str], resolver: IdentityResolver, spellings: dict[str, list[str]], size: int
) -> Iterator[PeopleChunk]:
    customers_of = resolver.customers_by_person
    emails_of = resolver.emails_by_person
    for start in range(0, len(person_ids), size):
        chunk = person_ids[start : start + size]
        yield PeopleChunk(
            person_ids=chunk,
            customer_ids=[c for p in chunk for c in customers_of.get(p, ())],
            guest_spellings=[raw for p in chunk for e in emails_of.get(p, ()) for raw in spellings.get(e, ())],
        )
