"""Anonymous activity joins the person: each anonymous id resolved to a person reaches Customer.io once, in an
identify of that person carrying `anonymous_id`, in link order, never before Customer.io knows the person, and for a
new person in the same run as their first identify."""

from pathlib import Path

import orjson

from cio_assets.schema import state as state_tables
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.fake_customerio import validate_batch_body

OCTOBER = ("2026-10-01", "2026-10-03")


def _customer_with_three_anonymous_ids(shop) -> None:
    """Customer 7: two links (the later one written first) and a cart that stitches a third id by e-mail."""
    shop.customer(7, email="eve@shop.com")
    shop.order(7, total=30.0, paid_at="2026-10-02 10:00")
    shop.link("anon-b", 7, linked_at="2026-10-02 12:00")
    shop.link("anon-a", 7, linked_at="2026-10-01 12:00")
    shop.cart(None, anonymous_id="anon-c", email="eve@shop.com", updated_at="2026-10-02 15:00", items=[])


def _identifies(fake, person_id: str) -> list[dict]:
    return [
        item["attributes"]
        for item in fake.batch_items()
        if item["action"] == "identify" and item["identifiers"] == {"id": person_id}
    ]


def _anonymous_ids_sent(fake, person_id: str) -> list[str]:
    return [a["anonymous_id"] for a in _identifies(fake, person_id) if "anonymous_id" in a]


def test_each_anonymous_id_reaches_the_person_once_in_link_order_after_their_identify(shop, pipeline, customerio):
    _customer_with_three_anonymous_ids(shop)
    resource = customerio.resource()

    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)

    assert _anonymous_ids_sent(customerio.fake, "7") == ["anon-a", "anon-b", "anon-c"]  # in the same run
    requests = len(customerio.fake.requests)
    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)
    assert len(customerio.fake.requests) == requests  # later runs send nothing again
    identifies = _identifies(customerio.fake, "7")
    assert identifies[0]["email"] == "eve@shop.com"  # the person first, with e-mail; then their anonymous ids
    assert all(set(a) == {"anonymous_id"} for a in identifies[1:])
    ledger = pipeline.table(state_tables.anonymous_ledger, ["anonymous_id"])
    assert ledger[["anonymous_id", "person_id"]].values.tolist() == [["anon-a", "7"], ["anon-b", "7"], ["anon-c", "7"]]
    assert all(validate_batch_body(orjson.loads(r.body)) == [] for r in customerio.fake.requests)


def test_a_new_link_to_a_known_person_is_sent_alone(shop, pipeline, customerio):
    _customer_with_three_anonymous_ids(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)
    shop.link("anon-d", 7, linked_at="2026-10-03 09:00")

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)

    assert _anonymous_ids_sent(customerio.fake, "7") == ["anon-a", "anon-b", "anon-c", "anon-d"]
    metadata = result.asset_materializations_for_node("customerio_people")[0].metadata
    assert metadata["anonymous_ids"].value == 1


def test_no_anonymous_id_goes_out_for_a_person_customerio_refused(shop, pipeline, customerio):
    _customer_with_three_anonymous_ids(shop)
    resource = customerio.resource()
    customerio.fake.refuse_people({"7"})

    for _ in range(2):
        pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)

    assert "7" not in customerio.fake.people  # an anonymous id alone would have made a bare profile
    customerio.fake.refuse_people(set())
    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)  # the retried identify, then the ids
    assert _anonymous_ids_sent(customerio.fake, "7") == ["anon-a", "anon-b", "anon-c"]
    assert customerio.fake.people["7"]["email"] == "eve@shop.com"


def test_the_dry_run_outbox_shows_the_anonymous_ids_it_would_send(shop, pipeline):
    _customer_with_three_anonymous_ids(shop)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC)

    metadata = {k: v.value for k, v in result.asset_materializations_for_node("customerio_people")[0].metadata.items()}
    lines = Path(metadata["outbox"]).read_text().splitlines()
    items = [item for line in lines for item in orjson.loads(line)["batch"]]
    assert [i["attributes"].get("anonymous_id") for i in items] == [None, "anon-a", "anon-b", "anon-c"]
    assert metadata["anonymous_ids"] == 3
