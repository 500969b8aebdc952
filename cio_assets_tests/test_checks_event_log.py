"""The event log's checks: integrity (ERROR, blocking) and volume against the trailing mean (WARN)."""

import dagster as dg
import pandas as pd
import pytest

from cio_assets.defs.checks.days import NOT_JUDGED, OK, Baseline, EvaluatedDays, judge_counts
from cio_assets.defs.checks.event_log import INTEGRITY, VOLUME, integrity_result
from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets.schema import state as state_tables
from cio_assets_tests.checks_runner import evaluations, run_checks, value
from cio_assets_tests.conftest import PIPELINE, SYNC, logged_event, unix
from cio_assets_tests.definitions import customerio_events, event_log, event_log_checks

DAYS = EvaluatedDays(("2026-10-02",), "test")
NO_PROBLEMS = {"before_floor": 0, "in_future": 0, "outside_partition_day": 0}
BASELINE = Baseline(trailing_days=7, min_trailing_days=7, sigmas=3.0)
FIRST = "2026-10-01"


# --- the pure evaluation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duplicates", "problems", "passed"),
    [
        # nothing wrong: passes
        ([], NO_PROBLEMS, True),
        # an id stored twice: fails
        ([("order_placed:1", 2, "2026-10-02")], NO_PROBLEMS, False),
        # a 1970 timestamp: fails
        ([], {**NO_PROBLEMS, "before_floor": 1}, False),
        # a future timestamp: fails
        ([], {**NO_PROBLEMS, "in_future": 1}, False),
        # a timestamp in another day than its partition: fails
        ([], {**NO_PROBLEMS, "outside_partition_day": 3}, False),
    ],
)
def test_integrity_fails_on_a_duplicate_id_or_a_timestamp_out_of_bounds(duplicates, problems, passed):
    frame = pd.DataFrame(duplicates, columns=["event_id", "copies", "first_day"])

    result = integrity_result(frame, problems, pd.DataFrame(), DAYS)

    assert (result.passed, result.severity) == (passed, dg.AssetCheckSeverity.ERROR)
    assert result.metadata["duplicate_event_ids"].value == len(duplicates)
    assert result.metadata["outside_partition_day"].value == problems["outside_partition_day"]
    assert result.metadata["days_evaluated"].value == 1


def _steady(days: int, per_day: int, start: str = "2026-10-02") -> list[tuple[str, str, int]]:
    return [(str(d.date()), "order_placed", per_day) for d in pd.date_range(start, periods=days)]


@pytest.mark.parametrize(
    ("history", "day_count", "today", "verdict"),
    [
        # a day like the week before it: ok
        (_steady(7, 100), 104, "2026-11-20", OK),
        # a sudden drop to a third: drop
        (_steady(7, 100), 30, "2026-11-20", "drop"),
        # a sudden tripling: spike
        (_steady(7, 100), 300, "2026-11-20", "spike"),
        # the same drop on today's partition (still being filled): not a drop
        (_steady(7, 100), 30, "2026-10-09", OK),
        # a quiet series (1 a day) that gets 3: within its Poisson noise, ok
        (_steady(7, 1), 3, "2026-11-20", OK),
        # only three earlier days: not judged
        (_steady(3, 100, start="2026-10-06"), 300, "2026-11-20", NOT_JUDGED),
    ],
)
def test_a_days_count_is_judged_against_its_trailing_mean(history, day_count, today, verdict):
    counts = pd.DataFrame([*history, ("2026-10-09", "order_placed", day_count)], columns=["day", "series", "count"])

    judged = judge_counts(counts, ["2026-10-09"], set(counts["day"]), BASELINE, FIRST, today)

    assert judged["verdict"].tolist() == [verdict]


def test_the_first_partition_which_holds_all_history_is_never_judged():
    counts = pd.DataFrame([("2026-10-01", "order_placed", 5000)], columns=["day", "series", "count"])

    judged = judge_counts(counts, [FIRST], {FIRST}, BASELINE, FIRST, "2026-11-20")

    assert judged["verdict"].tolist() == [NOT_JUDGED]


def test_a_name_missing_on_a_known_day_counts_as_zero_there():
    # refund_issued every day, then none on 10-09 while orders went on: a drop to zero.
    history = [*_steady(7, 50), *((d, "refund_issued", 20) for d, _, _ in _steady(7, 50))]
    counts = pd.DataFrame([*history, ("2026-10-09", "order_placed", 50)], columns=["day", "series", "count"])

    judged = judge_counts(counts, ["2026-10-09"], set(counts["day"]), BASELINE, FIRST, "2026-11-20")

    assert dict(zip(judged["series"], judged["verdict"], strict=True)) == {"order_placed": OK, "refund_issued": "drop"}


# --- on the real tables ------------------------------------------------------------------------


def test_the_checks_pass_on_the_events_the_pipeline_wrote(shop, pipeline):
    shop.customer(1)
    shop.order(1, paid_at="2026-10-02 09:00")
    shop.order(1, paid_at="2026-10-03 23:59")

    result = pipeline.run(partition_range=("2026-10-01", "2026-10-03"), assets=[*PIPELINE, event_log_checks])

    checks = evaluations(result)
    assert checks[INTEGRITY].passed is True
    assert checks[VOLUME].passed is True
    assert value(checks[INTEGRITY], "days_evaluated") == 3
    assert value(checks[INTEGRITY], "evaluated_days") == "2026-10-01, 2026-10-02, 2026-10-03"


@pytest.mark.parametrize(
    ("crafted", "problem"),
    [
        # an event filed under 10-02 that happened on 10-03
        (logged_event("order_placed:90", "2026-10-02", unix("2026-10-03 08:00")), "outside_partition_day"),
        # a 1970 timestamp, the bug the floor is for
        (logged_event("order_placed:91", "2026-10-02", 0), "before_floor"),
        # a timestamp years ahead
        (logged_event("order_placed:92", "2026-10-02", unix("2099-01-01 00:00")), "in_future"),
    ],
)
def test_integrity_fails_naming_an_event_whose_timestamp_is_out_of_bounds(shop, pipeline, crafted, problem):
    shop.customer(1)
    shop.order(1, paid_at="2026-10-02 09:00")
    pipeline.run(partition="2026-10-02")
    with pipeline.state_engine.begin() as conn:
        conn.execute(state_tables.event_log.insert(), [crafted])

    checks = run_checks(pipeline, [event_log], [event_log_checks], partition_range=("2026-10-02", "2026-10-02"))

    integrity = checks[INTEGRITY]
    assert (integrity.passed, integrity.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert value(integrity, problem) == 1
    assert crafted["event_id"] in value(integrity, "timestamps_sample")


def test_integrity_finds_an_id_stored_twice_once_someone_dropped_the_primary_key(shop, pipeline):
    # The key makes a second copy impossible, so the check scans the ids only when the key is gone.
    shop.customer(1)
    shop.order(1, paid_at="2026-10-02 09:00")
    pipeline.run(partition="2026-10-02")
    with pipeline.state_engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {state_tables.event_log.name} DROP PRIMARY KEY")
        (stored,) = conn.execute(state_tables.event_log.select()).mappings().all()
        conn.execute(state_tables.event_log.insert(), [dict(stored)])

    checks = run_checks(pipeline, [event_log], [event_log_checks], partition_range=("2026-10-02", "2026-10-02"))

    integrity = checks[INTEGRITY]
    assert (integrity.passed, value(integrity, "duplicate_event_ids")) == (False, 1)
    assert stored["event_id"] in value(integrity, "duplicates_sample")


def test_the_integrity_check_blocks_delivery():
    (spec,) = [s for s in event_log_checks.check_specs if s.name == INTEGRITY]
    (volume,) = [s for s in event_log_checks.check_specs if s.name == VOLUME]

    assert (spec.blocking, volume.blocking) == (True, False)


def test_the_volume_check_warns_on_a_day_whose_orders_collapse(shop, pipeline):
    shop.customer(1)
    for day in range(2, 10):  # twenty orders a day from 10-02 to 10-09...
        for minute in range(20):
            shop.order(1, paid_at=f"2026-10-{day:02d} 09:{minute:02d}")
    shop.order(1, paid_at="2026-10-10 09:00")  # ...then one on 10-10

    result = pipeline.run(partition_range=("2026-10-01", "2026-10-10"), assets=[*PIPELINE, event_log_checks])

    volume = evaluations(result)[VOLUME]
    assert (volume.passed, volume.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert value(volume, "drops") == 1
    assert "| 2026-10-10 | order_placed | 1 |" in value(volume, "outliers")


def test_a_failing_integrity_check_keeps_the_event_sync_from_running(shop, pipeline):
    shop.customer(1)
    shop.order(1, paid_at="2026-10-02 09:00")
    pipeline.run(partition="2026-10-02")
    with pipeline.state_engine.begin() as conn:
        conn.execute(state_tables.event_log.insert(), [logged_event("order_placed:93", "2026-10-02", 0)])

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*SYNC, event_log_checks],
            selection=dg.AssetSelection.checks(event_log_checks) | dg.AssetSelection.assets(customerio_events),
            partition_key="2026-10-02",
            instance=instance,
            raise_on_error=False,
            resources={
                "settings": Settings(),
                "source": SourceDatabase(url=pipeline.source_url),
                "state": StateDatabase(url=pipeline.state_url),
                "customerio": CustomerIO(dry_run=True, outbox_dir=str(pipeline.outbox_dir)),
            },
        )

    assert evaluations(result)[INTEGRITY].passed is False
    assert result.asset_materializations_for_node("customerio_events") == []


@pytest.mark.parametrize(
    ("materialised", "evaluated"),
    [
        # the last run was a single-run backfill of three days: those three
        ({"partition_range": ("2026-10-02", "2026-10-04")}, "2026-10-02, 2026-10-03, 2026-10-04"),
        # the last run was one day: that day
        ({"partition": "2026-10-03"}, "2026-10-03"),
    ],
)
def test_launched_on_its_own_a_check_evaluates_the_days_of_the_last_materialisation(
    shop, pipeline, materialised, evaluated
):
    shop.customer(1)
    shop.order(1, paid_at="2026-10-03 09:00")
    with dg.instance_for_test() as instance:
        pipeline.run(**materialised, instance=instance)

        checks = run_checks(pipeline, [event_log], [event_log_checks], instance=instance)

    assert value(checks[INTEGRITY], "evaluated_days") == evaluated
    assert "the run that last materialised it" in str(value(checks[INTEGRITY], "days_chosen_by"))
