"""Small helpers that turn results into Dagster UI metadata."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pandas as pd


def counts_by(frame: pd.DataFrame, *columns: str) -> dict[str, int]:
    """{"a / b": n} counts of the distinct values of `columns`, largest first."""
    if frame.empty:
        return {}
    counts = frame.groupby(list(columns), dropna=False).size().sort_values(ascending=False)
    return {
        " / ".join(str(v) for v in (key if isinstance(key, tuple) else (key,))): int(n) for key, n in counts.items()
    }


def markdown_table(frame: pd.DataFrame, limit: int = 20) -> dg.MetadataValue:
    """A Markdown sample of `frame` (no tabulate dependency), noting how many rows it leaves out."""
    if frame.empty:
        return dg.MetadataValue.md("_none_")
    sample = frame.head(limit)
    header = "| " + " | ".join(str(c) for c in sample.columns) + " |"
    rule = "|" + "---|" * len(sample.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in sample.itertuples(index=False)]
    more = [f"\n_…and {len(frame) - limit} more_"] if len(frame) > limit else []
    return dg.MetadataValue.md("\n".join([header, rule, *rows, *more]))


def json_counts(counts: Mapping[str, int | float]) -> dg.MetadataValue:
    return dg.MetadataValue.json(dict(counts))


def _cell(value: object) -> str:
    text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:120]
