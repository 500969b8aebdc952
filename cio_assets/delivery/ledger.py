"""The sync ledger: what Customer.io already holds (the refused and waiting items are `tracking/refusals.py`'s).

Every write commits on its own, right after Customer.io accepted (or refused) a batch, so a run
killed half-way re-sends at most the batches that were in flight.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import orjson
from sqlalchemy import Connection, and_, delete, false, func, select, update

from cio_assets.delivery.profiles import ERASURE, VANISHED, AnonymousLink, Merge, Removal
from cio_assets.identity.inputs import LINKS
from cio_assets.identity.resolve import ANONYMOUS_ID, CUSTOMER_ID, SHARED_EMAIL
from cio_assets.lib.chunking import chunks
from cio_assets.lib.writes import KEYS_PER_STATEMENT, delete_keys, insert_rows, keys_present, upsert
from cio_assets.schema.state import (
    anonymous_ledger,
    erasures,
    event_ledger,
    event_log,
    identity_conflicts,
    identity_inputs,
    identity_map,
    ledger_identity,
    merge_ledger,
    people_ledger,
    unsubscribed_in_customerio,
    vanished_people,
)
from cio_assets.tracking.refusals import PERSON, clear_rejections


def identity(conn: Connection, now: int) -> tuple[str, int]:
    """(ledger id, created at) of this state database's ledger, created on first use."""
    row = conn.execute(
        select(ledger_identity.c.ledger_id, ledger_identity.c.created_at)
        .order_by(ledger_identity.c.created_at)
        .limit(1)
    ).first()
    if row is not None:
        return row.ledger_id, int(row.created_at)
    ledger_id = str(uuid.uuid4())
    conn.execute(ledger_identity.insert(), [{"ledger_id": ledger_id, "created_at": now}])
    return ledger_id, now


# ---------------------------------------------------------------------------------------------------------
# People: what Customer.io holds of each, and the unsubscribes it showed us
# ---------------------------------------------------------------------------------------------------------


def delivered_people(conn: Connection, person_ids: Sequence[str]) -> dict[str, tuple[dict, int]]:
    """person_id -> (attributes Customer.io holds, the as_of they came from)."""
    found: dict[str, tuple[dict, int]] = {}
    for chunk in chunks(list(person_ids), KEYS_PER_STATEMENT):
        rows = conn.execute(
            select(people_ledger.c.person_id, people_ledger.c.attributes, people_ledger.c.as_of).where(
                people_ledger.c.person_id.in_(chunk)
            )
        )
        found.update({pid: (orjson.loads(attributes), int(as_of)) for pid, attributes, as_of in rows})
    return found


def identified_people(conn: Connection, person_ids: Sequence[str]) -> set[str]:
    """The people whose identify Customer.io has accepted."""
    return keys_present(conn, people_ledger.c.person_id, person_ids)


def unsubscribed_themselves(conn: Connection, person_ids: Sequence[str]) -> set[str]:
    """Those of these people the read-back found unsubscribed in Customer.io without the pipeline having sent it."""
    return keys_present(conn, unsubscribed_in_customerio.c.person_id, person_ids)


def record_unsubscribed_themselves(conn: Connection, person_ids: Sequence[str], now: int) -> None:
    """Remember people found unsubscribed in Customer.io by their own hand (first sighting kept)."""
    known = unsubscribed_themselves(conn, person_ids)
    rows = [(person_id, now) for person_id in sorted(set(person_ids) - known)]
    insert_rows(conn, unsubscribed_in_customerio, ("person_id", "seen_at"), rows)


def record_people(conn: Connection, rows: Sequence[tuple[str, dict, int]], now: int) -> None:
    """Replace the ledger entries of these people with (person_id, full attributes, as_of)."""
    if not rows:
        return
    for chunk in chunks([r[0] for r in rows], KEYS_PER_STATEMENT):
        conn.execute(delete(people_ledger).where(people_ledger.c.person_id.in_(chunk)))
    insert_rows(
        conn,
        people_ledger,
        ("person_id", "attributes", "as_of", "delivered_at"),
        [(pid, orjson.dumps(attrs).decode(), as_of, now) for pid, attrs, as_of in rows],
    )


# ---------------------------------------------------------------------------------------------------------
# Merges, removals and anonymous ids (profiles.py): what is still due, and what was accepted
# ---------------------------------------------------------------------------------------------------------


def pending_anonymous_ids(conn: Connection, identified_only: bool) -> list[tuple[str, str]]:
    """(person_id, anonymous_id) that identity resolved and Customer.io has not been told yet, each person's in
    link order (`identity_links.linked_at`; ids known only from carts after them, by id). With `identified_only`,
    only for people Customer.io knows: an identify carrying nothing but an anonymous id must not create a profile."""
    m, linked = identity_map.c, func.min(identity_inputs.c.linked_at)
    links = and_(identity_inputs.c.anonymous_key == m.identifier, identity_inputs.c.source_table == LINKS)
    joined = identity_map.outerjoin(anonymous_ledger, anonymous_ledger.c.anonymous_id == m.identifier).outerjoin(
        identity_inputs, links
    )
    if identified_only:
        joined = joined.join(people_ledger, people_ledger.c.person_id == m.person_id)
    joined = joined.outerjoin(erasures, erasures.c.person_id == m.person_id)
    statement = (
        select(m.person_id, m.identifier)
        .select_from(joined)
        .where(
            m.identifier_type == ANONYMOUS_ID, anonymous_ledger.c.anonymous_id.is_(None), erasures.c.person_id.is_(None)
        )
        .group_by(m.person_id, m.identifier)
        .order_by(m.person_id, linked.is_(None), linked, m.identifier)
    )
    return [(person_id, anonymous_id) for person_id, anonymous_id in conn.execute(statement)]


def pending_merges(conn: Connection) -> list[tuple[str, str, bool]]:
    """(secondary, primary, whether Customer.io knows the primary): people Customer.io holds as a profile of their
    own (the people ledger) whom identity has since folded into the survivor of a shared e-mail. Read from the
    conflicts, which are few, not from the ledger, which holds everyone. Only the shared e-mail rule folds
    customers together; a shared phone is listed by identity and never merges."""
    c, m = identity_conflicts.c, identity_map.c
    survivor = people_ledger.alias("survivor")
    folded = and_(m.identifier_type == CUSTOMER_ID, m.identifier == c.member, m.person_id != c.member)
    statement = (
        select(c.member, m.person_id, survivor.c.person_id.is_not(None))
        .select_from(
            identity_conflicts.join(people_ledger, people_ledger.c.person_id == c.member)
            .join(identity_map, folded)
            .outerjoin(survivor, survivor.c.person_id == m.person_id)
            .outerjoin(erasures, erasures.c.person_id == m.person_id)
        )
        .where(c.kind == SHARED_EMAIL, c.is_survivor == false(), erasures.c.person_id.is_(None))
        .distinct()
        .order_by(c.member)
    )
    return [(secondary, primary, bool(known)) for secondary, primary, known in conn.execute(statement)]


def record_merges(conn: Connection, merges: Sequence[Merge], now: int) -> None:
    """Merges Customer.io accepted: recorded once, and the duplicate's ledger entries move to the survivor (its
    anonymous ids, an unsubscribe seen in Customer.io); its own profile entry and refusals go, as the profile did."""
    if not merges:
        return
    upsert(conn, merge_ledger, [{"secondary": m.secondary, "primary": m.primary, "merged_at": now} for m in merges])
    secondaries = [m.secondary for m in merges]
    unsubscribed = unsubscribed_themselves(conn, secondaries)
    record_unsubscribed_themselves(conn, [m.primary for m in merges if m.secondary in unsubscribed], now)
    for m in merges:
        conn.execute(
            update(anonymous_ledger).where(anonymous_ledger.c.person_id == m.secondary).values(person_id=m.primary)
        )
    delete_keys(conn, people_ledger.c.person_id, secondaries)
    delete_keys(conn, unsubscribed_in_customerio.c.person_id, secondaries)
    clear_rejections(conn, PERSON, secondaries)


def merged_into(conn: Connection, person_ids: Sequence[str]) -> dict[str, str]:
    """secondary -> primary, for those of these people merged away in Customer.io."""
    found: dict[str, str] = {}
    for chunk in chunks(list(person_ids), KEYS_PER_STATEMENT):
        statement = select(merge_ledger.c.secondary, merge_ledger.c.primary).where(merge_ledger.c.secondary.in_(chunk))
        found.update(dict(conn.execute(statement).all()))
    return found


def recorded_profile_items(conn: Connection, records: Sequence[Merge | AnonymousLink | Removal]) -> set:
    """Those of these merges, removals and anonymous links the ledger already records as accepted."""
    merges = [r for r in records if isinstance(r, Merge)]
    links = [r for r in records if isinstance(r, AnonymousLink)]
    removals = [r for r in records if isinstance(r, Removal)]
    merged = merged_into(conn, [m.secondary for m in merges])
    told = delivered_anonymous_ids(conn, [link.anonymous_id for link in links])
    still = {(r.why, r.person_id) for r in pending_removals(conn, "suppress", "delete")}
    return (
        {m for m in merges if m.secondary in merged}
        | {link for link in links if link.anonymous_id in told}
        | {r for r in removals if (r.why, r.person_id) not in still}
    )


def pending_removals(conn: Connection, erasure_action: str, vanished_action: str | None) -> list[Removal]:
    """Profiles Customer.io must still remove: everyone erased it has not been told about, and (unless
    `vanished_action` is None) vanished people it still holds."""
    e = erasures.c
    erased = conn.execute(select(e.person_id).where(e.customerio_at.is_(None)).order_by(e.person_id)).scalars()
    removals = [Removal(person_id, erasure_action, ERASURE) for person_id in erased]
    if vanished_action is not None:
        removals += [Removal(person_id, vanished_action, VANISHED) for person_id, _ in vanished_still_held(conn)]
    return removals


def vanished_still_held(conn: Connection) -> list[tuple[str, int]]:
    """(person_id, seen_at) of vanished people Customer.io still holds (their profile was never deleted)."""
    v = vanished_people.c
    held = vanished_people.join(people_ledger, people_ledger.c.person_id == v.person_id)
    statement = select(v.person_id, v.seen_at).select_from(held).where(v.deleted_at.is_(None)).order_by(v.person_id)
    return [(person_id, int(seen_at)) for person_id, seen_at in conn.execute(statement)]


def record_removals(conn: Connection, removals: Sequence[Removal], now: int) -> None:
    """Removals Customer.io accepted: the erasure or the vanished person marked done, and (vanished) their ledger
    entries dropped, since Customer.io no longer holds them."""
    for removal in removals:
        if removal.why == ERASURE:
            done = erasures.c.person_id == removal.person_id
            conn.execute(update(erasures).where(done).values(customerio_action=removal.action, customerio_at=now))
        else:
            done = vanished_people.c.person_id == removal.person_id
            conn.execute(update(vanished_people).where(done).values(deleted_at=now))
    deleted = [r.person_id for r in removals if r.why != ERASURE]
    delete_keys(conn, people_ledger.c.person_id, deleted)
    delete_keys(conn, anonymous_ledger.c.person_id, deleted)
    clear_rejections(conn, PERSON, deleted)


def delivered_anonymous_ids(conn: Connection, anonymous_ids: Sequence[str]) -> set[str]:
    return keys_present(conn, anonymous_ledger.c.anonymous_id, anonymous_ids)


def record_anonymous_ids(conn: Connection, rows: Sequence[tuple[str, str]], now: int) -> None:
    """(anonymous_id, person_id) Customer.io accepted; a resend after a crash records the same row again."""
    upsert(conn, anonymous_ledger, [{"anonymous_id": a, "person_id": p, "delivered_at": now} for a, p in rows])


# ---------------------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------------------


def delivered_event_ids(conn: Connection, event_ids: Sequence[str]) -> set[str]:
    return keys_present(conn, event_ledger.c.event_id, event_ids)


# The event log outer-joined to the ledger by primary key, and the condition that an event has no ledger entry:
# the comparison done by the database, one index probe per event. (NOT EXISTS let MariaDB materialise the
# whole ledger per query instead, judging it empty from stale statistics: quadratic over a first backfill.)
LOG_AND_LEDGER = event_log.outerjoin(event_ledger, event_ledger.c.event_id == event_log.c.event_id)
NOT_DELIVERED = event_ledger.c.event_id.is_(None)


def undelivered_events(conn: Connection, days: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """(ids of the days' events the ledger lacks, per day how many it holds), in one pass over each day's ids:
    the log's day index probing the ledger by primary key, without reading a row's properties. A day at a time:
    one query across a range's days left the plan to MariaDB's statistics (on a new state database it sorted
    the whole range)."""
    undelivered: list[str] = []
    delivered: dict[str, int] = {}
    statement = select(event_log.c.event_id, NOT_DELIVERED).select_from(LOG_AND_LEDGER)
    for day in days:
        held = 0
        for event_id, missing in conn.execute(statement.where(event_log.c.day == day)):
            if missing:
                undelivered.append(event_id)
            else:
                held += 1
        if held:
            delivered[day] = held
    return undelivered, delivered


def record_events(conn: Connection, rows: Sequence[tuple[str, str]], now: int) -> None:
    """(event_id, Customer.io ULID) pairs that Customer.io accepted."""
    if not rows:
        return
    for chunk in chunks([r[0] for r in rows], KEYS_PER_STATEMENT):
        conn.execute(delete(event_ledger).where(event_ledger.c.event_id.in_(chunk)))
    insert_rows(
        conn, event_ledger, ("event_id", "cio_event_id", "delivered_at"), [(key, ulid, now) for key, ulid in rows]
    )
