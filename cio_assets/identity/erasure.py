"""Erasure: a person an erasure request names leaves every table of the pipeline and Customer.io, for good.

`erasure_requests` (optional in the shop) names people by customer id or e-mail. Identity resolves each
request to its person: through the identity map, or, for a customer already deleted from the shop, to
the id the person had (`CIO_CANONICAL_ID`). When a person is first seen erased (`cio_erasures`), their
rows are purged from the snapshot, the event log and every ledger, in the identity run's transaction;
from then on the snapshot and the event log leave them out, and the people sync tells Customer.io once
(`suppress` by default, or `delete`: `CIO_ERASURE`) and never identifies them again.

Identity keeps the identifiers it needs to recognise the person (their rows in the shop are the shop's
to delete). People who disappear from `customers` without a request are different: Customer.io still
holds them, so they are listed (`cio_vanished_people`, a WARN check) and, with `CIO_VANISHED=delete`,
deleted there.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from sqlalchemy import Connection, and_, func, select

from cio_assets.identity.normalize import normalize_email
from cio_assets.identity.resolve import CUSTOMER_ID, EMAIL
from cio_assets.lib.chunking import chunks
from cio_assets.lib.reads import read_frame
from cio_assets.lib.timestamps import Clock, to_unix_seconds, unix
from cio_assets.lib.writes import KEYS_PER_STATEMENT, delete_keys, insert_rows, keys_present
from cio_assets.schema.shop import erasure_requests
from cio_assets.schema.state import (
    anonymous_ledger,
    attribute_snapshot,
    erasures,
    event_ledger,
    event_log,
    identity_map,
    merge_ledger,
    people_ledger,
    unsubscribed_in_customerio,
    vanished_people,
)
from cio_assets.tracking.refusals import PERSON, clear_rejections


def read_requests(src: Connection, clock: Clock) -> pd.DataFrame:
    """customer_id, email, requested_at (Unix seconds) of every request; none when the shop has no erasure requests
    (the source mapping leaves the concept out, or its optional table is missing: it reads as empty)."""
    frame = read_frame(src, select(erasure_requests))
    frame["requested_at"] = to_unix_seconds(frame["requested_at"], clock.zone_of(erasure_requests.name))
    return frame


def erased_people(requests: pd.DataFrame, dst: Connection, canonical_id: str) -> dict[str, int]:
    """person_id -> the earliest request naming them. A request names a person through the identity map; a
    customer or e-mail the map no longer holds names the id that person had under the canonical id policy."""
    named: list[tuple[str, str, int]] = []  # (identifier type, identifier, requested_at)
    columns = (requests["customer_id"], requests["email"], requests["requested_at"])
    for customer_id, raw_email, at in zip(*columns, strict=True):
        when = int(at) if pd.notna(at) else 0
        if pd.notna(customer_id):
            named.append((CUSTOMER_ID, str(int(customer_id)), when))
        email = normalize_email(raw_email).value if isinstance(raw_email, str) else None
        if email:
            named.append((EMAIL, email, when))
    found: dict[str, int] = {}
    for kind in (CUSTOMER_ID, EMAIL):
        mapped = _people(dst, kind, sorted({identifier for k, identifier, _ in named if k == kind}))
        for _, identifier, when in (entry for entry in named if entry[0] == kind):
            person = mapped.get(identifier) or (identifier if canonical_id == kind else None)
            if person is not None:
                found[person] = min(when, found.get(person, when))
    # The duplicates folded into an erased person are the same human, and may hold profiles of their own.
    for duplicate, person in _folded_into(dst, list(found)).items():
        found.setdefault(duplicate, found[person])
    return found


def _folded_into(dst: Connection, people: list[str]) -> dict[str, str]:
    """customer id -> person, for the customers folded into these people (a shared e-mail) whom Customer.io holds
    as profiles of their own (the people ledger)."""
    m = identity_map.c
    folded: dict[str, str] = {}
    for chunk in chunks(people, KEYS_PER_STATEMENT):
        members = select(m.identifier, m.person_id).where(
            m.identifier_type == CUSTOMER_ID, m.person_id.in_(chunk), m.identifier != m.person_id
        )
        folded.update(dict(dst.execute(members).all()))
    held = keys_present(dst, people_ledger.c.person_id, list(folded))
    return {customer: person for customer, person in folded.items() if customer in held}


def _people(dst: Connection, kind: str, identifiers: list[str]) -> dict[str, str]:
    m = identity_map.c
    found: dict[str, str] = {}
    for chunk in chunks(identifiers, KEYS_PER_STATEMENT):
        statement = select(m.identifier, m.person_id).where(m.identifier_type == kind, m.identifier.in_(chunk))
        found.update(dict(dst.execute(statement).all()))
    return found


def record_erasures(dst: Connection, erased: dict[str, int], now: int) -> list[str]:
    """Record the people newly erased and purge them from the pipeline's tables; returns who was new."""
    known = erased_set(dst, list(erased))
    new = sorted(set(erased) - known)
    insert_rows(dst, erasures, ("person_id", "requested_at", "purged_at"), [(p, erased[p], now) for p in new])
    purge(dst, new)
    return new


def purge(dst: Connection, people: list[str]) -> None:
    """Every row of the pipeline's own tables about these people (the event ledger through their events)."""
    for chunk in chunks(people, KEYS_PER_STATEMENT):
        events = dst.execute(select(event_log.c.event_id).where(event_log.c.person_id.in_(chunk))).scalars()
        delete_keys(dst, event_ledger.c.event_id, list(events))
    for column in (
        attribute_snapshot.c.person_id,
        event_log.c.person_id,
        people_ledger.c.person_id,
        anonymous_ledger.c.person_id,
        unsubscribed_in_customerio.c.person_id,
        vanished_people.c.person_id,
        merge_ledger.c.primary,
        merge_ledger.c.secondary,
    ):
        delete_keys(dst, column, people)
    clear_rejections(dst, PERSON, people)


def erased_set(conn: Connection, person_ids: Iterable[str] | None = None) -> set[str]:
    """Those of these people (None: everyone) an erasure request named."""
    if person_ids is None:
        return set(conn.execute(select(erasures.c.person_id)).scalars())
    return keys_present(conn, erasures.c.person_id, person_ids)


def refresh_vanished(dst: Connection, now: int) -> int:
    """Record people Customer.io holds (the people ledger) whom no identifier resolves to any more, neither erased
    nor merged away; forget those who came back. Returns how many are listed."""
    # Not a person any more, nor a customer still in the shop (a duplicate folded into its survivor, awaiting its
    # merge, is one: it must be merged, never deleted).
    customer = identity_map.alias("customer")
    still_customer = and_(customer.c.identifier_type == CUSTOMER_ID, customer.c.identifier == people_ledger.c.person_id)
    gone = (
        select(people_ledger.c.person_id)
        .outerjoin(identity_map, identity_map.c.person_id == people_ledger.c.person_id)
        .outerjoin(customer, still_customer)
        .where(identity_map.c.person_id.is_(None), customer.c.identifier.is_(None))
    )
    now_gone = set(dst.execute(gone).scalars()) - erased_set(dst)
    listed = set(dst.execute(select(vanished_people.c.person_id)).scalars())
    delete_keys(dst, vanished_people.c.person_id, sorted(listed - now_gone))
    insert_rows(dst, vanished_people, ("person_id", "seen_at"), [(p, now) for p in sorted(now_gone - listed)])
    return len(now_gone)


def apply_erasures(
    src: Connection, dst: Connection, clock: Clock, canonical_id: str, customers_deleted: bool
) -> dict[str, int]:
    """The identity run's part: record and purge newly erased people; list vanished ones when customers were deleted
    (or everyone was resolved again). Returns the run's figures."""
    now = unix(clock.now)
    new = record_erasures(dst, erased_people(read_requests(src, clock), dst, canonical_id), now)
    if customers_deleted:
        refresh_vanished(dst, now)
    return {"run_people_erased": len(new), **erasure_counts(dst)}


def erasure_counts(dst: Connection) -> dict[str, int]:
    e = erasures.c
    return {
        "people_erased": int(dst.execute(select(func.count()).select_from(erasures)).scalar_one()),
        "erasures_awaiting_customerio": int(
            dst.execute(select(func.count()).select_from(erasures).where(e.customerio_at.is_(None))).scalar_one()
        ),
        "vanished_people": int(dst.execute(select(func.count()).select_from(vanished_people)).scalar_one()),
    }
