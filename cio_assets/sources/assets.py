"""The shop's tables as external assets, and how they are observed.

The pipeline never writes them. A sensor (`sources/sensors.py`) records an observation of each
table (row count and high-water marks) so the UI shows how fresh and how large the source is.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
from sqlalchemy import Connection, Table, func, select

from cio_assets.catalog import code_reference, pii_tags, table_metadata
from cio_assets.schema import shop as tables_module
from cio_assets.schema.shop import SOURCE_TABLES

SOURCE_GROUP = "source"
# Tables observed at once, each on its own connection.
OBSERVERS = 3


def source_key(table: Table) -> dg.AssetKey:
    return dg.AssetKey(["source", table.name])


source_tables = [
    dg.AssetSpec(
        source_key(table),
        group_name=SOURCE_GROUP,
        kinds={"mysql"},
        description=f"{table.comment}: the shop's `{table.name}` table, read only.",
        metadata={**table_metadata(table), **code_reference(tables_module.__file__, f"{table.name} = Table(")},
        tags=pii_tags(table),
    )
    for table in SOURCE_TABLES
]


def high_water_marks(table: Table) -> list:
    """Aggregates that show a table moved: its row count, its largest id and its latest change time. Each is a
    query of its own, so that the maxima come from their indexes (one statement computing all three scanned
    the whole of cart_items) and only the count reads an index through."""
    marks = [select(func.count()).select_from(table).scalar_subquery().label("row_count")]
    if "id" in table.c:
        marks.append(select(func.max(table.c.id)).scalar_subquery().label("max_id"))
    for column in ("updated_at", "linked_at", "created_at"):
        if column in table.c:
            marks.append(select(func.max(table.c[column])).scalar_subquery().label(f"max_{column}"))
            break
    return marks


def observe_table(conn: Connection, table: Table) -> dict[str, object]:
    row = conn.execute(select(*high_water_marks(table))).mappings().one()
    return {key: (value.isoformat() if hasattr(value, "isoformat") else value) for key, value in row.items()}


def _observe_all(conn: Connection, tables: list[Table]) -> dict[str, dict[str, object]]:
    """Several tables' marks at once, each on a connection of its own: the counts of the large tables are
    the server's work, which a second core shares (a no-change run at 100k customers: 0.45 s -> 0.3 s)."""
    if len(tables) < 2 or conn.dialect.name == "sqlite":
        return {str(table.name): observe_table(conn, table) for table in tables}

    def observe(table: Table) -> dict[str, object]:
        with conn.engine.connect() as own:
            return observe_table(own, table)

    with ThreadPoolExecutor(OBSERVERS, thread_name_prefix="observe") as pool:
        return dict(zip((str(t.name) for t in tables), pool.map(observe, tables), strict=True))


# The current run's observations (run id -> table name -> marks), for the steps running in this process.
_observed: dict[str, dict[str, dict[str, object]]] = {}


def observe_tables(conn: Connection, tables: Iterable[Table], run_id: str | None) -> dict[str, dict[str, object]]:
    """Each table's marks, observed once per run: hygiene, identity, the snapshot and the event log all ask,
    and a count of a large table costs a fraction of a second each time. Marks seen earlier in the run are
    never newer than the rows a later step reads, so a step that uses them at worst reads again, or computes
    again, on the next run. Without a run id (a direct call), every table is observed now."""
    tables = list(tables)
    if run_id is None:
        return _observe_all(conn, tables)
    if run_id not in _observed:
        _observed.clear()  # keep only the latest run's
        _observed[run_id] = {}
    seen = _observed[run_id]
    seen.update(_observe_all(conn, [table for table in tables if str(table.name) not in seen]))
    return {str(table.name): seen[str(table.name)] for table in tables}


def observe_sources(conn: Connection) -> list[dg.AssetObservation]:
    observations = []
    observed = _observe_all(conn, list(SOURCE_TABLES))
    for table in SOURCE_TABLES:
        marks = observed[str(table.name)]
        metadata: dict[str, object] = {"dagster/row_count": int(marks.pop("row_count") or 0)}
        metadata.update({key: value for key, value in marks.items() if value is not None})
        observations.append(dg.AssetObservation(asset_key=source_key(table), metadata=metadata))
    return observations
