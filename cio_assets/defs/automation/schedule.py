"""`finalize_yesterday`: once a day, rebuild and deliver yesterday's partition from the whole shop."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from cio_assets.config import AutomationSettings
from cio_assets.defs.automation.job import FULL_REFRESH, refresh
from cio_assets.lib.days import day_key


def yesterday(scheduled: datetime, partitions: dg.TimeWindowPartitionsDefinition) -> str | None:
    """The partition key of the day before the one `scheduled` falls in (in the partitions' time zone), or
    None when that day is before the first partition."""
    key = (date.fromisoformat(day_key(scheduled, partitions.timezone)) - timedelta(days=1)).isoformat()
    return key if key >= partitions.get_first_partition_key() else None


def finalize_yesterday_schedule(
    partitions: dg.TimeWindowPartitionsDefinition, automation: AutomationSettings
) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=refresh,
        cron_schedule=f"0 {automation.finalize_hour} * * *",
        execution_timezone=partitions.timezone,
        # Running unless CIO_AUTOMATION=off (as the sensor): `make dev` turns it off, so the demo never launches
        # runs by itself.
        default_status=dg.DefaultScheduleStatus.RUNNING if automation.running else dg.DefaultScheduleStatus.STOPPED,
        description=(
            "Finalise yesterday: at CIO_FINALIZE_HOUR (business time zone) rebuild and deliver yesterday's partition "
            "once more, so rows that arrived after the day's last refresh (late writes, replication lag) reach "
            "Customer.io, and run every check on the finished day. Everything is rebuilt from the whole shop in "
            "this run (full_refresh), catching what the live runs' high-water marks cannot see. Runs by default; "
            "CIO_AUTOMATION=off (as in `make dev`) leaves it for the UI to turn on."
        ),
    )
    def finalize_yesterday(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        key = yesterday(context.scheduled_execution_time or datetime.now(UTC), partitions)
        if key is None:
            return dg.SkipReason(f"yesterday is before the first partition, {partitions.get_first_partition_key()}")
        return dg.RunRequest(run_key=f"finalize:{key}", partition_key=key, run_config=FULL_REFRESH)

    return finalize_yesterday
