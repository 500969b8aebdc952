"""Customer.io events: every event in the log delivered exactly once, after its person's identify.

- An `event_id` in the ledger is never sent again (counted as a duplicate skipped).
- Customer.io's event `id` is a ULID derived from the event_id and its time, so a resend after a
  crash between "accepted" and "recorded" is dropped by Customer.io as well.
- An event whose person Customer.io does not know yet is held, not sent: sending it would create a
  bare profile without e-mail or phone. It is retried on every run until the identify has landed
  (the people sync runs first in the same run).
- History guardrail: an event older than the live window (`CIO_LIVE_WINDOW_HOURS`) is sent with its
  historical timestamp and `backfill: true`, so journeys can filter it out (Customer.io also never
  triggers campaigns from events older than 72 h); `CIO_HISTORY_EVENTS=skip` leaves history out.
- Besides its own days, a run sends the events of source rows released from quarantine during its
  range (a corrected order), whatever day they belong to.
- Events refused earlier are retried on every run until they succeed; a re-extracted event (its
  source row changed) replaces the refused payload.
- One ingestion path per family: only the families in `CIO_EVENT_FAMILIES` are sent (the others are
  counted as `family_off`, never recorded as delivered, so turning a family on later sends them), each
  under the name `CIO_EVENT_NAMES` gives it. The event id and its ULID come from the family and the
  source key, never from the sent name: a rename sends nothing again.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain

import orjson
from sqlalchemy import Connection, Row, select

from cio_assets.customerio.batching import Item
from cio_assets.customerio.ids import event_ulid
from cio_assets.delivery import ledger
from cio_assets.delivery.stream import SyncStream
from cio_assets.events.families import event_family, event_id
from cio_assets.hygiene.rejections import released_rows
from cio_assets.identity.erasure import erased_set
from cio_assets.lib.chunking import chunks
from cio_assets.lib.days import PartitionRange
from cio_assets.lib.engines import Database
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.lib.writes import KEYS_PER_STATEMENT
from cio_assets.schema.events import FAMILY_TABLES
from cio_assets.schema.state import attribute_snapshot, event_log
from cio_assets.tracking.refusals import EVENT, Pending

HISTORY_FLAG = "backfill"
WAITING_FOR_IDENTIFY = "held: the person is not identified in Customer.io yet (no e-mail or phone there)"
LOG_COLUMNS = (
    event_log.c.event_id,
    event_log.c.day,
    event_log.c.person_id,
    event_log.c.name,
    event_log.c.timestamp,
    event_log.c.properties,
)


def event_item(event_id: str, person_id: str, name: str, timestamp: int, properties: dict, history: bool) -> Item:
    attributes = {**properties, HISTORY_FLAG: True} if history else properties
    return Item(
        key=event_id,
        payload={
            "type": "person",
            "identifiers": {"id": person_id},
            "action": "event",
            "name": name,
            "id": event_ulid(event_id, timestamp),
            "timestamp": timestamp,
            "attributes": attributes,
        },
    )


@dataclass(frozen=True)
class EventOptions:
    """The settings the event sync follows."""

    chunk_size: int  # events per page (CIO_CHUNK_SIZE)
    families: tuple[str, ...]  # the families sent (CIO_EVENT_FAMILIES)
    sent_names: dict[str, str]  # family -> the name Customer.io receives it under (CIO_EVENT_NAMES)
    live_window_hours: int  # CIO_LIVE_WINDOW_HOURS
    history_events: str  # CIO_HISTORY_EVENTS
    # Families the shop has nothing to make from (the source mapping has no carts, say), each with why: not sent.
    families_off: dict[str, str] = field(default_factory=dict)


class EventStream(SyncStream):
    """The range's events, each once, each after its person."""

    kind = EVENT
    label = "events"
    outcomes = ("live", "history", "history_skipped", "duplicates_skipped", "waiting_for_identify", "family_off")

    def __init__(self, state: Database, prange: PartitionRange, options: EventOptions, dry_run: bool) -> None:
        super().__init__(state, prange, dry_run)
        self.options = options
        self.live_since = unix(utc_now()) - options.live_window_hours * 3600
        self.families = options.families
        self.sent_names = options.sent_names

    def fresh(self) -> Iterator[Item]:
        # What the ledger already holds is counted, and left out of the pages, in one pass over each day's ids: a
        # re-run costs what is new, not every event of the range.
        with self.state.connect() as conn:
            undelivered, delivered_per_day = ledger.undelivered_events(conn, self.prange.keys)
        for day, delivered in delivered_per_day.items():
            self.count("duplicates_skipped", day, delivered)
        for page in chain(_log_pages(self.state, undelivered, self.options.chunk_size), self._released_pages()):
            with self.state.connect() as conn:
                delivered = ledger.delivered_event_ids(conn, [row.event_id for row in page])
                identified = self._identified(conn, {row.person_id for row in page})
            for row in page:
                history = row.timestamp < self.live_since
                if row.event_id in delivered:
                    self.count("duplicates_skipped", row.day)
                elif row.name not in self.families:
                    self.count("family_off", row.day)
                elif history and self.options.history_events == "skip":
                    self.count("history_skipped", row.day)
                else:
                    name = self.sent_names[row.name]
                    item = event_item(
                        row.event_id, row.person_id, name, int(row.timestamp), orjson.loads(row.properties), history
                    )
                    if row.person_id not in identified:
                        self.count("waiting_for_identify", row.day)
                        self.held.append((item, WAITING_FOR_IDENTIFY))
                    else:
                        self.count("history" if history else "live", row.day)
                        yield item

    def _released_pages(self) -> Iterator[list[Row]]:
        """Log rows of source rows released from quarantine during the range, outside its own days."""
        with self.state.connect() as conn:
            candidates = [
                event_id(name, key)
                for name, table in FAMILY_TABLES.items()
                for key in released_rows(conn, table, self.prange)["source_key"]
            ]
            pages = [
                conn.execute(
                    select(*LOG_COLUMNS).where(
                        event_log.c.event_id.in_(chunk), event_log.c.day.not_in(self.prange.keys)
                    )
                ).all()
                for chunk in chunks(candidates, KEYS_PER_STATEMENT)
            ]
        for page in filter(None, pages):  # few rows: read before yielding, so no reader holds the database
            self.counts["released_from_quarantine"] += len(page)
            yield page

    def _identified(self, conn: Connection, person_ids: set[str]) -> set[str]:
        """People Customer.io knows; in a dry run, also those the people sync would identify."""
        known = ledger.identified_people(conn, sorted(person_ids))
        if self.dry_run:
            for chunk in chunks(sorted(person_ids - known), KEYS_PER_STATEMENT):
                statement = select(attribute_snapshot.c.person_id).distinct()
                known.update(conn.execute(statement.where(attribute_snapshot.c.person_id.in_(chunk))).scalars())
        return known

    def due(self, pending: list[Pending]) -> tuple[list[Item], list[str]]:
        """Earlier refusals not delivered since, whose person Customer.io now knows, under today's name and person (a
        duplicate merged away since gives way to its survivor). A refusal of a family no longer sent is settled (the
        log still holds the event, for when the family is on again), and so is one of a person since erased."""
        with self.state.connect() as conn:
            delivered = ledger.delivered_event_ids(conn, [key for key, _, _ in pending])
            # A person merged away in Customer.io since: their events belong to the survivor now.
            merged = ledger.merged_into(conn, [payload["identifiers"]["id"] for _, payload, _ in pending])
            people = {merged.get(p["identifiers"]["id"], p["identifiers"]["id"]) for _, p, _ in pending}
            identified = self._identified(conn, people)
            erased = erased_set(conn, people)
        retry, settled = [], sorted(delivered)
        for key, payload, _ in pending:
            family = event_family(key)
            person_id = merged.get(payload["identifiers"]["id"], payload["identifiers"]["id"])
            if key in delivered:
                continue
            if family not in self.families or person_id in erased:
                settled.append(key)
            elif person_id in identified:
                sent = {**payload, "name": self.sent_names[family], "identifiers": {"id": person_id}}
                retry.append(Item(key, sent))
            else:
                self.counts["waiting_for_identify"] += 1
        return retry, settled

    def record(self, conn: Connection, delivered: list[Item], now: int) -> None:
        ledger.record_events(conn, [(item.key, item.payload["id"]) for item in delivered], now)

    def metadata(self) -> dict[str, object]:
        return {
            "events_live": self.counts["live"],
            "events_history": self.counts["history"],
            "events_history_skipped": self.counts["history_skipped"],
            "events_duplicate_skipped": self.counts["duplicates_skipped"],
            "events_waiting_for_identify": self.counts["waiting_for_identify"],
            "events_released_from_quarantine": self.counts["released_from_quarantine"],
            "events_family_off": self.counts["family_off"],
            "event_families": ", ".join(self.families),
            "event_families_off": self.options.families_off,
            "event_names": {family: self.sent_names[family] for family in self.families},
            "live_window_hours": self.options.live_window_hours,
        }


def _log_pages(state: Database, event_ids: list[str], size: int) -> Iterator[list[Row]]:
    """The event log rows of these ids, `size` at a time, each page its own short query, by primary key in key
    order. The log is clustered by event_id and each day's events lie all over it, so reading the rows day by day
    visited every page of the log once per day (a year's first sync at 100,000 customers read its 500 MB log again
    and again through MariaDB's default 128 MB buffer pool); in key order it is read once, front to back. Keyset
    pages rather than one streaming cursor: the ledger is written between pages, and SQLite would not let a
    writer in while a reader holds the file. Order does not matter to Customer.io: every event carries its time.
    """
    for page_ids in chunks(sorted(event_ids), size):
        with state.connect() as conn:
            page = [
                row
                for chunk in chunks(page_ids, KEYS_PER_STATEMENT)
                for row in conn.execute(select(*LOG_COLUMNS).where(event_log.c.event_id.in_(chunk)))
            ]
        if page:
            yield page
