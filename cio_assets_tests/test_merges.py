"""Duplicates merge in Customer.io too: a person synced as their own profile and later found to share an e-mail
with an older customer is merged into that survivor once, only after the survivor exists there, and never for a
shared phone. CIO_MERGE_DUPLICATES=plan sends no merge and lists them in a WARN check."""

from datetime import datetime

import dagster as dg
import orjson
from sqlalchemy import update

from cio_assets.defs.checks.profiles import CHECK, VANISHED_CHECK, customerio_people_profile_checks
from cio_assets.defs.resources import Settings
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import customers
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.fake_customerio import validate_batch_body

OCTOBER = ("2026-10-01", "2026-10-03")
WITH_CHECK = [*SYNC, customerio_people_profile_checks]


def _two_customers_synced_apart(shop, pipeline, resource, settings=None) -> None:
    """Ada (the older) and Eve, each synced as their own profile; then Eve's account takes Ada's e-mail."""
    shop.customer(1, email="ada@shop.com", first_name="Ada", created_at="2026-10-01 09:00")
    shop.customer(2, email="eve@shop.com", first_name="Eve", phone="+12125550100", created_at="2026-10-02 09:00")
    pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=settings, customerio=resource)


def _shop_records(source_engine, customer_id: int, at: str, **values) -> None:
    with source_engine.begin() as conn:
        statement = update(customers).where(customers.c.id == customer_id)
        conn.execute(statement.values(updated_at=datetime.fromisoformat(at), **values))


def _check(result) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK]
    return evaluation


def test_a_duplicate_found_later_is_merged_into_its_survivor_once(shop, pipeline, customerio, source_engine):
    resource = customerio.resource()
    _two_customers_synced_apart(shop, pipeline, resource)
    assert {"1", "2"} <= set(customerio.fake.people)
    _shop_records(source_engine, 2, "2026-10-03 08:00", email="ADA@shop.com")  # the same e-mail, normalised

    result = pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, customerio=resource)
    pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, customerio=resource)

    assert customerio.fake.merges == [("1", "2")]  # primary the survivor, secondary the duplicate; once
    assert "2" not in customerio.fake.people and customerio.fake.people["1"]["first_name"] == "Ada"
    assert customerio.fake.people["1"]["phone"] == "+12125550100"  # empty on the primary, taken from Eve
    merged = pipeline.table(state_tables.merge_ledger)
    assert merged[["secondary", "primary"]].values.tolist() == [["2", "1"]]
    assert "2" not in set(pipeline.table(state_tables.people_ledger)["person_id"])
    metadata = result.asset_materializations_for_node("customerio_people")[0].metadata
    assert (metadata["merges"].value, metadata["merge_mode"].value) == (1, "apply")
    assert _check(result).passed
    assert all(validate_batch_body(orjson.loads(r.body)) == [] for r in customerio.fake.requests)


def test_a_merge_waits_until_customerio_holds_the_survivor(shop, pipeline, customerio, source_engine):
    resource = customerio.resource()
    customerio.fake.refuse_people({"1"})  # Ada's identify is refused: Customer.io has only Eve
    _two_customers_synced_apart(shop, pipeline, resource)
    _shop_records(source_engine, 2, "2026-10-03 08:00", email="ada@shop.com")

    waiting = pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, customerio=resource)

    assert customerio.fake.merges == []
    assert not _check(waiting).passed and _check(waiting).severity == dg.AssetCheckSeverity.WARN
    assert "wait for their survivor" in _check(waiting).description
    customerio.fake.refuse_people(set())
    pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, customerio=resource)  # Ada's identify, then the merge
    assert customerio.fake.merges == [("1", "2")]
    assert "2" not in customerio.fake.people  # the fake merges only into an existing primary: Ada was there


def test_plan_sends_no_merge_and_lists_what_apply_would_merge(shop, pipeline, customerio, source_engine):
    resource, plan = customerio.resource(), Settings(merge_duplicates="plan")
    _two_customers_synced_apart(shop, pipeline, resource, plan)
    _shop_records(source_engine, 2, "2026-10-03 08:00", email="ada@shop.com")

    result = pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, settings=plan, customerio=resource)

    assert customerio.fake.merges == [] and "2" in customerio.fake.people
    check = _check(result)
    assert not check.passed and "CIO_MERGE_DUPLICATES=plan" in check.description
    assert "| 2 | 1 | True |" in check.metadata["merges"].value
    assert result.asset_materializations_for_node("customerio_people")[0].metadata["merges_pending"].value == 1
    # Eve's own profile waits for its merge: it is no vanished customer, so even CIO_VANISHED=delete keeps it.
    deleting = Settings(merge_duplicates="plan", vanished="delete")
    again = pipeline.run(
        partition_range=OCTOBER, assets=WITH_CHECK, settings=deleting, customerio=resource, full_refresh=True
    )
    assert "2" in customerio.fake.people
    (vanished,) = [e for e in again.get_asset_check_evaluations() if e.check_name == VANISHED_CHECK]
    assert vanished.passed


def test_a_shared_phone_never_merges(shop, pipeline, customerio, source_engine):
    resource = customerio.resource()
    shop.customer(3, email="sam@shop.com", phone="+12125550143", created_at="2026-10-01 09:00")
    shop.customer(4, email="max@shop.com", phone="+12125550143", created_at="2026-10-02 09:00")

    for _ in range(2):
        result = pipeline.run(partition_range=OCTOBER, assets=WITH_CHECK, customerio=resource)

    assert customerio.fake.merges == []
    assert {"3", "4"} <= set(customerio.fake.people)
    assert _check(result).passed
