"""Consent in three states reaches Customer.io's suppression (`unsubscribed`): only an opt-out unsubscribes, only the
pipeline's own `true` is ever undone, and no path re-subscribes someone who unsubscribed there.

The shop's `accepts_email_marketing` / `accepts_sms_marketing`: 1 opted in, 0 opted out, NULL never asked (unknown).
CIO_UNSUBSCRIBE=mirror (default) sends `unsubscribed: true` on an e-mail opt-out and `false` to undo its own `true`
once the shop no longer records an opt-out; `one_way` never sends `false`; `off` never sends it. Unknown consent never
sends `true`, leaves `email_opt_in` null, and is eligible only under CIO_UNKNOWN_CONSENT_ELIGIBLE. Someone the
read-back finds unsubscribed in Customer.io without the pipeline having sent it (an unsubscribe link) is listed and
never re-subscribed."""

from datetime import datetime

import pandas as pd
import pandera.errors as pandera_errors
import pytest
from sqlalchemy import text, update

from cio_assets.attributes.compute import eligible
from cio_assets.attributes.schema import attribute_snapshot_schema
from cio_assets.defs.resources import Settings
from cio_assets.delivery.consent import KEPT_UNSUBSCRIBED, RESUBSCRIBING, UNSUBSCRIBING, consent, consent_outcome
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import customers
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.test_reconcile import Run, _reading

OCTOBER = ("2026-10-01", "2026-10-03")
ONE_WAY = Settings(unsubscribe="one_way")


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
    assert (metadata["unsubscribe_mode"], metadata["people_unsubscribed"]) == ("mirror", 1)  # mirror: the default


def test_one_way_keeps_a_person_unsubscribed_after_a_new_opt_in(shop, pipeline, customerio, source_engine):
    _ada_opted_in_and_bob_opted_out(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=ONE_WAY, customerio=resource)
    _shop_records(source_engine, 2, "2026-10-03 08:00", accepts_email_marketing=True)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=ONE_WAY, customerio=resource)

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


def test_by_default_a_person_we_unsubscribed_who_opts_in_later_is_resubscribed(
    shop, pipeline, customerio, source_engine
):
    _ada_opted_in_and_bob_opted_out(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)  # default settings: mirror
    _shop_records(source_engine, 2, "2026-10-03 08:00", accepts_email_marketing=True)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, customerio=resource)

    assert _unsubscribed_sent(customerio.fake, "2") == [True, False]
    assert customerio.fake.people["2"]["unsubscribed"] is False
    assert _people_metadata(result)["people_resubscribed"] == 1
    assert _unsubscribed_sent(customerio.fake, "1") == []  # never unsubscribed by us: nothing to undo


@pytest.mark.parametrize(
    "mode",
    [
        # one_way: false is never sent anyway
        "one_way",
        # mirror (the default) would undo its own true, but not for someone who unsubscribed in Customer.io
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


# --- consent in three states ----------------------------------------------------------------------


def _cleo_never_asked(shop) -> None:
    """Cleo's record holds NULL in both consent columns: nobody asked her, about e-mail or SMS."""
    shop.customer(
        3,
        email="cleo@shop.com",
        phone="+12125550143",
        first_name="Cleo",
        email_opt_in=None,
        sms_opt_in=None,
        created_at="2026-10-01 11:00",
    )


def _snapshot_of(pipeline, person_id: str) -> dict:
    rows = pipeline.snapshot()
    (row,) = rows[rows["person_id"] == person_id].to_dict("records")
    return row


@pytest.mark.parametrize(
    "mode",
    [
        # the default
        "mirror",
        # one_way unsubscribes on an opt-out as mirror does: unknown is not one
        "one_way",
    ],
)
def test_a_never_asked_person_is_never_unsubscribed_and_their_opt_in_is_null(shop, pipeline, customerio, mode):
    _ada_opted_in_and_bob_opted_out(shop)
    _cleo_never_asked(shop)

    result = pipeline.run(
        partition_range=OCTOBER, assets=SYNC, settings=Settings(unsubscribe=mode), customerio=customerio.resource()
    )

    cleo = customerio.fake.people["3"]
    assert "unsubscribed" not in cleo
    assert "email_opt_in" not in cleo and "sms_opt_in" not in cleo  # null: nothing is sent to a new profile
    assert (cleo["email_eligible"], cleo["sms_eligible"]) == (False, False)  # unknown is not eligible by default
    assert (_snapshot_of(pipeline, "3")["email_opt_in"], _snapshot_of(pipeline, "3")["sms_opt_in"]) == (None, None)
    assert customerio.fake.people["2"]["unsubscribed"] is True  # Bob's explicit opt-out still unsubscribes him
    assert _people_metadata(result)["people_unsubscribed"] == 1  # Bob alone


def test_a_guest_only_person_was_never_asked_and_is_not_unsubscribed(shop, pipeline, customerio):
    shop.customer(1, email="ada@shop.com")
    shop.order(None, id=30, email="guest@example.com", created_at="2026-10-02 14:00", paid_at="2026-10-02 14:30")

    pipeline.run(
        partition_range=OCTOBER, assets=SYNC, settings=Settings(canonical_id="email"), customerio=customerio.resource()
    )

    guest = customerio.fake.people["guest@example.com"]  # no customer record: nobody asked them
    assert "unsubscribed" not in guest and "email_opt_in" not in guest  # was unsubscribed: true, as an opt-out
    assert guest["email_eligible"] is False


@pytest.mark.parametrize(
    ("unknown_eligible", "email_eligible", "cleo_sms_eligible"),
    [
        # the default: only an opt-in makes a person eligible
        (False, {"1": True, "2": False, "3": False}, False),
        # unknown counts as eligible, on both channels; an opt-out still never does
        (True, {"1": True, "2": False, "3": True}, True),
    ],
)
def test_whether_unknown_consent_is_eligible_follows_the_setting(
    shop, pipeline, customerio, unknown_eligible, email_eligible, cleo_sms_eligible
):
    _ada_opted_in_and_bob_opted_out(shop)
    _cleo_never_asked(shop)
    settings = Settings(unknown_consent_eligible=unknown_eligible)

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=settings, customerio=customerio.resource())

    people = customerio.fake.people
    assert {person_id: people[person_id]["email_eligible"] for person_id in email_eligible} == email_eligible
    assert people["3"]["sms_eligible"] is cleo_sms_eligible  # Cleo has a valid phone
    assert "unsubscribed" not in people["3"] and "email_opt_in" not in people["3"]  # eligible or not: still unknown
    assert _people_metadata(result)["people_unsubscribed"] == 1  # Bob alone


@pytest.mark.parametrize(
    ("mode", "sent", "unsubscribed", "counted"),
    [
        # mirror (the default): the pipeline's own true has no opt-out behind it any more, so it is undone
        ("mirror", [True, False], False, "people_resubscribed"),
        # one_way never sends false: Bob stays unsubscribed, counted as withheld
        ("one_way", [True], True, "people_resubscribe_withheld"),
    ],
)
def test_an_upgrade_undoes_an_unsubscribe_whose_zero_the_shop_now_records_as_never_asked(
    shop, pipeline, customerio, source_engine, mode, sent, unsubscribed, counted
):
    _ada_opted_in_and_bob_opted_out(shop)  # Bob's 0 meant "never asked", the only way the old schema could say it
    settings = Settings(unsubscribe=mode)
    resource = customerio.resource()
    pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=settings, customerio=resource)
    _shop_records(source_engine, 2, "2026-10-03 08:00", accepts_email_marketing=None)  # the shop now says so

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC, settings=settings, customerio=resource)

    assert _unsubscribed_sent(customerio.fake, "2") == sent
    assert customerio.fake.people["2"]["unsubscribed"] is unsubscribed
    assert customerio.fake.people["2"]["email_opt_in"] == ""  # the old false is cleared: unknown
    assert _people_metadata(result)[counted] == 1


# (older record's opt-in, newer duplicate's opt-in, the merged person's), each pair sharing an e-mail
DUPLICATES = [
    # one opt-out among duplicates is an opt-out, whatever the other says
    (None, False, False),
    (True, False, False),
    # otherwise one opt-in is an opt-in: a record nobody asked adds nothing
    (None, True, True),
    (True, None, True),
    # nobody asked on any record: unknown
    (None, None, None),
]


def test_merged_duplicates_take_an_opt_out_over_an_opt_in_over_unknown(shop, pipeline):
    for n, (older, newer, _) in enumerate(DUPLICATES):
        email = f"pair{n}@example.com"
        shop.customer(2 * n + 1, email=email, email_opt_in=older, created_at="2026-09-01 08:00")
        shop.customer(2 * n + 2, email=email.upper(), email_opt_in=newer, created_at="2026-09-15 08:00")

    pipeline.run(partition="2026-10-01")

    merged = [pipeline.person(str(2 * n + 1), "2026-10-01")["email_opt_in"] for n in range(len(DUPLICATES))]
    assert merged == [expected for _, _, expected in DUPLICATES]


def test_a_state_database_whose_opt_in_columns_are_not_null_stops_the_snapshot_with_the_fix(
    shop, pipeline, state_engine
):
    _cleo_never_asked(shop)
    state_tables.create_state_tables(state_engine)
    with state_engine.begin() as conn:  # as a version before consent had three states created it
        conn.execute(
            text(
                "ALTER TABLE cio_attribute_snapshot MODIFY email_opt_in BOOLEAN NOT NULL, "
                "MODIFY sms_opt_in BOOLEAN NOT NULL"
            )
        )

    result = pipeline.run(partition_range=OCTOBER, raise_on_error=False)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "attribute_snapshot"
    assert (
        "Run `ALTER TABLE cio_attribute_snapshot MODIFY email_opt_in BOOLEAN NULL, MODIFY sms_opt_in BOOLEAN NULL;`"
        in failure.event_specific_data.error.message
    )
    assert pipeline.snapshot().empty  # nothing written: no unknown stored as an opt-out


# --- the rules, as pure functions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "opted_in", "before", "themselves", "expected"),
    [
        # an opt-out unsubscribes, whatever was sent before
        ("one_way", False, None, False, True),
        ("mirror", False, None, False, True),
        # ...again after the pipeline re-subscribed them
        ("mirror", False, False, False, True),
        # a new opt-in under one_way keeps what Customer.io holds
        ("one_way", True, True, False, True),
        # mirror undoes its own true on a new opt-in
        ("mirror", True, True, False, False),
        # ...and keeps the false it sent
        ("mirror", True, False, False, False),
        # ...but never for someone who unsubscribed in Customer.io
        ("mirror", True, True, True, True),
        # opted in and never unsubscribed: nothing to send
        ("mirror", True, None, False, None),
        # unknown and never unsubscribed: nothing to send, in any mode
        ("mirror", None, None, False, None),
        ("one_way", None, None, False, None),
        # unknown after the pipeline's own true (a 0 the shop now records as never asked): mirror undoes it...
        ("mirror", None, True, False, False),
        # ...one_way keeps it...
        ("one_way", None, True, False, True),
        # ...and nothing undoes it for someone who unsubscribed in Customer.io
        ("mirror", None, True, True, True),
        # off keeps what was sent before, even on an opt-out...
        ("off", False, None, False, None),
        # ...or on an opt-in after a true an earlier mode sent
        ("off", True, True, False, True),
    ],
)
def test_consent_rules(mode, opted_in, before, themselves, expected):
    assert consent(mode, opted_in, before, themselves) is expected


@pytest.mark.parametrize(
    ("opted_in", "before", "after", "outcome"),
    [
        # the first true the pipeline sends is an unsubscribe
        (False, None, True, UNSUBSCRIBING),
        # so is one after a re-subscribe
        (False, False, True, UNSUBSCRIBING),
        # a true held again on an opt-out is nothing new
        (False, True, True, None),
        # false after the pipeline's own true is a re-subscribe, on an opt-in or on unknown
        (True, True, False, RESUBSCRIBING),
        (None, True, False, RESUBSCRIBING),
        # the pipeline's true held without an opt-out on record is a withheld re-subscribe
        (True, True, True, KEPT_UNSUBSCRIBED),
        (None, True, True, KEPT_UNSUBSCRIBED),
        # unknown, never unsubscribed: nothing happened
        (None, None, None, None),
    ],
)
def test_consent_outcomes(opted_in, before, after, outcome):
    assert consent_outcome(opted_in, before, after) == outcome


@pytest.mark.parametrize(
    ("opted_in", "channel", "unknown_counts", "expected"),
    [
        # an opt-in with a valid value is eligible, whatever the setting
        (True, "ada@shop.com", False, True),
        # an opt-out never is
        (False, "ada@shop.com", True, False),
        # unknown is eligible only when the setting says unknown counts
        (None, "ada@shop.com", False, False),
        (None, "ada@shop.com", True, True),
        # no valid value (nulled by validation): never eligible
        (True, None, False, False),
        (None, None, True, False),
    ],
)
def test_eligibility_rule(opted_in, channel, unknown_counts, expected):
    result = eligible(pd.Series([opted_in], dtype="boolean"), pd.Series([channel], dtype=object), unknown_counts)
    assert result.dtype == bool  # written to a NOT NULL column: never NA
    assert result.tolist() == [expected]


def _snapshot_row(**values) -> pd.DataFrame:
    """One snapshot row that keeps the contract, but for the values given."""
    row = {
        "day": "2026-10-01",
        "person_id": "1",
        "as_of": 1_790_000_000,
        "email": "ada@shop.com",
        "phone": "+12125550143",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "created_at": 1_780_000_000,
        "first_order_at": None,
        "last_order_at": None,
        "total_orders": 0,
        "lifetime_value": 0.0,
        "lifetime_value_net": 0.0,
        "last_product_category": None,
        "is_refunder": False,
        "subscription_status": "none",
        "vip_tier": "none",
        "email_opt_in": True,
        "sms_opt_in": True,
        "email_eligible": True,
        "sms_eligible": True,
        **values,
    }
    frame = pd.DataFrame([row])
    for column in ("created_at", "first_order_at", "last_order_at"):
        frame[column] = frame[column].astype("Int64")
    return frame.astype({"email_opt_in": "boolean", "sms_opt_in": "boolean"})


@pytest.mark.parametrize(
    ("values", "unknown_eligible", "keeps"),
    [
        # unknown consent, not eligible: the contract accepts a null opt-in
        ({"email_opt_in": None, "sms_opt_in": None, "email_eligible": False, "sms_eligible": False}, False, True),
        # unknown and eligible, when unknown counts
        ({"email_opt_in": None, "sms_opt_in": None}, True, True),
        # unknown and eligible although unknown does not count: broken
        ({"email_opt_in": None}, False, False),
        ({"sms_opt_in": None}, False, False),
        # eligible despite an opt-out: broken under either setting
        ({"email_opt_in": False}, True, False),
        ({"sms_opt_in": False}, True, False),
        # eligible without a valid e-mail: broken
        ({"email": None}, True, False),
    ],
)
def test_the_snapshot_contract_on_consent(values, unknown_eligible, keeps):
    schema = attribute_snapshot_schema(floor_unix=946_684_800, unknown_consent_eligible=unknown_eligible)
    try:
        schema.validate(_snapshot_row(**values), lazy=True)
        kept = True
    except pandera_errors.SchemaErrors:
        kept = False
    assert kept is keeps
