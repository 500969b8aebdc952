"""Source rows set aside by the hygiene rules (`cio_rejected_rows`), each with its reason and source key.

Not partitioned: a row with a null, pre-2000 or future timestamp, an unknown status or a negative
amount has no trustworthy day to live in, so every rule scans the whole source in every run (in
the database). Rows that pass again stay listed as released, for the snapshot and event log.
"""

import dagster as dg
import pandas as pd

from cio_assets.catalog import pii_tags, table_metadata
from cio_assets.hygiene.rejections import current_rejections, merge_rejections, previous_rejections
from cio_assets.hygiene.rules import REJECTING_TABLES, Bounds
from cio_assets.metadata import counts_by, json_counts, markdown_table, named
from cio_assets.resources import SourceDatabase, StateDatabase
from cio_assets.settings import Settings
from cio_assets.sources.assets import source_key
from cio_assets.state import tables as state_tables
from cio_assets.state.writes import replace_all
from cio_assets.timestamps import unix, utc_now


@dg.asset(
    key="rejected_rows",
    group_name="hygiene",
    kinds={"sql"},
    deps=[source_key(table) for table in REJECTING_TABLES],
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=__doc__,
    tags=pii_tags(state_tables.rejected_rows),
    metadata=table_metadata(state_tables.rejected_rows),
)
def rejected_rows(
    context: dg.AssetExecutionContext, source: SourceDatabase, state: StateDatabase, settings: Settings
) -> dg.MaterializeResult:
    bounds = Bounds.for_run(settings, utc_now())
    with source.connect() as conn:
        current = current_rejections(conn, settings, bounds)
    with state.begin() as conn:
        listing = merge_rejections(previous_rejections(conn), current, unix(bounds.now))
        replace_all(conn, state_tables.rejected_rows, listing, settings.chunk_size)
    released = listing[listing["released_at"] == unix(bounds.now)]
    context.log.info(
        f"{len(current)} source rows set aside, {len(released)} passed again: {counts_by(current, 'reason')}"
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(state_tables.rejected_rows),
            "dagster/row_count": len(current),
            # Source rows per reason: a row failing one reason on two columns counts once.
            **named("rejected", counts_by(current.drop_duplicates(["source_table", "source_key", "reason"]), "reason")),
            **named("rejected_in", {table.name: _rows_in(current, table.name) for table in REJECTING_TABLES}),
            "rejected_by_column": json_counts(counts_by(current, "source_table", "column_name")),
            "released_this_run": len(released),
            "timestamp_floor": settings.timestamp_floor,
            "now": bounds.now.isoformat(),
            "sample": markdown_table(current),
        }
    )


def _rows_in(listing: pd.DataFrame, table: str) -> int:
    """Distinct source rows of `table` set aside (a row failing two rules is listed twice, counted once)."""
    return int(listing.loc[listing["source_table"] == table, "source_key"].nunique())
