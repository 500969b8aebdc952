"""The `customerio_events` asset: every event in the log reaches Customer.io exactly once.

- An `event_id` in the ledger is never sent again (counted as a duplicate skipped).
- Customer.io's event `id` is a ULID derived from the event_id and its time, so a resend after a
  crash between "accepted" and "recorded" is dropped by Customer.io as well.
- History guardrail: an event older than the live window (`CIO_LIVE_WINDOW_HOURS`) is sent with its
  historical timestamp and `backfill: true`, so journeys can filter it out (Customer.io also never
  triggers campaigns from events older than 72 h); `CIO_HISTORY_EVENTS=skip` leaves history out.
- Events refused earlier are retried on every run until they succeed; a re-extracted event (its
  source row changed) replaces the refused payload.
"""

import time
from collections import Counter
from collections.abc import Iterator

import dagster as dg
import orjson
from sqlalchemy import select

from cio_assets.customerio.batching import Item
from cio_assets.customerio.ids import event_ulid
from cio_assets.partitions import PartitionRange, daily_partitions
from cio_assets.resources import CustomerIO, StateDatabase
from cio_assets.settings import Settings
from cio_assets.state.tables import event_log
from cio_assets.sync import ledger
from cio_assets.sync.deliver import deliver, delivery_metadata, outbox_path, record_refusals
from cio_assets.timestamps import unix, utc_now

HISTORY_FLAG = "backfill"


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


@dg.asset(
    key="customerio_events",
    group_name="customerio",
    kinds={"customerio"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["event_log"],
    pool="customerio_api",
    description=__doc__,
)
def customerio_events(
    context: dg.AssetExecutionContext, state: StateDatabase, customerio: CustomerIO, settings: Settings
) -> dg.MaterializeResult:
    started = time.monotonic()
    prange = PartitionRange.from_context(context)
    live_since = unix(utc_now()) - settings.live_window_hours * 3600
    counts: Counter[str] = Counter()
    with state.connect() as conn:
        retries = ledger.pending_rejections(conn, ledger.EVENT)

    def fresh_items() -> Iterator[Item]:
        for chunk in _log_chunks(state, prange.keys, settings.chunk_size):
            delivered = _delivered(state, [row.event_id for row in chunk])
            for row in chunk:
                history = row.timestamp < live_since
                if row.event_id in delivered:
                    counts["duplicates_skipped"] += 1
                elif history and settings.history_events == "skip":
                    counts["history_skipped"] += 1
                else:
                    counts["history" if history else "live"] += 1
                    yield event_item(
                        row.event_id, row.person_id, row.name, int(row.timestamp), orjson.loads(row.properties), history
                    )

    in_this_run: set[str] = set()
    already_delivered = _delivered(state, [key for key, _, _ in retries])

    def items() -> Iterator[Item]:
        for item in fresh_items():
            in_this_run.add(item.key)
            yield item
        for key, payload, _ in retries:
            if key not in in_this_run and key not in already_delivered:
                counts["retried_refusals"] += 1
                yield Item(key, payload)

    def on_delivered(delivered_items: list[Item]) -> None:
        now = unix(utc_now())
        with state.begin() as conn:
            ledger.record_events(conn, [(i.key, i.payload["id"]) for i in delivered_items], now)
            ledger.clear_rejections(conn, ledger.EVENT, [i.key for i in delivered_items])

    on_rejected = record_refusals(state, ledger.EVENT)
    report = deliver(items(), customerio, outbox_path(customerio, context), on_delivered, on_rejected, context.log.info)
    context.log.info(f"events: {dict(counts)}; {report.sent} sent, {sum(report.rejected.values())} rejected")
    return dg.MaterializeResult(
        metadata={
            "events_live": counts["live"],
            "events_history": counts["history"],
            "events_history_skipped": counts["history_skipped"],
            "events_duplicate_skipped": counts["duplicates_skipped"],
            "retried_refusals": counts["retried_refusals"],
            "live_window_hours": settings.live_window_hours,
            **delivery_metadata(report),
            "duration_s": round(time.monotonic() - started, 2),
        }
    )


def _log_chunks(state: StateDatabase, days: list[str], size: int) -> Iterator[list]:
    """The event log rows of these days, `size` at a time, each page its own short query.

    Pages follow the primary key, so each is an index range scan. Keyset pages rather than one
    streaming cursor: the ledger is written between pages, and SQLite would not let a writer in
    while a reader holds the file. Order does not matter to Customer.io: every event carries its time.
    """
    after: str | None = None
    while True:
        statement = (
            select(
                event_log.c.event_id,
                event_log.c.person_id,
                event_log.c.name,
                event_log.c.timestamp,
                event_log.c.properties,
            )
            .where(event_log.c.day.in_(days))
            .order_by(event_log.c.event_id)
            .limit(size)
        )
        if after is not None:
            statement = statement.where(event_log.c.event_id > after)
        with state.connect() as conn:
            page = conn.execute(statement).all()
        if not page:
            return
        yield page
        after = page[-1].event_id


def _delivered(state: StateDatabase, event_ids: list[str]) -> set[str]:
    with state.connect() as conn:
        return ledger.delivered_event_ids(conn, event_ids)
