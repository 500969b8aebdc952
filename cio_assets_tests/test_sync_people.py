"""People sync: everyone once, then only what changed, never rolled back, refusals retried."""

import orjson
from sqlalchemy import update

from cio_assets.sources.tables import customers
from cio_assets.state import tables as state_tables
from cio_assets_tests.conftest import SYNC, unix
from cio_assets_tests.fake_customerio import validate_batch_body


def _identifies(fake, since: int = 0) -> list[dict]:
    bodies = [orjson.loads(r.body) for r in fake.requests[since:] if r.status == 200]
    return [item for body in bodies for item in body["batch"] if item["action"] == "identify"]


def _metadata(result, node="customerio_people"):
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def _two_customers(shop):
    shop.customer(1, email=" Ada@Shop.com ", first_name="Ada", created_at="2026-10-01 09:00")
    shop.customer(2, email="bob@shop.com", first_name="Bob", email_opt_in=False, created_at="2026-10-01 10:00")
    shop.order(1, total=50.0, paid_at="2026-10-02 10:00")


def test_a_first_sync_identifies_everyone_once_with_their_state(shop, pipeline, customerio):
    _two_customers(shop)

    result = pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=customerio.resource())

    people = customerio.fake.people
    assert set(people) == {"1", "2"}
    assert {k: people["1"][k] for k in ("email", "first_name", "total_orders", "lifetime_value", "email_eligible")} == {
        "email": "ada@shop.com",
        "first_name": "Ada",
        "total_orders": 1,
        "lifetime_value": 50.0,
        "email_eligible": True,
    }
    assert people["1"]["last_order_at"] == unix("2026-10-02 10:00")
    assert all(isinstance(people["1"][k], int) for k in ("created_at", "first_order_at", "last_order_at"))
    assert "phone" not in people["1"]  # nothing null is sent to a new profile
    assert (people["2"]["total_orders"], people["2"]["email_eligible"]) == (0, False)
    identifies = _identifies(customerio.fake)
    assert sorted(i["identifiers"]["id"] for i in identifies) == ["1", "2"]
    # Each person's latest snapshot: Ada changed on Oct 2 (an order), Bob last on Oct 1 (sign-up).
    assert {i["identifiers"]["id"]: i["timestamp"] for i in identifies} == {
        "1": unix("2026-10-03 00:00"),
        "2": unix("2026-10-02 00:00"),
    }
    assert (_metadata(result)["people_created"], _metadata(result)["rejected"]) == (2, 0)
    assert all(validate_batch_body(orjson.loads(r.body)) == [] for r in customerio.fake.requests)


def test_a_rerun_sends_nothing(shop, pipeline, customerio):
    _two_customers(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=resource)
    requests_before = len(customerio.fake.requests)

    again = pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=resource)

    assert len(customerio.fake.requests) == requests_before
    assert _metadata(again)["people_unchanged"] == 2
    assert _metadata(again, "customerio_events")["events_duplicate_skipped"] == 1


def test_a_changed_attribute_sends_one_identify_with_only_that_key(shop, pipeline, customerio, source_engine):
    _two_customers(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=resource)
    before = len(customerio.fake.requests)
    with source_engine.begin() as conn:
        conn.execute(
            update(customers).where(customers.c.id == 1).values(first_name="Grace", updated_at="2026-10-03 08:00")
        )

    pipeline.run(partition="2026-10-03", assets=SYNC, customerio=resource)

    assert len(customerio.fake.requests) == before + 1
    assert _identifies(customerio.fake, since=before) == [
        {
            "type": "person",
            "identifiers": {"id": "1"},
            "action": "identify",
            "timestamp": unix("2026-10-04 00:00"),
            "attributes": {"first_name": "Grace"},
        }
    ]
    assert customerio.fake.people["1"]["first_name"] == "Grace"


def test_re_running_an_old_partition_never_rolls_newer_state_back(shop, pipeline, customerio):
    shop.customer(1, created_at="2026-10-01 09:00")
    shop.order(1, total=10.0, paid_at="2026-10-02 10:00")
    shop.order(1, total=20.0, paid_at="2026-10-03 10:00")
    resource = customerio.resource()
    pipeline.run(partition_range=("2026-10-01", "2026-10-03"), assets=SYNC, customerio=resource)
    before = len(customerio.fake.requests)

    old = pipeline.run(partition="2026-10-02", assets=SYNC, customerio=resource)

    assert len(customerio.fake.requests) == before
    assert _metadata(old)["people_skipped_older"] == 1
    assert (customerio.fake.people["1"]["total_orders"], customerio.fake.people["1"]["last_order_at"]) == (
        2,
        unix("2026-10-03 10:00"),
    )


def test_a_person_refused_by_customerio_is_retried_on_later_runs(shop, pipeline, customerio):
    _two_customers(shop)
    resource = customerio.resource()
    customerio.fake.refuse_people({"2"}, reason="invalid", field="identifiers.id")

    first = pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=resource)

    assert set(customerio.fake.people) == {"1"}  # a 207: only the refused item is missing
    assert _metadata(first)["rejected"] == 1
    refused = pipeline.table(state_tables.delivery_rejections)
    assert refused[["kind", "item_key", "attempts"]].values.tolist() == [["person", "2", 1]]
    assert "invalid" in refused["reason"][0]

    customerio.fake.refuse_people(set())
    retried = pipeline.run(partition="2026-10-05", assets=SYNC, customerio=resource)  # nothing changed that day

    assert customerio.fake.people["2"]["first_name"] == "Bob"
    assert _metadata(retried)["retried_refusals"] == 1
    assert pipeline.table(state_tables.delivery_rejections).empty


def test_a_name_over_customerios_value_limit_is_clipped_and_the_rest_of_the_identify_goes_out(
    shop, pipeline, customerio
):
    shop.customer(1, first_name="😀" * 255)  # 255 characters fit VARCHAR(255), but 1020 bytes do not fit Customer.io
    resource = customerio.resource()

    pipeline.run(partition="2026-10-01", assets=SYNC, customerio=resource)

    person = customerio.fake.people["1"]
    assert person["first_name"] == "😀" * 250  # 1000 bytes: the longest whole-character prefix that fits
    assert (person["email"], person["email_eligible"]) == ("customer1@shop.com", True)
    assert pipeline.table(state_tables.delivery_rejections).empty
    listed = pipeline.table(state_tables.quarantine)
    assert listed[["asset", "item_key", "outcome", "reason"]].values.tolist() == [
        [
            "attribute_snapshot",
            "1",
            "clipped",
            "first_name is 1020 bytes, clipped to 1000 (Customer.io's limit is 1000)",
        ]
    ]

    requests = len(customerio.fake.requests)
    pipeline.run(partition="2026-10-01", assets=SYNC, customerio=resource)
    assert len(customerio.fake.requests) == requests  # the ledger holds the clipped value: nothing to re-send


def test_a_person_refused_on_every_run_stays_listed_and_counts_each_attempt(shop, pipeline, customerio):
    # The person is fresh in every run (no ledger entry yet), so each run both re-plans and retries them:
    # the fresh identify replaces the earlier refusal, whose attempts must keep counting up.
    shop.customer(1)
    resource = customerio.resource()
    customerio.fake.refuse_people({"1"}, reason="invalid", field="identifiers.id")

    attempts = []
    for _ in range(3):
        pipeline.run(partition="2026-10-01", assets=SYNC, customerio=resource)
        refused = pipeline.table(state_tables.delivery_rejections)
        attempts.append(refused[["item_key", "attempts"]].values.tolist())

    assert attempts == [[["1", 1]], [["1", 2]], [["1", 3]]]
