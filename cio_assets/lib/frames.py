"""Counting a frame's rows into figures: per value, per reason code, per day (plain dicts, for logs and metadata)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

DayFigures = dict[str, dict[str, object]]  # day -> {figure name: value}


def counts_by(frame: pd.DataFrame, *columns: str) -> dict[str, int]:
    """{"a / b": n} counts of the distinct values of `columns`, largest first."""
    if frame.empty:
        return {}
    counts = frame.groupby(list(columns), dropna=False).size().sort_values(ascending=False)
    return {
        " / ".join(str(v) for v in (key if isinstance(key, tuple) else (key,))): int(n) for key, n in counts.items()
    }


def named(prefix: str, counts: Mapping[str, int | float]) -> dict[str, int | float]:
    """{"prefix/key": n}: one plottable entry per key, in key order."""
    return {f"{prefix}/{key}": value for key, value in sorted(counts.items())}


def reason_code(reasons: pd.Series) -> pd.Series:
    """A listing reason's code, without the details after it ('negative_amount: total' → 'negative_amount')."""
    return reasons.astype(str).str.split(r"[: ]", n=1, regex=True).str[0]


def counts_per_day(
    frame: pd.DataFrame,
    column: str,
    days: Sequence[str],
    prefix: str,
    known: Sequence[str] = (),
    count: str | None = None,
) -> DayFigures:
    """{day: {"prefix/value": n}} for every day of the run and every value of `column` that is `known` or
    seen in the run, zeros included, so a series has a point on every day. `n` counts rows, or sums the
    `count` column when the frame is already counted."""
    values = sorted({*known, *(str(v) for v in frame[column].unique())}) if len(frame) else sorted(known)
    grouped = frame.groupby(["day", column])
    counts = (grouped[count].sum() if count else grouped.size()) if len(frame) else pd.Series(dtype="int64")
    return {day: {f"{prefix}/{value}": int(counts.get((day, value), 0)) for value in values} for day in days}


def listing_per_day(listing: pd.DataFrame, days: Sequence[str], held_outcome: str) -> DayFigures:
    """A quarantine listing's figures per day: items held back (`rows_held`, `held/<reason code>`) and items
    changed to fit (`adjusted/<outcome>`). An item held for two reasons counts once in `rows_held`."""
    held = listing[listing["outcome"] == held_outcome]
    held = held.assign(code=reason_code(held["reason"])).drop_duplicates(["day", "item_key", "code"])
    adjusted = listing[listing["outcome"] != held_outcome].drop_duplicates(["day", "item_key", "outcome"])
    by_reason = counts_per_day(held, "code", days, "held")
    by_outcome = counts_per_day(adjusted, "outcome", days, "adjusted")
    items = held.drop_duplicates(["day", "item_key"])["day"].value_counts()
    return {day: {"rows_held": int(items.get(day, 0)), **by_reason[day], **by_outcome[day]} for day in days}


def merge_days(days: Sequence[str], *parts: Mapping[str, Mapping[str, object]]) -> DayFigures:
    return {day: {key: value for part in parts for key, value in part.get(day, {}).items()} for day in days}


def markdown(frame: pd.DataFrame, limit: int = 20, total: int | None = None, cell_chars: int | None = 120) -> str:
    """A Markdown table of the first `limit` rows of `frame` (no tabulate dependency), noting how many rows it leaves
    out of `total` (default: the frame's length; pass it when `frame` is already a sample read with a limit). Cells
    are cut to `cell_chars` (None: whole); an empty frame is `_none_`."""
    if frame.empty:
        return "_none_"
    sample = frame.head(limit)
    total = len(frame) if total is None else total
    header = "| " + " | ".join(str(c) for c in sample.columns) + " |"
    rule = "|" + "---|" * len(sample.columns)
    rows = ["| " + " | ".join(_cell(v, cell_chars) for v in row) + " |" for row in sample.itertuples(index=False)]
    more = [f"\n_…and {total - len(sample)} more_"] if total > len(sample) else []
    return "\n".join([header, rule, *rows, *more])


def _cell(value: object, chars: int | None) -> str:
    text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:chars]
