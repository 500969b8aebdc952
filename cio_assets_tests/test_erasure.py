"""Erasure: a person an erasure request names is suppressed (or deleted) in Customer.io once, purged from the
pipeline's tables and ledgers, and never sent again. People who vanish from the shop without a request are listed,
and deleted in Customer.io only under CIO_VANISHED=delete."""

import dagster as dg
import orjson
import pytest
from sqlalchemy import text

from cio_assets.defs.checks.profiles import VANISHED_CHECK, customerio_people_profile_checks
from cio_assets.defs.resources import Settings
from cio_assets.schema import state as state_tables
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.fake_customerio import validate_batch_body

OCTOBER = ("2026-10-01", "2026-10-03")
WITH_CHECK = [*SYNC, customerio_people_profile_checks]


def _ada_and_bob(shop) -> None:
    shop.customer(1, email="ada@shop.com", created_at="2026-10-01 09:00")
    shop.customer(2, email="bob@shop.com", created_at="2026-10-01 10:00")
    for customer in (1, 2):
        shop.order(customer, total=30.0, paid_at="2026-10-02 10:00")
    shop.link("anon-bob", 2, linked_at="2026-10-01 12:00")


def _rows_about(pipeline, person_id: str) -> dict[str, int]:
    """How many rows each of the pipeline's tables holds about a person."""
    tables = {
        "snapshot": (state_tables.attribute_snapshot, "person_id"),
        "event_log": (state_tables.event_log, "person_id"),
        "people_ledger": (state_tables.people_ledger, "person_id"),
        "anonymous_ledger": (state_tables.anonymous_ledger, "person_id"),
    }
    return {name: int((pipeline.table(table)[column] == person_id).sum()) for name, (table, column) in tables.items()}


@pytest.mark.parametrize(
    ("request_by", "action"),
    [
        # by customer id, suppressed (the default): deleted and the identifier blocked
        ({"customer_id": 2}, "suppress"),
        # by e-mail as typed, deleted only
        ({"email": " BOB@Shop.com "}, "delete"),
    ],
)
def test_an_erased_person_leaves_customerio_and_every_table_for_good(shop, pipeline, customerio, request_by, action):
    _ada_and_bob(shop)
    resource, settings = customerio.resource(), Settings(erasure=action)
    for _ in range(2):  # Bob is identified, with his anonymous id and his order
        pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=settings, customerio=resource)
    assert all(_rows_about(pipeline, "2").values())  # Bob is in every table
    shop.erasure_request(**request_by)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=settings, customerio=resource)

    removals = [i for i in customerio.fake.batch_items() if i["action"] in ("suppress", "delete")]
    assert removals == [{"type": "person", "identifiers": {"id": "2"}, "action": action}]
    assert "2" not in customerio.fake.people and ("2" in customerio.fake.suppressed) == (action == "suppress")
    assert _rows_about(pipeline, "2") == {"snapshot": 0, "event_log": 0, "people_ledger": 0, "anonymous_ledger": 0}
    erased = pipeline.table(state_tables.erasures)
    assert erased[["person_id", "customerio_action"]].values.tolist() == [["2", action]]
    people = result.asset_materializations_for_node("customerio_people")[0].metadata
    assert people["people_erased_in_customerio"].value == 1
    assert result.asset_materializations_for_node("identity_map")[0].metadata["run_people_erased"].value == 1
    # Bob orders again: nothing about him is computed or sent, and the erasure is not sent twice.
    sent = len(customerio.fake.batch_items())
    shop.order(2, total=12.0, paid_at="2026-10-03 11:00")
    pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=settings, customerio=resource, full_refresh=True)
    assert [i for i in customerio.fake.batch_items()[sent:] if i.get("identifiers") == {"id": "2"}] == []
    assert _rows_about(pipeline, "2") == {"snapshot": 0, "event_log": 0, "people_ledger": 0, "anonymous_ledger": 0}
    assert customerio.fake.people["1"]["total_orders"] == 1  # everyone else still syncs
    assert all(validate_batch_body(orjson.loads(r.body)) == [] for r in customerio.fake.requests)


def test_erasing_a_person_erases_the_duplicate_profiles_folded_into_them(shop, pipeline, customerio, source_engine):
    shop.customer(1, email="ada@shop.com", created_at="2026-10-01 09:00")
    shop.customer(2, email="ada.work@shop.com", created_at="2026-10-02 09:00")
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)  # two profiles
    with source_engine.begin() as conn:  # her second account takes her e-mail: one human, found later
        conn.execute(text("UPDATE customers SET email = 'ada@shop.com', updated_at = '2026-10-03 08:00' WHERE id = 2"))
    shop.erasure_request(customer_id=1)

    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)

    removed = sorted(i["identifiers"]["id"] for i in customerio.fake.batch_items() if i["action"] == "suppress")
    assert removed == ["1", "2"]
    assert customerio.fake.merges == []  # nothing left to merge into
    assert {"1", "2"}.isdisjoint(customerio.fake.people)


def _vanished_check(result) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == VANISHED_CHECK]
    return evaluation


def test_a_customer_gone_without_a_request_is_listed_and_deleted_only_when_asked(shop, pipeline, customerio):
    _ada_and_bob(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, customerio=resource)
    shop.delete_customer(2)

    kept = pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, customerio=resource)

    assert "2" in customerio.fake.people  # CIO_VANISHED=keep: listed, not deleted
    check = _vanished_check(kept)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "| 2 |" in check.metadata["vanished_sample"].value
    deleting = Settings(vanished="delete")
    deleted = pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, settings=deleting, customerio=resource)
    assert "2" not in customerio.fake.people
    assert (
        deleted.asset_materializations_for_node("customerio_people")[0].metadata["vanished_deleted_in_customerio"].value
        == 1
    )
    again = pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, settings=deleting, customerio=resource)
    assert _vanished_check(again).passed
    assert [i["action"] for i in customerio.fake.batch_items()].count("delete") == 1


def test_a_shop_without_the_erasure_table_runs_as_before(shop, pipeline, customerio, source_engine):
    _ada_and_bob(shop)
    with source_engine.begin() as conn:
        conn.execute(text("DROP TABLE erasure_requests"))

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=customerio.resource())

    assert {"1", "2"} <= set(customerio.fake.people)
    assert result.asset_materializations_for_node("identity_map")[0].metadata["people_erased"].value == 0
