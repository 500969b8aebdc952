"""Checks on `attribute_snapshot`, over the days chosen as in `defs/checks/days.py`.

- `attribute_snapshot_one_row_per_person_day` (ERROR, blocking: `customerio_people` does not run
  after it fails): a person has at most one row per day, so Customer.io never gets two states of
  one person for the same moment.
- `attribute_snapshot_null_rates` (WARN): among rows of people with paid orders, the share of
  nulls of each attribute named in `CIO_CHECK_MAX_NULL_RATES` stays under its share.
- `attribute_snapshot_volume` (WARN): the people changed per day (rows per day) against the
  trailing mean.
"""

from collections.abc import Mapping, Sequence

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, func, select
from sqlalchemy import case as sql_case

from cio_assets.defs.checks.days import (
    Baseline,
    EvaluatedDays,
    days_around,
    days_present,
    evaluated_days,
    judge_days,
    volume_result,
)
from cio_assets.defs.metadata import markdown_table
from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets.lib.chunking import chunks
from cio_assets.lib.timestamps import utc_now
from cio_assets.mapping.spec import MappingSpec
from cio_assets.schema.columns import copied_column
from cio_assets.schema.state import attribute_snapshot as snapshot_table

ASSET = "attribute_snapshot"
ONE_ROW = "attribute_snapshot_one_row_per_person_day"
NULL_RATES = "attribute_snapshot_null_rates"
VOLUME = "attribute_snapshot_volume"
PEOPLE = "people_changed"


def read_repeated_people(conn: Connection, days: Sequence[str]) -> pd.DataFrame:
    """day, person_id, rows: people with more than one row on one of `days`."""
    t = snapshot_table
    frames = []
    for chunk in chunks(sorted(days), 500):
        result = conn.execute(
            select(t.c.day, t.c.person_id, func.count().label("rows"))
            .where(t.c.day.in_(chunk))
            .group_by(t.c.day, t.c.person_id)
            .having(func.count() > 1)
            .order_by(t.c.day, t.c.person_id)
        )
        frames.append(pd.DataFrame(result.fetchall(), columns=["day", "person_id", "rows"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["day", "person_id", "rows"])


def read_nulls(conn: Connection, days: Sequence[str], attributes: Sequence[str]) -> pd.DataFrame:
    """day, people (rows of people with paid orders), then one column of null counts per attribute."""
    t = snapshot_table
    columns = ["day", "people", *attributes]
    frames = []
    for chunk in chunks(sorted(days), 500):
        result = conn.execute(
            select(
                t.c.day,
                func.count().label("people"),
                *(func.sum(sql_case((t.c[a].is_(None), 1), else_=0)).label(a) for a in attributes),
            )
            .where(t.c.day.in_(chunk), t.c.total_orders > 0)
            .group_by(t.c.day)
        )
        frames.append(pd.DataFrame(result.fetchall(), columns=columns))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return frame.astype({c: "int64" for c in columns[1:]})


def read_people_per_day(conn: Connection, days: Sequence[str]) -> pd.DataFrame:
    """day, series, count: the people changed (rows) per day."""
    t = snapshot_table
    frames = []
    for chunk in chunks(sorted(days), 500):
        result = conn.execute(select(t.c.day, func.count()).where(t.c.day.in_(chunk)).group_by(t.c.day))
        frames.append(pd.DataFrame(result.fetchall(), columns=["day", "count"]))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["day", "count"])
    return frame.assign(series=PEOPLE)[["day", "series", "count"]]


def one_row_result(repeated: pd.DataFrame, days: EvaluatedDays) -> dg.AssetCheckResult:
    """ERROR when a person has more than one row on a day."""
    return dg.AssetCheckResult(
        check_name=ONE_ROW,
        asset_key=ASSET,
        passed=repeated.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "Exactly one row per person and day"
            if repeated.empty
            else f"{len(repeated)} (person, day) pairs have more than one row: their state is ambiguous"
        ),
        metadata={
            **days.metadata(),
            "repeated_person_days": len(repeated),
            "repeated_people": int(repeated["person_id"].nunique()) if not repeated.empty else 0,
            "repeated_sample": markdown_table(repeated),
        },
    )


def judged_rates(max_rates: Mapping[str, float], mapping: MappingSpec) -> tuple[dict[str, float], dict[str, str]]:
    """The attributes whose null rate means something in this shop, and those left unjudged with why: one that
    copies a source column the mapping leaves out is null for everyone (WooCommerce keeps no product category)."""
    judged, unjudged = {}, {}
    for attribute, rate in max_rates.items():
        copied = copied_column(snapshot_table.c[attribute])
        if copied is not None and not mapping.maps(*copied):
            unjudged[attribute] = f"{mapping.shown} does not map {'.'.join(copied)}"
        else:
            judged[attribute] = rate
    return judged, unjudged


def null_rates_result(
    nulls: pd.DataFrame, max_rates: Mapping[str, float], days: EvaluatedDays, unjudged: Mapping[str, str]
) -> dg.AssetCheckResult:
    """WARN when an attribute's null share among people with paid orders, over the days, passes its maximum."""
    people = int(nulls["people"].sum())
    rates = {a: (int(nulls[a].sum()) / people if people else 0.0) for a in max_rates}
    over = {a: rate for a, rate in rates.items() if rate > max_rates[a]}
    per_day = nulls.assign(**{f"{a}_rate": (nulls[a] / nulls["people"]).round(4) for a in max_rates})
    worst_days = per_day[
        pd.concat([per_day[f"{a}_rate"] > max_rates[a] for a in max_rates], axis=1).any(axis=1)
        if max_rates and not per_day.empty
        else pd.Series(False, index=per_day.index)
    ]
    return dg.AssetCheckResult(
        check_name=NULL_RATES,
        asset_key=ASSET,
        passed=not over,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "Every key attribute's null rate among people with paid orders is under its maximum"
            if not over
            else "Null rate above CIO_CHECK_MAX_NULL_RATES: "
            + ", ".join(f"{a} {rate:.1%} > {max_rates[a]:.1%}" for a, rate in over.items())
        ),
        metadata={
            **days.metadata(),
            "rows_with_paid_orders": people,
            **{f"null_rate_{a}": round(rate, 4) for a, rate in rates.items()},
            **{f"max_null_rate_{a}": float(max_rates[a]) for a in max_rates},
            "attributes_over": len(over),
            "days_over": markdown_table(worst_days),
            "not_judged": dict(unjudged),
        },
    )


def attribute_snapshot_checks(partitions: dg.TimeWindowPartitionsDefinition) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                ONE_ROW,
                asset=ASSET,
                blocking=True,
                description=(
                    "Error, blocking delivery: a person with more than one row on a day. Evaluates the partitions of "
                    "the run that materialised attribute_snapshot (its partition tags), else the latest materialised "
                    "partition."
                ),
            ),
            dg.AssetCheckSpec(
                NULL_RATES,
                asset=ASSET,
                description=(
                    "Warns when, over the evaluated days, an attribute's null rate among people with paid orders "
                    "passes its share in CIO_CHECK_MAX_NULL_RATES."
                ),
            ),
            dg.AssetCheckSpec(
                VOLUME,
                asset=ASSET,
                description=(
                    "Warns when the people changed on a day leave the trailing mean ± CIO_CHECK_DEVIATION_SIGMAS "
                    "deviations over CIO_CHECK_TRAILING_DAYS (today: spikes only)."
                ),
            ),
        ],
        name="attribute_snapshot_checks",
    )
    def attribute_snapshot_checks(
        context: dg.AssetCheckExecutionContext, state: StateDatabase, settings: Settings, source: SourceDatabase
    ):
        asset = dg.AssetKey(ASSET)
        days = evaluated_days(context, asset, partitions)
        max_rates, unjudged = judged_rates(settings.max_null_rates, source.mapping_spec)
        baseline = Baseline.from_settings(settings)
        window = days_around(days.keys, baseline.trailing_days)
        with state.connect() as conn:
            repeated = read_repeated_people(conn, days.keys)
            nulls = read_nulls(conn, days.keys, list(max_rates))
            counts = read_people_per_day(conn, window)
            present = days_present(conn, snapshot_table, window)
        yield one_row_result(repeated, days)
        yield null_rates_result(nulls, max_rates, days, unjudged)
        judged = judge_days(counts, days, present, context.instance, asset, baseline, partitions, utc_now())
        yield volume_result(VOLUME, ASSET, judged, days, "people changed")

    return attribute_snapshot_checks
