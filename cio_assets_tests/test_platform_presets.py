"""WooCommerce and Magento 2 shops read as they are, through the built-in presets, end to end on MariaDB.

Each test generates a small shop in the platform's own tables (`cio_assets/demo/platforms/`, whose generators
return the truth a correct mapping must find), runs the whole pipeline with `CIO_SOURCE_MAPPING` set to the preset,
and compares what reached the fake Customer.io with that truth: the people and their details, consent, paid orders
at their true UTC paid time, refunds, carts (Magento), and the families a shop cannot have (WooCommerce).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, make_url, text

from cio_assets.defs.resources import Settings
from cio_assets.demo.platforms import magento2, woocommerce
from cio_assets.demo.platforms.truth import Person, ShopTruth
from cio_assets.schema import state as state_tables
from cio_assets_tests.conftest import SYNC, Pipeline, own_database
from cio_assets_tests.definitions import daily_partitions

# The generated shops' window ends on 2026-11-20; the test partitions start on 2026-10-01 (earlier history is
# the first partition's).
RANGE = ("2026-10-01", "2026-11-20")
RANGE_END = datetime(2026, 11, 21)  # naive UTC, as the truth's times
TODAY = daily_partitions.get_last_partition_key()


@dataclass
class PlatformShop:
    truth: ShopTruth
    pipeline: Pipeline

    def customers(self) -> dict[str, Person]:
        """The people with an account: each is one profile in Customer.io (guests without one are listed as
        unresolved orders, as on the reference schema)."""
        return {email: person for email, person in self.truth.people.items() if not person.is_guest}


@pytest.fixture
def platform_shop(request, tmp_path) -> Iterator[PlatformShop]:
    """A generated shop in a database of its own: request.param is (platform, the session zone of the URL)."""
    platform, session_zone = request.param
    name = f"cio_test_{uuid.uuid4().hex[:10]}_{platform}"
    with own_database(name) as url, own_database(f"{name}_state") as state_url:
        truth = {"woocommerce": woocommerce, "magento2": magento2}[platform].generate(url)
        # The pipeline's sessions start in `session_zone` (a server whose default is not UTC); it must not matter.
        read_url = make_url(url).update_query_dict({"init_command": f"SET time_zone = '{session_zone}'"})
        state = create_engine(state_url)
        yield PlatformShop(
            truth,
            Pipeline(read_url.render_as_string(hide_password=False), state_url, state, tmp_path, mapping=platform),
        )
        state.dispose()


def _unix(naive_utc: datetime) -> int:
    return int(naive_utc.replace(tzinfo=UTC).timestamp())


def _by_email(fake) -> dict[str, dict]:
    return {attributes["email"]: attributes for attributes in fake.people.values()}


def _events(fake, name: str) -> set[tuple[str, int, int]]:
    """(the person's e-mail, the event's order or refund id, its timestamp) of every event of a family."""
    emails = {person_id: attributes["email"] for person_id, attributes in fake.people.items()}
    key = "refund_id" if name == "refund_issued" else "order_id"
    return {
        (emails[e["identifiers"]["id"]], e["attributes"][key], e["timestamp"]) for e in fake.events if e["name"] == name
    }


def _expected_orders(shop: PlatformShop) -> set[tuple[str, int, int]]:
    return {
        (email, order.order_id, _unix(order.paid_at))
        for email, person in shop.customers().items()
        for order in person.orders
    }


def _expected_refunds(shop: PlatformShop) -> set[tuple[str, int, int]]:
    return {
        (email, refund.refund_id, _unix(refund.refunded_at))
        for email, person in shop.customers().items()
        for refund in person.refunds
    }


def _assert_people_consent_orders_and_refunds(shop: PlatformShop, fake) -> None:
    sent = _by_email(fake)
    customers = shop.customers()
    # One profile per account holder: administrators and shop managers are not people.
    assert set(sent) == set(customers)
    for email, person in customers.items():
        attributes = sent[email]
        assert (attributes.get("first_name"), attributes.get("last_name"), attributes.get("phone")) == (
            person.first_name,
            person.last_name,
            person.phone,
        ), email
        # Consent in three states: only an explicit opt-out unsubscribes; never asked is no opt-out.
        assert attributes.get("unsubscribed") is (True if person.consent == "opted_out" else None), email
        assert (
            attributes.get("email_opt_in") == {"opted_in": True, "opted_out": False, "unknown": None}[person.consent]
        ), email
    # Every paid order as order_placed at its true UTC paid time (not its creation), and every refund.
    assert _events(fake, "order_placed") == _expected_orders(shop)
    assert _events(fake, "refund_issued") == _expected_refunds(shop)


@pytest.mark.parametrize("platform_shop", [("woocommerce", "+00:00")], indirect=True, ids=["utc_session"])
def test_a_woocommerce_shop_is_read_as_it_is(platform_shop, customerio):
    shop = platform_shop

    # The README used to set CIO_SOURCE_TZ to the shop's zone: WooCommerce's *_gmt columns are UTC all the same.
    settings = Settings(source_tz="America/New_York")

    result = shop.pipeline.run(partition_range=RANGE, assets=SYNC, customerio=customerio.resource(), settings=settings)

    _assert_people_consent_orders_and_refunds(shop, customerio.fake)
    # A plugin's status no entry of the preset names is set aside and listed with its value, never dropped.
    listed = shop.pipeline.table(state_tables.rejected_rows)
    unmapped = listed[listed["reason"] == "unknown_status"]
    assert len(unmapped) == shop.truth.set_aside["custom_status_orders"]
    assert set(unmapped["raw_value"]) == {f"unmapped:{woocommerce.CUSTOM_STATUS}"}
    # WooCommerce keeps no carts and no subscriptions: their families are off, and the run says why.
    metadata = result.asset_materializations_for_node("customerio_events")[0].metadata
    off = metadata["event_families_off"].value
    assert set(off) == {"checkout_started", "cart_abandoned", "subscription_canceled"}
    assert "web snippet" in off["cart_abandoned"]
    assert not [e for e in customerio.fake.events if e["name"] in off]


@pytest.mark.parametrize(
    "platform_shop",
    [
        ("magento2", "+00:00"),
        # Magento's TIMESTAMP columns shift with the session's zone: the pipeline reads them in UTC regardless
        ("magento2", "-05:00"),
    ],
    indirect=True,
    ids=["utc_session", "new_york_session"],
)
def test_a_magento_shop_is_read_as_it_is(platform_shop, customerio):
    shop = platform_shop

    shop.pipeline.run(partition_range=RANGE, assets=SYNC, customerio=customerio.resource())

    _assert_people_consent_orders_and_refunds(shop, customerio.fake)
    # Quotes are carts: an open cart of a customer is abandoned once idle for CIO_CART_IDLE_MINUTES within the
    # range, unless they paid an order in between.
    idle = Settings().cart_idle
    emails = {person_id: a["email"] for person_id, a in customerio.fake.people.items()}
    abandoned = {
        (emails[e["identifiers"]["id"]], e["attributes"]["cart_id"])
        for e in customerio.fake.events
        if e["name"] == "cart_abandoned"
    }
    expected = {
        (email, cart.cart_id)
        for email, person in shop.customers().items()
        for cart in person.carts
        if cart.updated_at + idle < RANGE_END
        and not any(cart.updated_at < order.paid_at <= cart.updated_at + idle for order in person.orders)
    }
    assert expected and abandoned == expected


# An unsubscribe, as each platform records it: in a table of its own, without touching the customer's row.
UNSUBSCRIBE = {
    "woocommerce": "UPDATE wp_mailpoet_subscribers SET status = 'unsubscribed' WHERE email = :email",
    "magento2": (
        "UPDATE newsletter_subscriber SET subscriber_status = 3, change_status_at = CURRENT_TIMESTAMP "
        "WHERE customer_id = :customer_id"
    ),
}


@pytest.mark.parametrize(
    "platform_shop",
    [("woocommerce", "+00:00"), ("magento2", "+00:00")],
    indirect=True,
    ids=["woocommerce", "magento2"],
)
def test_an_unsubscribe_reaches_customerio_with_the_next_run_not_the_nightly_refresh(platform_shop, customerio):
    shop = platform_shop
    shop.pipeline.run(partition_range=RANGE, assets=SYNC, customerio=customerio.resource())
    email, person = next((e, p) for e, p in sorted(shop.customers().items()) if p.consent == "opted_in")
    assert _by_email(customerio.fake)[email].get("email_opt_in") is True

    # MailPoet stamps its subscriber's updated_at, Magento the subscription's change_status_at; neither touches the
    # customer's own row (WooCommerce's usermeta last_update, Magento's customer_entity.updated_at).
    writer = create_engine(shop.pipeline.source_url)
    with writer.begin() as conn:
        changed = conn.execute(
            text(UNSUBSCRIBE[shop.truth.platform]), {"email": email, "customer_id": person.customer_ids[0]}
        )
        assert changed.rowcount >= 1
    writer.dispose()
    shop.pipeline.run(partition=TODAY, assets=SYNC, customerio=customerio.resource())

    sent = _by_email(customerio.fake)[email]
    assert (sent.get("unsubscribed"), sent.get("email_opt_in")) == (True, False)
