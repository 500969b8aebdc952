"""One ingestion path per event family, under the exact names journeys use (CIO_EVENT_FAMILIES, CIO_EVENT_NAMES).

A family left out is never sent and never recorded as delivered, so turning it on later sends its events once.
A renamed family is sent under its new name with the same event id, so a rename re-sends nothing."""

from pathlib import Path

import orjson
import pytest

from cio_assets.customerio.ids import event_ulid
from cio_assets.defs.resources import Settings
from cio_assets_tests.conftest import SYNC, unix
from cio_assets_tests.fake_customerio import validate_batch_body

OCTOBER = ("2026-10-01", "2026-10-03")
ORDERS_ONLY = Settings(event_families="order_placed")


def _order_and_refund(shop) -> int:
    shop.customer(1)
    order = shop.order(1, total=40.0, paid_at="2026-10-01 12:00")
    shop.refund(order, 10.0, "2026-10-02 09:00")
    return order


def _landed(fake) -> list[tuple[str, str]]:
    return sorted((event["name"], event["id"]) for event in fake.events)


def _metadata(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("customerio_events")[0].metadata.items()}


def test_a_family_left_out_is_not_sent_and_goes_out_once_when_it_is_turned_on(shop, pipeline, customerio):
    order = _order_and_refund(shop)
    resource = customerio.resource()

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=ORDERS_ONLY, customerio=resource)

    placed = ("order_placed", event_ulid(f"order_placed:{order}", unix("2026-10-01 12:00")))
    assert _landed(customerio.fake) == [placed]
    metadata = _metadata(result)
    assert (metadata["events_family_off"], metadata["event_families"]) == (1, "order_placed")
    per_day = {
        m.partition: m.metadata["events/family_off"].value
        for m in result.asset_materializations_for_node("customerio_events")
    }
    assert per_day == {"2026-10-01": 0, "2026-10-02": 1, "2026-10-03": 0}  # the refund's own day

    again = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)  # every family, the default

    refund = [event for event in customerio.fake.events if event["name"] == "refund_issued"]
    assert len(refund) == 1 and len(customerio.fake.events) == 2  # the refund once, the order not again
    assert (_metadata(again)["events_family_off"], _metadata(again)["events_duplicate_skipped"]) == (0, 1)


def test_a_renamed_family_is_sent_under_its_new_name_and_the_rename_sends_nothing_again(shop, pipeline, customerio):
    _order_and_refund(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)
    requests = len(customerio.fake.requests)
    renamed = Settings(event_names="order_placed=Order Completed")

    rerun = pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=renamed, customerio=resource)

    assert len(customerio.fake.requests) == requests  # same ids: nothing is sent again
    assert _metadata(rerun)["event_names"]["order_placed"] == "Order Completed"
    second = shop.order(1, total=25.0, paid_at="2026-10-03 08:00")
    pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=renamed, customerio=resource)

    new = customerio.fake.events[-1]
    assert (new["name"], new["id"]) == (
        "Order Completed",
        event_ulid(f"order_placed:{second}", unix("2026-10-03 08:00")),
    )
    assert all(validate_batch_body(orjson.loads(r.body)) == [] for r in customerio.fake.requests)


def test_the_dry_run_outbox_shows_the_names_and_families_that_would_be_sent(shop, pipeline):
    _order_and_refund(shop)
    settings = Settings(event_families="order_placed,refund_issued", event_names="refund_issued=Refund Issued")

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=settings)

    outbox = _metadata(result)["outbox"]
    items = [item for line in Path(outbox).read_text().splitlines() for item in orjson.loads(line)["batch"]]
    assert sorted(item["name"] for item in items) == ["Refund Issued", "order_placed"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        # a family the pipeline does not have (a typo would silently send nothing)
        ("event_families", "orders", "'orders' is not one"),
        # nothing left to send
        ("event_families", " , ", "expected at least one event family"),
        # a pair without a name
        ("event_names", "order_placed=", "'order_placed=' is not one"),
        # a family that does not exist
        ("event_names", "order=Order Completed", "'order' is not one"),
        # longer than Customer.io accepts
        ("event_names", "order_placed=" + "x" * 101, "at most 100 bytes"),
        # two families under one name: a journey could not tell them apart
        ("event_names", "refund_issued=order_placed", "order_placed and refund_issued would both be sent as"),
        # the same family twice
        ("event_names", "order_placed=A,order_placed=B", "'order_placed' is named twice"),
    ],
)
def test_family_settings_name_the_bad_entry(field, value, expected):
    with pytest.raises(Exception, match=expected):
        Settings(**{field: value})
