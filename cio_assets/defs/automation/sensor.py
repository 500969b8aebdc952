"""React to the shop: when a source table moved, or a cart went idle, refresh the partition. The way to run live.

`source_changes` ticks every `CIO_SENSOR_INTERVAL_SECONDS` (5 s by default). Each tick reads every source
table's marks (`tracking/marks.py`): its largest id and latest change time (the high-water marks), its row count,
and a digest of the rows changed within the look-back window before its newest change (`changed_lately`). Its
cursor keeps them as JSON. A high-water mark only ever moves forward: a source restored from an older backup, or
a future timestamp corrected, never makes the sensor launch again what it already launched. The row count and
the digest count when they differ at all: a delete changes the count, and an edit stamped in the same second as
the newest change seen, or committed late under an earlier stamp, changes the digest though no high-water mark
moves. A run of the `refresh` job for today's partition is requested when some mark moved; its run key names
the marks, so the same change never launches two runs.

`cart_abandoned` is driven by the clock, not by a change: a cart becomes abandoned when its last activity
plus `CIO_CART_IDLE_MINUTES` passes, with nothing written to the shop. So each tick also looks for carts
whose idle deadline fell between the previous tick's check and now (`events/idle_carts.py`, the rule the event
log applies), and requests a refresh of the partition each such deadline falls in. The cursor keeps the moment
checked.

One run at a time per partition: while a run that covers a partition the tick would refresh is queued or
running, the tick is skipped and its cursor stays where it was, so the first tick after that run finishes
launches everything that changed meanwhile (two runs of one partition would rebuild the same rows and race
to deliver them).

Each table whose marks moved (and every table on the first tick) gets an observation with its row count
and marks, so the UI shows when and how the source changed. The tick also judges the source's freshness
(the newest paid order, `defs/checks/source.py`) and reports that check whenever its outcome changes.

When the source cannot be read (the server down, the database or a table gone), the tick is skipped
with a reason naming the database and its host, and the cursor stays where it was: the first tick that
can read the source again carries on from there, carts that went idle meanwhile included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import dagster as dg
import orjson
from sqlalchemy import Engine

from cio_assets.config import AutomationSettings
from cio_assets.defs.assets.sources import observation
from cio_assets.defs.automation.capture import BinlogTick, read_binlog
from cio_assets.defs.automation.job import FULL_REFRESH, refresh
from cio_assets.defs.catalog import source_key
from cio_assets.defs.checks.source import read_source_freshness
from cio_assets.defs.partitions import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG, history, run_covers
from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets.events.idle_carts import idle_deadlines
from cio_assets.lib.engines import DatabaseError
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.mapping.check import SourceSchemaError
from cio_assets.schema.shop import CONCEPTS, SOURCE_TABLES
from cio_assets.tracking.marks import observe_all

Mark = int | str  # a largest id, a latest change time as ISO text, a row count, a digest of the rows changed lately
Marks = dict[str, dict[str, Mark]]  # asset key ("source/orders") -> mark name ("max_id") -> value
# The marks that only move forward (the high-water marks); the others (the row count, LATELY) count as moved when
# they differ.
FORWARD = "max_"

# Runs that may still write a partition's rows or deliver them.
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass(frozen=True)
class SourceCursor:
    """What the sensor keeps between ticks."""

    marks: Marks = field(default_factory=dict)  # the highest value of each mark seen, per table
    source_fresh: bool | None = None  # the source freshness outcome last reported; None: never reported
    # Carts whose idle deadline passed up to this moment (ISO, UTC) have been launched; None: never checked.
    carts_checked_at: str | None = None
    # Where binlog capture reads from next ({"file", "pos"}, CIO_CHANGE_CAPTURE=binlog); None: not started.
    binlog: dict[str, object] | None = None

    @classmethod
    def parse(cls, raw: str | None) -> SourceCursor:
        """The cursor from its JSON. An empty or unreadable one (an older sensor's) starts afresh."""
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            data = {}
        if not isinstance(data, dict) or not isinstance(data.get("marks", {}), dict):
            return cls()
        fresh = data.get("source_fresh")
        checked = data.get("carts_checked_at")
        binlog = data.get("binlog")
        return cls(
            marks=data.get("marks", {}),
            source_fresh=fresh if isinstance(fresh, bool) else None,
            carts_checked_at=checked if isinstance(checked, str) and _is_instant(checked) else None,
            binlog=binlog if isinstance(binlog, dict) and {"file", "pos"} <= set(binlog) else None,
        )

    def dumps(self) -> str:
        data = {
            "marks": self.marks,
            "source_fresh": self.source_fresh,
            "carts_checked_at": self.carts_checked_at,
            "binlog": self.binlog,
        }
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


def _is_instant(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _rank(value: Mark) -> int | datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def advance(kept: Marks, seen: Marks) -> tuple[Marks, list[str]]:
    """Every high-water mark at the higher of its kept and seen values, every other mark at its seen value, and
    the tables (sorted) where a mark moved: a high-water mark forward, another to a different value. A mark seen for
    the first time moves (a row count of 0 excepted); a high-water mark seen lower than kept stays kept."""
    marks = {table: dict(values) for table, values in kept.items()}
    moved = set()
    for table, values in seen.items():
        table_marks = marks.setdefault(table, {})
        for name, value in values.items():
            if name.startswith(FORWARD):
                changed = name not in table_marks or _rank(value) > _rank(table_marks[name])
            else:  # a table never counted before had no rows
                changed = value != table_marks.get(name, 0 if name == "row_count" else None)
            if changed:
                table_marks[name] = value
                moved.add(table)
    return marks, sorted(moved)


def marks_of(observed: dict[str, object]) -> dict[str, Mark]:
    """What the cursor keeps of a table's observation: every mark that has a value (an empty table's maxima
    have none)."""
    return {name: value for name, value in observed.items() if value is not None}  # type: ignore[misc]


def run_key(partition: str, marks: Marks) -> str:
    digest = hashlib.sha256(orjson.dumps(marks, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"{partition}:{digest}"


# ---------------------------------------------------------------------------------------------------------
# One run at a time per partition
# ---------------------------------------------------------------------------------------------------------


def run_in_flight(instance: dg.DagsterInstance, partitions: Sequence[str]) -> dg.DagsterRun | None:
    """A queued or running run that covers one of `partitions`, if any."""
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        if any(run_covers(record.dagster_run.tags, partition) for partition in partitions):
            return record.dagster_run
    return None


def _waiting(run: dg.DagsterRun) -> dg.SensorResult:
    partition = run.tags.get(PARTITION_TAG) or f"{run.tags.get(RANGE_START_TAG)}...{run.tags.get(RANGE_END_TAG)}"
    return dg.SensorResult(
        skip_reason=(
            f"Run {run.run_id} ({run.job_name}, {partition}) is {run.status.value.lower()}: one run at a time per "
            "partition, so this tick waits and the cursor stays where it was; the first tick after that run "
            "finishes launches what changed meanwhile."
        )
    )


# ---------------------------------------------------------------------------------------------------------
# The sensor
# ---------------------------------------------------------------------------------------------------------


def _kept_in(state: StateDatabase, context: dg.SensorEvaluationContext) -> Engine | None:
    """The state database, where the marks are kept between ticks (`tracking/marks.py`); None when it cannot be
    reached: the tick then reads every mark, as it would without it."""
    try:
        return state.engine
    except DatabaseError as error:
        context.log.warning(f"Every mark is read this tick: {error}")
        return None


def source_changes_sensor(
    partitions: dg.TimeWindowPartitionsDefinition, automation: AutomationSettings
) -> dg.SensorDefinition:
    @dg.sensor(
        job=refresh,
        minimum_interval_seconds=automation.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if automation.running else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Run live: every {automation.variable('sensor_interval_seconds')} seconds "
            f"({automation.sensor_interval_seconds} here), "
            "read each source table's marks (largest id and latest change time, row count, and the rows changed "
            "within the look-back window, CIO_CHANGE_LOOKBACK_SECONDS) and refresh today's partition when any "
            "moved (a same-second edit, a late commit and a delete included), or when a cart crossed the idle "
            "window (cart_abandoned) since the last tick. One run at a time per partition: while one is queued or "
            "running, ticks wait, keeping their place. Also reports the source's freshness check when its outcome "
            "changes. A source it cannot read skips the tick, keeping its place. Runs by default; "
            "CIO_AUTOMATION=off (as in `make dev`) leaves it for the UI to turn on."
        ),
    )
    def source_changes(
        context: dg.SensorEvaluationContext, source: SourceDatabase, state: StateDatabase, settings: Settings
    ) -> dg.SensorResult:
        today = partitions.get_last_partition_key()
        # Most ticks while a run is going end here, before reading the shop at all.
        if busy := run_in_flight(context.instance, [today]):
            return _waiting(busy)

        kept = SourceCursor.parse(context.cursor)
        now = utc_now()
        checked = datetime.fromisoformat(kept.carts_checked_at) if kept.carts_checked_at else None
        try:
            state_engine = _kept_in(state, context)
            with source.connect() as conn:
                clock = settings.clock(now, source.mapping_spec)
                observed = observe_all(conn, clock, SOURCE_TABLES, state_engine)
                freshness = read_source_freshness(conn, source, settings, state_engine)
                idle = (
                    idle_deadlines(
                        conn, settings.zones(source.mapping_spec), settings.cart_idle, settings.chunk_size, checked, now
                    )
                    if checked is not None and checked < now
                    else []
                )
        except (DatabaseError, SourceSchemaError) as error:
            context.log.warning(f"Skipped: {error}")
            return dg.SensorResult(skip_reason=f"The source could not be read; the cursor stays where it was. {error}")
        binlog = (
            read_binlog(source, state_engine, kept.binlog, unix(now), context.log.warning)
            if automation.change_capture == "binlog"
            else BinlogTick(None)
        )

        observations = [observation(table, observed[str(table.name)]) for table in SOURCE_TABLES]
        seen = {source_key(table).to_user_string(): marks_of(observed[str(table.name)]) for table in SOURCE_TABLES}
        marks, moved = advance(kept.marks, seen)
        # What binlog capture saw change counts as moved too: an order line edited in place, a deleted row.
        moved = sorted({*moved, *(source_key(CONCEPTS[name]).to_user_string() for name in binlog.changed)})
        idle_by_partition: dict[str, int] = {}
        placing = history(partitions)
        for deadline in idle:
            key = placing.key_of(deadline)
            idle_by_partition[key] = idle_by_partition.get(key, 0) + 1
        due = sorted({*idle_by_partition, *([today] if moved or binlog.purged else [])})
        if due != [today] and (busy := run_in_flight(context.instance, due)):
            return _waiting(busy)

        events: list[dg.AssetObservation | dg.AssetCheckEvaluation] = [
            o
            for o in observations
            if o.asset_key.to_user_string() in moved or o.asset_key.to_user_string() not in kept.marks
        ]
        if freshness.passed != kept.source_fresh:
            events.append(freshness.evaluation())
        cursor = SourceCursor(marks, freshness.passed, now.isoformat(), binlog.position).dumps()
        if not due:
            return dg.SensorResult(
                asset_events=events,
                cursor=cursor,
                skip_reason=(
                    "No mark moved (no high-water mark forward, no row count or rows changed lately different) and no "
                    "cart crossed the idle window: nothing to refresh"
                ),
            )
        changed = ", ".join(key.removeprefix("source/") for key in moved)
        requests = []
        for partition in due:
            tags = {}
            run_config = None
            if partition == today and (moved or binlog.purged):
                tags["cio/changed_tables"] = changed
                key = run_key(partition, {**marks, "binlog": binlog.position or {}})  # type: ignore[dict-item]
                if binlog.purged:
                    tags["cio/full_refresh"] = "the saved binlog position was purged from the server"
                    run_config = FULL_REFRESH
            else:
                key = f"{partition}:carts_idle_through:{now.isoformat()}"
            if partition in idle_by_partition:
                tags["cio/carts_gone_idle"] = str(idle_by_partition[partition])
            requests.append(dg.RunRequest(run_key=key, partition_key=partition, tags=tags, run_config=run_config))
        return dg.SensorResult(run_requests=requests, asset_events=events, cursor=cursor)

    return source_changes
