"""The blocking contract checks of `attribute_snapshot` and `event_log`: Pandera, row by row (`contract.py`).

Each is a check spec of its asset, reported by the asset's own run from the rows it wrote and held back. It
fails only when the held share of a run passes `CIO_QUARANTINE_MAX_SHARE` with at least
`CIO_QUARANTINE_MIN_ROWS` rows held; then the asset writes nothing and the run stops (`contract_failure`).
"""

from __future__ import annotations

import dagster as dg

from cio_assets.config import PipelineSettings
from cio_assets.contract import ContractTally
from cio_assets.defs.metadata import json_counts, markdown_table


def contract_check_spec(asset: str, check_name: str, rules: str) -> dg.AssetCheckSpec:
    """The blocking contract check of an asset whose rows pass `rules` (a phrase naming what is checked)."""
    return dg.AssetCheckSpec(
        check_name,
        asset=asset,
        blocking=True,
        description=(
            f"Pandera contract, row by row: {rules}. Fails when the held share passes CIO_QUARANTINE_MAX_SHARE."
        ),
    )


def contract_exceeded(tally: ContractTally, settings: PipelineSettings) -> bool:
    return tally.exceeded(settings.quarantine_max_share, settings.quarantine_min_rows)


def contract_result(tally: ContractTally, settings: PipelineSettings) -> dg.AssetCheckResult:
    held = tally.held
    return dg.AssetCheckResult(
        check_name=tally.check_name,
        passed=not contract_exceeded(tally, settings),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows_written": tally.written,
            "rows_held": tally.held_items,
            "held_share": round(tally.held_share, 4),
            "max_share": settings.quarantine_max_share,
            "min_rows": settings.quarantine_min_rows,
            "held_by_reason": json_counts(tally.held_by_reason("source_table")),
            "held_rows": markdown_table(held[["day", "item_key", "source_table", "source_key", "reason"]], 100),
        },
        description=f"Held rows are listed in cio_quarantine (asset {tally.asset}).",
    )


def contract_failure(tally: ContractTally, settings: PipelineSettings) -> dg.Failure:
    return dg.Failure(
        description=tally.failure_description(settings.quarantine_max_share, settings.quarantine_min_rows),
        metadata={"rows_held": tally.held_items, "held_share": round(tally.held_share, 4)},
    )
