"""Null, pre-floor and future timestamps are rejected with a reason, listed, and never sent."""

from datetime import UTC, datetime, timedelta

import pytest

from cio_assets.schema import state as state_tables
from cio_assets_tests.conftest import unix


def _rejections(pipeline):
    return pipeline.table(state_tables.rejected_rows, ["source_table", "source_key", "column_name"])


def test_a_paid_order_without_paid_at_is_rejected_as_null(shop, pipeline):
    shop.customer(1)
    shop.order(1, id=10, paid_at=None, created_at="2026-10-02 10:00")

    pipeline.run(partition="2026-10-01")

    rows = _rejections(pipeline)
    assert rows[["source_table", "source_key", "column_name", "reason"]].values.tolist() == [
        ["orders", "10", "paid_at", "null_timestamp"]
    ]
    assert pipeline.events("order_placed").empty
    assert pipeline.person("1", "2026-10-01")["total_orders"] == 0


def test_the_1970_bug_is_rejected_as_before_floor(shop, pipeline):
    shop.customer(1)
    shop.order(1, id=11, paid_at="1970-01-01 00:00:00")
    shop.order(1, id=12, paid_at="2026-09-15 08:00")

    pipeline.run(partition="2026-10-01")

    rows = _rejections(pipeline)
    assert rows[["source_key", "raw_value", "reason"]].values.tolist() == [
        ["11", "1970-01-01 00:00:00", "before_floor"]
    ]
    person = pipeline.person("1", "2026-10-01")
    assert (person["total_orders"], person["first_order_at"]) == (1, unix("2026-09-15 08:00"))
    assert list(pipeline.events("order_placed")["event_id"]) == ["order_placed:12"]


def test_future_timestamps_are_rejected_and_keep_the_row_out(shop, pipeline):
    future = (datetime.now(UTC) + timedelta(days=30)).replace(tzinfo=None, microsecond=0)
    shop.customer(1, created_at=future)
    shop.customer(2)
    order_id = shop.order(2, total=30.0, paid_at="2026-10-01 12:00")
    shop.refund(order_id, 10.0, created_at=future)

    pipeline.run(partition="2026-10-01")

    rows = _rejections(pipeline)
    assert rows[["source_table", "source_key", "column_name", "reason"]].values.tolist() == [
        ["customers", "1", "created_at", "in_future"],
        ["refunds", "1", "created_at", "in_future"],
    ]
    assert list(pipeline.snapshot("2026-10-01")["person_id"]) == ["2"]
    person = pipeline.person("2", "2026-10-01")
    assert (person["lifetime_value_net"], person["is_refunder"]) == (30.0, False)
    assert pipeline.events("refund_issued").empty


def test_the_floor_is_configuration(shop, pipeline):
    from cio_assets.defs.resources import Settings

    shop.customer(1, created_at="2015-06-01 00:00")

    pipeline.run(partition="2026-10-01", settings=Settings(timestamp_floor="2020-01-01"))

    assert _rejections(pipeline)[["source_key", "reason"]].values.tolist() == [["1", "before_floor"]]
    assert pipeline.snapshot("2026-10-01").empty


@pytest.mark.parametrize("column", ["started_at", "canceled_at"])
def test_a_canceled_subscription_needs_sane_start_and_cancel_times(shop, pipeline, column):
    shop.customer(1)
    times = {"started_at": "2026-09-01 10:00", "canceled_at": "2026-09-20 10:00"}
    times[column] = None
    shop.subscription(1, status="canceled", cancel_reason="too much coffee", **times)

    pipeline.run(partition="2026-10-01")

    assert _rejections(pipeline)[["source_table", "column_name", "reason"]].values.tolist() == [
        ["subscriptions", column, "null_timestamp"]
    ]
    assert pipeline.events("subscription_canceled").empty
    assert pipeline.person("1", "2026-10-01")["subscription_status"] == "none"
