"""`make bench`: a large generated shop on the local MariaDB, the whole pipeline, timed.

Generates 100,000 customers with about 500,000 orders (override with BENCH_CUSTOMERS and
BENCH_ORDERS_PER_CUSTOMER) into throwaway databases on `CIO_TEST_MYSQL_URL`, then measures:
1. the history backfill, every partition in one run;
2. a re-run of one ordinary day (the daily steady state).
Delivery runs as a dry run (every item packed and serialised into an outbox in a temporary
directory), so the numbers measure this pipeline, not a network. It prints wall time per asset and
the process's peak memory, and drops the databases afterwards.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
import uuid

import dagster as dg
from sqlalchemy import create_engine, make_url, text

from cio_assets.definitions import defs
from cio_assets.demo.shop import ShopSize, generate_shop
from cio_assets.partitions import daily_partitions
from cio_assets.resources import CustomerIO, SourceDatabase, StateDatabase

SERVER_URL = os.environ.get("CIO_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/")


def main() -> None:
    customers = int(os.environ.get("BENCH_CUSTOMERS", "100000"))
    orders_per_customer = float(os.environ.get("BENCH_ORDERS_PER_CUSTOMER", "5"))
    name = f"cio_bench_{uuid.uuid4().hex[:8]}"
    source_url, state_url = (_database_url(f"{name}_shop"), _database_url(f"{name}_state"))
    server = create_engine(SERVER_URL)
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}_shop` CHARACTER SET utf8mb4"))
    try:
        started = time.monotonic()
        engine = create_engine(source_url)
        counts = generate_shop(engine, ShopSize(customers=customers, orders_per_customer=orders_per_customer))
        engine.dispose()
        print(f"generated {counts} in {time.monotonic() - started:.1f} s")

        first, last = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
        _timed_run(f"backfill {first}...{last} (one run)", source_url, state_url, range_=(first, last))
        ordinary_day = "2026-11-10"
        _timed_run(f"one day {ordinary_day}", source_url, state_url, partition=ordinary_day)
        print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        with server.begin() as conn:
            for db in (f"{name}_shop", f"{name}_state"):
                conn.execute(text(f"DROP DATABASE IF EXISTS `{db}`"))
        server.dispose()


def _timed_run(label: str, source_url: str, state_url: str, partition=None, range_=None) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {}
    if range_:
        tags = {"dagster/asset_partition_range_start": range_[0], "dagster/asset_partition_range_end": range_[1]}
    started = time.monotonic()
    with dg.instance_for_test() as instance, tempfile.TemporaryDirectory() as outbox:
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition,
            tags=tags,
            resources={
                "source": SourceDatabase(url=source_url),
                "state": StateDatabase(url=state_url),
                "customerio": CustomerIO(dry_run=True, outbox_dir=outbox),
            },
        )
        elapsed = time.monotonic() - started
    print(f"\n{label}: {elapsed:.1f} s")
    rows = {}
    for event in result.all_events:
        # A range run records one materialisation per partition, all with the run's metadata.
        if event.event_type_value == "ASSET_MATERIALIZATION" and event.step_key not in rows:
            row_count = event.event_specific_data.materialization.metadata.get("dagster/row_count")
            rows[event.step_key] = row_count.value if row_count else "-"
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS":
            seconds = event.event_specific_data.duration_ms / 1000
            print(f"  {event.step_key:<20} {seconds:6.1f} s   rows written: {rows.get(event.step_key, '-')}")


def _database_url(database: str) -> str:
    return make_url(SERVER_URL).set(database=database).render_as_string(hide_password=False)


if __name__ == "__main__":
    main()
