"""`rejected_rows_share` (WARN): the share of each source table's rows the hygiene rules set aside.

A set-aside row never reaches Customer.io, so this does not block delivery; but a table losing
more than `CIO_CHECK_MAX_REJECTED_SHARE` of its rows usually means a broken upstream change (a new
status, a time zone, a batch of NULL timestamps) that a person should look at. rejected_rows is not
partitioned: the check judges the rows currently set aside (not released).
"""

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, Engine, select

from cio_assets.defs.metadata import markdown_table
from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets.hygiene.rules import REJECTING_TABLES
from cio_assets.lib.reads import read_frame
from cio_assets.lib.timestamps import Clock, utc_now
from cio_assets.schema.state import rejected_rows
from cio_assets.tracking.marks import observe_tables

ASSET = "rejected_rows"
SHARE = "rejected_rows_share"
SAMPLE_ROWS = 20


def read_rejections(state: Connection) -> pd.DataFrame:
    """The rows set aside now: source_table, source_key, column_name, raw_value, reason."""
    r = rejected_rows.c
    return read_frame(
        state,
        select(r.source_table, r.source_key, r.column_name, r.raw_value, r.reason)
        .where(r.released_at.is_(None))
        .order_by(r.source_table, r.source_key, r.column_name),
    )


def read_table_rows(
    source: Connection, clock: Clock, run_id: str | None = None, kept: Engine | None = None
) -> dict[str, int]:
    """Rows per source table the hygiene rules judge (as the run observed them, when it already did; `kept`, the
    state database, keeps counts while the shop's tables have not changed: `tracking/marks.py`)."""
    observed = observe_tables(source, clock, REJECTING_TABLES, run_id, kept)
    return {name: int(marks["row_count"] or 0) for name, marks in observed.items()}  # type: ignore[call-overload]


def share_result(rejections: pd.DataFrame, table_rows: dict[str, int], max_share: float) -> dg.AssetCheckResult:
    """WARN when a table's share of set-aside rows (distinct rows, not reasons) passes `max_share`."""
    per_table = (
        rejections.drop_duplicates(["source_table", "source_key"]).groupby("source_table").size()
        if not rejections.empty
        else pd.Series(dtype="int64")
    )
    summary = pd.DataFrame(
        [
            (table, rows, int(per_table.get(table, 0)), round(int(per_table.get(table, 0)) / rows, 4) if rows else 0.0)
            for table, rows in table_rows.items()
        ],
        columns=["source_table", "rows", "rejected", "share"],
    )
    over = summary[summary["share"] > max_share]
    sample = rejections[rejections["source_table"].isin(over["source_table"])] if not over.empty else rejections
    return dg.AssetCheckResult(
        check_name=SHARE,
        asset_key=ASSET,
        passed=over.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"Every source table's set-aside share is at most {max_share:.2%}"
            if over.empty
            else "Set aside above CIO_CHECK_MAX_REJECTED_SHARE: "
            + ", ".join(f"{t} {s:.2%}" for t, s in zip(over["source_table"], over["share"], strict=True))
        ),
        metadata={
            "max_rejected_share": float(max_share),
            "tables_over": len(over),
            **{f"rejected_{t}": int(n) for t, n in zip(summary["source_table"], summary["rejected"], strict=True)},
            **{f"rejected_share_{t}": float(s) for t, s in zip(summary["source_table"], summary["share"], strict=True)},
            "by_table": markdown_table(summary),
            "rejected_sample": markdown_table(sample, limit=SAMPLE_ROWS),
        },
    )


@dg.asset_check(
    asset=ASSET,
    name=SHARE,
    description=(
        "Warns when more than CIO_CHECK_MAX_REJECTED_SHARE of a source table's rows are set aside by the hygiene "
        "rules (they never reach Customer.io, but a jump usually means a broken upstream change)."
    ),
)
def rejected_rows_share(
    context: dg.AssetCheckExecutionContext, source: SourceDatabase, state: StateDatabase, settings: Settings
) -> dg.AssetCheckResult:
    with state.connect() as state_conn:
        rejections = read_rejections(state_conn)
    with source.connect() as source_conn:
        clock = settings.clock(utc_now(), source.mapping_spec)
        table_rows = read_table_rows(source_conn, clock, context.run.run_id, kept=state.engine)
    return share_result(rejections, table_rows, settings.check_max_rejected_share)
