"""The event log: one row per event instance, at the moment it happened, with a stable id."""

import json

from sqlalchemy import update

from cio_assets.defs.resources import Settings
from cio_assets.schema.shop import orders
from cio_assets_tests.conftest import ts, unix


def _rows(events):
    return [
        [event_id, person_id, timestamp, day, json.loads(properties)]
        for event_id, person_id, timestamp, day, properties in events[
            ["event_id", "person_id", "timestamp", "day", "properties"]
        ].itertuples(index=False, name=None)
    ]


# --- order_placed ---------------------------------------------------------------------------------


def test_order_placed_is_one_event_per_paid_order_at_paid_at_with_its_items(shop, pipeline):
    shop.customer(1)
    shop.order(
        1,
        id=1,
        total=40.0,
        created_at="2026-10-02 23:50",
        paid_at="2026-10-03 00:10",
        discount_code="WELCOME10",
        items=[("BEAN-1", "coffee", 2, 12.5), ("MUG-1", "gear", 1, 15.0)],
    )

    pipeline.run(partition_range=("2026-10-01", "2026-10-03"))

    assert _rows(pipeline.events("order_placed")) == [
        [
            "order_placed:1",
            "1",
            unix("2026-10-03 00:10"),
            "2026-10-03",
            {
                "order_id": 1,
                "currency": "USD",
                "subtotal": 40.0,
                "discount_total": 0.0,
                "shipping_total": 0.0,
                "total": 40.0,
                "discount_code": "WELCOME10",
                "item_count": 3,
                "items": [
                    {
                        "sku": "BEAN-1",
                        "product_name": "BEAN-1 name",
                        "category": "coffee",
                        "quantity": 2,
                        "price": 12.5,
                    },
                    {"sku": "MUG-1", "product_name": "MUG-1 name", "category": "gear", "quantity": 1, "price": 15.0},
                ],
            },
        ]
    ]


def test_failed_pending_and_cancelled_orders_are_never_order_placed(shop, pipeline):
    shop.customer(1)
    shop.order(1, id=1, status="payment_failed", created_at="2026-10-02 10:00")
    shop.order(1, id=2, status="pending", created_at="2026-10-02 11:00")
    shop.order(1, id=3, status="cancelled", created_at="2026-10-02 12:00")
    shop.order(1, id=4, status="paid", created_at="2026-10-02 13:00", paid_at="2026-10-02 13:01")

    pipeline.run(partition="2026-10-02")

    assert list(pipeline.events("order_placed")["event_id"]) == ["order_placed:4"]


def test_order_placed_lands_in_the_partition_of_paid_at_not_created_at(shop, pipeline):
    shop.customer(1)
    shop.order(1, id=1, created_at="2026-10-02 23:50", paid_at="2026-10-03 00:10")

    pipeline.run(partition="2026-10-02")
    assert pipeline.events("order_placed").empty

    pipeline.run(partition="2026-10-03")
    events = pipeline.events("order_placed")
    assert events[["event_id", "day", "timestamp"]].values.tolist() == [
        ["order_placed:1", "2026-10-03", unix("2026-10-03 00:10")]
    ]


# --- refunds and subscriptions -------------------------------------------------------------------


def test_refund_issued_is_one_event_per_refund_for_the_orders_person(shop, pipeline):
    shop.customer(1)
    shop.order(1, id=5, total=40.0, paid_at="2026-10-02 10:00")
    shop.refund(5, 12.5, created_at="2026-10-03 09:00", reason="damaged")

    pipeline.run(partition_range=("2026-10-02", "2026-10-03"))

    assert _rows(pipeline.events("refund_issued")) == [
        [
            "refund_issued:1",
            "1",
            unix("2026-10-03 09:00"),
            "2026-10-03",
            {"refund_id": 1, "order_id": 5, "amount": 12.5, "currency": "USD", "reason": "damaged"},
        ]
    ]


def test_subscription_canceled_is_one_event_per_canceled_subscription_at_canceled_at(shop, pipeline):
    shop.customer(1)
    shop.subscription(
        1,
        status="canceled",
        started_at="2026-10-01 08:00",
        canceled_at="2026-10-03 11:00",
        cancel_reason="too expensive",
        sku="BOX-9",
    )
    shop.subscription(1, status="active", started_at="2026-10-02 08:00")
    shop.subscription(1, status="paused", started_at="2026-10-02 09:00", updated_at="2026-10-03 12:00")

    pipeline.run(partition_range=("2026-10-01", "2026-10-03"))

    assert _rows(pipeline.events("subscription_canceled")) == [
        [
            "subscription_canceled:1",
            "1",
            unix("2026-10-03 11:00"),
            "2026-10-03",
            {
                "subscription_id": 1,
                "sku": "BOX-9",
                "cancel_reason": "too expensive",
                "started_at": unix("2026-10-01 08:00"),
            },
        ]
    ]


# --- checkout_started -----------------------------------------------------------------------------


def test_checkout_started_is_one_event_per_cart_at_checkout_started_at(shop, pipeline):
    shop.customer(1)
    cart_id = shop.cart(
        1,
        updated_at="2026-10-02 10:00",
        checkout_started_at="2026-10-02 10:05",
        converted_order_id=1,
        items=[("BEAN-1", "coffee", 2, 12.5), ("MUG-1", "gear", 1, 15.0)],
    )
    shop.order(1, id=1, cart_id=cart_id, total=40.0, paid_at="2026-10-02 10:07")
    shop.cart(1, updated_at="2026-10-02 11:00", checkout_started_at=None, converted_order_id=99)

    pipeline.run(partition="2026-10-02")

    assert _rows(pipeline.events("checkout_started")) == [
        [
            "checkout_started:1",
            "1",
            unix("2026-10-02 10:05"),
            "2026-10-02",
            {
                "cart_id": 1,
                "item_count": 3,
                "value": 40.0,
                "items": [
                    {
                        "sku": "BEAN-1",
                        "product_name": "BEAN-1 name",
                        "category": "coffee",
                        "quantity": 2,
                        "price": 12.5,
                    },
                    {"sku": "MUG-1", "product_name": "MUG-1 name", "category": "gear", "quantity": 1, "price": 15.0},
                ],
            },
        ]
    ]


# --- cart_abandoned -------------------------------------------------------------------------------


def test_an_idle_unconverted_cart_is_abandoned_one_idle_window_after_its_last_activity(shop, pipeline):
    shop.customer(1)
    cart_id = shop.cart(1, updated_at="2026-10-02 10:00", items=[("BEAN-1", "coffee", 2, 12.5)])

    pipeline.run(partition="2026-10-02")

    assert _rows(pipeline.events("cart_abandoned")) == [
        [
            f"cart_abandoned:{cart_id}",
            "1",
            unix("2026-10-02 11:00"),
            "2026-10-02",
            {
                "cart_id": cart_id,
                "item_count": 2,
                "value": 25.0,
                "last_activity_at": unix("2026-10-02 10:00"),
                "items": [
                    {"sku": "BEAN-1", "product_name": "BEAN-1 name", "category": "coffee", "quantity": 2, "price": 12.5}
                ],
            },
        ]
    ]


def test_a_converted_cart_is_never_abandoned(shop, pipeline):
    shop.customer(1)
    shop.cart(1, updated_at="2026-10-02 10:00", converted_order_id=77)

    pipeline.run(partition="2026-10-02")

    assert pipeline.events("cart_abandoned").empty


def test_a_cart_without_items_is_never_abandoned(shop, pipeline):
    shop.customer(1)
    shop.cart(1, updated_at="2026-10-02 10:00", items=[])

    pipeline.run(partition="2026-10-02")

    assert pipeline.events("cart_abandoned").empty


def test_an_item_updated_after_the_cart_row_is_the_carts_last_activity(shop, pipeline):
    shop.customer(1)
    cart_id = shop.cart(1, updated_at="2026-10-02 10:00", item_updated_at="2026-10-02 10:40")

    pipeline.run(partition="2026-10-02")

    events = pipeline.events("cart_abandoned")
    assert events[["event_id", "timestamp"]].values.tolist() == [
        [f"cart_abandoned:{cart_id}", unix("2026-10-02 11:40")]
    ]
    assert json.loads(events["properties"].iloc[0])["last_activity_at"] == unix("2026-10-02 10:40")


def test_the_idle_window_is_a_setting(shop, pipeline):
    shop.customer(1)
    cart_id = shop.cart(1, updated_at="2026-10-02 10:00")

    pipeline.run(partition="2026-10-02", settings=Settings(cart_idle_minutes=30))

    events = pipeline.events("cart_abandoned")
    assert events[["event_id", "timestamp"]].values.tolist() == [
        [f"cart_abandoned:{cart_id}", unix("2026-10-02 10:30")]
    ]


def test_a_purchase_after_the_carts_last_activity_the_same_day_suppresses_abandonment(shop, pipeline):
    shop.customer(1)
    shop.cart(1, updated_at="2026-10-02 10:00")
    shop.order(1, id=1, created_at="2026-10-02 10:18", paid_at="2026-10-02 10:20")

    pipeline.run(partition="2026-10-02")

    assert pipeline.events("cart_abandoned").empty
    assert list(pipeline.events("order_placed")["event_id"]) == ["order_placed:1"]


def test_a_purchase_before_the_carts_last_activity_does_not_suppress_abandonment(shop, pipeline):
    shop.customer(1)
    cart_id = shop.cart(1, updated_at="2026-10-02 10:00")
    shop.order(1, id=1, created_at="2026-10-02 09:28", paid_at="2026-10-02 09:30")

    pipeline.run(partition="2026-10-02")

    events = pipeline.events("cart_abandoned")
    assert events[["event_id", "person_id", "timestamp"]].values.tolist() == [
        [f"cart_abandoned:{cart_id}", "1", unix("2026-10-02 11:00")]
    ]


def test_a_purchase_at_midnight_after_the_day_does_not_suppress_that_days_abandonment(shop, pipeline):
    shop.customer(1)
    cart_id = shop.cart(1, updated_at="2026-10-02 22:00")
    shop.order(1, id=1, created_at="2026-10-02 23:58", paid_at="2026-10-03 00:00:00")

    pipeline.run(partition="2026-10-02")

    events = pipeline.events("cart_abandoned")
    assert events[["event_id", "day", "timestamp"]].values.tolist() == [
        [f"cart_abandoned:{cart_id}", "2026-10-02", unix("2026-10-02 23:00")]
    ]


# --- stable ids and moved events ------------------------------------------------------------------


def test_rerunning_a_partition_gives_identical_event_rows_without_duplicates(shop, pipeline):
    shop.customer(1)
    shop.customer(2)
    shop.order(1, id=1, paid_at="2026-10-02 09:00")
    shop.order(2, id=2, paid_at="2026-10-02 15:00")
    shop.refund(1, 10.0, created_at="2026-10-02 16:00", reason="late")
    shop.cart(1, updated_at="2026-10-02 10:00", checkout_started_at="2026-10-02 10:05")

    pipeline.run(partition="2026-10-02")
    first = _rows(pipeline.events())
    pipeline.run(partition="2026-10-02")
    second = _rows(pipeline.events())

    assert [row[0] for row in first] == [
        "cart_abandoned:1",
        "checkout_started:1",
        "order_placed:1",
        "order_placed:2",
        "refund_issued:1",
    ]
    assert second == first


def test_an_event_whose_time_moved_to_another_day_appears_once_in_the_new_day(shop, pipeline, source_engine):
    shop.customer(1)
    shop.order(1, id=1, paid_at="2026-10-02 10:00")
    pipeline.run(partition_range=("2026-10-02", "2026-10-03"))
    assert pipeline.events("order_placed")[["event_id", "day"]].values.tolist() == [["order_placed:1", "2026-10-02"]]

    with source_engine.begin() as conn:
        conn.execute(
            update(orders)
            .where(orders.c.id == 1)
            .values(paid_at=ts("2026-10-03 09:00"), updated_at=ts("2026-10-03 09:00"))
        )
    pipeline.run(partition_range=("2026-10-02", "2026-10-03"))

    events = pipeline.events()
    assert events[["event_id", "day", "timestamp"]].values.tolist() == [
        ["order_placed:1", "2026-10-03", unix("2026-10-03 09:00")]
    ]


def test_an_event_moved_to_another_day_leaves_its_old_day_when_only_the_new_day_reruns(shop, pipeline, source_engine):
    shop.customer(1)
    shop.order(1, id=1, paid_at="2026-10-02 10:00")
    pipeline.run(partition="2026-10-02")

    with source_engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.id == 1).values(paid_at=ts("2026-10-03 09:00")))
    pipeline.run(partition="2026-10-03")

    events = pipeline.events()
    assert events[["event_id", "day", "timestamp"]].values.tolist() == [
        ["order_placed:1", "2026-10-03", unix("2026-10-03 09:00")]
    ]


def test_a_range_larger_than_one_page_reads_every_row_with_its_items(shop, pipeline):
    # A page of two rows forces several pages per family, each followed by item queries on the
    # same connection (a streaming cursor would fail on MySQL here: "commands out of sync").
    shop.customer(1)
    for hour in range(10, 15):
        cart = shop.cart(1, updated_at=f"2026-10-02 {hour}:00", checkout_started_at=f"2026-10-02 {hour}:05")
        shop.order(1, total=10.0, paid_at=f"2026-10-02 {hour}:30", cart_id=cart)

    pipeline.run(partition="2026-10-02", settings=Settings(chunk_size=2))

    placed = pipeline.events("order_placed")
    assert list(placed["event_id"]) == [f"order_placed:{i}" for i in range(1, 6)]
    assert all(len(json.loads(p)["items"]) == 1 for p in placed["properties"])
    assert len(pipeline.events("checkout_started")) == 5
    assert pipeline.events("cart_abandoned").empty  # each cart was paid through an order pointing at it
