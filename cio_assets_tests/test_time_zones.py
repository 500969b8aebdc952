"""Naive source DATETIMEs are read in the configured zone (per table if needed); everything after is UTC."""

from cio_assets.defs.resources import Settings
from cio_assets_tests.conftest import unix


def test_store_local_times_become_utc_and_pick_the_right_day(shop, pipeline):
    shop.customer(1, created_at="2026-10-01 09:00")
    # 21:30 in New York on Oct 2 is 01:30 UTC on Oct 3.
    shop.order(1, total=20.0, paid_at="2026-10-02 21:30")

    pipeline.run(
        partition_range=("2026-10-02", "2026-10-03"),
        settings=Settings(source_tz="America/New_York"),
    )

    events = pipeline.events("order_placed")
    assert events[["event_id", "day", "timestamp"]].values.tolist() == [
        ["order_placed:1", "2026-10-03", unix("2026-10-03 01:30")]
    ]
    assert pipeline.person("1", "2026-10-03")["last_order_at"] == unix("2026-10-03 01:30")
    assert pipeline.snapshot("2026-10-02").empty


def test_one_table_can_override_the_source_zone(shop, pipeline):
    shop.customer(1, created_at="2026-10-01 09:00")
    shop.order(1, total=20.0, paid_at="2026-10-02 21:30")

    pipeline.run(
        partition_range=("2026-10-01", "2026-10-03"),
        settings=Settings(source_tz="UTC", source_tz_overrides="orders=Europe/Berlin"),
    )

    # Customers stay UTC; orders are Berlin local time (UTC+2 in October).
    assert pipeline.person("1", "2026-10-02")["created_at"] == unix("2026-10-01 09:00")
    assert pipeline.person("1", "2026-10-02")["last_order_at"] == unix("2026-10-02 19:30")


def test_daylight_saving_change_does_not_break_a_run(shop, pipeline):
    shop.customer(1, created_at="2026-10-01 09:00")
    # 01:30 on Nov 1 happens twice in New York; the earlier instant (EDT, UTC-4) is used.
    shop.order(1, total=20.0, paid_at="2026-11-01 01:30")

    pipeline.run(partition="2026-11-01", settings=Settings(source_tz="America/New_York"))

    assert pipeline.person("1", "2026-11-01")["last_order_at"] == unix("2026-11-01 05:30")
