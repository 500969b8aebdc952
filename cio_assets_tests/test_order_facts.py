"""Order facts count paid orders only, at paid_at; refunds reduce net value."""

from cio_assets_tests.conftest import unix


def test_paid_orders_count_and_failed_payments_never_do(shop, pipeline):
    shop.customer(1, created_at="2026-10-01 09:00")
    shop.order(1, total=40.0, paid_at="2026-10-02 10:00", items=[("BEAN-1", "coffee", 2, 20.0)])
    shop.order(1, total=25.0, paid_at="2026-10-03 18:30", items=[("TEA-1", "tea", 1, 25.0)])
    shop.order(1, total=99.0, status="payment_failed", created_at="2026-10-03 19:00")
    shop.order(1, total=15.0, status="pending", created_at="2026-10-03 19:05")

    pipeline.run(partition_range=("2026-10-01", "2026-10-03"))

    day3 = pipeline.person("1", "2026-10-03")
    assert day3["total_orders"] == 2
    assert day3["lifetime_value"] == 65.0
    assert day3["first_order_at"] == unix("2026-10-02 10:00")
    assert day3["last_order_at"] == unix("2026-10-03 18:30")
    assert day3["last_product_category"] == "tea"
    assert day3["as_of"] == unix("2026-10-04 00:00")

    day2 = pipeline.person("1", "2026-10-02")
    assert (day2["total_orders"], day2["lifetime_value"], day2["last_product_category"]) == (1, 40.0, "coffee")
    assert list(pipeline.events("order_placed")["event_id"]) == ["order_placed:1", "order_placed:2"]
