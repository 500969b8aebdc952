"""`rejected_rows`: source rows set aside by the hygiene rules (`cio_rejected_rows`), with reason and source key.

Not partitioned: a row with a null, pre-2000 or future timestamp, an unknown status or a negative amount has no
trustworthy day to live in (`hygiene/refresh.py`). Rows that pass again stay listed as released, for the
snapshot and the event log.
"""

import dagster as dg
import pandas as pd

from cio_assets.defs.assets.shared import RefreshConfig
from cio_assets.defs.catalog import pii_tags, source_key, table_metadata
from cio_assets.defs.metadata import json_counts, markdown_table
from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets.hygiene.refresh import ASSET, SOURCES, HygieneRun, refresh_rejections
from cio_assets.hygiene.rules import REJECTING_TABLES
from cio_assets.lib.frames import counts_by, named
from cio_assets.lib.timestamps import Clock, utc_now
from cio_assets.schema import state as state_tables


@dg.asset(
    key=ASSET,
    group_name="hygiene",
    kinds={"sql"},
    deps=[source_key(table) for table in SOURCES],
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=__doc__,
    tags=pii_tags(state_tables.rejected_rows),
    metadata=table_metadata(state_tables.rejected_rows),
)
def rejected_rows(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    source: SourceDatabase,
    state: StateDatabase,
    settings: Settings,
) -> dg.MaterializeResult:
    clock = settings.clock(utc_now(), source.mapping_spec)
    with source.connect() as src, state.begin() as dst:
        run = refresh_rejections(
            src,
            dst,
            clock,
            settings.fingerprint(source.mapping_spec),
            settings.chunk_size,
            config.full_refresh,
            context.run.run_id,
        )
    context.log.info(
        f"{run.mode}: {run.reason}. {len(run.current)} source rows set aside, {run.released} passed again: "
        f"{counts_by(run.current, 'reason')}"
    )
    return dg.MaterializeResult(metadata=_metadata(run, clock, settings.timestamp_floor))


def _metadata(run: HygieneRun, clock: Clock, timestamp_floor: str) -> dict[str, object]:
    current = run.current
    return {
        **table_metadata(state_tables.rejected_rows),
        "dagster/row_count": len(current),
        # Source rows per reason: a row failing one reason on two columns counts once.
        **named("rejected", counts_by(current.drop_duplicates(["source_table", "source_key", "reason"]), "reason")),
        **named("rejected_in", {table.name: _rows_in(current, table.name) for table in REJECTING_TABLES}),
        "rejected_by_column": json_counts(counts_by(current, "source_table", "column_name")),
        "released_this_run": run.released,
        "timestamp_floor": timestamp_floor,
        "now": clock.now.isoformat(),
        "sample": markdown_table(current),
        "run_mode": run.mode,
        "run_mode_reason": run.reason,
    }


def _rows_in(listing: pd.DataFrame, table: str) -> int:
    """Distinct source rows of `table` set aside (a row failing two rules is listed twice, counted once)."""
    return int(listing.loc[listing["source_table"] == table, "source_key"].nunique())
