"""The data contracts hold row by row: a bad row is quarantined with its reason, everyone else flows."""

from datetime import datetime

import dagster as dg
import pytest
from sqlalchemy import update

from cio_assets.defs.resources import Settings
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import order_items, orders
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.definitions import daily_partitions


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _listed(pipeline, asset: str) -> list[list[str]]:
    rows = pipeline.table(state_tables.quarantine, ["item_key"])
    rows = rows[(rows["asset"] == asset) & (rows["outcome"] == "held")]
    return rows[["day", "item_key", "source_table", "source_key", "reason"]].values.tolist()


def test_a_negative_order_is_quarantined_and_everyone_else_flows(shop, pipeline, customerio):
    shop.customer(1)
    shop.customer(2)
    shop.order(1, id=1, total=40.0, paid_at="2026-10-02 10:00")
    shop.order(2, id=2, total=-500.0, paid_at="2026-10-02 11:00")

    result = pipeline.run(partition="2026-10-02", assets=SYNC, customerio=customerio.resource())

    assert result.success
    assert set(customerio.fake.people) == {"1"}  # customer 2's attributes for that day are held back
    assert [e["attributes"]["order_id"] for e in customerio.fake.events] == [1]  # and so is the order's event
    rejected = pipeline.table(state_tables.rejected_rows)
    assert rejected[["source_table", "source_key", "column_name", "reason"]].values.tolist() == [
        ["orders", "2", "order_items", "bad_line_item"],  # its one line is priced at -500 too
        ["orders", "2", "subtotal", "negative_amount"],
        ["orders", "2", "total", "negative_amount"],
    ]
    assert _listed(pipeline, "attribute_snapshot") == [["2026-10-02", "2", "orders", "2", "negative_amount: subtotal"]]
    assert _listed(pipeline, "event_log") == [
        ["2026-10-02", "order_placed:2", "orders", "2", "negative_amount: subtotal"]
    ]
    check = _checks(result)["attribute_snapshot_schema"]
    assert check.passed  # one bad row is not a mass of bad rows
    assert (check.metadata["rows_held"].value, check.metadata["rows_written"].value) == (1, 1)


def test_a_corrected_order_flows_through_on_the_next_run_with_its_event(shop, pipeline, customerio, source_engine):
    shop.customer(2, created_at="2026-10-01 09:00")
    shop.order(2, id=2, total=-500.0, paid_at="2026-10-02 11:00")
    resource = customerio.resource()
    pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=resource)
    assert customerio.fake.people["2"]["total_orders"] == 0 and customerio.fake.events == []

    # The shop fixes the amount without touching updated_at; the next run (today's partition, as the
    # source_changes sensor launches it) still finds it, because the row was released from quarantine.
    with source_engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.id == 2).values(subtotal=500.0, total=500.0))
        conn.execute(update(order_items).where(order_items.c.order_id == 2).values(unit_price=500.0))
    pipeline.run(partition=daily_partitions.get_last_partition_key(), assets=SYNC, customerio=resource)

    assert [(e["name"], e["attributes"]["total"], e["attributes"]["backfill"]) for e in customerio.fake.events] == [
        ("order_placed", 500.0, True)
    ]
    assert (customerio.fake.people["2"]["total_orders"], customerio.fake.people["2"]["lifetime_value"]) == (1, 500.0)
    assert pipeline.table(state_tables.rejected_rows)["released_at"].notna().all()
    assert pipeline.events()[["event_id", "day"]].values.tolist() == [["order_placed:2", "2026-10-02"]]


@pytest.mark.parametrize(
    ("bad", "expected_reason"),
    [
        # an amount below zero
        ({"total": -1.0}, "negative_amount"),
        # a status the pipeline does not know
        ({"status": "on_hold", "paid_at": "2026-10-02 10:02"}, "unknown_status"),
        # paid before it was created
        ({"created_at": "2026-10-02 12:00", "paid_at": "2026-10-02 10:00"}, "paid_before_created"),
        # a line with a negative price
        ({"items": [("SKU-1", "coffee", 1, -5.0)]}, "bad_line_item"),
    ],
)
def test_attributes_and_events_agree_on_every_order(shop, pipeline, bad, expected_reason):
    shop.customer(1)
    for order_id in (1, 2, 3):
        shop.order(1, id=order_id, total=10.0, paid_at=f"2026-10-0{order_id} 10:00")
    shop.order(1, id=4, **{"total": 10.0, "created_at": "2026-10-02 10:00", **bad})

    pipeline.run(partition_range=("2026-10-01", "2026-10-03"))

    in_events = {int(e.split(":")[1]) for e in pipeline.events("order_placed")["event_id"]}
    latest = pipeline.snapshot().sort_values("day").iloc[-1]
    assert in_events == {1, 2, 3}
    assert (latest["total_orders"], latest["lifetime_value"]) == (3, 30.0)  # order 4 is in neither
    reasons = set(pipeline.table(state_tables.rejected_rows)["reason"])
    assert expected_reason in reasons


def test_a_mass_of_bad_rows_fails_the_blocking_check_and_writes_nothing(shop, pipeline):
    for customer_id in range(1, 31):
        shop.customer(customer_id)
        shop.order(customer_id, total=40.0, paid_at="2026-10-02 10:00")
    pipeline.run(partition="2026-10-02")
    before = pipeline.snapshot("2026-10-02").to_dict("records")
    with shop.engine.begin() as conn:  # an upstream bug turns most amounts negative (the shop stamps the edit)
        edit = update(orders).where(orders.c.customer_id <= 25)
        conn.execute(edit.values(total=-40.0, updated_at=datetime(2026, 10, 3, 9, 0)))

    result = pipeline.run(partition="2026-10-02", assets=SYNC, raise_on_error=False)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "attribute_snapshot"
    message = failure.event_specific_data.error.message
    assert "25 of 30 rows broke the data contract (83.3%, above CIO_QUARANTINE_MAX_SHARE=5.0%" in message
    assert "nothing was written" in message and "negative_amount (25)" in message
    check = _checks(result)["attribute_snapshot_schema"]
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert pipeline.snapshot("2026-10-02").to_dict("records") == before
    # The blocking check keeps the bad day away from Customer.io: its sync step never runs.
    assert "customerio_people" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


def test_the_quarantine_threshold_is_configuration(shop, pipeline):
    for customer_id in range(1, 4):
        shop.customer(customer_id)
        shop.order(customer_id, total=-40.0 if customer_id == 1 else 40.0, paid_at="2026-10-02 10:00")

    strict = Settings(quarantine_max_share=0.2, quarantine_min_rows=1)
    result = pipeline.run(partition="2026-10-02", settings=strict, raise_on_error=False)

    assert not result.success  # 1 of 3 people held: 33% > 20%, and at least 1 row
    assert not _checks(result)["attribute_snapshot_schema"].passed


def test_an_email_too_long_for_a_customer_io_id_is_listed_not_sent(shop, pipeline):
    long_email = "a" * 60 + "@" + "b" * 60 + "." + "c" * 40 + ".com"  # 166 bytes, a valid address
    shop.customer(1, email=long_email)
    shop.customer(2, email="short@shop.com")

    pipeline.run(partition="2026-10-01", settings=Settings(canonical_id="email"))

    unresolved = pipeline.table(state_tables.unresolved_identifiers)
    assert unresolved[["source_table", "source_key", "reason"]].values.tolist() == [
        ["customers", "1", "e-mail longer than the 150-byte id limit"]
    ]
    assert list(pipeline.snapshot("2026-10-01")["person_id"]) == ["short@shop.com"]
