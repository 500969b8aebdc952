"""`make demo`: generate the sample shop, materialise every partition in one run, print a summary.

The demo always uses the embedded SQLite databases under `.cio/` (it never writes to the database
named by `CIO_MYSQL_URL`), and runs against the Dagster instance in `$DAGSTER_HOME`, so `make dev`
afterwards shows the same materialisations in the UI.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from sqlalchemy import create_engine, func, make_url, select

from cio_assets.definitions import defs
from cio_assets.demo.shop import ShopSize, generate_shop
from cio_assets.partitions import daily_partitions
from cio_assets.resources import SourceDatabase, StateDatabase
from cio_assets.settings import DEMO_SOURCE_URL, DEMO_STATE_URL
from cio_assets.state import tables as state_tables


def main() -> None:
    started = time.monotonic()
    _fresh_sqlite(DEMO_SOURCE_URL)
    _fresh_sqlite(DEMO_STATE_URL)
    source = create_engine(DEMO_SOURCE_URL)
    counts = generate_shop(source, ShopSize())
    source.dispose()
    print(f"Generated the sample shop in {_path(DEMO_SOURCE_URL)}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))

    first, last = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    print(f"Materialising every partition {first}...{last} in one run (single-run backfill)…")
    result = _materialize_everything(first, last)
    if not result.success:
        raise SystemExit("The demo run failed; see the log above.")
    print(_summary(time.monotonic() - started))
    print(_delivery_plan(result))
    print("Open the Dagster UI on the same data with: make dev")


def _materialize_everything(first: str, last: str) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    home = os.environ.get("DAGSTER_HOME")
    if home:
        Path(home).mkdir(parents=True, exist_ok=True)  # Dagster insists the directory exists
    with dg.DagsterInstance.get() if home else dg.DagsterInstance.ephemeral() as instance:
        return job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            resources={"source": SourceDatabase(url=DEMO_SOURCE_URL), "state": StateDatabase(url=DEMO_STATE_URL)},
            raise_on_error=False,
        )


def _summary(elapsed: float) -> str:
    state = create_engine(DEMO_STATE_URL)
    with state.connect() as conn:
        people = conn.execute(select(func.count(func.distinct(state_tables.identity_map.c.person_id)))).scalar_one()
        snapshot_rows = conn.execute(select(func.count()).select_from(state_tables.attribute_snapshot)).scalar_one()
        events = _grouped(conn, state_tables.event_log.c.name)
        rejections = _grouped(conn, state_tables.rejected_rows.c.reason, state_tables.rejected_rows.c.source_table)
        unresolved = _grouped(conn, state_tables.unresolved_identifiers.c.reason)
        invalid = _grouped(conn, state_tables.invalid_values.c.column_name)
        conflicts = _frame(conn, select(state_tables.identity_conflicts))
    state.dispose()

    lines = [
        "",
        "Summary",
        "=======",
        f"People: {people} ({snapshot_rows} attribute snapshot rows)",
        "Events by name:",
        *(f"  {name:<22} {n:>6}" for name, n in events),
        "Rejected rows by reason:",
        *(f"  {reason:<15} {table:<14} {n:>4}" for reason, table, n in rejections),
        "Invalid values (nulled, with a reason):",
        *(f"  {column:<22} {n:>6}" for column, n in invalid),
        "Unresolved (listed, not sent):",
        *(f"  {reason:<40} {n:>5}" for reason, n in unresolved),
        "Identity conflicts:",
        *_conflict_lines(conflicts),
        f"Done in {elapsed:.1f} s. Tables are in {_path(DEMO_STATE_URL)}.",
    ]
    return "\n".join(lines)


def _delivery_plan(result: dg.ExecuteInProcessResult) -> str:
    """What the sync assets would have sent (the demo has no credentials, so it is a dry run)."""
    lines = ["Customer.io delivery (dry run: nothing sent, exact request bodies in the outbox):"]
    for node in ("customerio_people", "customerio_events"):
        # A range run records one materialisation per partition, each with the run's metadata.
        metadata = result.asset_materializations_for_node(node)[0].metadata
        planned, batches = metadata["items_planned"].value, metadata["batches"].value
        lines.append(f"  {node:<18} {planned:>6} items in {batches} batches → {metadata['outbox'].value}")
    return "\n".join(lines)


def _conflict_lines(conflicts: pd.DataFrame) -> list[str]:
    if conflicts.empty:
        return ["  none"]
    lines = []
    for (kind, identifier), group in conflicts.groupby(["kind", "identifier"]):
        members = ", ".join(
            f"{m}{' (survivor)' if s else ''}" for m, s in zip(group["member"], group["is_survivor"], strict=True)
        )
        lines.append(f"  {kind}: {identifier} → {members}")
    return lines


def _grouped(conn, *columns) -> list[tuple]:
    statement = select(*columns, func.count()).group_by(*columns).order_by(func.count().desc())
    return [tuple(row) for row in conn.execute(statement)]


def _frame(conn, statement) -> pd.DataFrame:
    result = conn.execute(statement)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _path(url: str) -> str:
    return os.path.relpath(make_url(url).database or "")


def _fresh_sqlite(url: str) -> None:
    """The demo starts from nothing: remove the file, make sure its directory exists."""
    path = Path(make_url(url).database or "")
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main()
