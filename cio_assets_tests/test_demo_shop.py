"""The sample shop: deterministic, carrying every messy case it promises, with consistent money and times."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import phonenumbers
import pytest
import sqlalchemy
from sqlalchemy import Row, Table, select

from cio_assets.demo.shop import (
    EPOCH,
    FAR_FUTURE,
    LINKED_ANONYMOUS_ID,
    MESSY_CASES,
    UNLINKED_ANONYMOUS_ID,
    ShopSize,
    generate_shop,
)
from cio_assets.sources.tables import (
    SOURCE_TABLES,
    cart_items,
    carts,
    customers,
    identity_links,
    order_items,
    orders,
    refunds,
    subscriptions,
)

SIZE = ShopSize(customers=300, days=30)
WINDOW_START = datetime(2026, 10, 21)
WINDOW_END = datetime(2026, 11, 21)  # exclusive


def _engine(path: Path, seed: int = 7) -> sqlalchemy.Engine:
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    generate_shop(engine, SIZE, seed=seed)
    return engine


def _all_rows(engine: sqlalchemy.Engine, table: Table) -> list[Row]:
    with engine.connect() as conn:
        return list(conn.execute(select(table).order_by(*table.c)))


def _by_id(engine: sqlalchemy.Engine, table: Table) -> dict[int, Row]:
    return {row.id: row for row in _all_rows(engine, table)}


def _normalised(email: str | None) -> str | None:
    return email.strip().lower() if email is not None else None


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> sqlalchemy.Engine:
    return _engine(tmp_path_factory.mktemp("shop") / "shop.sqlite")


def test_same_seed_gives_identical_rows_in_every_table(shop: sqlalchemy.Engine, tmp_path: Path) -> None:
    again = _engine(tmp_path / "again.sqlite")
    for table in SOURCE_TABLES:
        assert _all_rows(again, table) == _all_rows(shop, table), table.name


def test_another_seed_gives_other_rows(shop: sqlalchemy.Engine, tmp_path: Path) -> None:
    other = _engine(tmp_path / "other.sqlite", seed=8)
    assert _all_rows(other, customers) != _all_rows(shop, customers)


def test_counts_match_the_tables_and_the_size(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'counted.sqlite'}")
    counts = generate_shop(engine, SIZE)
    for table in SOURCE_TABLES:
        assert counts[table.name] == len(_all_rows(engine, table)), table.name
    assert counts["customers"] == SIZE.customers
    assert 0.8 < counts["orders"] / (SIZE.customers * SIZE.orders_per_customer) < 1.2


def test_generating_again_replaces_the_shop(shop: sqlalchemy.Engine, tmp_path: Path) -> None:
    engine = _engine(tmp_path / "twice.sqlite")
    generate_shop(engine, SIZE)
    assert len(_all_rows(engine, customers)) == SIZE.customers


def test_duplicate_email_pair(shop: sqlalchemy.Engine) -> None:
    people = _by_id(shop, customers)
    older, newer = MESSY_CASES["duplicate_email_pair"]["customers"]
    assert MESSY_CASES["duplicate_email_pair"]["older"] == (older,)
    assert people[older].email != people[newer].email
    assert _normalised(people[older].email) == _normalised(people[newer].email)
    assert people[older].created_at < people[newer].created_at
    buyers = {row.customer_id for row in _all_rows(shop, orders)}
    assert {older, newer} <= buyers


def test_only_the_pair_shares_an_email(shop: sqlalchemy.Engine) -> None:
    seen: dict[str, list[int]] = {}
    for person in _all_rows(shop, customers):
        if person.email is not None:
            seen.setdefault(_normalised(person.email) or "", []).append(person.id)
    shared = [ids for ids in seen.values() if len(ids) > 1]
    assert shared == [list(MESSY_CASES["duplicate_email_pair"]["customers"])]


def test_email_cases(shop: sqlalchemy.Engine) -> None:
    people = _by_id(shop, customers)
    for customer_id in MESSY_CASES["padded_mixed_case_email"]["customers"]:
        email = people[customer_id].email
        assert email != email.strip() or email != email.lower()
    for customer_id in MESSY_CASES["invalid_email"]["customers"]:
        assert people[customer_id].email.count("@") != 1
    for customer_id in MESSY_CASES["null_email"]["customers"]:
        assert people[customer_id].email is None
    padded = [p for p in people.values() if p.email and p.email != p.email.strip()]
    assert 0.1 < len(padded) / len(people) < 0.3


def test_phone_cases(shop: sqlalchemy.Engine) -> None:
    people = _by_id(shop, customers)

    def valid(person: Row) -> bool:
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(person.phone, person.country))
        except phonenumbers.NumberParseException:
            return False

    for customer_id in MESSY_CASES["local_phone"]["customers"]:
        assert not people[customer_id].phone.startswith("+") and valid(people[customer_id])
    for customer_id in MESSY_CASES["e164_phone"]["customers"]:
        assert people[customer_id].phone.startswith("+") and valid(people[customer_id])
    for customer_id in MESSY_CASES["garbage_phone"]["customers"]:
        assert not valid(people[customer_id])
    for customer_id in MESSY_CASES["no_phone"]["customers"]:
        assert people[customer_id].phone is None
    # Every bulk phone is either garbage on purpose or valid for the customer's country.
    garbage = {"12", "n/a", "none", "000", "-", "tbd"}
    for person in people.values():
        if person.phone is not None and person.phone not in garbage:
            assert valid(person), (person.id, person.phone, person.country)


def test_guest_orders(shop: sqlalchemy.Engine) -> None:
    all_orders = _by_id(shop, orders)
    people = _by_id(shop, customers)
    known = all_orders[MESSY_CASES["guest_order_known_email"]["orders"][0]]
    owner = people[MESSY_CASES["guest_order_known_email"]["customers"][0]]
    assert known.customer_id is None
    assert known.email != owner.email and _normalised(known.email) == _normalised(owner.email)
    unknown = all_orders[MESSY_CASES["guest_order_unknown_email"]["orders"][0]]
    addresses = {_normalised(p.email) for p in people.values()}
    assert unknown.customer_id is None and _normalised(unknown.email) not in addresses

    guests = [o for o in all_orders.values() if o.customer_id is None]
    assert all(o.email for o in guests)
    assert 0.05 < len(guests) / len(all_orders) < 0.15
    matching = [o for o in guests if _normalised(o.email) in addresses]
    assert 0.3 < len(matching) / len(guests) < 0.7


def test_cart_cases(shop: sqlalchemy.Engine) -> None:
    all_carts = _by_id(shop, carts)
    all_orders = _by_id(shop, orders)
    links = {row.anonymous_id: row for row in _all_rows(shop, identity_links)}

    (cart_id,) = MESSY_CASES["converted_cart"]["carts"]
    (order_id,) = MESSY_CASES["converted_cart"]["orders"]
    assert all_carts[cart_id].converted_order_id == order_id and all_orders[order_id].cart_id == cart_id
    assert all_carts[cart_id].checkout_started_at < all_orders[order_id].created_at

    for cart_id in MESSY_CASES["abandoned_cart"]["carts"]:
        assert all_carts[cart_id].converted_order_id is None and all_carts[cart_id].customer_id is not None

    (cart_id,) = MESSY_CASES["abandoned_cart_then_paid"]["carts"]
    (order_id,) = MESSY_CASES["abandoned_cart_then_paid"]["orders"]
    cart, order = all_carts[cart_id], all_orders[order_id]
    assert cart.converted_order_id is None and cart.customer_id == order.customer_id
    assert order.status == "paid" and cart.updated_at < order.paid_at < cart.updated_at + timedelta(hours=1)

    (cart_id,) = MESSY_CASES["anonymous_cart_linked"]["carts"]
    cart = all_carts[cart_id]
    assert cart.customer_id is None and cart.anonymous_id == LINKED_ANONYMOUS_ID
    link = links[LINKED_ANONYMOUS_ID]
    assert link.customer_id == MESSY_CASES["anonymous_cart_linked"]["customers"][0]
    assert link.linked_at > cart.updated_at

    (cart_id,) = MESSY_CASES["anonymous_cart_unlinked"]["carts"]
    assert all_carts[cart_id].anonymous_id == UNLINKED_ANONYMOUS_ID and UNLINKED_ANONYMOUS_ID not in links

    for case in ("email_only_cart_known_email", "email_only_cart_unknown_email"):
        (cart_id,) = MESSY_CASES[case]["carts"]
        cart = all_carts[cart_id]
        assert cart.customer_id is None and cart.anonymous_id is None and cart.email


def test_every_cart_is_consistent(shop: sqlalchemy.Engine) -> None:
    all_carts = _by_id(shop, carts)
    all_orders = _by_id(shop, orders)
    for item in _all_rows(shop, cart_items):
        cart = all_carts[item.cart_id]
        assert cart.created_at <= item.updated_at <= cart.updated_at
    for cart in all_carts.values():
        if cart.checkout_started_at is not None:
            assert cart.created_at <= cart.checkout_started_at <= cart.updated_at
        if cart.converted_order_id is not None:
            assert all_orders[cart.converted_order_id].cart_id == cart.id
    paid = [o for o in all_orders.values() if o.status == "paid"]
    assert sum(o.cart_id is not None for o in paid) / len(paid) > 0.6


def test_order_status_cases(shop: sqlalchemy.Engine) -> None:
    all_orders = _by_id(shop, orders)
    for case in ("payment_failed", "pending", "cancelled"):
        (order_id,) = MESSY_CASES[case]["orders"]
        assert all_orders[order_id].status == case and all_orders[order_id].paid_at is None
    failed = [o for o in all_orders.values() if o.status == "payment_failed"]
    assert 0.03 < len(failed) / len(all_orders) < 0.15


def test_bad_timestamps_exist_exactly_once(shop: sqlalchemy.Engine) -> None:
    all_orders = _by_id(shop, orders)
    people = _by_id(shop, customers)
    all_refunds = _by_id(shop, refunds)

    assert [o.id for o in all_orders.values() if o.paid_at == EPOCH] == list(MESSY_CASES["epoch_paid_at"]["orders"])
    assert all_orders[MESSY_CASES["epoch_paid_at"]["orders"][0]].status == "paid"
    unpaid_paid = [o.id for o in all_orders.values() if o.status == "paid" and o.paid_at is None]
    assert unpaid_paid == list(MESSY_CASES["paid_without_paid_at"]["orders"])
    future_people = [p.id for p in people.values() if p.created_at == FAR_FUTURE]
    assert future_people == list(MESSY_CASES["future_customer_created_at"]["customers"])
    future_refunds = [r.id for r in all_refunds.values() if r.created_at == FAR_FUTURE]
    assert future_refunds == list(MESSY_CASES["future_refund_created_at"]["refunds"])
    assert all_refunds[future_refunds[0]].order_id == MESSY_CASES["future_refund_created_at"]["orders"][0]


def test_refund_and_subscription_cases(shop: sqlalchemy.Engine) -> None:
    all_orders = _by_id(shop, orders)
    all_refunds = _by_id(shop, refunds)
    (full,) = MESSY_CASES["refund_full"]["refunds"]
    assert all_refunds[full].amount == all_orders[all_refunds[full].order_id].total
    (partial,) = MESSY_CASES["refund_partial"]["refunds"]
    assert 0 < all_refunds[partial].amount < all_orders[all_refunds[partial].order_id].total
    for refund in all_refunds.values():
        order = all_orders[refund.order_id]
        assert order.status == "paid" and refund.created_at > order.paid_at
        assert 0 < refund.amount <= order.total

    all_subscriptions = _by_id(shop, subscriptions)
    for status in ("active", "paused", "canceled"):
        (subscription_id,) = MESSY_CASES[f"subscription_{status}"]["subscriptions"]
        subscription = all_subscriptions[subscription_id]
        assert subscription.status == status
        assert (subscription.canceled_at is not None) == (status == "canceled")
    for subscription in all_subscriptions.values():
        assert subscription.sku.startswith("SUB-")
        if subscription.status == "canceled":
            assert subscription.canceled_at is not None and subscription.cancel_reason


def test_money_adds_up(shop: sqlalchemy.Engine) -> None:
    subtotals: dict[int, float] = {}
    for item in _all_rows(shop, order_items):
        subtotals[item.order_id] = subtotals.get(item.order_id, 0) + item.quantity * item.unit_price
    for order in _all_rows(shop, orders):
        assert order.currency == "USD"
        assert order.total == round(order.subtotal - order.discount_total + order.shipping_total, 2), order.id
        assert order.subtotal == round(subtotals[order.id], 2), order.id
        assert order.total >= 0


def test_times_stay_in_the_window_except_on_purpose(shop: sqlalchemy.Engine) -> None:
    deliberate = {EPOCH, FAR_FUTURE}
    year_before = WINDOW_START - timedelta(days=365)
    for table in SOURCE_TABLES:
        for row in _all_rows(shop, table):
            for column in table.c:
                value = getattr(row, column.name)
                if not isinstance(value, datetime) or value in deliberate:
                    continue
                # Customers may predate the window: the shop has history before the pipeline starts.
                earliest = year_before if table is customers else WINDOW_START
                assert earliest <= value < WINDOW_END, (table.name, column.name, value)
    for person in _all_rows(shop, customers):
        if person.created_at != FAR_FUTURE:
            assert person.updated_at >= person.created_at
    created = {person.id: person.created_at for person in _all_rows(shop, customers)}
    for order in _all_rows(shop, orders):
        assert order.updated_at >= order.created_at
        if order.customer_id is not None:
            assert order.created_at > created[order.customer_id], order.id
        if order.paid_at not in (None, EPOCH):
            assert order.created_at < order.paid_at == order.updated_at
