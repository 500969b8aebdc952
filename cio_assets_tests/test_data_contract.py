"""The Pandera contract runs inside the assets: a violation writes nothing and fails a blocking check."""

import dagster as dg

from cio_assets.settings import Settings
from cio_assets.state import tables as state_tables
from cio_assets_tests.conftest import SYNC


def test_a_contract_violation_writes_nothing_and_keeps_the_previous_rows(shop, pipeline, source_engine):
    shop.customer(1)
    shop.order(1, total=40.0, paid_at="2026-10-02 10:00")
    pipeline.run(partition="2026-10-02")
    before = pipeline.snapshot("2026-10-02").to_dict("records")

    shop.customer(2)
    shop.order(2, total=-15.0, paid_at="2026-10-02 11:00")  # a negative lifetime value breaks the contract
    result = pipeline.run(partition="2026-10-02", assets=SYNC, raise_on_error=False)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "attribute_snapshot"
    message = failure.event_specific_data.error.message
    assert "attribute_snapshot failed its data contract; nothing was written" in message
    assert "lifetime_value" in message
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["attribute_snapshot_schema"].passed is False
    assert checks["attribute_snapshot_schema"].severity == dg.AssetCheckSeverity.ERROR
    assert pipeline.snapshot("2026-10-02").to_dict("records") == before
    # The blocking check keeps the bad day away from Customer.io: its sync step never runs.
    assert "customerio_people" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


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
