"""The sample shop: deterministic, carrying every messy case it promises, with consistent money and times,
and fitting the reference schema on MariaDB in strict mode."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import phonenumbers
import pytest
import sqlalchemy
from sqlalchemy import Row, Table, make_url, select, text

from cio_assets.demo.shop import (
    DELETED_CUSTOMER_ID,
    EPOCH,
    FAR_FUTURE,
    LINKED_ANONYMOUS_ID,
    MESSY_CASES,
    NEGATIVE_TOTAL,
    UNKNOWN_STATUS,
    UNLINKED_ANONYMOUS_ID,
    WHOLESALE_LINES,
    ShopSize,
    generate_shop,
)
from cio_assets.schema.shop import (
    ORDER_STATUSES,
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
MYSQL_SERVER_URL = os.environ.get("CIO_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/")


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
        if order.id not in MESSY_CASES["negative_total_order"]["orders"]:
            assert order.total >= 0, order.id


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
    orphans, paid_early = MESSY_CASES["orphan_order"]["orders"], MESSY_CASES["paid_before_created"]["orders"]
    for order in _all_rows(shop, orders):
        assert order.updated_at >= order.created_at
        if order.customer_id is not None and order.id not in orphans:
            assert order.created_at > created[order.customer_id], order.id
        if order.paid_at not in (None, EPOCH) and order.id not in paid_early:
            assert order.created_at < order.paid_at == order.updated_at


# --- rows that must not stop the feed (issue 6) -----------------------------------------------------------


def _facts(shop: sqlalchemy.Engine) -> SimpleNamespace:
    return SimpleNamespace(
        people=_by_id(shop, customers), lines=Counter(item.order_id for item in _all_rows(shop, order_items))
    )


@pytest.mark.parametrize(
    ("case", "defect"),
    [
        # more lines than any shopper's order (those have at most 4)
        pytest.param("wholesale_order_400_lines", lambda order, shop: shop.lines[order.id] > 4, id="many_lines"),
        # names a customer id that no customer row has
        pytest.param("orphan_order", lambda order, shop: order.customer_id not in (None, *shop.people), id="orphan"),
        # a negative total
        pytest.param("negative_total_order", lambda order, shop: order.total < 0, id="negative_total"),
        # a status the pipeline does not know
        pytest.param(
            "unknown_status_order", lambda order, shop: order.status not in ORDER_STATUSES, id="unknown_status"
        ),
        # paid before it was created (the 1970 paid_at is a case of its own)
        pytest.param(
            "paid_before_created",
            lambda order, shop: order.paid_at not in (None, EPOCH) and order.paid_at < order.created_at,
            id="paid_before_created",
        ),
    ],
)
def test_each_bad_order_is_the_only_order_with_its_defect(shop: sqlalchemy.Engine, case: str, defect) -> None:
    facts = _facts(shop)
    all_orders = _by_id(shop, orders)
    assert [o.id for o in all_orders.values() if defect(o, facts)] == list(MESSY_CASES[case]["orders"])
    for order_id in MESSY_CASES[case]["orders"]:
        order = all_orders[order_id]
        assert order.status == (UNKNOWN_STATUS if case == "unknown_status_order" else "paid")
        # A case that names customers names existing cast customers, who placed the order.
        for customer_id in MESSY_CASES[case].get("customers", ()):
            assert order.customer_id == customer_id and customer_id in facts.people


def test_wholesale_order_has_400_distinct_lines_with_255_character_names_that_add_up(shop: sqlalchemy.Engine) -> None:
    (order_id,) = MESSY_CASES["wholesale_order_400_lines"]["orders"]
    order = _by_id(shop, orders)[order_id]
    lines = [item for item in _all_rows(shop, order_items) if item.order_id == order_id]
    assert len(lines) == WHOLESALE_LINES == 400
    assert {len(item.product_name) for item in lines} == {255}
    assert len({item.sku for item in lines}) == 400 and all(len(item.sku) <= 64 for item in lines)
    assert order.subtotal == round(sum(item.quantity * item.unit_price for item in lines), 2)
    assert order.total == round(order.subtotal - order.discount_total + order.shipping_total, 2)
    assert all(item.quantity > 0 and item.unit_price > 0 for item in lines)


def test_orphan_order_names_a_missing_customer_and_an_email_nobody_has(shop: sqlalchemy.Engine) -> None:
    (order_id,) = MESSY_CASES["orphan_order"]["orders"]
    order = _by_id(shop, orders)[order_id]
    people = _by_id(shop, customers)
    assert order.customer_id == DELETED_CUSTOMER_ID and order.customer_id not in people
    assert order.email and _normalised(order.email) not in {_normalised(p.email) for p in people.values()}


def test_overlong_first_name_fits_varchar_255_but_not_customerio_1000_bytes(shop: sqlalchemy.Engine) -> None:
    (customer_id,) = MESSY_CASES["overlong_first_name"]["customers"]
    name = _by_id(shop, customers)[customer_id].first_name
    assert len(name) == 255 and len(name.encode()) == 1020 > 1000
    longest = max(len(p.first_name.encode()) for p in _all_rows(shop, customers) if p.id != customer_id)
    assert longest <= 1000


def test_negative_order_is_a_paid_credit_of_500(shop: sqlalchemy.Engine) -> None:
    (order_id,) = MESSY_CASES["negative_total_order"]["orders"]
    order = _by_id(shop, orders)[order_id]
    assert order.total == order.subtotal == NEGATIVE_TOTAL == -500
    assert order.discount_total == order.shipping_total == 0 and order.status == "paid"


def test_shop_fits_the_reference_schema_on_mariadb_in_strict_mode(tmp_path: Path) -> None:
    """What `make bench` does: the generated rows go into MariaDB unchanged, none too long or out of range."""
    size = ShopSize(customers=60, days=10)
    name = f"cio_shop_{uuid.uuid4().hex[:10]}"
    server = sqlalchemy.create_engine(MYSQL_SERVER_URL)
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    mariadb = sqlalchemy.create_engine(
        make_url(MYSQL_SERVER_URL).set(database=name),
        connect_args={"init_command": "SET SESSION sql_mode = 'TRADITIONAL'"},  # strict: errors, not warnings
    )
    try:
        with mariadb.connect() as conn:
            assert "STRICT_ALL_TABLES" in conn.execute(text("SELECT @@SESSION.sql_mode")).scalar_one()
        counts = generate_shop(mariadb, size)
        reference = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'reference.sqlite'}")
        assert counts == generate_shop(reference, size)
        for table in SOURCE_TABLES:
            # Sorted in Python: the server's collation may order text differently from SQLite.
            assert sorted(_all_rows(mariadb, table), key=repr) == sorted(_all_rows(reference, table), key=repr)
    finally:
        mariadb.dispose()
        with server.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


def test_demo_summary_says_what_became_of_each_bad_row(tmp_path: Path) -> None:
    # Imported here: the demo runner loads the whole pipeline, which the shop's other tests do not need.
    from cio_assets.demo.run import delivery_report, summary
    from cio_assets.schema import state

    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    assert "order 15 (400 lines)                 not listed anywhere" in summary(url, 0.0)  # no tables yet: no error

    engine = sqlalchemy.create_engine(url)
    state.state_metadata.create_all(engine)
    set_aside = {"source_table": "orders", "raw_value": None, "first_rejected_at": 1, "released_at": None}
    listed = {"day": "2026-11-15", "source_table": "orders"}
    with engine.begin() as conn:
        rows = [
            {**set_aside, "source_key": "18", "column_name": "status", "reason": "unknown_status"},
            # released: the row passed again, so it is no longer set aside
            {**set_aside, "source_key": "9", "column_name": "paid_at", "reason": "in_future", "released_at": 2},
        ]
        conn.execute(state.rejected_rows.insert(), rows)
        columns = ("asset", "item_key", "outcome", "source_key", "reason")
        quarantined = [
            ("event_log", "order_placed:15", "truncated", "15", "items_truncated: 400 lines, 60 kept"),
            ("attribute_snapshot", "14", "held", "17", "negative_amount: total"),  # the person's day, for order 17
        ]
        rows = [{**listed, **dict(zip(columns, values, strict=True))} for values in quarantined]
        conn.execute(state.quarantine.insert(), rows)
    engine.dispose()

    text_ = summary(url, 0.0)
    assert "  unknown_status           orders              1" in text_ and "in_future" not in text_
    assert "  attribute_snapshot   held       negative_amount               1" in text_
    assert "order 15 (400 lines)                 truncated to fit in event_log (items_truncated:" in text_
    assert "order 17 (total -500)                held back in attribute_snapshot (negative_amount: total)" in text_
    assert "order 18 (status on_hold)            set aside, unknown_status (status)" in text_

    dry_run = {"dry_run": True, "items_planned": 12, "batches": 1, "rejected": 0, "outbox": "out.jsonl"}
    plan = delivery_report({"customerio_people": dry_run, "customerio_events": dry_run})
    assert "12 items planned in 1 batches" in plan and "sent" not in plan


@pytest.mark.parametrize(
    ("steady_rates", "busier"),
    [
        # the generator's older timing, kept for `make bench`: the newest customers' orders and the late
        # refunds crowd into the last week of history
        (False, True),
        # the demo's: the last week looks like the one before, so the volume checks have nothing to flag
        (True, False),
    ],
)
def test_with_steady_rates_the_last_week_of_history_is_no_busier_than_the_week_before(
    tmp_path: Path, steady_rates: bool, busier: bool
) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    end = datetime(2026, 11, 20)
    generate_shop(engine, ShopSize(customers=1000, days=60, end=end.date(), steady_rates=steady_rates))
    last_week, week_before = end - timedelta(days=6), end - timedelta(days=13)
    with engine.connect() as conn:

        def paid_orders(start: datetime) -> int:
            in_week = orders.c.paid_at.between(start, start + timedelta(days=7)) & (orders.c.status == "paid")
            return conn.execute(select(sqlalchemy.func.count()).where(in_week)).scalar_one()

        def refunded(start: datetime) -> int:
            in_week = refunds.c.created_at.between(start, start + timedelta(days=7))
            return conn.execute(select(sqlalchemy.func.count()).where(in_week)).scalar_one()

        order_ratio = paid_orders(last_week) / paid_orders(week_before)
        refund_ratio = refunded(last_week) / max(refunded(week_before), 1)
    engine.dispose()

    assert (order_ratio > 1.25) is busier, order_ratio
    assert (refund_ratio > 1.5) is busier, refund_ratio
