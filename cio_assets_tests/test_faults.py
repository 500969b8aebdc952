"""Faults keep today's guarantees, for every step: a killed write, a state database that fails mid-delivery,
a Customer.io outage longer than the retry budget, and a lost ledger.

Everything runs on the real MariaDB and the fake Customer.io over real HTTP. Each test first proves that
its fault really struck (the process died with SIGKILL mid-transaction, the ledger write failed after
Customer.io had accepted a batch, every request was answered 503, the refusal came from the ledger
check), so none of them can pass without exercising the fault.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, create_engine, func, insert, make_url, text, update
from sqlalchemy import select as sql_select

from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets.schema import state as state_tables
from cio_assets.schema.events import ORDER_PLACED
from cio_assets.schema.shop import customers, order_items, orders, source_metadata
from cio_assets_tests.conftest import PIPELINE, SERVER_URL, SYNC
from cio_assets_tests.definitions import customerio_events, customerio_people

RANGE = ("2026-10-01", "2026-10-03")
DELIVERY = [customerio_people, customerio_events]
PROJECT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------------------
# Running assets and reading what they wrote
# ------------------------------------------------------------------------------------------------------------


def _materialize(
    urls: tuple[str, str],
    instance: dg.DagsterInstance,
    *,
    selection: list | None = None,
    customerio: CustomerIO | None = None,
    outbox: Path | None = None,
) -> dg.ExecuteInProcessResult:
    """Like conftest's `Pipeline.run`, on an instance the caller keeps across runs, and never raising.
    Without `customerio`, a dry run whose outbox is `outbox` (only the sync assets would write it)."""
    if customerio is None:
        assert outbox is not None, "a dry run needs an outbox directory"
        customerio = CustomerIO(dry_run=True, outbox_dir=str(outbox))
    return dg.materialize(
        SYNC,
        selection=selection or PIPELINE,
        instance=instance,
        tags={"dagster/asset_partition_range_start": RANGE[0], "dagster/asset_partition_range_end": RANGE[1]},
        raise_on_error=False,
        resources={
            "settings": Settings(),
            "source": SourceDatabase(url=urls[0]),
            "state": StateDatabase(url=urls[1]),
            "customerio": customerio,
        },
    )


def _failure(result: dg.ExecuteInProcessResult, node: str) -> str:
    """The error that failed `node`, with its causes."""
    data = result.failure_data_for_node(node)
    assert data is not None and data.error is not None, f"{node} did not fail"
    return data.error.to_string()


def _materialized(result: dg.ExecuteInProcessResult, node: str) -> bool:
    return bool(result.asset_materializations_for_node(node))


def _rows(engine: Engine, table) -> list[tuple]:
    """Every row of a state table, in primary-key order."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sql_select(table).order_by(*table.primary_key.columns))]


def _written(engine: Engine) -> dict[str, list[tuple]]:
    return {
        "attribute_snapshot": _rows(engine, state_tables.attribute_snapshot),
        "event_log": _rows(engine, state_tables.event_log),
    }


def _event_ledger(engine: Engine) -> dict[str, str]:
    """event_id -> the ULID the ledger says Customer.io accepted."""
    with engine.connect() as conn:
        rows = conn.execute(sql_select(state_tables.event_ledger.c.event_id, state_tables.event_ledger.c.cio_event_id))
        return dict(rows.all())


def _people_ledger(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sql_select(state_tables.people_ledger.c.person_id)).scalars())


def _landed(fake) -> dict[str, str]:
    """ULID -> event_id of every distinct event Customer.io holds (a repeated ULID is dropped by the fake)."""
    with fake.lock:
        return {e["id"]: f"{e['name']}:{e['attributes']['order_id']}" for e in fake.events}


def _assert_each_event_landed_once(fake, expected_event_ids: set[str]) -> None:
    with fake.lock:
        distinct = [f"{e['name']}:{e['attributes']['order_id']}" for e in fake.events]
    assert len(distinct) == len(set(distinct)), "an event landed twice under different ids"
    assert set(distinct) == expected_event_ids


@contextlib.contextmanager
def _scratch_databases(*suffixes: str) -> Iterator[list[str]]:
    """Throwaway databases on the test server, dropped afterwards."""
    server = create_engine(SERVER_URL)
    names = [f"cio_test_{uuid.uuid4().hex[:10]}_{suffix}" for suffix in suffixes]
    with server.begin() as conn:
        for name in names:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield [make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        with server.begin() as conn:
            for name in names:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


# ------------------------------------------------------------------------------------------------------------
# 1. kill -9 during the snapshot or event-log write
# ------------------------------------------------------------------------------------------------------------

BULK_CUSTOMERS = 600
# Small chunks: many bulk inserts inside the one transaction, so it stays open with rows written for a while.
KILL_CHUNK_SIZE = 50
# information_schema.innodb_trx is a cache that MariaDB refreshes only when it was last read more than 0.1 s
# earlier: reading it more often than that freezes it. Poll at a slower pace.
INNODB_TRX_REFRESH = 0.2


def _bulk_shop(engine: Engine) -> None:
    """600 customers, 1,200 paid orders over the range's three days, 3 lines each: thousands of rows to write."""
    start = datetime(2026, 10, 1)
    created = start - timedelta(days=30)
    people, paid, lines = [], [], []
    for customer_id in range(1, BULK_CUSTOMERS + 1):
        people.append(
            {
                "id": customer_id,
                "email": f"customer{customer_id}@shop.com",
                "country": "US",
                "first_name": "Ada",
                "last_name": f"Lovelace{customer_id}",
                "accepts_email_marketing": customer_id % 3 != 0,
                "accepts_sms_marketing": False,
                "created_at": created,
                "updated_at": created,
            }
        )
        for n in range(2):
            order_id = len(paid) + 1
            at = start + timedelta(days=(customer_id + n) % 3, minutes=(customer_id * 7 + n * 300) % 1400)
            paid.append(
                {
                    "id": order_id,
                    "customer_id": customer_id,
                    "status": "paid",
                    "currency": "USD",
                    "subtotal": 30.0 + n,
                    "discount_total": 0,
                    "shipping_total": 0,
                    "total": 30.0 + n,
                    "created_at": at - timedelta(minutes=2),
                    "paid_at": at,
                    "updated_at": at,
                }
            )
            for line in range(3):
                lines.append(
                    {
                        "id": len(lines) + 1,
                        "order_id": order_id,
                        "sku": f"SKU-{line}",
                        "product_name": f"Coffee {line}",
                        "category": "coffee",
                        "quantity": 1,
                        "unit_price": 10.0 + n / 3,
                    }
                )
    with engine.begin() as conn:
        conn.execute(insert(customers), people)
        conn.execute(insert(orders), paid)
        conn.execute(insert(order_items), lines)


def _reprice_orders(engine: Engine) -> None:
    """The change a re-run must write: every order costs one dollar more (lifetime values, event totals). The
    shop stamps the edit, a second later, as it stamps every change (`updated_at` is what tells a re-run the
    rows moved)."""
    with engine.begin() as conn:
        stamped = func.date_add(orders.c.updated_at, text("INTERVAL 1 SECOND"))
        conn.execute(
            update(orders).values(subtotal=orders.c.subtotal + 1, total=orders.c.total + 1, updated_at=stamped)
        )


@pytest.fixture(scope="module")
def fresh_after_change(tmp_path_factory) -> dict[str, list[tuple]]:
    """What a fresh computation of the changed shop writes: its own source and state databases, one run."""
    with _scratch_databases("shop", "state") as urls:
        source = create_engine(urls[0])
        state = create_engine(urls[1])
        try:
            source_metadata.create_all(source)
            _bulk_shop(source)
            _reprice_orders(source)
            result = _materialize(
                (urls[0], urls[1]), dg.DagsterInstance.ephemeral(), outbox=tmp_path_factory.mktemp("o")
            )
            assert result.success
            return _written(state)
        finally:
            source.dispose()
            state.dispose()


class _Worker:
    """The pipeline in its own process (cio_assets_tests.run_pipeline), ready to start on a word."""

    def __init__(self, urls: tuple[str, str], log: Path) -> None:
        self.log = log
        self.state_db = make_url(urls[1]).database
        env = {**os.environ, "CIO_START_DATE": "2026-10-01", "CIO_BUSINESS_TZ": "UTC"}
        command = [sys.executable, "-m", "cio_assets_tests.run_pipeline", *urls, *RANGE]
        with log.open("wb") as stderr:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [*command, "--chunk-size", str(KILL_CHUNK_SIZE), "--wait"],
                cwd=PROJECT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.server = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")

    def start(self, timeout: float = 120.0) -> None:
        """Wait until the imports are done, then let the run begin."""
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        assert line.strip() == "ready", f"the pipeline process did not start:\n{self._log_tail()}"
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def open_writes(self) -> list[int]:
        """Rows modified so far by each open transaction of a connection to the state database."""
        with self.server.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT t.trx_rows_modified FROM information_schema.innodb_trx t "
                    "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE p.db = :db"
                ),
                {"db": self.state_db},
            )
            return [int(modified) for modified in rows.scalars()]

    def kill_during_write(self, step: str, replaced: int, timeout: float = 120.0) -> int:
        """SIGKILL the process once a step whose key starts with `step` is running and its open transaction has
        modified more than `replaced` rows (for a replacement: the previous rows deleted and some new ones
        inserted), not yet committed. Returns how many rows that transaction had modified."""
        started = f'Started execution of step "{step}'
        most = 0  # the most rows an open transaction of `step` was seen to have modified
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (
                f"the run ended (exit {self.process.returncode}) before its {step} write could be interrupted. "
                f"Replacing {replaced} rows in one transaction modifies more than {replaced} rows (the old ones "
                f"deleted, the new ones inserted), but no open transaction of {step} was seen with more than "
                f"{most}: either the replacement is split over several transactions, or the step ran faster "
                f"than this test polls.\n{self._log_tail()}"
            )
            # The in-process executor runs one step at a time: once `step` has started, the earlier steps'
            # transactions have committed, so an open transaction with modified rows is `step`'s write.
            if started in self.log.read_text(errors="replace"):
                most = max([most, *self.open_writes()])
                if most > replaced:
                    self.process.send_signal(signal.SIGKILL)
                    self.process.wait(timeout=30)
                    return most
            time.sleep(INNODB_TRX_REFRESH)
        raise AssertionError(f"{step} did not get that far within {timeout:g} s:\n{self._log_tail()}")

    def wait_until_rolled_back(self, timeout: float = 60.0) -> None:
        """The server notices the dead connection and rolls its transaction back."""
        deadline = time.monotonic() + timeout
        while self.open_writes():
            assert time.monotonic() < deadline, "the killed run's transaction is still open"
            time.sleep(INNODB_TRX_REFRESH)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.server.dispose()

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


# Each case: the table whose rows must survive, the step killed, and how many rows its open transaction must
# have modified first (a share of the rows the table held).
KILLED = {
    # attribute_snapshot: killed after its transaction deleted the range's days and inserted some new rows
    # (the first chunks of people), before the rest and the commit.
    "attribute_snapshot": ("attribute_snapshot", 1.0),
    # event_log: killed while its piece had staged half the range's events (the first pages of each family
    # but the last), before it committed and long before anything was published; the snapshot step before it
    # had finished and committed.
    "event_log": ("event_log.event_log_piece[", 0.5),
}


@pytest.fixture(scope="module")
def pipeline_processes(database_urls, tmp_path_factory) -> Iterator[list[_Worker]]:
    """One waiting pipeline process per case, all started at once: each spends seconds importing, which
    overlaps with the tests before its own."""
    workers = [_Worker(database_urls, tmp_path_factory.mktemp("killed_run") / "run.log") for _ in KILLED]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.parametrize("killed", KILLED)
def test_a_run_killed_during_a_write_leaves_the_previous_partitions_whole_and_the_next_run_completes_them(
    killed, pipeline_processes, source_engine, state_engine, database_urls, fresh_after_change, tmp_path
):
    instance = dg.DagsterInstance.ephemeral()
    _bulk_shop(source_engine)
    worker = pipeline_processes.pop()
    try:
        assert _materialize(database_urls, instance, outbox=tmp_path).success
        before = _written(state_engine)
        assert len(before[killed]) > 1000
        _reprice_orders(source_engine)
        assert fresh_after_change[killed] != before[killed]  # the re-run would write other rows

        step, share = KILLED[killed]
        worker.start()
        modified = worker.kill_during_write(step, replaced=int(len(before[killed]) * share))
        assert worker.process.returncode == -signal.SIGKILL
        worker.wait_until_rolled_back()
    finally:
        worker.stop()

    # The kill struck mid-write: for the snapshot, every previous row of the range deleted, some new ones
    # inserted; for the event log, half its events staged.
    assert modified > len(before[killed]) * share
    after_kill = _written(state_engine)
    assert after_kill[killed] == before[killed], f"{killed} lost or mixed rows after the kill"
    if killed == "attribute_snapshot":
        assert after_kill["event_log"] == before["event_log"]  # never started
    else:
        assert after_kill["attribute_snapshot"] == fresh_after_change["attribute_snapshot"]  # finished, committed

    result = _materialize(database_urls, instance, outbox=tmp_path)

    assert result.success
    assert _written(state_engine) == fresh_after_change
    # The killed piece's staging table, if it was made, is all that is left (a later run drops it after a week).
    assert len(_rows(state_engine, state_tables.event_log_staging)) <= 1


# ------------------------------------------------------------------------------------------------------------
# 2. The state database fails mid-delivery
# ------------------------------------------------------------------------------------------------------------

LINES_PER_ORDER = 30


def _fat_orders(engine: Engine, customer_count: int = 40, orders_each: int = 5) -> set[str]:
    """Orders of 30 long lines (~9 KB per event), so 200 events take four ~500 KB batches. Their event ids."""
    start = datetime(2026, 10, 1, 8)
    people, paid, lines = [], [], []
    for customer_id in range(1, customer_count + 1):
        people.append(
            {
                "id": customer_id,
                "email": f"customer{customer_id}@shop.com",
                "country": "US",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "accepts_email_marketing": True,
                "accepts_sms_marketing": False,
                "created_at": start - timedelta(days=10),
                "updated_at": start - timedelta(days=10),
            }
        )
        for n in range(orders_each):
            order_id = len(paid) + 1
            at = start + timedelta(days=n % 3, minutes=customer_id * 5 + n)
            total = float(LINES_PER_ORDER)
            paid.append(
                {
                    "id": order_id,
                    "customer_id": customer_id,
                    "status": "paid",
                    "currency": "USD",
                    "subtotal": total,
                    "discount_total": 0,
                    "shipping_total": 0,
                    "total": total,
                    "created_at": at - timedelta(minutes=2),
                    "paid_at": at,
                    "updated_at": at,
                }
            )
            for line in range(LINES_PER_ORDER):
                lines.append(
                    {
                        "id": len(lines) + 1,
                        "order_id": order_id,
                        "sku": f"SKU-{line:03d}",
                        "product_name": f"Single-origin coffee {line:03d} " + "x" * 180,
                        "category": "coffee",
                        "quantity": 1,
                        "unit_price": 1.0,
                    }
                )
    with engine.begin() as conn:
        conn.execute(insert(customers), people)
        conn.execute(insert(orders), paid)
        conn.execute(insert(order_items), lines)
    return {f"{ORDER_PLACED}:{order['id']}" for order in paid}


def test_the_ledger_write_failing_after_customerio_accepted_a_batch_fails_the_run_and_loses_or_duplicates_nothing(
    source_engine, state_engine, database_urls, customerio, monkeypatch
):
    instance = dg.DagsterInstance.ephemeral()
    expected = _fat_orders(source_engine)
    fake = customerio.fake
    event_batches: list[int] = []
    apply = fake._apply

    def apply_then_lose_the_ledger(items):
        """Customer.io applies the batch; then, at the second event batch, the ledger table goes away, so
        the write that should record this accepted batch fails."""
        apply(items)
        if any(item.get("action") == "event" for item in items):
            event_batches.append(len(items))
            if len(event_batches) == 2:
                with state_engine.begin() as conn:
                    conn.execute(text("RENAME TABLE cio_event_ledger TO cio_event_ledger_away"))

    monkeypatch.setattr(fake, "_apply", apply_then_lose_the_ledger)
    # One batch in flight at a time: batch 1 is recorded before batch 2 goes out.
    resource = customerio.resource(max_in_flight=1)

    failed = _materialize(database_urls, instance, selection=SYNC, customerio=resource)

    assert not failed.success
    assert len(event_batches) == 2, f"expected the fault at the second of several event batches, saw {event_batches}"
    message = _failure(failed, "customerio_events")
    assert "state database" in message and "cio_event_ledger" in message and "doesn't exist" in message
    accepted = _landed(fake)  # ULID -> event_id, everything Customer.io holds now
    with state_engine.begin() as conn:
        conn.execute(text("RENAME TABLE cio_event_ledger_away TO cio_event_ledger"))
    recorded = _event_ledger(state_engine)
    # The ledger claims only what Customer.io accepted; the batch accepted during the outage is not claimed.
    assert recorded and {ulid: event_id for event_id, ulid in recorded.items()}.items() <= accepted.items()
    unrecorded = set(accepted) - set(recorded.values())
    assert len(unrecorded) == event_batches[1]
    assert _people_ledger(state_engine) <= set(fake.people)

    monkeypatch.undo()
    requests_before = len(fake.requests)
    again = _materialize(database_urls, instance, selection=DELIVERY, customerio=customerio.resource())

    assert again.success
    assert len(fake.requests) > requests_before
    _assert_each_event_landed_once(fake, expected)
    assert fake.duplicate_events == len(unrecorded)  # only the unrecorded batch was sent again, and de-duplicated
    assert {ulid: event_id for event_id, ulid in _event_ledger(state_engine).items()} == _landed(fake)


# ------------------------------------------------------------------------------------------------------------
# 3. Customer.io answers 5xx for longer than the retry budget
# ------------------------------------------------------------------------------------------------------------


def _small_shop(shop) -> set[str]:
    """Three customers, five paid orders over the range. Their order_placed event ids."""
    for customer_id in (1, 2, 3):
        shop.customer(customer_id, created_at="2026-09-20 09:00")
    ids = [
        shop.order(1, total=20.0, paid_at="2026-10-01 12:00"),
        shop.order(1, total=35.0, paid_at="2026-10-03 08:00"),
        shop.order(2, total=12.5, paid_at="2026-10-02 18:30"),
        shop.order(3, total=99.0, paid_at="2026-10-02 09:15"),
        shop.order(3, total=5.0, paid_at="2026-10-03 23:00"),
    ]
    return {f"{ORDER_PLACED}:{order_id}" for order_id in ids}


def test_customerio_failing_longer_than_the_retry_budget_stops_the_sync_in_bounded_time_and_the_next_run_delivers_once(
    shop, state_engine, database_urls, customerio, tmp_path
):
    instance = dg.DagsterInstance.ephemeral()
    expected = _small_shop(shop)
    assert _materialize(database_urls, instance, outbox=tmp_path).success
    fake = customerio.fake
    fake.fail_next(10_000, 503)  # an outage: every request is answered 503

    started = time.monotonic()
    failed = _materialize(
        database_urls, instance, selection=DELIVERY, customerio=customerio.resource(retry_budget_seconds=2)
    )
    elapsed = time.monotonic() - started

    assert not failed.success
    assert not _materialized(failed, "customerio_events")
    message = _failure(failed, "customerio_people")
    assert f"Customer.io at {customerio.url}/api/v2/batch did not accept a batch of 3 items" in message
    assert "within the 2 s retry budget (CIO_RETRY_BUDGET_SECONDS)" in message and "last: HTTP 503" in message
    assert customerio.fake.api_key not in message
    requests = list(fake.requests)
    assert len(requests) >= 2 and {r.status for r in requests} == {503}  # retried, never accepted
    # No retry starts after the budget is spent (a little slack for the last request's own trip).
    assert requests[-1].received_monotonic - requests[0].received_monotonic <= 2.0 + 0.5
    assert elapsed < 15, f"the failing sync took {elapsed:.1f} s"
    assert fake.people == {} and fake.events == []
    assert _people_ledger(state_engine) == set() and _event_ledger(state_engine) == {}  # claims nothing

    fake.reset()  # Customer.io recovers (nothing had landed, so nothing is forgotten)
    again = _materialize(
        database_urls, instance, selection=DELIVERY, customerio=customerio.resource(retry_budget_seconds=2)
    )

    assert again.success
    assert set(fake.people) == {"1", "2", "3"} == _people_ledger(state_engine)
    _assert_each_event_landed_once(fake, expected)
    assert fake.duplicate_events == 0
    assert set(_event_ledger(state_engine)) == expected


# ------------------------------------------------------------------------------------------------------------
# 4. A lost or recreated ledger refuses to re-send history
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def persistent_instance() -> Iterator[dg.DagsterInstance]:
    """One Dagster instance (on disk) for every run of a test, as a deployment has: it remembers which ledger
    delivered before."""
    with dg.instance_for_test() as instance:
        yield instance


def test_a_lost_ledger_refuses_to_resend_history_until_accepted_while_first_deliveries_and_dry_runs_go_ahead(
    shop, state_engine, database_urls, customerio, persistent_instance, tmp_path
):
    instance = persistent_instance
    expected = _small_shop(shop)
    fake = customerio.fake

    # A fresh instance and a fresh ledger: the first delivery ever is not refused.
    first = _materialize(database_urls, instance, selection=SYNC, customerio=customerio.resource())
    assert first.success
    assert set(fake.people) == {"1", "2", "3"}
    _assert_each_event_landed_once(fake, expected)
    delivered = len(fake.requests)

    # The state database loses the ledger (dropped, restored from an old dump, pointed elsewhere...).
    state_tables.state_metadata.drop_all(state_engine)
    refused = _materialize(database_urls, instance, selection=SYNC, customerio=customerio.resource())

    assert not refused.success
    assert _materialized(refused, "event_log")  # the pipeline itself rebuilt the state
    message = _failure(refused, "customerio_people")
    assert "lost or recreated" in message and "CIO_ACCEPT_NEW_LEDGER" in message
    assert not _materialized(refused, "customerio_events")
    assert len(fake.requests) == delivered  # Customer.io received nothing new
    assert _people_ledger(state_engine) == set() and _event_ledger(state_engine) == {}

    # A dry run sends nothing, so it is never refused, and it does not make the new ledger the accepted one.
    dry = _materialize(
        database_urls,
        instance,
        selection=DELIVERY,
        customerio=customerio.resource(dry_run=True, outbox_dir=str(tmp_path)),
    )
    assert dry.success and len(fake.requests) == delivered
    still_refused = _materialize(database_urls, instance, selection=DELIVERY, customerio=customerio.resource())
    assert "CIO_ACCEPT_NEW_LEDGER" in _failure(still_refused, "customerio_people")
    assert len(fake.requests) == delivered

    # Re-sending on purpose: everything goes again, and Customer.io's de-duplication keeps each event once.
    accepted = _materialize(
        database_urls, instance, selection=DELIVERY, customerio=customerio.resource(accept_new_ledger=True)
    )
    assert accepted.success
    assert len(fake.requests) > delivered
    _assert_each_event_landed_once(fake, expected)
    assert fake.duplicate_events == len(expected)
    assert _people_ledger(state_engine) == {"1", "2", "3"} and set(_event_ledger(state_engine)) == expected

    # From now on the new ledger is the one that delivered: no flag needed, and nothing to send.
    resent = len(fake.requests)
    later = _materialize(database_urls, instance, selection=DELIVERY, customerio=customerio.resource())
    assert later.success and len(fake.requests) == resent
