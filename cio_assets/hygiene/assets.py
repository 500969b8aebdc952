"""Source rows set aside by the hygiene rules (`cio_rejected_rows`), each with its reason and source key.

Not partitioned: a row with a null, pre-2000 or future timestamp, an unknown status or a negative
amount has no trustworthy day to live in, so every rule scans the whole source (in the database) in
every run in which some source table moved; otherwise only the rows already listed are judged again
(one may have been fixed in place, or reached the time it was dated at; `unchanged.py`). Rows that pass
again stay listed as released, for the snapshot and event log.
"""

import dagster as dg
import pandas as pd

from cio_assets.catalog import pii_tags, table_metadata
from cio_assets.hygiene.rejections import changed_since, current_rejections, merge_rejections, previous_rejections
from cio_assets.hygiene.rules import REJECTING_TABLES, Bounds
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.lib.writes import replace_all
from cio_assets.metadata import counts_by, json_counts, markdown_table, named
from cio_assets.resources import SourceDatabase, StateDatabase
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import cart_items, order_items
from cio_assets.settings import Settings
from cio_assets.sources.assets import source_key
from cio_assets.sources.changes import Cursor, read_marks
from cio_assets.unchanged import WHOLE, Inputs, RefreshConfig, record, settings_fingerprint, skip_reason

ASSET = "rejected_rows"
# The shop's tables the rules read (line items are judged under their order or cart).
SOURCES = (*REJECTING_TABLES, order_items, cart_items)


@dg.asset(
    key=ASSET,
    group_name="hygiene",
    kinds={"sql"},
    deps=[source_key(table) for table in REJECTING_TABLES],
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
    bounds = Bounds.for_run(settings, utc_now())
    with source.connect() as src, state.begin() as dst:
        marks = read_marks(src, context.run.run_id)
        inputs = Inputs.read(src, dst, SOURCES, settings, unix(bounds.now), context.run.run_id)
        cursor = Cursor.load(dst, ASSET)
        previous = previous_rejections(dst)
        listed = previous[previous["released_at"].isna()]
        kept = None if config.full_refresh else skip_reason(dst, ASSET, [WHOLE], inputs, ())
        full = _why_full(config, cursor, settings, bounds)
        if kept is not None:
            # Nothing moved, so no other row can have started failing; a listed row may have been fixed
            # without touching its change time, or have reached the time it was dated at: judge those again.
            mode, reason = "unchanged", kept
            current = current_rejections(src, settings, bounds, only=listed)
        elif full is not None:
            mode, reason = "computed", full
            current = current_rejections(src, settings, bounds)
        else:
            assert cursor is not None
            mode, reason = "incremental", "the rows changed since the last run, and the rows listed"
            current = current_rejections(
                src, settings, bounds, only=listed, changed=changed_since(src, cursor, settings, bounds)
            )
        listing = merge_rejections(previous, current, unix(bounds.now))
        replace_all(dst, state_tables.rejected_rows, listing, settings.chunk_size)
        record(dst, ASSET, [WHOLE], inputs)
        Cursor(ASSET, marks, unix(bounds.now), unix(bounds.floor), {"settings": settings_fingerprint(settings)}).save(
            dst
        )
    released = listing[listing["released_at"] == unix(bounds.now)]
    context.log.info(
        f"{mode}: {reason}. {len(current)} source rows set aside, {len(released)} passed again: "
        f"{counts_by(current, 'reason')}"
    )
    return dg.MaterializeResult(
        metadata={**_metadata(current, len(released), settings, bounds), "run_mode": mode, "run_mode_reason": reason}
    )


def _why_full(config: RefreshConfig, cursor: Cursor | None, settings: Settings, bounds: Bounds) -> str | None:
    """Why every source row must be judged (a full scan), or None when the changed and listed ones do."""
    if config.full_refresh:
        return "full_refresh in the run config"
    if cursor is None:
        return "no cursor yet: the first run"
    if cursor.floor != unix(bounds.floor) or cursor.details.get("settings") != settings_fingerprint(settings):
        return "the settings the rules read changed"
    return None


def _metadata(current: pd.DataFrame, released: int, settings: Settings, bounds: Bounds) -> dict[str, object]:
    return {
        **table_metadata(state_tables.rejected_rows),
        "dagster/row_count": len(current),
        # Source rows per reason: a row failing one reason on two columns counts once.
        **named("rejected", counts_by(current.drop_duplicates(["source_table", "source_key", "reason"]), "reason")),
        **named("rejected_in", {table.name: _rows_in(current, table.name) for table in REJECTING_TABLES}),
        "rejected_by_column": json_counts(counts_by(current, "source_table", "column_name")),
        "released_this_run": released,
        "timestamp_floor": settings.timestamp_floor,
        "now": bounds.now.isoformat(),
        "sample": markdown_table(current),
    }


def _rows_in(listing: pd.DataFrame, table: str) -> int:
    """Distinct source rows of `table` set aside (a row failing two rules is listed twice, counted once)."""
    return int(listing.loc[listing["source_table"] == table, "source_key"].nunique())
