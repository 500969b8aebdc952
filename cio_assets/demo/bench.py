"""`make bench`: a large generated shop on the local MariaDB, the whole pipeline, timed.

Generates 100,000 customers with about 500,000 orders (override with BENCH_CUSTOMERS and
BENCH_ORDERS_PER_CUSTOMER) into throwaway databases on `CIO_TEST_MYSQL_URL`, then measures:
1. the history backfill, every partition in one run, delivered over real HTTP;
2. the same backfill again, which must send nothing (the ledger knows everything landed);
3. a re-run of one ordinary day (the daily steady state).
Delivery goes to a minimal local sink (a separate process that answers 200 to every batch), so the
numbers measure this pipeline and its client, not Customer.io or the test fake's validation.
It prints wall time per step, throughput, the process's peak memory, and drops the databases.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import httpx
from sqlalchemy import create_engine, make_url, text

from cio_assets.definitions import defs
from cio_assets.demo.shop import ShopSize, generate_shop
from cio_assets.partitions import daily_partitions
from cio_assets.resources import CustomerIO, SourceDatabase, StateDatabase

SERVER_URL = os.environ.get("CIO_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/")


async def sink_app(scope, receive, send) -> None:
    """Accept every batch: read the body, answer 200 `{}` (what Customer.io answers when all is valid)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def main() -> None:
    customers = int(os.environ.get("BENCH_CUSTOMERS", "100000"))
    orders_per_customer = float(os.environ.get("BENCH_ORDERS_PER_CUSTOMER", "5"))
    name = f"cio_bench_{uuid.uuid4().hex[:8]}"
    source_url, state_url = _database_url(f"{name}_shop"), _database_url(f"{name}_state")
    server = create_engine(SERVER_URL)
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}_shop` CHARACTER SET utf8mb4"))
    try:
        started = time.monotonic()
        engine = create_engine(source_url)
        counts = generate_shop(engine, ShopSize(customers=customers, orders_per_customer=orders_per_customer))
        engine.dispose()
        print(f"generated {counts} in {time.monotonic() - started:.1f} s", flush=True)

        first, last = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
        with _sink() as sink_url:
            customerio = CustomerIO(
                site_id="bench", api_key="bench", track_url=sink_url, rate_limit=1000, max_in_flight=8
            )
            _timed_run(
                f"backfill {first}...{last} (one run, delivered)", source_url, state_url, customerio, (first, last)
            )
            _timed_run("the same backfill again (must send nothing)", source_url, state_url, customerio, (first, last))
            _timed_run("one ordinary day, 2026-11-10", source_url, state_url, customerio, partition="2026-11-10")
        print(f"\npeak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        with server.begin() as conn:
            for db in (f"{name}_shop", f"{name}_state"):
                conn.execute(text(f"DROP DATABASE IF EXISTS `{db}`"))
        server.dispose()


def _timed_run(
    label: str, source_url: str, state_url: str, customerio: CustomerIO, range_=None, partition=None
) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {}
    if range_:
        tags = {"dagster/asset_partition_range_start": range_[0], "dagster/asset_partition_range_end": range_[1]}
    started = time.monotonic()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition,
            tags=tags,
            resources={
                "source": SourceDatabase(url=source_url),
                "state": StateDatabase(url=state_url),
                "customerio": customerio,
            },
        )
    elapsed = time.monotonic() - started
    print(f"\n{label}: {elapsed:.1f} s", flush=True)
    metadata = {}
    for event in result.all_events:
        # A range run records one materialisation per partition, all with the run's metadata.
        if event.event_type_value == "ASSET_MATERIALIZATION" and event.step_key not in metadata:
            metadata[event.step_key] = {
                k: v.value for k, v in event.event_specific_data.materialization.metadata.items()
            }
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS":
            seconds = event.event_specific_data.duration_ms / 1000
            print(f"  {event.step_key:<20} {seconds:6.1f} s   {_summary(metadata.get(event.step_key, {}), seconds)}")


def _summary(metadata: dict, seconds: float) -> str:
    if "items_sent" in metadata:
        sent = metadata["items_sent"]
        rate = f", {sent / seconds * 60:,.0f} records/min" if sent and seconds else ""
        return f"sent {sent:,} in {metadata['requests']:,} requests ({metadata['bytes_sent'] / 1e6:,.0f} MB){rate}"
    rows = metadata.get("dagster/row_count")
    return f"rows written: {rows:,}" if isinstance(rows, int) else ""


@contextmanager
def _sink() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "cio_assets.demo.bench:sink_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.post(url + "/api/v2/batch", content=b'{"batch":[]}')
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _database_url(database: str) -> str:
    return make_url(SERVER_URL).set(database=database).render_as_string(hide_password=False)


if __name__ == "__main__":
    main()
