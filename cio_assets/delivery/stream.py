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
  ledger never silently re-sends history (`CIO_ACCEPT_NEW_LEDGER=1` allows it once, on purpose;
  `ledger_problem`, asked by the sync assets, which find the ledger that delivered before in Dagster's
  materializations);
- only one sync at a time sends to a Customer.io workspace, whatever the number of runs and workers: each
  takes the workspace's turn (a named lock in the state database) before its first request.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import chain

from sqlalchemy import Connection

from cio_assets.customerio.batching import Item
from cio_assets.delivery.deliver import DeliveryReport, Sender, deliver
from cio_assets.lib.days import PartitionRange
from cio_assets.lib.engines import Database
from cio_assets.lib.locks import named_lock
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.tracking.refusals import Pending, clear_rejections, pending_rejections, record_rejections

RETRIED = "retried_refusals"
# How often a sync waiting for its turn to send says so in the run's log.
TURN_REPORT_SECONDS = 30


class SyncStream(ABC):
    """What differs between the people and the event sync."""

    kind: str  # tracking.refusals.PERSON or EVENT
    label: str  # "people" or "events": the prefix of the per-day figures
    outcomes: tuple[str, ...]  # what can happen to a fresh item, counted per day of the range

    def __init__(self, state: Database, prange: PartitionRange, dry_run: bool) -> None:
        self.state = state
        self.prange = prange
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
    def metadata(self) -> dict[str, object]:
        """The run's figures of this kind of item (plain values)."""


@dataclass(frozen=True)
class SyncOutcome:
    report: DeliveryReport
    waited: float  # seconds spent waiting for the workspace's turn
    seconds: float  # the whole sync


def sync(stream: SyncStream, state: Database, sender: Sender, log: Callable[[str], None]) -> SyncOutcome:
    """Plan the stream's items, send them in the workspace's turn (or write the outbox), record what was
    accepted and what was refused or held back."""
    started = time.monotonic()
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
                clear_rejections(conn, stream.kind, settled)
        stream.counts[RETRIED] += len(retry)
        yield from retry

    def on_delivered(delivered: list[Item]) -> None:
        with state.begin() as conn:
            stream.record(conn, delivered, unix(utc_now()))
            # Only an earlier refusal can be on record for a delivered key: this run records its own refusals for
            # keys it does not deliver, and no other sync of the workspace records any during its turn. No query
            # for the others (3 s of a year's first event sync).
            clear_rejections(conn, stream.kind, [item.key for item in delivered if item.key in refused_before])

    def delivery(batch_items: Iterator[Item]) -> DeliveryReport:
        refused = partial(_record_refusals, state, stream.kind)
        return deliver(batch_items, sender, on_delivered, refused, log)

    with sending_turn(state, sender, log) as waited:
        with state.connect() as conn:
            # Read in the turn, before this run refuses anything: only earlier refusals count as retries.
            pending = pending_rejections(conn, stream.kind)
        refused_before = {key for key, _, _ in pending}  # the only keys with a refusal to clear once delivered
        report = delivery(items())
        later = stream.follow_up()
        first = next(later, None)  # most runs have none: no second client then
        if first is not None:
            report = report.then(delivery(chain([first], later)))
    if stream.held and not stream.dry_run:
        _record_refusals(state, stream.kind, stream.held)
    log(f"{stream.kind}s: {dict(stream.counts)}; {delivery_summary(report, len(stream.held))}")
    return SyncOutcome(report, waited, round(time.monotonic() - started, 2))


@contextmanager
def sending_turn(state: Database, sender: Sender, log: Callable[[str], None]) -> Iterator[float]:
    """One sync at a time sends to a Customer.io workspace, across runs, workers and machines, so concurrent
    runs never multiply CIO_RATE_LIMIT. Yields the seconds spent waiting for the turn.

    The `customerio_api` pool (deploy/dagster.yaml) already keeps a second sync step from starting, but on
    Postgres storage Dagster assigns pool slots in autocommit statements: two steps claiming at the same instant
    can both be let through (seen in CI). This lock, in the state database every run shares, is the guarantee;
    the pool keeps waiting steps off the workers. A dry run sends nothing and takes no turn."""
    if not sender.sends:
        yield 0.0
        return
    name = f"cio_assets_customerio_{sender.workspace}"

    def waiting(seconds: float) -> None:
        log(
            f"Waiting {seconds:.0f} s for another sync sending to this Customer.io workspace to finish "
            f"(lock {name} in the state database)"
        )

    with named_lock(state.engine, name, on_wait=waiting, report_every=TURN_REPORT_SECONDS) as waited:
        if waited:
            log(f"Waited {waited:.1f} s for this Customer.io workspace's turn")
        yield waited


def delivery_summary(report: DeliveryReport, held: int) -> str:
    """What the run did with its items, in words that match the mode: a dry run plans, it never sends."""
    refused = sum(report.rejected.values())
    if report.dry_run:
        return (
            f"dry run: {report.sent} items planned in {report.batches} batches, none sent (request bodies in "
            f"{report.outbox}); {refused} would be refused, {held} would wait for a later run"
        )
    return f"{report.sent} items sent in {report.batches} batches, {refused} refused, {held} held for a later run"


def _record_refusals(state: Database, kind: str, refused: list[tuple[Item, str]]) -> None:
    """Refused (or held) items with their reason, one transaction per batch, to be retried next run."""
    now = unix(utc_now())
    # A merge or a suppression carries no timestamp: its as_of is when it was refused.
    rows = [(item.key, item.payload, int(item.payload.get("timestamp", now)), reason) for item, reason in refused]
    with state.begin() as conn:
        record_rejections(conn, kind, rows, now)


def ledger_problem(
    ledger_id: str, created_at: int, before: tuple[str, str] | None, asset: str, accept_new: bool
) -> str | None:
    """Why delivery must not go on from this state database's ledger, or None: `before` is (ledger id, run id) of
    the ledger that delivered `asset` last. A ledger other than that one was lost or recreated."""
    if before is None or before[0] == ledger_id or accept_new:
        return None
    return (
        f"The sync ledger in the state database (ledger {ledger_id}, created at Unix {created_at}) is not "
        f"the one that delivered {asset} to Customer.io before (ledger {before[0]}, run {before[1]}). It was lost or "
        "recreated, so it no longer knows what Customer.io holds: delivering now would send every person and event "
        "again, history included. Restore the state database, or, if re-sending is intended, run once with "
        "CIO_ACCEPT_NEW_LEDGER=1."
    )
