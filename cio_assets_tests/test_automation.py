"""Running unattended: the source freshness check, the sync freshness policies, the daily schedule that
finalises yesterday, the one job the sensor, the schedule and the demo share, and its settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from cio_assets.config import AutomationSettings, SettingsError
from cio_assets.defs.assets.sources import source_tables
from cio_assets.defs.automation.freshness import sync_freshness_policy
from cio_assets.defs.automation.job import refresh
from cio_assets.defs.automation.schedule import yesterday
from cio_assets.defs.checks.reconcile import CHECK_NAME, PEOPLE_ASSET
from cio_assets.defs.checks.source import SOURCE_FRESHNESS_CHECK, paid_orders_fresh
from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets.demo.run import run_refresh
from cio_assets.mapping.spec import load
from cio_assets_tests.definitions import ENV, defs, finalize_yesterday, source_changes

AUTOMATION = ENV.automation

ORDERS = dg.AssetKey(["source", "orders"])
FRESHNESS_KEY = dg.AssetCheckKey(ORDERS, SOURCE_FRESHNESS_CHECK)
RECONCILE_KEY = dg.AssetCheckKey(PEOPLE_ASSET, CHECK_NAME)


def _ago(minutes: int, zone: str = "UTC") -> datetime:
    """A naive source DATETIME `minutes` before now, as a table in `zone` stores it."""
    return (datetime.now(UTC) - timedelta(minutes=minutes)).astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def _resources(pipeline, settings: Settings | None = None) -> dict[str, object]:
    return {
        "settings": settings or Settings(),
        "source": SourceDatabase(url=pipeline.source_url),
        "state": StateDatabase(url=pipeline.state_url),
        "customerio": CustomerIO(dry_run=True, outbox_dir=str(pipeline.outbox_dir)),
    }


# --- the source: the newest paid order ---------------------------------------------------------------------


def _freshness_check(pipeline, settings: Settings) -> dg.AssetCheckEvaluation:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*source_tables(load("reference")), paid_orders_fresh],
            selection=dg.AssetSelection.checks(paid_orders_fresh),
            instance=instance,
            resources={
                "source": SourceDatabase(url=pipeline.source_url),
                "state": StateDatabase(url=pipeline.state_url),
                "settings": settings,
            },
        )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


@pytest.mark.parametrize(
    ("orders", "settings", "passed", "lag_minutes"),
    [
        # paid half an hour ago, an hour allowed
        pytest.param([("paid", 30)], Settings(source_max_lag_minutes=60), True, 30, id="fresh"),
        # paid two hours ago, an hour allowed; a cancelled order paid since does not count, nor a pending one
        pytest.param(
            [("paid", 120), ("cancelled", 5), ("pending", None)],
            Settings(source_max_lag_minutes=60),
            False,
            120,
            id="stale",
        ),
        # a paid_at in the future (a bad row) is no sign of life: the order before it decides
        pytest.param([("paid", 120), ("paid", -600)], Settings(source_max_lag_minutes=60), False, 120, id="future"),
        # orders stored in New York time, paid half an hour ago (read as UTC, it would be hours old)
        pytest.param(
            [("paid", 30)],
            Settings(source_max_lag_minutes=60, source_tz_overrides="orders=America/New_York"),
            True,
            30,
            id="store_time_zone",
        ),
    ],
)
def test_source_freshness_judges_the_newest_paid_order(shop, pipeline, orders, settings, passed, lag_minutes):
    """`orders`: (status, paid this many minutes ago, or None), written in the orders table's time zone."""
    zone = str(settings.zones(load("reference")).of("orders"))
    shop.customer(1)
    for status, minutes in orders:
        paid_at = _ago(minutes, zone) if minutes is not None else None
        shop.order(1, status=status, paid_at=paid_at, created_at=_ago(24 * 60, zone))

    evaluation = _freshness_check(pipeline, settings)

    assert evaluation.passed is passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert lag_minutes - 1 <= evaluation.metadata["lag_minutes"].value <= lag_minutes + 2
    assert evaluation.metadata["max_lag_minutes"].value == 60
    assert evaluation.metadata["newest_paid_at"].value > 0
    assert ("Fresh" if passed else "Stale") in (evaluation.description or "")


@pytest.mark.parametrize(
    ("written_in", "paid_minutes_ago", "ahead", "said"),
    [
        # the shop's recent orders written in UTC, read as New York's (UTC-5 in December): five hours ahead
        ("UTC", [30, 10, 2], 3, "3 paid order(s) are dated up to 5.0 h after now"),
        # one bad row ten hours ahead among fresh orders: the same warning, which says a bad row is just that
        ("America/New_York", [-600, 10], 1, "1 paid order(s) are dated up to 10.0 h after now"),
    ],
)
def test_orders_dated_hours_ahead_warn_of_a_wrong_time_zone(shop, pipeline, written_in, paid_minutes_ago, ahead, said):
    shop.customer(1)
    for minutes in paid_minutes_ago:
        shop.order(1, paid_at=_ago(minutes, written_in), created_at=_ago(24 * 60, written_in))

    evaluation = _freshness_check(pipeline, Settings(source_max_lag_minutes=60, source_tz="America/New_York"))

    assert not evaluation.passed
    assert said in (evaluation.description or "")
    assert "A bad row or two is just that" in (evaluation.description or "")
    assert evaluation.metadata["paid_orders_in_future"].value == ahead


def test_a_source_without_paid_orders_is_not_fresh(shop, pipeline):
    shop.customer(1)
    shop.order(1, status="pending", paid_at=None)

    evaluation = _freshness_check(pipeline, Settings())

    assert not evaluation.passed
    assert "holds no paid order" in (evaluation.description or "")
    assert "lag_minutes" not in evaluation.metadata


# --- the sync: freshness policies -------------------------------------------------------------------------


def test_the_sync_assets_carry_the_sync_freshness_policy_and_nothing_else_does():
    graph = defs.resolve_asset_graph()
    policies = {key.to_user_string(): graph.get(key).freshness_policy for key in graph.get_all_asset_keys()}

    expected = dg.FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=AUTOMATION.sync_max_lag_minutes),
        warn_window=timedelta(minutes=AUTOMATION.sync_warn_lag_minutes),
    )
    assert policies.pop("customerio_people") == expected
    assert policies.pop("customerio_events") == expected
    assert set(policies.values()) == {None}


@pytest.mark.parametrize(
    ("warn", "fail", "warn_window"),
    [
        # a warning window before the failure
        pytest.param(90, 120, timedelta(minutes=90), id="warn_then_fail"),
        # 0: fail only
        pytest.param(0, 120, None, id="no_warning"),
    ],
)
def test_sync_freshness_windows_come_from_the_settings(warn, fail, warn_window):
    policy = sync_freshness_policy(
        AutomationSettings(finalize_hour=2, sync_warn_lag_minutes=warn, sync_max_lag_minutes=fail)
    )

    assert policy.fail_window.to_timedelta() == timedelta(minutes=fail)
    assert (policy.warn_window.to_timedelta() if policy.warn_window else None) == warn_window


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # an hour of the day is 0 to 23
        pytest.param(
            {"CIO_FINALIZE_HOUR": "24"},
            "CIO_FINALIZE_HOUR='24' is invalid: expected a whole number from 0 to 23",
            id="hour_24",
        ),
        # not a number
        pytest.param(
            {"CIO_FINALIZE_HOUR": "2am"},
            "CIO_FINALIZE_HOUR='2am' is invalid: expected a whole number from 0 to 23",
            id="hour_text",
        ),
        # the warning must come before the failure
        pytest.param(
            {"CIO_SYNC_WARN_LAG_MINUTES": "3000", "CIO_SYNC_MAX_LAG_MINUTES": "2880"},
            "CIO_SYNC_WARN_LAG_MINUTES=3000 is invalid: expected fewer minutes than CIO_SYNC_MAX_LAG_MINUTES=2880",
            id="warn_after_fail",
        ),
        # a failure window of at least a minute
        pytest.param(
            {"CIO_SYNC_MAX_LAG_MINUTES": "0"},
            "CIO_SYNC_MAX_LAG_MINUTES='0' is invalid: expected a whole number >= 1",
            id="no_window",
        ),
        # automation is on or off, nothing else
        pytest.param(
            {"CIO_AUTOMATION": "yes"}, "CIO_AUTOMATION='yes' is invalid: expected one of on, off", id="automation"
        ),
    ],
)
def test_automation_settings_name_the_bad_variable(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError, match=message):
        AutomationSettings.from_env()


def test_source_max_lag_is_checked_like_every_setting(monkeypatch):
    monkeypatch.setenv("CIO_SOURCE_MAX_LAG_MINUTES", "0")

    with pytest.raises(SettingsError, match="CIO_SOURCE_MAX_LAG_MINUTES='0' is invalid: expected a whole number >= 1"):
        Settings.from_env()


# --- the daily schedule -----------------------------------------------------------------------------------


def test_the_schedule_finalises_yesterday_at_the_configured_hour():
    # The context is entered so that it hands the instance back on exit (left open, it leaks the instance's
    # state storage into later tests' definitions loading).
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 11, 24, AUTOMATION.finalize_hour, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
        ) as context,
    ):
        tick = finalize_yesterday.evaluate_tick(context)

    [request] = tick.run_requests
    assert request.partition_key == "2026-11-23"
    assert request.run_key == "finalize:2026-11-23"
    # Once a day everything is rebuilt from the whole shop, catching what the live runs' marks cannot see.
    assert {op: config["config"] for op, config in request.run_config["ops"].items()} == {
        op: {"full_refresh": True} for op in ("rejected_rows", "identity_map", "attribute_snapshot", "event_log")
    }
    assert finalize_yesterday.job_name == "refresh"
    assert finalize_yesterday.cron_schedule == f"0 {AUTOMATION.finalize_hour} * * *"
    assert finalize_yesterday.execution_timezone == "UTC"  # the business time zone (conftest pins UTC)


def test_the_schedule_skips_a_day_before_the_first_partition():
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 10, 1, 2, tzinfo=UTC)
        ) as context,
    ):
        tick = finalize_yesterday.evaluate_tick(context)

    assert tick.run_requests == [] and "before the first partition, 2026-10-01" in (tick.skip_message or "")


NEW_YORK_DAYS = dg.DailyPartitionsDefinition(start_date="2026-10-01", timezone="America/New_York", end_offset=1)


@pytest.mark.parametrize(
    ("scheduled", "expected"),
    [
        # 00:30 in New York is 05:30 UTC: yesterday is New York's
        pytest.param(datetime(2026, 11, 24, 5, 30, tzinfo=UTC), "2026-11-23", id="after_local_midnight"),
        # 22:00 in New York on the 23rd is already the 24th in UTC
        pytest.param(datetime(2026, 11, 24, 3, 0, tzinfo=UTC), "2026-11-22", id="before_local_midnight"),
        # the day after clocks went back (2026-11-01 has 25 hours)
        pytest.param(
            datetime(2026, 11, 2, 2, 0, tzinfo=ZoneInfo("America/New_York")), "2026-11-01", id="after_dst_end"
        ),
        # the first partition's day has no yesterday
        pytest.param(datetime(2026, 10, 1, 2, 0, tzinfo=ZoneInfo("America/New_York")), None, id="first_day"),
    ],
)
def test_yesterday_is_the_business_time_zones(scheduled, expected):
    assert yesterday(scheduled, NEW_YORK_DAYS) == expected


# --- one job for the sensor, the schedule and the demo ----------------------------------------------------


def test_the_sensor_and_the_schedule_launch_the_one_job_that_carries_every_check_but_the_read_back():
    job = defs.resolve_job_def(refresh.name)
    graph = defs.resolve_asset_graph()
    assets = set(job.asset_layer.executable_asset_keys)
    # The read-back runs as `read_back`, in a run of its own (test_read_back.py): its settle wait holds up no event.
    expected_checks = {key for key in graph.asset_check_keys if key.asset_key in assets} - {RECONCILE_KEY}
    expected_checks |= {FRESHNESS_KEY}

    assert source_changes.job_name == finalize_yesterday.job_name == refresh.name
    assert {"customerio_people", "customerio_events", "attribute_snapshot", "event_log"} <= {
        key.to_user_string() for key in assets
    }
    assert not any(key.path[0] == "source" for key in assets)
    assert set(job.asset_layer.asset_graph.asset_check_keys) == expected_checks


def test_a_sensor_run_request_runs_the_snapshot_through_the_sync_without_clicking(shop, pipeline):
    shop.customer(1, created_at=_ago(90))
    shop.order(1, paid_at=_ago(30))
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(
            instance=instance,
            resources={
                "source": SourceDatabase(url=pipeline.source_url),
                "state": StateDatabase(url=pipeline.state_url),
                "settings": Settings(),
            },
            repository_def=defs.get_repository_def(),
        ) as context:
            [request] = source_changes.evaluate_tick(context).run_requests
        result = defs.resolve_job_def(refresh.name).execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, resources=_resources(pipeline)
        )

    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    freshness = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == FRESHNESS_KEY]
    assert result.success
    assert {"attribute_snapshot", "event_log", "customerio_people", "customerio_events"} <= materialized
    assert [e.passed for e in freshness] == [True]


def test_the_demo_run_names_its_assets_so_the_ui_shows_its_target(shop, pipeline):
    shop.customer(1)
    shop.order(1, paid_at="2026-10-02 10:00")
    with dg.instance_for_test() as instance:
        result = run_refresh(defs, instance, "2026-10-01", "2026-10-02", _resources(pipeline))
        run = instance.get_run_by_id(result.run_id)

    job = defs.resolve_job_def(refresh.name)
    assert result.success
    assert run is not None and run.job_name == "refresh"
    assert run.asset_selection == set(job.asset_layer.executable_asset_keys)
    checked = {e.asset_check_key for e in result.get_asset_check_evaluations()}
    assert checked and FRESHNESS_KEY not in checked  # the sample shop's fixed dates would only say it is old
    # Like the job it runs, the demo's run leaves the read-back out (a selection of assets would bring it back).
    steps = {e.step_key for e in result.all_events if e.is_step_start}
    assert "customerio_people" in steps and RECONCILE_KEY.name not in steps


@pytest.mark.parametrize(
    ("value", "running"),
    [
        # unset: a deployment's daemon runs the sensor and the schedule without anyone clicking
        (None, True),
        # `make dev`: both wait to be turned on in the UI
        ("off", False),
        ("on", True),
    ],
)
def test_cio_automation_decides_whether_the_sensor_and_the_schedule_run_by_default(monkeypatch, value, running):
    if value is None:
        monkeypatch.delenv("CIO_AUTOMATION", raising=False)
    else:
        monkeypatch.setenv("CIO_AUTOMATION", value)

    assert AutomationSettings.from_env().running is running


def test_the_loaded_sensor_and_schedule_run_by_default():
    # The suite runs without CIO_AUTOMATION, as a deployment would.
    assert source_changes.default_status == dg.DefaultSensorStatus.RUNNING
    assert finalize_yesterday.default_status == dg.DefaultScheduleStatus.RUNNING
