"""React to the shop: when a source table moved, refresh today's partition. The way to run live.

`source_changes` reads each source table's high-water marks every minute: its largest id and its latest
change time (`sources/assets.py`). Its cursor keeps, as JSON, the highest value of every mark it has
seen, and a mark only ever moves forward: a source restored from an older backup, or a future timestamp
corrected, never makes the sensor launch again what it already launched. A run of the `refresh` job for
today's partition is requested only when some mark moved forward; its run key names the marks, so the
same change never launches two runs.

Each table whose marks moved (and every table on the first tick) gets an observation with its row count
and marks, so the UI shows when and how the source changed. The tick also judges the source's freshness
(the newest paid order, `automation.py`) and reports that check whenever its outcome changes: a shop
that stops taking orders warns within a minute of crossing the lag, though no run is launched.

When the source cannot be read (the server down, the database or a table gone), the tick is skipped
with a reason naming the database and its host, and the cursor stays where it was: the first tick that
can read the source again carries on from there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import dagster as dg
import orjson

from cio_assets.automation import AUTOMATION, read_source_freshness, refresh
from cio_assets.partitions import daily_partitions
from cio_assets.resources import DatabaseError, SourceDatabase
from cio_assets.settings import Settings
from cio_assets.sources.assets import observe_sources
from cio_assets.sources.schema_check import SourceSchemaError

Mark = int | str  # a largest id, or a latest change time as ISO text
Marks = dict[str, dict[str, Mark]]  # asset key ("source/orders") -> mark name ("max_id") -> value


@dataclass(frozen=True)
class SourceCursor:
    """What the sensor keeps between ticks."""

    marks: Marks = field(default_factory=dict)  # the highest value of each mark seen, per table
    source_fresh: bool | None = None  # the source freshness outcome last reported; None: never reported

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
        return cls(marks=data.get("marks", {}), source_fresh=fresh if isinstance(fresh, bool) else None)

    def dumps(self) -> str:
        return orjson.dumps(
            {"marks": self.marks, "source_fresh": self.source_fresh}, option=orjson.OPT_SORT_KEYS
        ).decode()


def _rank(value: Mark) -> int | datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def advance(kept: Marks, seen: Marks) -> tuple[Marks, list[str]]:
    """Every mark at the higher of its kept and seen values, and the tables (sorted) where a mark moved
    forward. A mark seen for the first time moves forward; a mark seen lower than kept stays kept."""
    marks = {table: dict(values) for table, values in kept.items()}
    moved = set()
    for table, values in seen.items():
        table_marks = marks.setdefault(table, {})
        for name, value in values.items():
            if name not in table_marks or _rank(value) > _rank(table_marks[name]):
                table_marks[name] = value
                moved.add(table)
    return marks, sorted(moved)


def marks_of(observation: dg.AssetObservation) -> dict[str, Mark]:
    """An observation's high-water marks (`max_id`, `max_updated_at`, ...): not its row count, which
    goes down when rows are deleted."""
    return {key: value.value for key, value in observation.metadata.items() if key.startswith("max_")}  # type: ignore[misc]


def run_key(partition: str, marks: Marks) -> str:
    digest = hashlib.sha256(orjson.dumps(marks, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"{partition}:{digest}"


@dg.sensor(
    job=refresh,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING if AUTOMATION.running else dg.DefaultSensorStatus.STOPPED,
    description=(
        "Run live: every minute, read each source table's high-water marks (largest id, latest change time) and "
        "refresh today's partition when any moved forward. Also reports the source's freshness check when its "
        "outcome changes. A source it cannot read skips the tick, keeping its place. Runs by default; "
        "CIO_AUTOMATION=off (as in `make dev`) leaves it for the UI to turn on."
    ),
)
def source_changes(context: dg.SensorEvaluationContext, source: SourceDatabase, settings: Settings) -> dg.SensorResult:
    kept = SourceCursor.parse(context.cursor)
    try:
        with source.connect() as conn:
            observations = observe_sources(conn)
            freshness = read_source_freshness(conn, source, settings)
    except (DatabaseError, SourceSchemaError) as error:
        context.log.warning(f"Skipped: {error}")
        return dg.SensorResult(skip_reason=f"The source could not be read; the cursor stays where it was. {error}")

    seen = {o.asset_key.to_user_string(): marks_of(o) for o in observations}
    marks, moved = advance(kept.marks, seen)
    events: list[dg.AssetObservation | dg.AssetCheckEvaluation] = [
        o
        for o in observations
        if o.asset_key.to_user_string() in moved or o.asset_key.to_user_string() not in kept.marks
    ]
    if freshness.passed != kept.source_fresh:
        events.append(freshness.evaluation())
    cursor = SourceCursor(marks, freshness.passed).dumps()
    if not moved:
        return dg.SensorResult(
            asset_events=events, cursor=cursor, skip_reason="No high-water mark moved forward: nothing to refresh"
        )
    partition = daily_partitions.get_last_partition_key()
    changed = ", ".join(key.removeprefix("source/") for key in moved)
    request = dg.RunRequest(
        run_key=run_key(partition, marks), partition_key=partition, tags={"cio/changed_tables": changed}
    )
    return dg.SensorResult(run_requests=[request], asset_events=events, cursor=cursor)
