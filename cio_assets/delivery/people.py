"""Customer.io people: each changed person identified once, with only the attributes that changed.

For each person in the partition range, the latest snapshot row is compared with the ledger (what
Customer.io already holds):
- no ledger entry: created, every non-null attribute is sent;
- some values differ: updated, only the changed keys are sent (a value that became null is sent as
  an empty string, which clears it in Customer.io);
- nothing differs: unchanged, nothing is sent;
- the ledger holds a newer snapshot: skipped, so an old partition re-run or a backfill never rolls
  newer state (say `last_order_at`) back.
Each identify carries `timestamp` = the snapshot's as_of, so Customer.io orders updates too.
People refused earlier are retried on every run, until they succeed or a newer snapshot replaces them.

Each identify carries the person's consent as Customer.io's reserved `unsubscribed` attribute, by the rules in
`consent.py`: only an opt-out unsubscribes, and only the pipeline's own `true` is ever undone.

After the people's identifies come erasures (and vanished people); once those are delivered, merges of
duplicates and anonymous ids, which need the people they name to be in Customer.io (`profiles.py`).
"""

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, and_, or_, select

from cio_assets.customerio.batching import Item
from cio_assets.delivery import ledger
from cio_assets.delivery.consent import (
    KEPT_UNSUBSCRIBED,
    RESUBSCRIBING,
    UNSUBSCRIBED,
    UNSUBSCRIBING,
    consent,
    consent_outcome,
)
from cio_assets.delivery.profiles import (
    ANONYMOUS_ID,
    ERASURE,
    VANISHED,
    AnonymousLink,
    Merge,
    Removal,
    anonymous_identify,
    is_profile_key,
    merge_item,
    pending_item,
    removal_item,
)
from cio_assets.delivery.stream import SyncStream
from cio_assets.lib.days import PartitionRange
from cio_assets.lib.engines import Database
from cio_assets.lib.reads import read_frame, read_frames
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.schema.state import ATTRIBUTE_COLUMNS, attribute_snapshot
from cio_assets.tracking.refusals import PERSON, Pending

CREATED, UPDATED, UNCHANGED, OLDER = "created", "updated", "unchanged", "skipped_older"


@dataclass(frozen=True)
class Change:
    person_id: str
    kind: str
    as_of: int
    attributes: dict  # full state after this change
    send: dict  # the keys to send


def identify(change: Change) -> Item:
    return Item(
        key=change.person_id,
        record=(change.attributes, change.as_of),
        payload={
            "type": "person",
            "identifiers": {"id": change.person_id},
            "action": "identify",
            "timestamp": change.as_of,
            "attributes": change.send,
        },
    )


def plan_change(person_id: str, as_of: int, attributes: dict, delivered: tuple[dict, int] | None) -> Change:
    if delivered is None:
        present = {k: v for k, v in attributes.items() if v is not None}
        return Change(person_id, CREATED, as_of, attributes, present)
    held, held_as_of = delivered
    if as_of < held_as_of:
        return Change(person_id, OLDER, as_of, held, {})
    changed = {k: ("" if v is None else v) for k, v in attributes.items() if held.get(k) != v}
    return Change(person_id, UPDATED if changed else UNCHANGED, as_of, attributes, changed)


def pending_merges_frame(pending: list[tuple[str, str, bool]]) -> pd.DataFrame:
    return pd.DataFrame(pending, columns=["secondary", "primary", "primary_in_customerio"])


def latest_days(state: Database, days: list[str], chunk_rows: int) -> list[tuple[str, str]]:
    """(person_id, the latest day they have a snapshot row in `days`), ordered by person.

    The rows' keys are read in primary-key order (day, then person), and a later day overwrites an earlier
    one: memory follows the people, not their rows. A GROUP BY person_id made MariaDB group a year of rows
    in a temporary table on disk (13 s at 100,000 customers)."""
    latest: dict[str, str] = {}
    statement = (
        select(attribute_snapshot.c.person_id, attribute_snapshot.c.day)
        .where(attribute_snapshot.c.day.in_(days))
        .order_by(attribute_snapshot.c.day, attribute_snapshot.c.person_id)
    )
    with state.connect() as conn:
        for frame in read_frames(conn, statement, chunk_rows):
            latest.update(zip(frame["person_id"], frame["day"], strict=True))
    return sorted(latest.items())


def snapshot_rows(state: Database, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """The snapshot rows of exactly these (person_id, day) pairs."""
    people_by_day: dict[str, list[str]] = defaultdict(list)
    for person_id, day in pairs:
        people_by_day[day].append(person_id)
    # One (day, person ids) clause per day: exact lookups on the (day, person_id) primary key.
    exact = or_(
        *(
            and_(attribute_snapshot.c.day == day, attribute_snapshot.c.person_id.in_(people))
            for day, people in people_by_day.items()
        )
    )
    with state.connect() as conn:
        # object dtype: a nullable integer column must not turn into floats (Customer.io wants Unix seconds).
        return read_frame(conn, select(attribute_snapshot).where(exact), dtype=object)


def _plain(value: object) -> object:
    """Database values as JSON-ready Python values (no numpy scalars, no NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class PeopleOptions:
    """The settings the people sync follows."""

    chunk_size: int  # people per page (CIO_CHUNK_SIZE)
    unsubscribe: str  # CIO_UNSUBSCRIBE
    merge_duplicates: str  # CIO_MERGE_DUPLICATES
    erasure: str  # CIO_ERASURE
    vanished: str  # CIO_VANISHED


class PeopleStream(SyncStream):
    """People of the range, latest snapshot first compared with what Customer.io holds."""

    kind = PERSON
    label = "people"
    outcomes = (CREATED, UPDATED, UNCHANGED, OLDER)

    def __init__(self, state: Database, prange: PartitionRange, options: PeopleOptions, dry_run: bool) -> None:
        super().__init__(state, prange, dry_run)
        self.options = options
        self.unsubscribe_mode = options.unsubscribe
        self.merge_mode = options.merge_duplicates
        self.pending_merges: list[tuple[str, str, bool]] = []  # (secondary, primary, primary known): not sent

    def fresh(self) -> Iterator[Item]:
        """Page through the range's people: memory follows the page, not the shop."""
        size = self.options.chunk_size
        pairs = latest_days(self.state, self.prange.keys, size * 10)
        for start in range(0, len(pairs), size):
            rows = snapshot_rows(self.state, pairs[start : start + size])
            with self.state.connect() as conn:
                held = ledger.delivered_people(conn, list(rows["person_id"]))
                themselves = ledger.unsubscribed_themselves(conn, list(rows["person_id"]))
            for row in rows.itertuples(index=False):
                attributes = {c: _plain(getattr(row, c)) for c in ATTRIBUTE_COLUMNS}
                delivered = held.get(row.person_id)
                before = delivered[0].get(UNSUBSCRIBED) if delivered else None
                opted_in = attributes["email_opt_in"]  # True, False, or None: unknown (never asked)
                attributes[UNSUBSCRIBED] = consent(self.unsubscribe_mode, opted_in, before, row.person_id in themselves)
                change = plan_change(row.person_id, int(row.as_of), attributes, delivered)
                self.count(change.kind, row.day)
                if change.kind in (CREATED, UPDATED):
                    outcome = consent_outcome(opted_in, before, attributes[UNSUBSCRIBED])
                    if outcome:
                        self.counts[outcome] += 1
                    yield identify(change)
        yield from self._removals()

    def follow_up(self) -> Iterator[Item]:
        """After the identifies have been accepted: merges into survivors Customer.io now holds, and anonymous ids
        of people it now knows, so a new person's land in the same run."""
        yield from self._merges()
        yield from self._anonymous_ids()

    def _merges(self) -> Iterator[Item]:
        """Duplicates Customer.io holds as profiles of their own, merged into a survivor it knows (`apply`)."""
        with self.state.connect() as conn:
            pending = ledger.pending_merges(conn)
        for secondary, primary, primary_known in pending:
            if self.merge_mode == "apply" and primary_known:
                self.counts["merges"] += 1
                yield merge_item(Merge(secondary, primary))
            else:
                self.pending_merges.append((secondary, primary, primary_known))

    def _removals(self) -> Iterator[Item]:
        """People an erasure request names, once; vanished people still in Customer.io, under CIO_VANISHED=delete."""
        with self.state.connect() as conn:
            vanished = "delete" if self.options.vanished == "delete" else None
            removals = ledger.pending_removals(conn, self.options.erasure, vanished)
        for removal in removals:
            self.counts[removal.why] += 1
            yield removal_item(removal)

    def _anonymous_ids(self) -> Iterator[Item]:
        """Anonymous ids not yet told, for people Customer.io knows (in a dry run: everyone, as if identified)."""
        with self.state.connect() as conn:
            pending = ledger.pending_anonymous_ids(conn, identified_only=not self.dry_run)
        now = unix(utc_now())
        for person_id, anonymous_id in pending:
            self.counts[ANONYMOUS_ID] += 1
            yield anonymous_identify(AnonymousLink(anonymous_id, person_id), now)

    def due(self, pending: list[Pending]) -> tuple[list[Item], list[str]]:
        """Earlier refusals, unless Customer.io now holds newer state for the person; merges and anonymous ids
        unless they were recorded since."""
        profile = [pending_item(key, payload) for key, payload, _ in pending if is_profile_key(key)]
        people = [p for p in pending if not is_profile_key(p[0])]
        with self.state.connect() as conn:
            held = ledger.delivered_people(conn, [key for key, _, _ in people])
            done = ledger.recorded_profile_items(conn, [item.record for item in profile])
        settled = [key for key, _, as_of in people if key in held and held[key][1] > as_of]
        retry = []
        for key, payload, as_of in people:
            if key not in settled:
                previous = held.get(key, ({}, 0))[0]
                sent = {k: (None if v == "" else v) for k, v in payload["attributes"].items()}
                retry.append(Item(key, payload, record=({**previous, **sent}, as_of)))
        for item in profile:
            if item.record in done or (isinstance(item.record, Merge) and self.merge_mode != "apply"):
                settled.append(item.key)
            else:
                retry.append(item)
        return retry, settled

    def record(self, conn: Connection, delivered: list[Item], now: int) -> None:
        records = [item.record for item in delivered]
        people = [(item.key, *item.record) for item in delivered if isinstance(item.record, tuple)]
        ledger.record_people(conn, people, now)
        ledger.record_merges(conn, [r for r in records if isinstance(r, Merge)], now)
        ledger.record_removals(conn, [r for r in records if isinstance(r, Removal)], now)
        links = [(r.anonymous_id, r.person_id) for r in records if isinstance(r, AnonymousLink)]
        ledger.record_anonymous_ids(conn, links, now)

    def metadata(self) -> dict[str, object]:
        return {
            "people_created": self.counts[CREATED],
            "people_updated": self.counts[UPDATED],
            "people_unchanged": self.counts[UNCHANGED],
            "people_skipped_older": self.counts[OLDER],
            "unsubscribe_mode": self.unsubscribe_mode,
            "people_unsubscribed": self.counts[UNSUBSCRIBING],
            "people_resubscribed": self.counts[RESUBSCRIBING],
            "people_resubscribe_withheld": self.counts[KEPT_UNSUBSCRIBED],
            "anonymous_ids": self.counts[ANONYMOUS_ID],
            "erasure_action": self.options.erasure,
            "people_erased_in_customerio": self.counts[ERASURE],
            "vanished_mode": self.options.vanished,
            "vanished_deleted_in_customerio": self.counts[VANISHED],
            "merge_mode": self.merge_mode,
            "merges": self.counts["merges"],
            "merges_pending": len(self.pending_merges),
        }
