"""Which days a check on a daily-partitioned asset evaluates, and how a day's count compares with the days before it.

Checks on `attribute_snapshot` and `event_log` are asset-level (Dagster's partitioned checks are a
preview), so each one decides which days it looks at, in this order:

1. the partitions of the run the check runs in: its `dagster/partition` tag, or its
   `dagster/asset_partition_range_start` / `_end` tags (a single-run backfill; `defs/partitions.py` reads
   them). In the run that materialises the asset (the sensor's refresh of today, a backfill, the demo)
   these are exactly the days just written;
2. otherwise (the check launched on its own), the partitions of the run that last materialised
   the asset, read the same way from that run's tags, or else that materialisation's own partition.

The volume checks compare each evaluated day with the `CIO_CHECK_TRAILING_DAYS` days before it
(those present in the table or materialised in the instance; never the first partition, which
also holds all earlier history). A count warns when it is more than `CIO_CHECK_DEVIATION_SIGMAS`
standard deviations from the trailing mean; the deviation is at least the square root of the mean
(counts are at least that noisy), so a quiet series does not warn on a handful of rows. The first
partition is never judged, a day with fewer than `CIO_CHECK_MIN_TRAILING_DAYS` earlier days is not
judged, and today's partition, still in progress, is judged for spikes only.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, Table, distinct, select

from cio_assets.defs.metadata import markdown_table
from cio_assets.defs.partitions import run_partition_keys
from cio_assets.defs.resources import Settings
from cio_assets.lib.chunking import chunks
from cio_assets.lib.days import day_key

OK = "ok"
DROP = "drop"
SPIKE = "spike"
NOT_JUDGED = "not judged"

JUDGEMENT_COLUMNS = ["day", "series", "count", "trailing_mean", "low", "high", "baseline_days", "verdict"]


@dataclass(frozen=True)
class EvaluatedDays:
    keys: tuple[str, ...]
    chosen_by: str  # how the days were chosen, for the metadata

    def metadata(self) -> dict[str, object]:
        if not self.keys:
            shown = "none"
        elif len(self.keys) <= 3:
            shown = ", ".join(self.keys)
        else:
            shown = f"{self.keys[0]}...{self.keys[-1]}"
        return {"days_evaluated": len(self.keys), "evaluated_days": shown, "days_chosen_by": self.chosen_by}


def evaluated_days(
    context: dg.AssetCheckExecutionContext, asset: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> EvaluatedDays:
    """The days a check on `asset` evaluates (see the module docstring)."""
    in_run = run_partition_keys(context.run.tags, partitions)
    if in_run:
        return EvaluatedDays(tuple(in_run), f"the partitions of this run ({context.run.run_id[:8]})")
    page = context.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset), limit=1)
    if not page.records:
        return EvaluatedDays((), f"{asset.to_user_string()} has not been materialised yet")
    record = page.records[0]
    run = context.instance.get_run_by_id(record.run_id)
    latest = run_partition_keys(run.tags, partitions) if run is not None else []
    if latest:
        chosen_by = f"the partitions of the run that last materialised it ({record.run_id[:8]})"
        return EvaluatedDays(tuple(latest), chosen_by)
    partition = record.partition_key
    return EvaluatedDays((partition,) if partition else (), f"its latest materialised partition ({record.run_id[:8]})")


@dataclass(frozen=True)
class Baseline:
    """How counts are judged against the days before them (from the settings)."""

    trailing_days: int
    min_trailing_days: int
    sigmas: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Baseline:
        return cls(settings.check_trailing_days, settings.check_min_trailing_days, settings.check_deviation_sigmas)


def judge_counts(
    counts: pd.DataFrame,
    days: Collection[str],
    known_days: Collection[str],
    baseline: Baseline,
    first_day: str,
    today: str,
) -> pd.DataFrame:
    """Each (evaluated day, series) judged against its trailing days.

    `counts` has columns day, series, count (missing pairs are 0 on a known day). `known_days` are
    the days that hold data (present in the table or materialised): only they form baselines.
    Returns one row per evaluated day and series with JUDGEMENT_COLUMNS; verdict is ok, drop, spike
    or not judged.
    """
    table = {(d, s): int(n) for d, s, n in zip(counts["day"], counts["series"], counts["count"], strict=True)}
    series = sorted(set(counts["series"]))
    known = set(known_days) - {first_day}
    rows = []
    for day in sorted(days):
        earlier = [_shift(day, -offset) for offset in range(1, baseline.trailing_days + 1)]
        base_days = [d for d in earlier if d in known]
        for name in series:
            count = table.get((day, name), 0)
            if day == first_day or len(base_days) < baseline.min_trailing_days:
                rows.append((day, name, count, math.nan, math.nan, math.nan, len(base_days), NOT_JUDGED))
                continue
            values = [table.get((d, name), 0) for d in base_days]
            mean = sum(values) / len(values)
            spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            band = baseline.sigmas * max(spread, math.sqrt(max(mean, 1.0)))
            low, high = mean - band, mean + band
            verdict = SPIKE if count > high else DROP if count < low and day != today else OK
            rows.append((day, name, count, round(mean, 2), round(low, 2), round(high, 2), len(base_days), verdict))
    return pd.DataFrame(rows, columns=JUDGEMENT_COLUMNS)


def volume_result(
    check_name: str, asset: str, judged: pd.DataFrame, days: EvaluatedDays, what: str
) -> dg.AssetCheckResult:
    """A WARN result: passes unless some evaluated day dropped or spiked; metadata names each such day."""
    outliers = judged[judged["verdict"].isin([DROP, SPIKE])]
    not_judged = judged[judged["verdict"] == NOT_JUDGED]
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset,
        passed=outliers.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(outliers)} day/{what} counts outside the trailing mean ± band"
            if not outliers.empty
            else f"every judged day's {what} count is within its trailing band"
        ),
        metadata={
            **days.metadata(),
            "judged": int((judged["verdict"] != NOT_JUDGED).sum()),
            "drops": int((outliers["verdict"] == DROP).sum()),
            "spikes": int((outliers["verdict"] == SPIKE).sum()),
            "not_judged_days": int(not_judged["day"].nunique()),
            "outliers": markdown_table(outliers),
            "counts": markdown_table(judged[judged["verdict"] != NOT_JUDGED].tail(40), limit=40),
        },
    )


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def days_around(days: Collection[str], trailing_days: int) -> list[str]:
    """`days` and the `trailing_days` before each of them: what a volume check reads."""
    window = {_shift(day, -offset) for day in days for offset in range(trailing_days + 1)}
    return sorted(window)


def judge_days(
    counts: pd.DataFrame,
    days: EvaluatedDays,
    present: Collection[str],
    instance: dg.DagsterInstance,
    asset: dg.AssetKey,
    baseline: Baseline,
    partitions: dg.TimeWindowPartitionsDefinition,
    now: datetime,
) -> pd.DataFrame:
    """`judge_counts` for a check: the evaluated days against the days that hold data, the first partition
    (all earlier history) left out, and today judged as still filling."""
    return judge_counts(
        counts,
        days.keys,
        known_days(present, instance, asset),
        baseline,
        partitions.get_first_partition_key(),
        day_key(now, partitions.timezone),
    )


def known_days(present: Collection[str], instance: dg.DagsterInstance, asset: dg.AssetKey) -> set[str]:
    """Days that hold data: present in the table, or materialised in the instance (possibly empty)."""
    return set(present) | instance.get_materialized_partitions(asset)


def days_present(conn: Connection, table: Table, days: Sequence[str]) -> set[str]:
    """Which of `days` have rows in the partitioned state `table`."""
    present: set[str] = set()
    for chunk in chunks(sorted(days), 500):
        present.update(conn.execute(select(distinct(table.c.day)).where(table.c.day.in_(chunk))).scalars())
    return present
