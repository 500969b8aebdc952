"""React to the shop: observe every source table and refresh today's partition when it moves.

Each tick records an observation per table (row count, high-water marks) so the UI shows the
source's size and freshness. When any high-water mark moved since the last tick, it requests one
run of today's partition (identity, rejections, snapshot, event log, Customer.io sync). The run key names the marks,
so a tick that raises and is retried never launches the same refresh twice.
"""

import hashlib

import dagster as dg
import orjson

from cio_assets.partitions import daily_partitions
from cio_assets.resources import SourceDatabase
from cio_assets.sources.assets import observe_sources

refresh_today = dg.define_asset_job(
    "refresh_today",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("source"),
    description="Rebuild identity and today's snapshot and events after the shop changed, and deliver them.",
)


@dg.sensor(job=refresh_today, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def source_changes(context: dg.SensorEvaluationContext, source: SourceDatabase) -> dg.SensorResult:
    with source.connect() as conn:
        observations = observe_sources(conn)
    marks = {o.asset_key.to_user_string(): {k: v.value for k, v in o.metadata.items()} for o in observations}
    cursor = hashlib.sha256(orjson.dumps(marks, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    if cursor == context.cursor:
        return dg.SensorResult(asset_events=observations, skip_reason="no source table changed since the last tick")
    partition = daily_partitions.get_last_partition_key()
    return dg.SensorResult(
        asset_events=observations,
        run_requests=[dg.RunRequest(run_key=f"{partition}:{cursor}", partition_key=partition)],
        cursor=cursor,
    )
