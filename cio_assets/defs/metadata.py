"""Small helpers that turn results into Dagster UI metadata: Markdown samples, JSON counts, per-partition figures.

Per-partition figures: a range run records one materialization per day; each day's own figures are attached to
that day's event (`context.add_asset_metadata(..., partition_key=day)`), so the UI shows and plots that day.
Figures of the whole run are named `run_*`.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pandas as pd

from cio_assets.lib.frames import markdown


def markdown_table(
    frame: pd.DataFrame, limit: int = 20, total: int | None = None, cell_chars: int | None = 120
) -> dg.MetadataValue:
    """`frame` as a Markdown sample in the UI (`markdown`: at most `limit` rows, noting how many it leaves out)."""
    return dg.MetadataValue.md(markdown(frame, limit, total, cell_chars))


def json_counts(counts: Mapping[str, int | float]) -> dg.MetadataValue:
    return dg.MetadataValue.json(dict(counts))


def add_partition_metadata(context: dg.AssetExecutionContext, figures: Mapping[str, Mapping[str, object]]) -> None:
    """Attach each day's figures to that day's materialization (they override run-wide keys of the same name)."""
    for day, metadata in figures.items():
        context.add_asset_metadata(dict(metadata), partition_key=day)
