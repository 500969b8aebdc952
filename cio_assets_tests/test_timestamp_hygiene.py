"""Null, pre-floor and future timestamps are rejected with a reason, listed, and never sent; a customer's bad
`created_at` is only left out: the person is sent without it, with their orders and events."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from cio_assets.schema import state as state_tables
from cio_assets_tests.conftest import SYNC, unix

FUTURE = (datetime.now(UTC) + timedelta(days=30)).replace(tzinfo=None, microsecond=0)


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
    shop.customer(2)
    order_id = shop.order(2, total=30.0, paid_at="2026-10-01 12:00")
    shop.refund(order_id, 10.0, created_at=FUTURE)

    pipeline.run(partition="2026-10-01")

    rows = _rejections(pipeline)
    assert rows[["source_table", "source_key", "column_name", "reason"]].values.tolist() == [
        ["refunds", "1", "created_at", "in_future"]
    ]
    person = pipeline.person("2", "2026-10-01")
    assert (person["lifetime_value_net"], person["is_refunder"]) == (30.0, False)
    assert pipeline.events("refund_issued").empty


def _invalid_created_at(pipeline) -> list[list]:
    listed = pipeline.table(state_tables.invalid_values, ["source_key"])
    listed = listed[listed["column_name"] == "created_at"]
    return listed[["source_table", "source_key", "raw_value", "reason"]].values.tolist()


def test_the_floor_is_configuration(shop, pipeline):
    from cio_assets.defs.resources import Settings

    shop.customer(1, created_at="2015-06-01 00:00")

    pipeline.run(partition="2026-10-01", settings=Settings(timestamp_floor="2020-01-01"))

    assert _invalid_created_at(pipeline) == [["customers", "1", "2015-06-01 00:00:00", "before_floor"]]
    assert pipeline.person("1", "2026-10-01")["created_at"] is None


@pytest.mark.parametrize(
    ("created_at", "raw_value", "reason"),
    [
        # a legacy import's placeholder: one second after the Unix epoch, before CIO_TIMESTAMP_FLOOR
        ("1970-01-01 00:00:01", "1970-01-01 00:00:01", "before_floor"),
        # never filled in
        (None, None, "null_timestamp"),
        # a month after the run: a clock or time-zone mistake in the shop
        (FUTURE, str(FUTURE), "in_future"),
    ],
    ids=["1970", "null", "future"],
)
def test_a_bad_customer_created_at_is_left_out_and_the_person_still_goes_out(
    shop, pipeline, customerio, created_at, raw_value, reason
):
    shop.customer(1, created_at=created_at, updated_at="2026-10-01 09:00")
    shop.customer(2)
    order_id = shop.order(1, total=40.0, paid_at="2026-10-02 10:00")

    result = pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=customerio.resource())

    assert result.success
    assert _invalid_created_at(pipeline) == [["customers", "1", raw_value, reason]]
    assert _rejections(pipeline).empty  # the row is not set aside: only its created_at is unknown
    person = pipeline.person("1", "2026-10-02")
    assert (person["created_at"], person["total_orders"], person["lifetime_value_net"]) == (None, 1, 40.0)
    delivered = customerio.fake.people["1"]
    assert delivered["email"] == "customer1@shop.com" and delivered["total_orders"] == 1
    assert "created_at" not in delivered  # unknown: omitted, never sent as null or 0
    assert customerio.fake.people["2"]["created_at"] == unix("2026-10-01 09:00")
    identifies = [
        item
        for request in customerio.fake.requests
        for item in orjson.loads(request.body).get("batch", [])
        if item.get("action") == "identify" and item["identifiers"].get("id") == "1"
    ]
    assert identifies and all("created_at" not in item.get("attributes", {}) for item in identifies)
    events = [e for e in customerio.fake.events if e["identifiers"].get("id") == "1"]
    assert [(e["name"], e["attributes"]["order_id"]) for e in events] == [("order_placed", order_id)]


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
