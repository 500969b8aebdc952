"""All Dagster wiring: the resources, the partitions, one module per asset, the checks and the automation.

Nothing else in the package imports this one. The stages below it take engines, clients and plain values; here
they become assets, checks, jobs, sensors and a schedule. `build_definitions(env)` puts everything together
from the settings read from the environment (`config.Environment.read()`, called by `definitions.py`).
"""

from __future__ import annotations

import dagster as dg

from cio_assets.config import Environment
from cio_assets.defs.assets.attribute_snapshot import attribute_snapshot_asset
from cio_assets.defs.assets.customerio_events import customerio_events_asset
from cio_assets.defs.assets.customerio_people import customerio_people_asset
from cio_assets.defs.assets.event_log import event_log_asset
from cio_assets.defs.assets.identity_map import identity_map
from cio_assets.defs.assets.rejected_rows import rejected_rows
from cio_assets.defs.assets.sources import source_tables
from cio_assets.defs.automation.freshness import sync_freshness_policy, with_sync_freshness
from cio_assets.defs.automation.job import read_back, refresh
from cio_assets.defs.automation.read_back import read_back_sensor
from cio_assets.defs.automation.schedule import finalize_yesterday_schedule
from cio_assets.defs.automation.sensor import source_changes_sensor
from cio_assets.defs.checks import build_checks
from cio_assets.defs.executor import executor_named
from cio_assets.defs.partitions import daily_partitions
from cio_assets.defs.resources import resources


def build_definitions(env: Environment) -> dg.Definitions:
    """The code location: every asset, check, job, sensor, schedule and resource, shaped by `env`."""
    partitions = daily_partitions(env.partitions)
    # Asset order is the pipeline's: MySQL sources → hygiene and identity → snapshot and event log → Customer.io.
    pipeline = [rejected_rows, identity_map, attribute_snapshot_asset(partitions), event_log_asset(partitions)]
    syncs = [customerio_people_asset(partitions), customerio_events_asset(partitions)]
    return dg.Definitions(
        # Code references: the catalog links each asset to the function that computes it.
        assets=dg.with_source_code_references(
            [
                *source_tables(env.source.spec()),
                *pipeline,
                *with_sync_freshness(syncs, sync_freshness_policy(env.automation)),
            ]
        ),
        asset_checks=build_checks(partitions, owned=pipeline),
        # `refresh` delivers; `read_back` reads the latest people sync back, in a run of its own.
        jobs=[refresh, read_back],
        schedules=[finalize_yesterday_schedule(partitions, env.automation)],
        sensors=[source_changes_sensor(partitions, env.automation), read_back_sensor(env.automation)],
        resources=resources(env),
        # CIO_EXECUTOR: in_process (the default, and the demo's), multiprocess or celery.
        executor=executor_named(env.automation.executor),
    )
