"""What the assets that rebuild from the shop share: their run config, and the result of a run that kept its days."""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg
from pydantic import Field
from sqlalchemy import Connection, Table

from cio_assets.config import PipelineSettings
from cio_assets.contract import HELD, ContractTally, stored_quarantine
from cio_assets.defs.catalog import table_metadata
from cio_assets.defs.checks.contract import contract_result
from cio_assets.defs.metadata import add_partition_metadata
from cio_assets.lib.days import PartitionRange
from cio_assets.lib.frames import DayFigures, listing_per_day, merge_days

# The assets that rebuild from the shop, whose run config is `RefreshConfig`.
REFRESHING = ("rejected_rows", "identity_map", "attribute_snapshot", "event_log")


class RefreshConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description=(
            "Rebuild from the whole shop even when nothing it reads changed since the last run "
            "(the daily finalize_yesterday schedule sets it)."
        ),
    )


def kept_result(
    context: dg.AssetExecutionContext,
    dst: Connection,
    table: Table,
    check_name: str,
    prange: PartitionRange,
    per_day: Callable[[Connection, list[str]], DayFigures],
    settings: PipelineSettings,
    reason: str,
    started_at: float,  # Unix seconds (time.time(): the run's steps may run in several processes)
    run: dict[str, int] | None = None,
) -> dg.MaterializeResult:
    """The result of a partitioned asset's run that kept its days: each day's figures (`per_day`, and its
    quarantine listing) and the contract check on what the days hold, read back from the tables."""
    asset = context.asset_key.to_user_string()
    listing = stored_quarantine(dst, asset, prange.keys)
    days = merge_days(prange.keys, per_day(dst, prange.keys), listing_per_day(listing, prange.keys, HELD))
    written = sum(int(figures["dagster/row_count"]) for figures in days.values())  # type: ignore[call-overload]
    tally = ContractTally(asset, check_name, written=written, listings=[listing])
    add_partition_metadata(context, days)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(table),
            "run_rows": written,
            **(run or {}),
            "run_mode": "unchanged",
            "run_mode_reason": reason,
            "run_rows_held": tally.held_items,
            "run_days": len(prange.days),
            "run_duration_s": round(time.time() - started_at, 2),
        },
        check_results=[contract_result(tally, settings)],
    )
