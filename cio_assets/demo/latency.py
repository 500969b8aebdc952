"""`make bench-live`: how long a paid order takes to reach Customer.io with the sensor running.

1. Generates a shop (100,000 customers, about 5 orders each; BENCH_CUSTOMERS and BENCH_ORDERS_PER_CUSTOMER
   override) into throwaway databases on `CIO_TEST_MYSQL_URL`, its history ending at today's midnight (UTC).
   BENCH_PLATFORM=woocommerce or magento2 generates it in that platform's own tables (its own mix of orders:
   BENCH_ORDERS_PER_CUSTOMER does not apply), and the backfill and the daemon read it through the preset of that
   name (`CIO_SOURCE_MAPPING`); the orders, new customers' accounts and the cart below are written in the
   platform's tables too (`cio_assets/demo/writers.py`).
2. Backfills it once in-process, delivered to a local recording sink, so the sync ledger is warm.
3. Starts `dagster-daemon run` on a throwaway instance (DAGSTER_HOME in a temporary folder) with the
   project's definitions, CIO_AUTOMATION=on and Customer.io's track URL pointing at the sink.
4. Writes BENCH_LIVE_ORDERS (default 10) paid orders at random moments (0 to BENCH_LIVE_MAX_GAP_SECONDS,
   default 30, apart): half for existing customers, half for brand-new customers inserted with their order.
   For each, from its commit to the arrival at the sink of (a) its `order_placed` event and (b) an
   identify of its person carrying the order's `last_order_at` and a `total_orders`.
5. Writes one cart with items and changes nothing else: from the moment it crosses the idle window
   (CIO_CART_IDLE_MINUTES, 1 here unless BENCH_CART_IDLE_MINUTES says otherwise) to its `cart_abandoned`. A
   shop that keeps no carts (WooCommerce) skips this step, and says so.

It checks that each new person's identify (with e-mail) arrived before their first event and that no
event id arrived twice, prints p50/p95/max and per-order figures, then the daemon's runs: when each was
launched, started and finished, with per-step durations. Everything it created is dropped at the end.
Set CIO_SENSOR_INTERVAL_SECONDS to try another sensor interval; BENCH_LIVE_TIMEOUT_SECONDS (default 600) is how
long it waits for what it wrote to arrive, BENCH_SEED (default 11) picks the customers and the moments.
"""

from __future__ import annotations

import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from sqlalchemy import create_engine, make_url, text

from cio_assets.config import Environment
from cio_assets.defs import build_definitions
from cio_assets.defs.partitions import daily_partitions
from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets.demo.shop import ShopSize
from cio_assets.demo.sink import Arrival, RecordingSink, serve_recording
from cio_assets.demo.writers import ShopWriter, platform, writer_for

SERVER_URL = os.environ.get("CIO_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/")
SITE_ID, API_KEY = "bench", "bench"
KEEP = ("order_id", "cart_id", "email", "last_order_at", "total_orders")


@dataclass
class Order:
    order_id: int
    customer_id: int
    new_customer: bool
    paid_at: int  # Unix seconds, as Customer.io receives last_order_at
    committed: float  # time.time() right after the commit
    event: Arrival | None = None
    identify: Arrival | None = None
    identified_with_email: Arrival | None = None

    @property
    def event_seconds(self) -> float | None:
        return None if self.event is None else self.event.at - self.committed

    @property
    def identify_seconds(self) -> float | None:
        return None if self.identify is None else self.identify.at - self.committed


def main() -> None:
    customers_n = int(os.environ.get("BENCH_CUSTOMERS", "100000"))
    per_customer = float(os.environ.get("BENCH_ORDERS_PER_CUSTOMER", "5"))
    order_count = int(os.environ.get("BENCH_LIVE_ORDERS", "10"))
    max_gap = float(os.environ.get("BENCH_LIVE_MAX_GAP_SECONDS", "30"))
    idle_minutes = int(os.environ.get("BENCH_CART_IDLE_MINUTES", "1"))
    timeout = float(os.environ.get("BENCH_LIVE_TIMEOUT_SECONDS", "600"))
    rng = random.Random(int(os.environ.get("BENCH_SEED", "11")))

    name = f"cio_live_{uuid.uuid4().hex[:8]}"
    source_url, state_url = _database_url(f"{name}_shop"), _database_url(f"{name}_state")
    server = create_engine(SERVER_URL)
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}_shop` CHARACTER SET utf8mb4"))
    writer = writer_for(platform(), source_url)
    sink = RecordingSink(keep=KEEP)
    try:
        with tempfile.TemporaryDirectory(prefix="cio-live-") as tmp, serve_recording(sink) as sink_url:
            started = time.monotonic()
            if writer.mapping != "reference":
                print(f"shop: {writer.mapping}'s own tables, read through the preset {writer.mapping!r}", flush=True)
            yesterday = datetime.now(UTC).date() - timedelta(days=1)
            size = ShopSize(customers=customers_n, orders_per_customer=per_customer, end=yesterday, steady_rates=True)
            counts = writer.generate(size)
            print(f"generated {counts} in {time.monotonic() - started:.0f} s", flush=True)
            settings = Settings(cart_idle_minutes=idle_minutes)
            _backfill(source_url, state_url, sink_url, settings, writer.mapping)

            home = Path(tmp)
            env = _daemon_env(home, source_url, state_url, sink_url, idle_minutes, writer.mapping)
            sink.start()
            with _daemon(home, env) as log_path:
                print(f"daemon started (log: {log_path}); waiting for its first run to finish", flush=True)
                _wait_for_quiet(home, timeout)
                measured = _write_orders(writer, rng, order_count, max_gap)
                _wait_for(lambda: all(_match(o, sink.arrivals()) for o in measured), timeout)
                no_carts = writer.carts_absent()
                if no_carts:
                    print(f"  no cart written: {writer.mapping} keeps none ({no_carts})", flush=True)
                    cart, crossing = None, 0.0
                else:
                    cart_id, crossing = _write_cart(writer, rng, measured, idle_minutes)
                    cart = _wait_for(lambda: _cart_event(cart_id, sink.arrivals()), crossing - time.time() + timeout)
                _report(measured, cart, crossing, sink.arrivals(), no_carts)
                _report_runs(home)
    finally:
        writer.dispose()
        with server.begin() as conn:
            for db in (f"{name}_shop", f"{name}_state"):
                conn.execute(text(f"DROP DATABASE IF EXISTS `{db}`"))
        server.dispose()


# --- setting up -------------------------------------------------------------------------------------------


def _database_url(database: str) -> str:
    return make_url(SERVER_URL).set(database=database).render_as_string(hide_password=False)


def _backfill(source_url: str, state_url: str, sink_url: str, settings: Settings, mapping: str) -> None:
    env = Environment.read()
    partitions = daily_partitions(env.partitions)
    first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    started = time.monotonic()
    with dg.instance_for_test() as instance:
        result = (
            build_definitions(env)
            .resolve_implicit_global_asset_job_def()
            .execute_in_process(
                instance=instance,
                tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
                resources={
                    "source": SourceDatabase(url=source_url, mapping=mapping),
                    "state": StateDatabase(url=state_url),
                    "settings": settings,
                    "customerio": CustomerIO(
                        site_id=SITE_ID, api_key=API_KEY, track_url=sink_url, rate_limit=1000, max_in_flight=8
                    ),
                },
            )
        )
    print(f"backfill {first}...{last}: {time.monotonic() - started:.0f} s, success={result.success}", flush=True)


def _daemon_env(
    home: Path, source_url: str, state_url: str, sink_url: str, idle_minutes: int, mapping: str
) -> dict[str, str]:
    (home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {home / 'storage'}\n"
        "telemetry:\n  enabled: false\n"
        "concurrency:\n  runs:\n    max_concurrent_runs: 4\n"
    )
    (home / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: cio_assets.definitions\n"
        f"      working_directory: {Path.cwd()}\n"
    )
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CIO_AUTOMATION": "on",
        "CIO_MYSQL_URL": source_url,
        "CIO_SOURCE_MAPPING": mapping,
        "CIO_STATE_URL": state_url,
        "CIO_SITE_ID": SITE_ID,
        "CIO_API_KEY": API_KEY,
        "CIO_TRACK_URL": sink_url,
        "CIO_RATE_LIMIT": "1000",
        "CIO_MAX_IN_FLIGHT": "8",
        "CIO_OUTBOX_DIR": str(home / "outbox"),
        "CIO_CART_IDLE_MINUTES": str(idle_minutes),
    }


@contextmanager
def _daemon(home: Path, env: dict[str, str]) -> Iterator[Path]:
    """`dagster-daemon run` in a process group of its own (its code server and runs included)."""
    log_path = home / "daemon.log"
    executable = Path(sys.executable).with_name("dagster-daemon")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(executable), "run", "-w", str(home / "workspace.yaml")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield log_path
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def _wait_for_quiet(home: Path, timeout: float) -> None:
    """Until the daemon has run `refresh` once (the first tick sees every table as new) and nothing is in flight."""
    busy = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
    busy += [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    deadline = time.monotonic() + timeout
    with _instance(home) as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            if runs and not instance.get_runs(filters=dg.RunsFilter(statuses=busy)):
                print(f"first run {runs[-1].status.value}; the shop is quiet", flush=True)
                return
            time.sleep(2)
    raise RuntimeError("the daemon launched no run, or its first run did not finish, in time")


def _wait_for(done, seconds: float):
    deadline = time.monotonic() + max(seconds, 0)
    while True:
        result = done()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(0.5)


# --- writing to the shop ----------------------------------------------------------------------------------


def _now() -> datetime:
    """Now as a naive UTC source DATETIME, to the second (so Customer.io's Unix seconds match it exactly)."""
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None)


def _unix(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())


def _write_orders(writer: ShopWriter, rng: random.Random, count: int, max_gap: float) -> list[Order]:
    existing = iter(writer.plain_customers(rng, count))
    kinds = [i % 2 == 1 for i in range(count)]
    rng.shuffle(kinds)
    written = []
    for new_customer in kinds:
        time.sleep(rng.uniform(0, max_gap))
        now = _now()
        # A new customer's account is written with the order, in the same transaction.
        [(order_id, customer_id)] = writer.add_paid_orders([(None if new_customer else next(existing), now)], rng)
        written.append(Order(order_id, customer_id, new_customer, _unix(now), time.time()))
        kind = "new customer" if new_customer else "existing customer"
        print(f"  order {order_id} committed ({kind} {customer_id})", flush=True)
    return written


def _write_cart(writer: ShopWriter, rng: random.Random, measured: list[Order], idle_minutes: int) -> tuple[int, float]:
    """A cart with items for an existing customer who has not just ordered; returns its id and the moment it
    crosses the idle window (Unix seconds)."""
    taken = {o.customer_id for o in measured}
    customer_id = next(c for c in writer.plain_customers(rng, 50) if c not in taken)
    now = _now()
    cart_id = writer.add_cart(customer_id, now, rng)
    crossing = _unix(now) + idle_minutes * 60
    print(f"  cart {cart_id} committed (customer {customer_id}); idle window crossed in {idle_minutes} min", flush=True)
    return cart_id, float(crossing)


# --- matching what arrived --------------------------------------------------------------------------------


def _match(order: Order, arrivals: list[Arrival]) -> bool:
    """Fill in the order's arrivals; True once both its event and its identify have arrived."""
    if order.event is None:
        order.event = next(
            (
                a
                for a in arrivals
                if a.action == "event" and a.item.get("name") == "order_placed"
                if a.attributes.get("order_id") == order.order_id
            ),
            None,
        )
    if order.event is not None and order.identify is None:
        person = order.event.person_id
        mine = [a for a in arrivals if a.action == "identify" and a.person_id == person]
        order.identify = next(
            (a for a in mine if a.attributes.get("last_order_at") == order.paid_at and "total_orders" in a.attributes),
            None,
        )
        order.identified_with_email = next((a for a in mine if a.attributes.get("email")), None)
    return order.event is not None and order.identify is not None


def _cart_event(cart_id: int, arrivals: list[Arrival]) -> Arrival | None:
    return next(
        (
            a
            for a in arrivals
            if a.action == "event" and a.item.get("name") == "cart_abandoned" and a.attributes.get("cart_id") == cart_id
        ),
        None,
    )


# --- reporting --------------------------------------------------------------------------------------------


def _percentiles(label: str, values: list[float]) -> None:
    if not values:
        print(f"{label}: nothing arrived")
        return
    ordered = sorted(values)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank
    print(
        f"{label}: p50 {statistics.median(ordered):.1f} s, p95 {p95:.1f} s, max {ordered[-1]:.1f} s (n={len(values)})"
    )


def _report(
    measured: list[Order], cart: Arrival | None, crossing: float, arrivals: list[Arrival], no_carts: str | None
) -> None:
    print(f"\nsensor interval: {os.environ.get('CIO_SENSOR_INTERVAL_SECONDS') or 'default'}")
    print(f"{'order':>8} {'customer':>9} {'kind':<9} {'event':>8} {'identify':>9}  identify-before-event")
    problems = []
    for o in measured:
        event = f"{o.event_seconds:.1f}" if o.event_seconds is not None else "-"
        identify = f"{o.identify_seconds:.1f}" if o.identify_seconds is not None else "-"
        before = ""
        if o.new_customer:
            ok = (
                o.identified_with_email is not None
                and o.event is not None
                and o.identified_with_email.seq < o.event.seq
            )
            before = "yes" if ok else "NO"
            if not ok:
                problems.append(f"new customer {o.customer_id}: no identify with e-mail before their event")
        kind = "new" if o.new_customer else "existing"
        print(f"{o.order_id:>8} {o.customer_id:>9} {kind:<9} {event:>8} {identify:>9}  {before}")
        if o.event is None or o.identify is None:
            problems.append(f"order {o.order_id}: not everything arrived within the timeout")
    _percentiles(
        "order_placed event, commit -> sink", [o.event_seconds for o in measured if o.event_seconds is not None]
    )
    _percentiles(
        "identify with last_order_at, commit -> sink",
        [o.identify_seconds for o in measured if o.identify_seconds is not None],
    )
    both = [
        max(o.event_seconds, o.identify_seconds)
        for o in measured
        if o.event_seconds is not None and o.identify_seconds is not None
    ]
    _percentiles("both (the order fully in Customer.io)", both)
    if no_carts:
        print(f"cart_abandoned: not measured, the shop keeps no carts ({no_carts})")
    elif cart is None:
        print("cart_abandoned: did not arrive within the timeout")
        problems.append("cart_abandoned did not arrive")
    else:
        print(f"cart_abandoned: {cart.at - crossing:.1f} s after the cart crossed the idle window")
    ids = Counter(a.item.get("id") for a in arrivals if a.action == "event")
    twice = {i: n for i, n in ids.items() if n > 1}
    print(
        f"events received: {sum(ids.values())}, distinct ids: {len(ids)}; identifies: "
        f"{sum(1 for a in arrivals if a.action == 'identify')}"
    )
    if twice:
        problems.append(f"{len(twice)} event ids arrived more than once")
    print("\n" + ("PROBLEMS:\n  " + "\n  ".join(problems) if problems else "all checks passed"), flush=True)


def _report_runs(home: Path) -> None:
    print("\nruns the daemon launched (queued: from the tick creating it to its launch; worker start: from the")
    print("launch to the run process executing; run: its steps, to the end):")
    with _instance(home) as instance:
        for record in reversed(instance.get_run_records()):
            run = record.dagster_run
            created = record.create_timestamp.timestamp()
            start, end = record.start_time, record.end_time
            dequeued = [e.timestamp for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_STARTING)]
            queued = f"{dequeued[0] - created:5.1f}" if dequeued else "    -"
            worker = f"{start - dequeued[0]:5.1f}" if start and dequeued else "    -"
            took = f"{end - start:5.1f}" if start and end else "    -"
            why = ", ".join(f"{k.removeprefix('cio/')}: {v}" for k, v in run.tags.items() if k.startswith("cio/"))
            print(
                f"- {run.run_id[:8]} {run.status.value:<8} queued {queued} s, worker start {worker} s, "
                f"run {took} s  [{why}]"
            )
            steps = []
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS):
                event = entry.dagster_event
                if event is not None and event.step_key:
                    steps.append(f"{event.step_key} {event.event_specific_data.duration_ms / 1000:.1f}")
            if steps:
                print("    " + ", ".join(steps))


if __name__ == "__main__":
    main()
