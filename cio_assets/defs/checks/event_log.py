"""Checks on `event_log`, over the days chosen as in `defs/checks/days.py`.

- `event_log_integrity` (ERROR, blocking: `customerio_events` does not run after it fails): no
  `event_id` twice, and every timestamp inside its partition's day (the first partition also owns
  everything earlier), not in the future and not before `CIO_TIMESTAMP_FLOOR`.
- `event_log_volume` (WARN): each event name's count per day against its trailing mean.
"""

from collections.abc import Mapping, Sequence

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, func, inspect, literal, or_, select
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
from cio_assets.defs.partitions import partition_range
from cio_assets.defs.resources import Settings, StateDatabase
from cio_assets.lib.chunking import chunks
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.schema.state import event_log as events_table

ASSET = "event_log"
INTEGRITY = "event_log_integrity"
VOLUME = "event_log_volume"

BEFORE_FLOOR = "before_floor"
IN_FUTURE = "in_future"
OUTSIDE_DAY = "outside_partition_day"
PROBLEMS = (BEFORE_FLOOR, IN_FUTURE, OUTSIDE_DAY)
SAMPLE_ROWS = 20


def read_duplicate_ids(conn: Connection, days: Sequence[str]) -> pd.DataFrame:
    """event_id, copies, first_day: ids stored more than once with at least one copy in `days`.

    While `event_id` is the table's primary key the database refuses a second copy, so there is nothing to
    scan (a scan of every id of a year's log took about a minute at 100,000 customers); the ids are scanned
    only when someone changed the key by hand."""
    columns = ["event_id", "copies", "first_day"]
    if ids_are_primary_key(conn):
        return pd.DataFrame(columns=columns)
    t = events_table
    frames = []
    for chunk in chunks(sorted(days), 500):
        in_days = select(t.c.event_id).where(t.c.day.in_(chunk))
        result = conn.execute(
            select(t.c.event_id, func.count().label("copies"), func.min(t.c.day).label("first_day"))
            .where(t.c.event_id.in_(in_days))
            .group_by(t.c.event_id)
            .having(func.count() > 1)
            .order_by(t.c.event_id)
        )
        frames.append(pd.DataFrame(result.fetchall(), columns=columns))
    return pd.concat(frames, ignore_index=True).drop_duplicates("event_id") if frames else pd.DataFrame(columns=columns)


def ids_are_primary_key(conn: Connection) -> bool:
    """Whether the stored table's primary key is exactly `event_id` (as the pipeline creates it)."""
    key = inspect(conn).get_pk_constraint(events_table.name)
    return list(key.get("constrained_columns") or []) == ["event_id"]


def read_bad_timestamps(
    conn: Connection, days: Sequence[str], floor: int, now: int, partitions: dg.TimeWindowPartitionsDefinition
) -> tuple[dict[str, int], pd.DataFrame]:
    """({problem: events}, a sample of event_id, day, name, timestamp, problem) over `days`."""
    t = events_table
    counts: dict[str, int] = dict.fromkeys(PROBLEMS, 0)
    samples: list[pd.DataFrame] = []
    # Judging every row against its own day's bounds takes a CASE over the days, whose cost grows with rows
    # times days; first find the few days whose earliest or latest timestamp is out of bounds (one pass).
    for chunk in chunks(_days_out_of_bounds(conn, days, floor, now, partitions), 200):
        problem = _problem(chunk, floor, now, partitions)
        rows = conn.execute(
            select(problem.label("problem"), func.count())
            .where(t.c.day.in_(chunk), problem.is_not(None))
            .group_by(problem)
        )
        for name, n in rows:
            counts[name] += int(n)
        result = conn.execute(
            select(t.c.event_id, t.c.day, t.c.name, t.c.timestamp, problem.label("problem"))
            .where(t.c.day.in_(chunk), problem.is_not(None))
            .order_by(t.c.day, t.c.event_id)
            .limit(SAMPLE_ROWS)
        )
        samples.append(pd.DataFrame(result.fetchall(), columns=["event_id", "day", "name", "timestamp", "problem"]))
    sample = pd.concat(samples, ignore_index=True).head(SAMPLE_ROWS) if samples else pd.DataFrame()
    return counts, sample


def _days_out_of_bounds(
    conn: Connection, days: Sequence[str], floor: int, now: int, partitions: dg.TimeWindowPartitionsDefinition
) -> list[str]:
    """The days among `days` holding at least one event whose timestamp is out of bounds (before the floor,
    in the future, outside the day), from each day's earliest and latest timestamp."""
    t = events_table
    first = partitions.get_first_partition_key()
    flagged = []
    for chunk in chunks(sorted(days), 500):
        bounds = {d.key: d for d in partition_range(partitions, list(chunk)).days}
        rows = conn.execute(
            select(t.c.day, func.min(t.c.timestamp), func.max(t.c.timestamp))
            .where(t.c.day.in_(chunk))
            .group_by(t.c.day)
        )
        for day, earliest, latest in rows:
            window = bounds[day]
            start = floor if day == first else max(floor, unix(window.start))
            if int(earliest) < start or int(latest) >= unix(window.end) or int(latest) > now:
                flagged.append(day)
    return flagged


def _problem(days: Sequence[str], floor: int, now: int, partitions: dg.TimeWindowPartitionsDefinition):
    """SQL: why an event's timestamp is out of bounds for its day, or NULL when it is not."""
    t = events_table
    first = partitions.get_first_partition_key()
    windows = partition_range(partitions, list(days)).days
    # The first partition also owns every earlier moment: its only lower bound is the floor.
    starts = {d.key: unix(d.start) for d in windows if d.key != first}
    start = sql_case(starts, value=t.c.day, else_=floor) if starts else literal(floor)
    end = sql_case({d.key: unix(d.end) for d in windows}, value=t.c.day, else_=literal(0))
    return sql_case(
        (t.c.timestamp < floor, BEFORE_FLOOR),
        (t.c.timestamp > now, IN_FUTURE),
        (or_(t.c.timestamp < start, t.c.timestamp >= end), OUTSIDE_DAY),
        else_=None,
    )


def read_counts(conn: Connection, days: Sequence[str]) -> pd.DataFrame:
    """day, series (event name), count over `days`."""
    t = events_table
    frames = []
    for chunk in chunks(sorted(days), 500):
        result = conn.execute(
            select(t.c.day, t.c.name, func.count()).where(t.c.day.in_(chunk)).group_by(t.c.day, t.c.name)
        )
        frames.append(pd.DataFrame(result.fetchall(), columns=["day", "series", "count"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["day", "series", "count"])


def integrity_result(
    duplicates: pd.DataFrame, problems: Mapping[str, int], sample: pd.DataFrame, days: EvaluatedDays
) -> dg.AssetCheckResult:
    """ERROR when any event_id is stored twice or any timestamp is outside its bounds."""
    bad = sum(problems.values())
    passed = duplicates.empty and bad == 0
    parts = []
    if not duplicates.empty:
        parts.append(f"{len(duplicates)} event ids stored more than once")
    parts.extend(f"{problems[p]} {p.replace('_', ' ')}" for p in PROBLEMS if problems.get(p))
    return dg.AssetCheckResult(
        check_name=INTEGRITY,
        asset_key=ASSET,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "No duplicate event ids; every timestamp inside its day, not in the future, not before the floor"
            if passed
            else "Events out of bounds: " + "; ".join(parts)
        ),
        metadata={
            **days.metadata(),
            "duplicate_event_ids": len(duplicates),
            **{p: int(problems.get(p, 0)) for p in PROBLEMS},
            "duplicates_sample": markdown_table(duplicates),
            "timestamps_sample": markdown_table(_with_time(sample)),
        },
    )


def event_log_checks(partitions: dg.TimeWindowPartitionsDefinition) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                INTEGRITY,
                asset=ASSET,
                blocking=True,
                description=(
                    "Error, blocking delivery: an event_id stored twice, or a timestamp outside its partition's day, "
                    "in the future or before CIO_TIMESTAMP_FLOOR. Evaluates the partitions of the run that "
                    "materialised event_log (its partition tags), else the latest materialised partition."
                ),
            ),
            dg.AssetCheckSpec(
                VOLUME,
                asset=ASSET,
                description=(
                    "Warns when an event name's count for a day leaves its trailing mean ± "
                    "CIO_CHECK_DEVIATION_SIGMAS deviations over CIO_CHECK_TRAILING_DAYS (today: spikes only). "
                    "Evaluates the same days as event_log_integrity."
                ),
            ),
        ],
        name="event_log_checks",
    )
    def event_log_checks(context: dg.AssetCheckExecutionContext, state: StateDatabase, settings: Settings):
        asset = dg.AssetKey(ASSET)
        days = evaluated_days(context, asset, partitions)
        baseline = Baseline.from_settings(settings)
        now = utc_now()
        with state.connect() as conn:
            duplicates = read_duplicate_ids(conn, days.keys)
            problems, sample = read_bad_timestamps(conn, days.keys, unix(settings.floor_utc), unix(now), partitions)
            window = days_around(days.keys, baseline.trailing_days)
            counts = read_counts(conn, window)
            present = days_present(conn, events_table, window)
        yield integrity_result(duplicates, problems, sample, days)
        judged = judge_days(counts, days, present, context.instance, asset, baseline, partitions, now)
        yield volume_result(VOLUME, ASSET, judged, days, "event name")

    return event_log_checks


def _with_time(sample: pd.DataFrame) -> pd.DataFrame:
    """The sample with each Unix timestamp also as a UTC time, so a reader sees at once which day it falls in."""
    if sample.empty:
        return sample
    at = pd.to_datetime(sample["timestamp"].astype("int64"), unit="s", utc=True).dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    return sample.assign(utc=at)
