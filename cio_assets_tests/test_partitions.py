"""Daily partitions: deterministic re-runs, single-run range backfills, history in the first partition."""

import os
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from cio_assets.defs.partitions import partition_range
from cio_assets_tests.conftest import unix


def _busy_week(shop):
    shop.customer(1, created_at="2026-09-20 08:00")
    shop.customer(2, created_at="2026-10-02 08:00")
    shop.order(1, total=10.0, paid_at="2026-09-25 10:00")
    first = shop.order(1, total=20.0, paid_at="2026-10-02 10:00")
    shop.order(2, total=35.0, paid_at="2026-10-03 11:00")
    shop.refund(first, 5.0, created_at="2026-10-04 09:00")


def _snapshot_and_events(pipeline):
    return pipeline.snapshot().to_dict("records"), pipeline.events().to_dict("records")


def test_rerunning_a_partition_writes_the_same_rows(shop, pipeline):
    _busy_week(shop)

    pipeline.run(partition_range=("2026-10-01", "2026-10-04"))
    before = _snapshot_and_events(pipeline)
    pipeline.run(partition="2026-10-03")
    pipeline.run(partition_range=("2026-10-02", "2026-10-04"))

    assert _snapshot_and_events(pipeline) == before


def test_a_range_run_equals_running_each_day(shop, pipeline):
    _busy_week(shop)

    for day in ("2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"):
        pipeline.run(partition=day)
    day_by_day = _snapshot_and_events(pipeline)
    pipeline.state_engine.dispose()
    from cio_assets.schema.state import state_metadata

    state_metadata.drop_all(pipeline.state_engine)
    result = pipeline.run(partition_range=("2026-10-01", "2026-10-04"))

    assert _snapshot_and_events(pipeline) == day_by_day
    materialized = result.asset_materializations_for_node("attribute_snapshot")
    assert sorted(m.partition for m in materialized) == ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"]


def test_a_person_appears_on_each_day_their_inputs_changed(shop, pipeline):
    _busy_week(shop)

    pipeline.run(partition_range=("2026-10-01", "2026-10-04"))

    rows = pipeline.snapshot()[["day", "person_id", "total_orders", "lifetime_value_net"]]
    assert rows.values.tolist() == [
        ["2026-10-01", "1", 1, 10.0],  # history before the start date lands in the first partition
        ["2026-10-02", "1", 2, 30.0],
        ["2026-10-02", "2", 0, 0.0],
        ["2026-10-03", "2", 1, 35.0],
        ["2026-10-04", "1", 2, 25.0],
    ]


def test_the_first_partition_owns_all_earlier_history(shop, pipeline):
    shop.customer(1, created_at="2025-03-01 08:00")
    shop.order(1, total=10.0, paid_at="2025-04-01 10:00")

    pipeline.run(partition="2026-10-01")

    person = pipeline.person("1", "2026-10-01")
    assert (person["total_orders"], person["created_at"]) == (1, unix("2025-03-01 08:00"))
    assert pipeline.events("order_placed")[["event_id", "day"]].values.tolist() == [["order_placed:1", "2026-10-01"]]
    assert person["as_of"] == unix("2026-10-02 00:00")


def test_a_later_partition_does_not_reach_back_into_history(shop, pipeline):
    shop.customer(1, created_at="2025-03-01 08:00")
    shop.order(1, total=10.0, paid_at="2025-04-01 10:00")

    pipeline.run(partition="2026-10-05")

    assert pipeline.snapshot().empty
    assert pipeline.events().empty


def test_the_cli_backfills_a_range_in_one_run(shop, pipeline, tmp_path):
    _busy_week(shop)
    env = {
        **os.environ,
        "CIO_MYSQL_URL": pipeline.source_url,
        "CIO_STATE_URL": pipeline.state_url,
        "DAGSTER_HOME": str(tmp_path),
        "CIO_DRY_RUN": "1",
        "CIO_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "cio_assets.definitions"]

    ranged = subprocess.run(
        [*command, "--select", "*", "--partition-range", "2026-10-01...2026-10-04"],
        env=env,
        capture_output=True,
        text=True,
    )
    single = subprocess.run(
        [*command, "--select", "*", "--partition", "2026-10-03"], env=env, capture_output=True, text=True
    )

    assert ranged.returncode == 0, ranged.stderr[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    assert ranged.stderr.count("RUN_SUCCESS") == 1
    assert len(pipeline.snapshot()) == 5
    assert len(pipeline.events()) == 4


@pytest.mark.parametrize(
    "keys",
    [
        # a range that starts at the first partition and crosses the end of daylight saving time
        ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"],
        # a range later on, crossing the start of daylight saving time
        ["2027-03-13", "2027-03-14", "2027-03-15"],
        # days that are not contiguous (a gap of a day between them)
        ["2026-11-05", "2026-11-07"],
    ],
)
def test_each_instant_falls_in_the_day_its_business_date_names(keys):
    partitions = dg.DailyPartitionsDefinition(start_date="2026-10-30", timezone="America/New_York")
    prange = partition_range(partitions, keys)
    zone = ZoneInfo("America/New_York")
    first = int(datetime(2026, 10, 20, tzinfo=zone).timestamp())
    # Every 20 minutes for five months, and each day's edges to the second.
    edges = [int(day.start.timestamp()) + offset for day in prange.days for offset in (-1, 0, 1)]
    instants = pd.Series([*range(first, first + 150 * 86400, 1200), *edges], index=range(7, 7 + 10800 + len(edges)))

    days = prange.day_of(instants)

    named = [datetime.fromtimestamp(s, zone).strftime("%Y-%m-%d") for s in instants]
    expected = [max(d, keys[0]) if prange.includes_history else d for d in named]
    assert days.index.equals(instants.index)
    assert days.tolist() == expected


@pytest.mark.parametrize(
    ("pieces", "weights", "expected"),
    [
        # one piece: the range itself
        (1, None, [["2026-10-30", "2026-11-05"]]),
        # equal days: pieces as even as seven days allow
        (3, None, [["2026-10-30", "2026-10-31"], ["2026-11-01", "2026-11-03"], ["2026-11-04", "2026-11-05"]]),
        # more pieces than days: one day each
        (
            9,
            None,
            [[f"2026-{d}", f"2026-{d}"] for d in ("10-30", "10-31", "11-01", "11-02", "11-03", "11-04", "11-05")],
        ),
        # a shop that grows: the busy last days get pieces of their own, the quiet first days share one
        (
            3,
            [10, 10, 10, 10, 10, 100, 100],
            [["2026-10-30", "2026-11-03"], ["2026-11-04", "2026-11-04"], ["2026-11-05", "2026-11-05"]],
        ),
        # all the work on the first day (history): every piece still gets at least one day
        (
            3,
            [1000, 0, 0, 0, 0, 0, 0],
            [["2026-10-30", "2026-10-30"], ["2026-10-31", "2026-10-31"], ["2026-11-01", "2026-11-05"]],
        ),
    ],
)
def test_a_range_splits_into_consecutive_pieces_of_similar_work_and_only_the_first_owns_the_history(
    pieces, weights, expected
):
    partitions = dg.DailyPartitionsDefinition(start_date="2026-10-30", timezone="America/New_York")
    prange = partition_range(partitions, partitions.get_partition_keys()[:7])

    split = prange.split(pieces, weights)

    assert [[piece.keys[0], piece.keys[-1]] for piece in split] == expected
    assert [key for piece in split for key in piece.keys] == prange.keys
    assert [piece.start for piece in split] == [None, *(piece.days[0].start for piece in split[1:])]
    assert split[-1].end == prange.end
