"""The pipeline's Dagster objects as the tests use them: daily partitions from 2026-10-01 in UTC, and every other
setting from the environment the suite runs in (the defaults, in CI).

The assets, checks, sensors and schedule come from the same factories `defs/` builds the code location with,
unbound to resources, so that each test passes its own resources; `defs` is the code location itself, as
`build_definitions` builds it. (`conftest.py` puts the same partitions in the environment, for the processes the
tests start.)
"""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from cio_assets.config import Environment, PartitionSettings
from cio_assets.defs import build_definitions
from cio_assets.defs.assets.attribute_snapshot import attribute_snapshot_asset
from cio_assets.defs.assets.customerio_events import customerio_events_asset
from cio_assets.defs.assets.customerio_people import customerio_people_asset
from cio_assets.defs.assets.event_log import event_log_asset
from cio_assets.defs.assets.identity_map import identity_map
from cio_assets.defs.assets.rejected_rows import rejected_rows
from cio_assets.defs.automation.read_back import read_back_sensor
from cio_assets.defs.automation.schedule import finalize_yesterday_schedule
from cio_assets.defs.automation.sensor import source_changes_sensor
from cio_assets.defs.checks.attribute_snapshot import attribute_snapshot_checks as _attribute_snapshot_checks
from cio_assets.defs.checks.event_log import event_log_checks as _event_log_checks
from cio_assets.defs.partitions import daily_partitions as _daily_partitions
from cio_assets.defs.resources import CustomerIO, resources

TEST_PARTITIONS = PartitionSettings(start_date="2026-10-01", business_tz="UTC")
ENV = replace(Environment.read(), partitions=TEST_PARTITIONS)
daily_partitions = _daily_partitions(ENV.partitions)
defs: dg.Definitions = build_definitions(ENV)

attribute_snapshot = attribute_snapshot_asset(daily_partitions)
event_log = event_log_asset(daily_partitions)
customerio_people = customerio_people_asset(daily_partitions)
customerio_events = customerio_events_asset(daily_partitions)
attribute_snapshot_checks = _attribute_snapshot_checks(daily_partitions)
event_log_checks = _event_log_checks(daily_partitions)
source_changes = source_changes_sensor(daily_partitions, ENV.automation)
finalize_yesterday = finalize_yesterday_schedule(daily_partitions, ENV.automation)
read_back_after_sync = read_back_sensor(ENV.automation)

__all__ = ["identity_map", "rejected_rows"]


def customerio_resource() -> CustomerIO:
    """The `customerio` resource as the definitions build it from the environment as it is now."""
    return resources(Environment.read())["customerio"]  # type: ignore[return-value]
