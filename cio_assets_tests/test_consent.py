"""Consent reaches Customer.io's suppression (`unsubscribed`), and no path re-subscribes someone who unsubscribed there.

CIO_UNSUBSCRIBE=one_way (default) sends `unsubscribed: true` on an e-mail opt-out and never `false`; `mirror` also
undoes its own `true` when the shop records a new opt-in; `off` never sends it. Someone the read-back finds
unsubscribed in Customer.io without the pipeline having sent it (an unsubscribe link) is listed and never
re-subscribed."""

from datetime import datetime

import pytest
from sqlalchemy import update

from cio_assets.defs.resources import Settings
from cio_assets.delivery.consent import consent
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import customers
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.test_reconcile import Run, _reading

OCTOBER = ("2026-10-01", "2026-10-03")
MIRROR = Settings(unsubscribe="mirror")


def _ada_opted_in_and_bob_opted_out(shop) -> None:
    shop.customer(1, email="ada@shop.com", first_name="Ada", created_at="2026-10-01 09:00")
    shop.customer(2, email="bob@shop.com", first_name="Bob", email_opt_in=False, created_at="2026-10-01 10:00")
    shop.order(1, total=49.99, paid_at="2026-10-02 10:00")


def _shop_records(source_engine, customer_id: int, at: str, **values) -> None:
    """The shop changes a customer (an opt-in, a new name) and moves its change time."""
    with source_engine.begin() as conn:
        statement = update(customers).where(customers.c.id == customer_id)
        conn.execute(statement.values(updated_at=datetime.fromisoformat(at), **values))


def _unsubscribed_sent(fake, person_id: str) -> list[object]:
    """Every `unsubscribed` value identifies carried for this person, in the order they arrived."""
    return [
        item["attributes"]["unsubscribed"]
        for item in fake.batch_items()
        if item["action"] == "identify" and item["identifiers"] == {"id": person_id}
        if "unsubscribed" in item.get("attributes", {})
    ]


def _people_metadata(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("customerio_people")[0].metadata.items()}


def test_an_opt_out_in_the_shop_unsubscribes_the_person_in_customerio(shop, pipeline, customerio):
    _ada_opted_in_and_bob_opted_out(shop)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=customerio.resource())

    assert customerio.fake.people["2"]["unsubscribed"] is True
    assert "unsubscribed" not in customerio.fake.people["1"]  # opted in: Customer.io's default, nothing sent
    metadata = _people_metadata(result)
    assert (metadata["unsubscribe_mode"], metadata["people_unsubscribed"]) == ("one_way", 1)


def test_one_way_keeps_a_person_unsubscribed_after_a_new_opt_in(shop, pipeline, customerio, source_engine):
    _ada_opted_in_and_bob_opted_out(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)
    _shop_records(source_engine, 2, "2026-10-03 08:00", accepts_email_marketing=True)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)

    assert _unsubscribed_sent(customerio.fake, "2") == [True]  # never false
    assert customerio.fake.people["2"]["email_opt_in"] is True
    assert customerio.fake.people["2"]["unsubscribed"] is True
    assert (
        _people_metadata(result)["people_resubscribe_withheld"],
        _people_metadata(result)["people_resubscribed"],
    ) == (
        1,
        0,
    )


def test_mirror_undoes_its_own_unsubscribe_when_the_shop_records_a_new_opt_in(
    shop, pipeline, customerio, source_engine
):
    _ada_opted_in_and_bob_opted_out(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=MIRROR, customerio=resource)
    _shop_records(source_engine, 2, "2026-10-03 08:00", accepts_email_marketing=True)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=MIRROR, customerio=resource)

    assert _unsubscribed_sent(customerio.fake, "2") == [True, False]
    assert customerio.fake.people["2"]["unsubscribed"] is False
    assert _people_metadata(result)["people_resubscribed"] == 1
    assert _unsubscribed_sent(customerio.fake, "1") == []  # never unsubscribed by us: nothing to undo


@pytest.mark.parametrize(
    "mode",
    [
        # the default: false is never sent anyway
        "one_way",
        # mirror would undo its own true, but not for someone who unsubscribed in Customer.io
        "mirror",
    ],
)
def test_no_mode_resubscribes_someone_who_unsubscribed_in_customerio(shop, pipeline, customerio, source_engine, mode):
    _ada_opted_in_and_bob_opted_out(shop)
    settings = Settings(unsubscribe=mode)
    resource = _reading(customerio)
    Run(pipeline, resource, OCTOBER, settings)
    customerio.fake.unsubscribe_person("1")  # Ada uses an unsubscribe link; the shop still says opted in

    read_back = Run(pipeline, resource, OCTOBER, settings)

    assert read_back.evaluation.passed  # their choice, not a mismatch
    assert (read_back.metadata["unsubscribed_in_customerio"], read_back.metadata["mismatches"]) == (1, 0)
    assert "| 1 |" in read_back.metadata["unsubscribed_in_customerio_people"]
    assert list(pipeline.table(state_tables.unsubscribed_in_customerio)["person_id"]) == ["1"]
    assert any("record their opt-out in the shop" in message for message in read_back.messages)
    # The shop opts Ada out, then in again: the pipeline's own true is sent, and never undone for her.
    _shop_records(source_engine, 1, "2026-10-03 08:00", accepts_email_marketing=False)
    Run(pipeline, resource, OCTOBER, settings)
    _shop_records(source_engine, 1, "2026-10-03 09:00", accepts_email_marketing=True, first_name="Ada B.")
    Run(pipeline, resource, OCTOBER, settings)

    assert _unsubscribed_sent(customerio.fake, "1") == [True]
    assert customerio.fake.people["1"]["unsubscribed"] is True
    assert customerio.fake.people["1"]["first_name"] == "Ada B."  # the rest of the profile still syncs


def test_off_never_sends_unsubscribed(shop, pipeline, customerio):
    _ada_opted_in_and_bob_opted_out(shop)

    result = pipeline.run(
        partition_range=OCTOBER, assets=SYNC, settings=Settings(unsubscribe="off"), customerio=customerio.resource()
    )

    assert _unsubscribed_sent(customerio.fake, "2") == []
    assert customerio.fake.people["2"]["email_opt_in"] is False  # the attribute still says so
    assert _people_metadata(result)["people_unsubscribed"] == 0


def test_a_person_we_unsubscribed_whom_customerio_shows_subscribed_is_a_mismatch(shop, pipeline, customerio):
    _ada_opted_in_and_bob_opted_out(shop)
    resource = _reading(customerio)
    Run(pipeline, resource, OCTOBER)
    customerio.fake.corrupt_person("2", unsubscribed=None)  # someone re-subscribed Bob in Customer.io's UI

    run = Run(pipeline, resource, OCTOBER)

    assert not run.evaluation.passed
    assert "| 2 | unsubscribed | true | false |" in run.metadata["mismatch_table"]  # the profile's flag


@pytest.mark.parametrize(
    ("mode", "opted_in", "before", "themselves", "expected"),
    [
        # an opt-out unsubscribes, whatever was sent before
        ("one_way", False, None, False, True),
        # a new opt-in under one_way keeps what Customer.io holds
        ("one_way", True, True, False, True),
        # mirror undoes its own true
        ("mirror", True, True, False, False),
        # ...but never for someone who unsubscribed in Customer.io
        ("mirror", True, True, True, True),
        # opted in and never unsubscribed: nothing to send
        ("mirror", True, None, False, None),
        # off keeps what was sent before, even on an opt-out
        ("off", False, None, False, None),
    ],
)
def test_consent_rules(mode, opted_in, before, themselves, expected):
    assert consent(mode, opted_in, before, themselves) is expected
