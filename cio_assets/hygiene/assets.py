"""The `rejected_rows` asset: every source row kept out of Customer.io for a bad timestamp, and why.

Not partitioned: a null, pre-2000 or future timestamp has no trustworthy day to live in, so the
whole source is scanned in every run (one indexed or full scan per rule, in the database).
"""

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, cast, select
from sqlalchemy.types import String

from cio_assets.hygiene.rules import RULES, Bounds, TimestampRule, rejection_reason
from cio_assets.metadata import counts_by, json_counts, markdown_table
from cio_assets.resources import SourceDatabase, StateDatabase
from cio_assets.settings import Settings
from cio_assets.sources.assets import source_key
from cio_assets.sources.reads import read_frame
from cio_assets.state import tables as state_tables
from cio_assets.state.writes import replace_all
from cio_assets.timestamps import utc_now


@dg.asset(
    key="rejected_rows",
    group_name="identity",
    kinds={"sql"},
    deps=sorted({source_key(rule.table) for rule in RULES}, key=lambda k: k.to_user_string()),
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=__doc__,
)
def rejected_rows(
    context: dg.AssetExecutionContext, source: SourceDatabase, state: StateDatabase, settings: Settings
) -> dg.MaterializeResult:
    bounds = Bounds.for_run(settings, utc_now())
    with source.connect() as conn:
        rejections = pd.concat([_rejections(conn, rule, settings, bounds) for rule in RULES], ignore_index=True)
    with state.begin() as conn:
        replace_all(conn, state_tables.rejected_rows, rejections, settings.chunk_size)
    context.log.info(f"{len(rejections)} rejected timestamps: {counts_by(rejections, 'reason')}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rejections),
            "rejected_by_reason": json_counts(counts_by(rejections, "reason")),
            "rejected_by_column": json_counts(counts_by(rejections, "source_table", "column_name")),
            "timestamp_floor": settings.timestamp_floor,
            "now": bounds.now.isoformat(),
            "sample": markdown_table(rejections),
        }
    )


def _rejections(conn: Connection, rule: TimestampRule, settings: Settings, bounds: Bounds) -> pd.DataFrame:
    reason = rejection_reason(rule, settings, bounds)
    frame = read_frame(
        conn,
        select(
            cast(rule.table.c.id, String).label("source_key"),
            rule.table.c[rule.column].label("raw_value"),
            reason.label("reason"),
        ).where(reason.is_not(None)),
    )
    frame["raw_value"] = [None if pd.isna(v) else str(v) for v in frame["raw_value"]]
    frame.insert(0, "source_table", rule.table.name)
    frame.insert(2, "column_name", rule.column)
    return frame
