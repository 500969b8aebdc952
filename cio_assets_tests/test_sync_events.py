"""Event sync: exactly once through crashes, throttling and outages; history marked; failures explained."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import update

from cio_assets.customerio.client import AuthenticationError
from cio_assets.customerio.ids import event_ulid
from cio_assets.defs.resources import CustomerIO, Settings
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import cart_items, order_items
from cio_assets_tests.conftest import PIPELINE, SYNC, unix
from cio_assets_tests.definitions import customerio_people, daily_partitions
from cio_assets_tests.fake_customerio import validate_batch_body

OCTOBER = ("2026-10-01", "2026-10-03")


def _three_orders(shop):
    shop.customer(1)
    for day in ("2026-10-01", "2026-10-02", "2026-10-03"):
        shop.order(1, total=20.0, paid_at=f"{day} 12:00")


def _metadata(result, node="customerio_events"):
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def _landed(fake) -> list[tuple[str, str, int]]:
    return sorted((e["name"], e["id"], e["timestamp"]) for e in fake.events)


def _expected_orders() -> list[tuple[str, str, int]]:
    return sorted(
        ("order_placed", event_ulid(f"order_placed:{i}", unix(f"2026-10-0{i} 12:00")), unix(f"2026-10-0{i} 12:00"))
        for i in (1, 2, 3)
    )


def test_every_event_lands_once_with_its_deterministic_id_and_history_is_marked(shop, pipeline, customerio):
    _three_orders(shop)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=customerio.resource())

    assert _landed(customerio.fake) == _expected_orders()
    assert all(e["attributes"]["backfill"] is True for e in customerio.fake.events)  # weeks old: history
    # Each event carries its own order, whatever order the batches arrived in (several are in flight at once).
    orders_by_id = {e["id"]: e["attributes"]["order_id"] for e in customerio.fake.events}
    assert orders_by_id == {event_ulid(f"order_placed:{i}", unix(f"2026-10-0{i} 12:00")): i for i in (1, 2, 3)}
    assert (_metadata(result)["events_history"], _metadata(result)["events_live"]) == (3, 0)
    assert all(validate_batch_body(orjson.loads(r.body)) == [] for r in customerio.fake.requests)
    ledger = pipeline.table(state_tables.event_ledger, ["event_id"])
    assert list(ledger["event_id"]) == ["order_placed:1", "order_placed:2", "order_placed:3"]


def test_a_rerun_sends_zero_requests(shop, pipeline, customerio):
    _three_orders(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)
    before = len(customerio.fake.requests)

    again = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)

    assert len(customerio.fake.requests) == before
    assert _metadata(again)["events_duplicate_skipped"] == 3
    assert _metadata(again)["requests"] == 0
    # Each day's materialisation counts that day's own events: one order on each day of the range.
    per_day = {
        m.partition: m.metadata["events/duplicates_skipped"].value
        for m in again.asset_materializations_for_node("customerio_events")
    }
    assert per_day == {"2026-10-01": 1, "2026-10-02": 1, "2026-10-03": 1}


def test_a_crash_between_acceptance_and_the_ledger_write_duplicates_nothing(shop, pipeline, customerio):
    _three_orders(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=[*PIPELINE, customerio_people], customerio=resource)
    # Customer.io applies the event batch, but the answer is lost: the client sends the same body again.
    customerio.fake.accept_then_drop_next(1)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)

    assert _landed(customerio.fake) == _expected_orders()
    assert customerio.fake.duplicate_events == 3  # the resend was de-duplicated by the ULID
    assert (_metadata(result)["transport_errors"], _metadata(result)["items_sent"]) == (1, 3)
    assert len(pipeline.table(state_tables.event_ledger)) == 3


def test_a_429_storm_and_server_errors_still_deliver_everything_once(shop, pipeline, customerio):
    _three_orders(shop)
    customerio.fake.fail_next(2, 429, retry_after="1")
    customerio.fake.fail_next(2, 500)
    customerio.fake.fail_next(1, 503)
    customerio.fake.drop_next(1)

    started = time.monotonic()
    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=customerio.resource())

    assert time.monotonic() - started >= 2  # Retry-After: 1 was honoured twice
    assert _landed(customerio.fake) == _expected_orders()
    assert set(customerio.fake.people) == {"1"}
    people, events = _metadata(result, "customerio_people"), _metadata(result)
    assert people["throttled_429"] + events["throttled_429"] == 2
    assert people["server_errors_5xx"] + events["server_errors_5xx"] == 3
    assert people["retries"] + events["retries"] == 6
    assert customerio.fake.duplicate_events == 0


LONG_NAME = "Single-origin whole bean, " + "x" * 229  # 255 characters: the widest name the reference schema holds


def _wholesale_lines(count: int = 400) -> list[tuple[str, str, int, float]]:
    """(sku, category, quantity, unit price): line i is worth i + 1 dollars, so the most valuable are the last."""
    return [(f"WHL-{i:04d}", "coffee", 1, float(i + 1)) for i in range(count)]


@pytest.mark.parametrize(
    ("family", "make"),
    [
        # a paid wholesale order: drives post-purchase journeys and suppresses cart recovery
        (
            "order_placed",
            lambda shop: shop.order(1, total=80_200.0, paid_at="2026-10-01 13:00", items=_wholesale_lines()),
        ),
        # a cart that started checkout with the same lines
        (
            "checkout_started",
            lambda shop: shop.cart(1, checkout_started_at="2026-10-01 13:00", items=_wholesale_lines()),
        ),
    ],
)
def test_a_400_line_event_is_delivered_with_its_most_valuable_lines_and_its_true_count(
    shop, pipeline, customerio, family, make
):
    shop.customer(1)
    source_id = make(shop)
    with shop.engine.begin() as conn:  # every line's name as long as the schema allows
        for table in (order_items, cart_items):
            conn.execute(update(table).values(product_name=LONG_NAME))

    result = pipeline.run(partition="2026-10-01", assets=SYNC, customerio=customerio.resource())

    [event] = [e for e in customerio.fake.events if e["name"] == family]
    data = event["attributes"]
    assert (data["item_count"], data["items_truncated"]) == (400, True)
    kept = [line["price"] for line in data["items"]]
    assert 0 < len(kept) < 400
    assert kept == [float(400 - i) for i in range(len(kept))]  # the most valuable first, none skipped
    assert all(validate_batch_body(orjson.loads(r.body)) == [] for r in customerio.fake.requests)
    assert pipeline.table(state_tables.delivery_rejections).empty
    listed = pipeline.table(state_tables.quarantine)
    truncated = listed[listed["outcome"] == "truncated"]
    assert truncated[["item_key", "source_key"]].values.tolist() == [[f"{family}:{source_id}", str(source_id)]]
    assert truncated["reason"].iloc[0].startswith(f"400 lines; the {len(kept)} most valuable kept")
    assert _metadata(result)["rejected"] == 0


def test_a_persons_identify_lands_before_their_events_in_the_same_run(shop, pipeline, customerio):
    shop.customer(1)
    shop.order(1, total=20.0, paid_at="2026-10-01 12:00")

    pipeline.run(partition="2026-10-01", assets=SYNC, customerio=customerio.resource())

    actions = [item["action"] for r in customerio.fake.requests for item in orjson.loads(r.body)["batch"]]
    assert actions == ["identify", "event"]


def test_an_event_whose_person_customerio_refused_waits_instead_of_creating_a_bare_profile(shop, pipeline, customerio):
    shop.customer(1)
    shop.order(1, total=20.0, paid_at="2026-10-01 12:00")
    resource = customerio.resource()
    customerio.fake.refuse_people({"1"})

    first = pipeline.run(partition="2026-10-01", assets=SYNC, customerio=resource)

    assert customerio.fake.people == {} and customerio.fake.events == []  # no bare profile
    assert _metadata(first)["events_waiting_for_identify"] == 1
    waiting = pipeline.table(state_tables.delivery_rejections, ["kind"])
    assert waiting[["kind", "item_key"]].values.tolist() == [["event", "order_placed:1"], ["person", "1"]]
    assert waiting["reason"].iloc[0].startswith("held: the person is not identified")

    customerio.fake.refuse_people(set())
    later = pipeline.run(partition="2026-10-05", assets=SYNC, customerio=resource)  # nothing new that day

    assert customerio.fake.people["1"]["email"] == "customer1@shop.com"
    assert [e["name"] for e in customerio.fake.events] == ["order_placed"]
    assert _metadata(later)["retried_refusals"] == 1
    assert pipeline.table(state_tables.delivery_rejections).empty


def test_live_events_carry_no_backfill_flag(shop, pipeline, customerio):
    paid = (datetime.now(UTC) - timedelta(minutes=30)).replace(tzinfo=None, microsecond=0)
    shop.customer(1, created_at="2026-10-01 09:00")
    shop.order(1, total=20.0, paid_at=paid, created_at=paid - timedelta(minutes=2))

    day = daily_partitions.get_partition_key_for_timestamp(paid.replace(tzinfo=UTC).timestamp())
    result = pipeline.run(partition=day, assets=SYNC, customerio=customerio.resource())

    assert [("backfill" in e["attributes"], e["timestamp"]) for e in customerio.fake.events] == [
        (False, int(paid.replace(tzinfo=UTC).timestamp()))
    ]
    assert _metadata(result)["events_live"] == 1


def test_history_events_can_be_left_out(shop, pipeline, customerio):
    _three_orders(shop)

    result = pipeline.run(
        partition_range=OCTOBER,
        assets=SYNC,
        customerio=customerio.resource(),
        settings=Settings(history_events="skip"),
    )

    assert customerio.fake.events == []
    assert set(customerio.fake.people) == {"1"}  # attributes still go
    assert _metadata(result)["events_history_skipped"] == 3


def test_a_dry_run_sends_nothing_and_writes_the_exact_batches_to_the_outbox(shop, pipeline, customerio, tmp_path):
    _three_orders(shop)

    result = pipeline.run(
        partition_range=OCTOBER, assets=SYNC, customerio=customerio.resource(dry_run=True, outbox_dir=str(tmp_path))
    )

    assert customerio.fake.requests == []
    outbox = _metadata(result)["outbox"]
    bodies = [orjson.loads(line) for line in Path(outbox).read_bytes().splitlines()]
    assert [validate_batch_body(body) for body in bodies] == [[]]
    assert sorted(item["id"] for item in bodies[0]["batch"]) == sorted(e[1] for e in _expected_orders())
    assert pipeline.table(state_tables.event_ledger).empty  # a plan is not a delivery


def test_no_credentials_means_a_dry_run(shop, pipeline, customerio, tmp_path):
    _three_orders(shop)

    result = pipeline.run(
        partition=OCTOBER[0], assets=SYNC, customerio=CustomerIO(track_url=customerio.url, outbox_dir=str(tmp_path))
    )

    assert customerio.fake.requests == []
    assert _metadata(result)["dry_run"] is True


def test_a_wrong_api_key_fails_fast_without_revealing_it(shop, pipeline, customerio):
    _three_orders(shop)

    with pytest.raises(AuthenticationError) as failure:
        pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=customerio.resource(api_key="wrong-secret-key"))

    message = str(failure.value)
    assert "refused the Track API credentials for site id 'site-test' (HTTP 401)" in message
    assert "wrong-secret-key" not in message
    assert len(customerio.fake.requests) == 1  # no retry of a 401
    assert customerio.fake.people == {} and customerio.fake.events == []
