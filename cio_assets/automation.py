"""Running unattended: the one job every trigger launches, the daily schedule, and freshness.

- `refresh` rebuilds identity and a day's (or a range's) snapshot and event log, runs their checks and
  delivers them to Customer.io. The `source_changes` sensor (`sources/sensors.py`) launches it for today
  when the shop moved; the `finalize_yesterday` schedule launches it for yesterday once a day; `make demo`
  runs it over every partition.
- The source is fresh when its newest paid order is recent: the `paid_orders_fresh` check on
  `source/orders`, evaluated by every `refresh` run and reported by the sensor's ticks when its outcome
  changes (so a shop that stopped taking orders warns within a minute, though no run is launched).
- The sync is fresh when `customerio_people` and `customerio_events` last materialised recently:
  Dagster freshness policies, which the daemon evaluates from the materialisation history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, select

from cio_assets.lib.timestamps import to_source_naive, to_unix_seconds, utc_now
from cio_assets.partitions import daily_partitions
from cio_assets.resources import SourceDatabase
from cio_assets.schema.shop import orders
from cio_assets.settings import SOURCE_MAX_LAG_MINUTES, AutomationSettings, Settings
from cio_assets.sources.assets import SOURCE_GROUP, source_key

AUTOMATION = AutomationSettings.from_env()

# ---------------------------------------------------------------------------------------------------------
# Freshness of the source: the newest paid order
# ---------------------------------------------------------------------------------------------------------

SOURCE_FRESHNESS_CHECK = "paid_orders_fresh"


@dataclass(frozen=True)
class SourceFreshness:
    """How old the shop's newest paid order is, against the lag allowed."""

    newest_paid_at: datetime | None  # aware, UTC; None when the source holds no paid order
    checked_at: datetime  # aware, UTC
    max_lag_minutes: int
    source: str  # the source database as it may be shown: no password

    @property
    def lag_minutes(self) -> float | None:
        if self.newest_paid_at is None:
            return None
        return round((self.checked_at - self.newest_paid_at).total_seconds() / 60, 1)

    @property
    def passed(self) -> bool:
        lag = self.lag_minutes
        return lag is not None and lag <= self.max_lag_minutes

    @property
    def description(self) -> str:
        allowed = f"{SOURCE_MAX_LAG_MINUTES.name} allows {self.max_lag_minutes:,}"
        if self.newest_paid_at is None:
            return f"The source ({self.source}) holds no paid order yet; {allowed} minutes."
        newest = f"newest paid order at {self.newest_paid_at:%Y-%m-%d %H:%M} UTC, {self.lag_minutes:,.0f} minutes ago"
        if self.passed:
            return f"Fresh: {newest} ({allowed})."
        return (
            f"Stale: {newest}; {allowed}. The shop may have stopped taking orders, or the database the pipeline "
            f"reads ({self.source}) stopped receiving them (a replica that stopped replicating)."
        )

    @property
    def metadata(self) -> dict[str, dg.MetadataValue]:
        metadata: dict[str, dg.MetadataValue] = {
            "max_lag_minutes": dg.MetadataValue.int(self.max_lag_minutes),
            "source_database": dg.MetadataValue.text(self.source),
        }
        if self.newest_paid_at is not None:
            metadata["newest_paid_at"] = dg.MetadataValue.timestamp(self.newest_paid_at)
            metadata["lag_minutes"] = dg.MetadataValue.float(float(self.lag_minutes or 0.0))
        return metadata

    def check_result(self) -> dg.AssetCheckResult:
        """The result a run reports (a stale source is for a person to look at: WARN)."""
        return dg.AssetCheckResult(
            passed=self.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=self.description,
            metadata=self.metadata,
        )

    def evaluation(self) -> dg.AssetCheckEvaluation:
        """The same result, as a sensor reports it outside any run."""
        return dg.AssetCheckEvaluation(
            asset_key=source_key(orders),
            check_name=SOURCE_FRESHNESS_CHECK,
            passed=self.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=self.description,
            metadata=self.metadata,
        )


def newest_paid_at(conn: Connection, settings: Settings, now: datetime) -> datetime | None:
    """When the newest paid order was paid, as an aware UTC instant. Rows dated after `now` (bad rows, which
    hygiene sets aside) are not evidence of a live shop, so they are ignored."""
    zone = settings.zone_of(orders.name)
    # The newest row first, by the paid_at index: MAX() with this bound made MariaDB scan every order.
    statement = (
        select(orders.c.paid_at)
        .where(orders.c.status == "paid", orders.c.paid_at <= to_source_naive(now, zone))
        .order_by(orders.c.paid_at.desc())
        .limit(1)
    )
    value = conn.execute(statement).scalar_one_or_none()
    if value is None:
        return None
    (seconds,) = to_unix_seconds(pd.Series([value]), zone)
    return datetime.fromtimestamp(int(seconds), UTC)


def read_source_freshness(conn: Connection, source: SourceDatabase, settings: Settings) -> SourceFreshness:
    now = utc_now()
    return SourceFreshness(
        newest_paid_at=newest_paid_at(conn, settings, now),
        checked_at=now,
        max_lag_minutes=settings.source_max_lag_minutes,
        source=source.origin.url,
    )


@dg.asset_check(
    asset=source_key(orders),
    name=SOURCE_FRESHNESS_CHECK,
    description=(
        "The newest paid order is at most CIO_SOURCE_MAX_LAG_MINUTES old: the shop, and the database the "
        "pipeline reads, are still taking orders. Warns; delivery goes on with what the source holds."
    ),
)
def paid_orders_fresh(source: SourceDatabase, settings: Settings) -> dg.AssetCheckResult:
    with source.connect() as conn:
        return read_source_freshness(conn, source, settings).check_result()


# ---------------------------------------------------------------------------------------------------------
# The job every trigger launches
# ---------------------------------------------------------------------------------------------------------

# One job, shared by the sensor, the schedule and the demo, rather than declarative automation conditions:
# - the sync runs in the same run as the snapshot and event log it delivers, after their blocking checks,
#   so a failed contract stops that run's sync step and nothing else has to know about it;
# - the trigger is the shop's database, which Dagster sees only through a sensor anyway, and `eager()`
#   only updates the latest partition, so finalising yesterday would still need a schedule;
# - every run names the same job (its Target in the UI) and there is no `default_automation_condition_sensor`
#   to remember to turn on.
# The source assets are external (nothing materialises them); the job carries their freshness check.
refresh = dg.define_asset_job(
    "refresh",
    selection=(dg.AssetSelection.all() - dg.AssetSelection.groups(SOURCE_GROUP))
    | dg.AssetSelection.checks(paid_orders_fresh),
    description=(
        "Rebuild identity and the partition's attribute snapshot and event log from the shop, run their checks "
        "and the source's freshness check, and deliver them to Customer.io."
    ),
)

# ---------------------------------------------------------------------------------------------------------
# The daily schedule: finalise yesterday
# ---------------------------------------------------------------------------------------------------------


# Once a day everything is rebuilt from the whole shop rather than from what changed: it catches what no
# high-water mark sees (a row edited without moving `updated_at`, a deleted guest order; identity/refresh.py
# and unchanged.py).
FULL_REFRESH = {
    "ops": {
        asset: {"config": {"full_refresh": True}}
        for asset in ("rejected_rows", "identity_map", "attribute_snapshot", "event_log")
    }
}


def yesterday(scheduled: datetime, partitions_def: dg.TimeWindowPartitionsDefinition) -> str | None:
    """The partition key of the day before the one `scheduled` falls in (in the partitions' time zone), or
    None when that day is before the first partition."""
    day = scheduled.astimezone(ZoneInfo(partitions_def.timezone)).date() - timedelta(days=1)
    key = day.strftime(partitions_def.fmt)
    return key if key >= partitions_def.get_first_partition_key() else None


@dg.schedule(
    job=refresh,
    cron_schedule=f"0 {AUTOMATION.finalize_hour} * * *",
    execution_timezone=daily_partitions.timezone,
    # Running unless CIO_AUTOMATION=off (as the sensor): `make dev` turns it off, so the demo never launches runs
    # by itself.
    default_status=dg.DefaultScheduleStatus.RUNNING if AUTOMATION.running else dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Finalise yesterday: at CIO_FINALIZE_HOUR (business time zone) rebuild and deliver yesterday's partition "
        "once more, so rows that arrived after the day's last refresh (late writes, replication lag) reach "
        "Customer.io, and run every check on the finished day. Everything is rebuilt from the whole shop in this "
        "run (full_refresh), catching what the live runs' high-water marks cannot see. Runs by default; "
        "CIO_AUTOMATION=off (as in `make dev`) leaves it for the UI to turn on."
    ),
)
def finalize_yesterday(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    key = yesterday(context.scheduled_execution_time or datetime.now(UTC), daily_partitions)
    if key is None:
        return dg.SkipReason(f"yesterday is before the first partition, {daily_partitions.get_first_partition_key()}")
    return dg.RunRequest(run_key=f"finalize:{key}", partition_key=key, run_config=FULL_REFRESH)


# ---------------------------------------------------------------------------------------------------------
# Freshness of the sync: the last successful people and event sync
# ---------------------------------------------------------------------------------------------------------

SYNC_ASSET_KEYS = frozenset({dg.AssetKey("customerio_people"), dg.AssetKey("customerio_events")})


def sync_freshness_policy(settings: AutomationSettings) -> dg.FreshnessPolicy:
    """Fails when the last successful sync is older than CIO_SYNC_MAX_LAG_MINUTES; warns past
    CIO_SYNC_WARN_LAG_MINUTES (0: no warning). A failed sync records no materialisation, so it ages."""
    warn = settings.sync_warn_lag_minutes
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=settings.sync_max_lag_minutes),
        warn_window=timedelta(minutes=warn) if warn else None,
    )


def with_sync_freshness(
    assets: Sequence[dg.AssetsDefinition], policy: dg.FreshnessPolicy | None = None
) -> list[dg.AssetsDefinition]:
    """`assets` with the sync freshness policy on the Customer.io sync assets among them.

    Applied here rather than in `sync/`, so that every freshness rule lives in this module."""
    policy = policy or sync_freshness_policy(AUTOMATION)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        return dg.apply_freshness_policy(spec, policy) if spec.key in SYNC_ASSET_KEYS else spec

    return list(dg.map_asset_specs(apply, assets))
