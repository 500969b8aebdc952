"""One skeleton for both sync assets: plan the items, send them (or write the outbox), record the ledger.

A `SyncStream` knows one kind of item, people or events: which items its range needs (`fresh`),
which earlier refusals are still due (`due`), and how an accepted item is recorded (`record`).
`run_sync` does the rest in the same way for both:

- earlier refusals are retried after the fresh items; a fresh item replaces an earlier refusal of
  the same key, whose outcome (accepted, or refused again with one more attempt) then stands;
- a stream's follow-up items (what needs the first delivery's results: merges into a survivor, anonymous
  ids of a person) are delivered after it, in the same run and the same turn;
- items a stream holds back for later (an event whose person Customer.io does not know yet) are
  recorded with their reason and retried on every run, like refusals;
- a state database whose ledger is not the one that delivered before refuses to send, so a lost
  ledger never silently re-sends history (`CIO_ACCEPT_NEW_LEDGER=1` allows it once, on purpose);
- only one sync at a time sends to a Customer.io workspace, whatever the number of runs and workers: each
  takes the workspace's turn (a named lock in the state database) before its first request.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from itertools import chain

import dagster as dg
from sqlalchemy import Connection

from cio_assets.customerio.batching import Item
from cio_assets.delivery import ledger
from cio_assets.delivery.deliver import DeliveryReport, deliver, delivery_metadata, outbox_path
from cio_assets.lib.locks import named_lock
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.metadata import add_partition_metadata
from cio_assets.partitions import PartitionRange
from cio_assets.resources import CustomerIO, StateDatabase
from cio_assets.settings import Settings

LEDGER_ID = "ledger_id"
WAITED_FOR_TURN = "waited_for_turn_s"
# How often a sync waiting for its turn to send says so in the run's log.
TURN_REPORT_SECONDS = 30
RETRIED = "retried_refusals"
# How far back the instance is searched for the ledger that delivered last.
_LEDGER_SEARCH_LIMIT = 1000

Pending = tuple[str, dict, int]  # (key, payload, as_of) of an item refused or held back earlier


class SyncStream(ABC):
    """What differs between the people and the event sync."""

    kind: str  # ledger.PERSON or ledger.EVENT
    label: str  # "people" or "events": the prefix of the per-day figures
    outcomes: tuple[str, ...]  # what can happen to a fresh item, counted per day of the range

    def __init__(self, state: StateDatabase, prange: PartitionRange, settings: Settings, dry_run: bool) -> None:
        self.state = state
        self.prange = prange
        self.settings = settings
        self.dry_run = dry_run
        self.counts: Counter[str] = Counter()
        self.per_day: Counter[tuple[str, str]] = Counter()  # (day, outcome) of fresh items
        self.held: list[tuple[Item, str]] = []  # items kept for a later run, with why

    def count(self, outcome: str, day: str, items: int = 1) -> None:
        """`items` fresh items of `day` had this outcome (the run total and the day's own figure)."""
        self.counts[outcome] += items
        self.per_day[day, outcome] += items

    def day_figures(self) -> dict[str, dict[str, object]]:
        """Each day's own outcomes (`people/created`, `events/live`, ...), every outcome on every day."""
        return {
            day: {f"{self.label}/{outcome}": self.per_day[day, outcome] for outcome in self.outcomes}
            for day in self.prange.keys
        }

    @abstractmethod
    def fresh(self) -> Iterator[Item]:
        """The items the range needs, in pages; hold back (append to `held`) what must wait."""

    def follow_up(self) -> Iterator[Item]:
        """Items that need what the first delivery made Customer.io hold (sent after it, in the same run)."""
        return iter(())

    @abstractmethod
    def due(self, pending: list[Pending]) -> tuple[list[Item], list[str]]:
        """(earlier refusals to retry now, keys of refusals that no longer need sending)."""

    @abstractmethod
    def record(self, conn: Connection, delivered: list[Item], now: int) -> None:
        """Write the ledger entries of items Customer.io accepted."""

    @abstractmethod
    def metadata(self) -> dict[str, object]: ...


def run_sync(
    context: dg.AssetExecutionContext, stream: SyncStream, state: StateDatabase, customerio: CustomerIO
) -> dg.MaterializeResult:
    started = time.monotonic()
    ledger_metadata = check_ledger(context, state, customerio)
    # `pending` and `refused_before` are read in the sending turn, below, before the closures run.

    def items() -> Iterator[Item]:
        fresh_keys: set[str] = set()
        for item in stream.fresh():
            fresh_keys.add(item.key)
            yield item
        held_keys = {item.key for item, _ in stream.held}
        retry, settled = stream.due([p for p in pending if p[0] not in fresh_keys | held_keys])
        if settled and not stream.dry_run:
            with state.begin() as conn:
                ledger.clear_rejections(conn, stream.kind, settled)
        stream.counts[RETRIED] += len(retry)
        yield from retry

    def on_delivered(delivered: list[Item]) -> None:
        with state.begin() as conn:
            stream.record(conn, delivered, unix(utc_now()))
            # Only an earlier refusal can be on record for a delivered key: this run records its own refusals for
            # keys it does not deliver, and no other sync of the workspace records any during its turn. No query
            # for the others (3 s of a year's first event sync).
            ledger.clear_rejections(conn, stream.kind, [item.key for item in delivered if item.key in refused_before])

    def delivery(batch_items: Iterator[Item]) -> DeliveryReport:
        refused = partial(_record_refusals, state, stream.kind)
        return deliver(
            batch_items, customerio, outbox_path(customerio, context), on_delivered, refused, context.log.info
        )

    with sending_turn(context, state, customerio) as waited:
        with state.connect() as conn:
            # Read in the turn, before this run refuses anything: only earlier refusals count as retries.
            pending = ledger.pending_rejections(conn, stream.kind)
        refused_before = {key for key, _, _ in pending}  # the only keys with a refusal to clear once delivered
        report = delivery(items())
        later = stream.follow_up()
        first = next(later, None)  # most runs have none: no second client then
        if first is not None:
            report = report.then(delivery(chain([first], later)))
    if stream.held and not stream.dry_run:
        _record_refusals(state, stream.kind, stream.held)
    context.log.info(f"{stream.kind}s: {dict(stream.counts)}; {delivery_summary(report, len(stream.held))}")
    add_partition_metadata(context, stream.day_figures())
    return dg.MaterializeResult(
        metadata={
            **stream.metadata(),
            RETRIED: stream.counts[RETRIED],
            **delivery_metadata(report),
            **ledger_metadata,
            **({WAITED_FOR_TURN: waited} if customerio.sends else {}),
            "duration_s": round(time.monotonic() - started, 2),
        }
    )


@contextmanager
def sending_turn(context: dg.AssetExecutionContext, state: StateDatabase, customerio: CustomerIO) -> Iterator[float]:
    """One sync at a time sends to a Customer.io workspace, across runs, workers and machines, so concurrent
    runs never multiply CIO_RATE_LIMIT. Yields the seconds spent waiting for the turn.

    The `customerio_api` pool (deploy/dagster.yaml) already keeps a second sync step from starting, but on
    Postgres storage Dagster assigns pool slots in autocommit statements: two steps claiming at the same instant
    can both be let through (seen in CI). This lock, in the state database every run shares, is the guarantee;
    the pool keeps waiting steps off the workers. A dry run sends nothing and takes no turn."""
    if not customerio.sends:
        yield 0.0
        return

    def waiting(seconds: float) -> None:
        context.log.info(
            f"Waiting {seconds:.0f} s for another sync sending to this Customer.io workspace to finish "
            f"(lock {_turn_name(customerio)} in the state database)"
        )

    with named_lock(state.engine, _turn_name(customerio), on_wait=waiting, report_every=TURN_REPORT_SECONDS) as waited:
        if waited:
            context.log.info(f"Waited {waited:.1f} s for this Customer.io workspace's turn")
        yield waited


def _turn_name(customerio: CustomerIO) -> str:
    return f"cio_assets_customerio_{customerio.workspace}"


def delivery_summary(report: DeliveryReport, held: int) -> str:
    """What the run did with its items, in words that match the mode: a dry run plans, it never sends."""
    refused = sum(report.rejected.values())
    if report.dry_run:
        return (
            f"dry run: {report.sent} items planned in {report.batches} batches, none sent (request bodies in "
            f"{report.outbox}); {refused} would be refused, {held} would wait for a later run"
        )
    return f"{report.sent} items sent in {report.batches} batches, {refused} refused, {held} held for a later run"


def _record_refusals(state: StateDatabase, kind: str, refused: list[tuple[Item, str]]) -> None:
    """Refused (or held) items with their reason, one transaction per batch, to be retried next run."""
    now = unix(utc_now())
    # A merge or a suppression carries no timestamp: its as_of is when it was refused.
    rows = [(item.key, item.payload, int(item.payload.get("timestamp", now)), reason) for item, reason in refused]
    with state.begin() as conn:
        ledger.record_rejections(conn, kind, rows, now)


def check_ledger(context: dg.AssetExecutionContext, state: StateDatabase, customerio: CustomerIO) -> dict[str, object]:
    """Refuse to deliver from a ledger other than the one that delivered before (lost or recreated)."""
    if not customerio.sends:
        return {}
    with state.begin() as conn:
        ledger_id, created_at = ledger.identity(conn, unix(utc_now()))
    before = _last_delivering_ledger(context.instance, context.asset_key)
    if before is not None and before[0] != ledger_id:
        if not customerio.accept_new_ledger:
            raise dg.Failure(
                description=(
                    f"The sync ledger in the state database (ledger {ledger_id}, created at Unix {created_at}) is not "
                    f"the one that delivered {context.asset_key.to_user_string()} to Customer.io before (ledger "
                    f"{before[0]}, run {before[1]}). It was lost or recreated, so it no longer knows what Customer.io "
                    "holds: delivering now would send every person and event again, history included. Restore the "
                    "state database, or, if re-sending is intended, run once with CIO_ACCEPT_NEW_LEDGER=1."
                ),
                metadata={"ledger_id": ledger_id, "previous_ledger_id": before[0]},
            )
        context.log.warning(f"Delivering from a new ledger {ledger_id} (was {before[0]}): CIO_ACCEPT_NEW_LEDGER=1")
    return {LEDGER_ID: ledger_id}


def _last_delivering_ledger(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> tuple[str, str] | None:
    """(ledger id, run id) recorded by the newest materialization that delivered, if any."""
    cursor = None
    for _ in range(0, _LEDGER_SEARCH_LIMIT, 100):
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key), limit=100, cursor=cursor)
        for record in page.records:
            materialization = record.asset_materialization
            if materialization is not None and LEDGER_ID in materialization.metadata:
                return str(materialization.metadata[LEDGER_ID].value), record.run_id
        if not page.has_more:
            return None
        cursor = page.cursor
    return None
