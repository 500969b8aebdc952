"""The platform fixtures: each platform's own tables load under any prefix, and the generated shops hold what their
expected truth says, read back with plain SQL on the platform's tables (real MariaDB, throwaway databases)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from cio_assets.demo.platforms import ddl, magento2, woocommerce
from cio_assets_tests.conftest import own_database

CUSTOMERS = 40


@pytest.fixture
def database() -> Iterator[str]:
    """An empty throwaway database; its URL."""
    with own_database(f"cio_test_platform_{uuid.uuid4().hex[:10]}") as url:
        yield url


def _engine(url: str, zone: str = "+00:00") -> Engine:
    """An engine whose every session is in `zone` (as a reader or a careless writer would be)."""
    return create_engine(url, connect_args={"init_command": f"SET time_zone = '{zone}'"})


def _rows(url: str, sql: str, zone: str = "+00:00") -> list[tuple]:
    engine = _engine(url, zone)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    return {name for (name,) in _rows(url, "SHOW TABLES")}


@pytest.mark.parametrize(
    ("platform", "prefix", "expected"),
    [
        # WordPress' default prefix, as the DDL is written
        ("woocommerce", None, {"wp_users", "wp_usermeta", "wp_wc_orders", "wp_mailpoet_subscribers"}),
        # a site installed with another $table_prefix: every table renamed, no column touched (wp_user_id stays)
        ("woocommerce", "shop7_", {"shop7_users", "shop7_wc_orders", "shop7_woocommerce_order_itemmeta"}),
        # Magento's default: no prefix
        ("magento2", None, {"customer_entity", "sales_order", "sales_invoice", "quote", "newsletter_subscriber"}),
        # Magento installed with --db-prefix
        ("magento2", "m2_", {"m2_customer_entity", "m2_sales_order", "m2_quote_item", "m2_store_website"}),
    ],
)
def test_the_platform_ddl_loads_under_the_default_or_a_custom_prefix(database, platform, prefix, expected):
    engine = create_engine(database)
    with engine.connect() as conn:
        created = ddl.load(conn, platform, prefix)
    engine.dispose()
    assert expected <= _tables(database)
    assert set(created) == _tables(database)
    if platform == "woocommerce":
        table = f"{prefix or 'wp_'}mailpoet_subscribers"
        assert ("wp_user_id",) in _rows(
            database,
            f"SELECT column_name FROM information_schema.columns "
            f"WHERE table_schema = DATABASE() AND table_name = '{table}'",
        )


def test_a_prefix_that_is_not_an_identifier_is_refused_with_its_value():
    with pytest.raises(ValueError, match=r"table prefix 'wp_; DROP' for woocommerce"):
        ddl.statements("woocommerce", "wp_; DROP")


@pytest.mark.parametrize(
    ("generate", "tables"),
    [
        (
            woocommerce.generate,
            "wp_users, wp_usermeta, wp_wc_orders, wp_wc_order_operational_data, wp_mailpoet_subscribers",
        ),
        (
            magento2.generate,
            "customer_entity, sales_order, sales_invoice, sales_order_item, quote, newsletter_subscriber",
        ),
    ],
    ids=["woocommerce", "magento2"],
)
def test_the_same_seed_makes_the_same_shop_and_another_seed_another(database, generate, tables):
    first = generate(database, customers=CUSTOMERS, seed=7)
    checksums = _rows(database, f"CHECKSUM TABLE {tables}")
    again = generate(database, customers=CUSTOMERS, seed=7)
    assert again == first
    assert _rows(database, f"CHECKSUM TABLE {tables}") == checksums
    assert generate(database, customers=CUSTOMERS, seed=8) != first
    assert _rows(database, f"CHECKSUM TABLE {tables}") != checksums


# --- WooCommerce -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url_zone",
    [
        "+00:00",  # a server in UTC
        "-05:00",  # the URL's sessions start in New York winter time: the generator must still write UTC
    ],
)
def test_woocommerce_truth_agrees_with_the_platform_tables(database, url_zone):
    url = database if url_zone == "+00:00" else _url_in_zone(database, url_zone)
    truth = woocommerce.generate(url, customers=CUSTOMERS, seed=3, prefix="wp_")
    people = truth.people

    # people: users whose serialised role is customer, plus guest e-mails; staff are users but not people
    customers = _rows(
        database,
        """
        SELECT u.user_email FROM wp_users u JOIN wp_usermeta m ON m.user_id = u.ID
        WHERE m.meta_key = 'wp_capabilities' AND m.meta_value LIKE '%s:8:"customer"%'""",
    )
    staff = _rows(
        database,
        """SELECT COUNT(*) FROM wp_usermeta WHERE meta_key = 'wp_capabilities'
        AND meta_value NOT LIKE '%s:8:"customer"%'""",
    )
    assert {e for (e,) in customers} == {p.email for p in people.values() if not p.is_guest}
    assert staff == [(truth.set_aside["non_customer_users"],)] == [(2,)]
    guests = _rows(
        database, "SELECT DISTINCT billing_email FROM wp_wc_orders WHERE type = 'shop_order' AND customer_id = 0"
    )
    assert {p.email for p in people.values() if p.is_guest} < {e for (e,) in guests}  # one guest is a customer

    # the key written twice: two rows, the truth is the first
    twice = _rows(
        database,
        """SELECT user_id, GROUP_CONCAT(meta_value ORDER BY umeta_id) FROM wp_usermeta
        WHERE meta_key = 'billing_phone' GROUP BY user_id HAVING COUNT(*) > 1""",
    )
    assert len(twice) == truth.set_aside["duplicate_usermeta"] == 1
    (user_id, values) = twice[0]
    owner = next(p for p in people.values() if p.customer_ids == (user_id,))
    assert owner.phone == values.split(",")[0] != values.split(",")[1]

    # every core status and the plugin's own; the latter's orders are set aside
    statuses = {s for (s,) in _rows(database, "SELECT DISTINCT status FROM wp_wc_orders WHERE type = 'shop_order'")}
    assert statuses == {*woocommerce.CORE_STATUSES, woocommerce.CUSTOM_STATUS}
    shipped = _rows(database, f"SELECT COUNT(*) FROM wp_wc_orders WHERE status = '{woocommerce.CUSTOM_STATUS}'")
    assert shipped == [(truth.set_aside["custom_status_orders"],)]

    # paid orders: date_paid_gmt (UTC, whatever the session) and total, of the paid core statuses
    paid = _rows(
        database,
        """SELECT o.id, d.date_paid_gmt, o.total_amount FROM wp_wc_orders o
        JOIN wp_wc_order_operational_data d ON d.order_id = o.id
        WHERE o.type = 'shop_order' AND d.date_paid_gmt IS NOT NULL
        AND o.status IN ('wc-processing', 'wc-completed', 'wc-refunded')""",
    )
    expected = {(o.order_id, o.paid_at, o.total) for p in people.values() for o in p.orders}
    assert {(i, at, Decimal(t).quantize(Decimal("0.01"))) for i, at, t in paid} == expected
    assert _rows(
        database,
        """SELECT COUNT(*) FROM wp_wc_orders o JOIN wp_wc_order_operational_data d
        ON d.order_id = o.id WHERE o.status IN ('wc-pending', 'wc-on-hold', 'wc-failed', 'wc-cancelled',
        'wc-checkout-draft') AND d.date_paid_gmt IS NOT NULL""",
    ) == [(0,)]

    # refunds: shop_order_refund rows under their order, negative totals, their times
    refunds = _rows(
        database,
        """SELECT id, parent_order_id, total_amount, date_created_gmt, customer_id
        FROM wp_wc_orders WHERE type = 'shop_order_refund'""",
    )
    assert all(total < 0 and customer == 0 for _, _, total, _, customer in refunds)
    assert {(i, parent, -Decimal(t).quantize(Decimal("0.01")), at) for i, parent, t, at, _ in refunds} == {
        (r.refund_id, r.order_id, r.amount, r.refunded_at) for p in people.values() for r in p.refunds
    }

    # lines: itemmeta keys, and the lookup table's copy
    keys = {
        k
        for (k,) in _rows(
            database,
            """SELECT DISTINCT m.meta_key FROM wp_woocommerce_order_itemmeta m
        JOIN wp_woocommerce_order_items i ON i.order_item_id = m.order_item_id WHERE i.order_item_type = 'line_item'""",
        )
    }
    assert {"_product_id", "_variation_id", "_qty", "_line_subtotal", "_line_total"} <= keys
    assert _rows(
        database, """SELECT COUNT(*) FROM wp_woocommerce_order_items WHERE order_item_type = 'line_item'"""
    ) == _rows(database, "SELECT COUNT(*) FROM wp_wc_order_product_lookup")

    # consent: every MailPoet status; customers with no row are unknown; form signups are nobody
    mailpoet = dict(_rows(database, "SELECT email, status FROM wp_mailpoet_subscribers"))
    assert set(mailpoet.values()) == set(woocommerce.CONSENT)
    for person in people.values():
        assert person.consent == (
            woocommerce.CONSENT[mailpoet[person.email]] if person.email in mailpoet else "unknown"
        )
    assert any(p.email not in mailpoet and not p.is_guest for p in people.values())
    strangers = [e for e in mailpoet if e not in people and not e.endswith("@roastery.example")]
    assert len(strangers) == truth.set_aside["consent_only_subscribers"]


def _url_in_zone(url: str, zone: str) -> str:
    """The URL with every session starting in `zone` (mysqlclient's init_command)."""
    return (
        make_url(url)
        .update_query_dict({"init_command": f"SET time_zone = '{zone}'"})
        .render_as_string(hide_password=False)
    )


# --- Magento 2 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url_zone",
    [
        "+00:00",  # a server in UTC
        "-05:00",  # the URL's sessions start in New York winter time: the TIMESTAMPs must still hold UTC
    ],
)
def test_magento_truth_agrees_with_the_platform_tables(database, url_zone):
    url = database if url_zone == "+00:00" else _url_in_zone(database, url_zone)
    truth = magento2.generate(url, customers=CUSTOMERS, seed=3)
    people = truth.people

    # one e-mail, two websites: two customers, one person
    twins = _rows(
        database,
        "SELECT email, GROUP_CONCAT(entity_id ORDER BY entity_id), COUNT(DISTINCT website_id) "
        "FROM customer_entity GROUP BY email HAVING COUNT(*) > 1",
    )
    assert len(twins) == 1 and twins[0][2] == 2
    assert people[twins[0][0]].customer_ids == tuple(int(i) for i in twins[0][1].split(","))

    # phone and country from the default billing address (never from another address), none without one
    billing = {
        e: (t or None, c)
        for e, t, c in _rows(
            database,
            """SELECT c.email, a.telephone, a.country_id
        FROM customer_entity c JOIN customer_address_entity a ON a.entity_id = c.default_billing""",
        )
    }
    for person in (p for p in people.values() if not p.is_guest):
        stored, country = billing.get(person.email, (None, None))
        assert person.country == country
        assert (person.phone is None) == (stored is None)

    # guests: no customer id, flagged, the e-mail on the order
    guests = {
        e
        for (e,) in _rows(
            database, "SELECT customer_email FROM sales_order WHERE customer_is_guest = 1 AND customer_id IS NULL"
        )
    }
    assert guests == {p.email for p in people.values() if p.is_guest}
    assert _rows(database, "SELECT COUNT(*) FROM sales_order WHERE discount_amount > 0") == [(0,)]
    assert _rows(database, "SELECT COUNT(*) FROM sales_order WHERE discount_amount < 0") != [(0,)]

    # paid = invoiced, at the first invoice (read in UTC); one order has two invoices, unpaid ones none
    first_invoices = _rows(
        database,
        """SELECT o.entity_id, MIN(i.created_at), o.grand_total, COUNT(*)
        FROM sales_order o JOIN sales_invoice i ON i.order_id = o.entity_id GROUP BY o.entity_id, o.grand_total""",
    )
    assert {(i, at, total) for i, at, total, _ in first_invoices} == {
        (o.order_id, o.paid_at, o.total) for p in people.values() for o in p.orders
    }
    assert sorted(n for *_, n in first_invoices)[-1] == 2
    assert _rows(
        database,
        """SELECT COUNT(*) FROM sales_order o WHERE state IN ('new', 'pending_payment',
        'canceled', 'holded', 'payment_review')
        AND EXISTS (SELECT 1 FROM sales_invoice i WHERE i.order_id = o.entity_id)
        """,
    ) == [(0,)]
    states = {s for (s,) in _rows(database, "SELECT DISTINCT state FROM sales_order")}
    assert states == {state for state, _ in magento2.ORDER_KINDS}

    # configurable products: a child line under its parent, priced 0
    children = _rows(
        database,
        """SELECT c.price, c.row_total, p.product_type FROM sales_order_item c
        JOIN sales_order_item p ON p.item_id = c.parent_item_id""",
    )
    assert len(children) == truth.set_aside["child_lines"] > 0
    assert {(price, row, kind) for price, row, kind in children} == {
        (Decimal("0.0000"), Decimal("0.0000"), "configurable")
    }

    # refunds are credit memos, positive
    memos = _rows(database, "SELECT entity_id, order_id, grand_total, created_at FROM sales_creditmemo")
    assert {(i, o, t, at) for i, o, t, at in memos} == {
        (r.refund_id, r.order_id, r.amount, r.refunded_at) for p in people.values() for r in p.refunds
    }

    # carts: converted quotes point both ways; open carts are active quotes with lines and an e-mail
    assert _rows(
        database,
        """SELECT COUNT(*) FROM sales_order o JOIN quote q ON q.entity_id = o.quote_id
        WHERE q.is_active = 0 AND q.reserved_order_id = o.increment_id""",
    ) == _rows(database, "SELECT COUNT(*) FROM sales_order")
    open_carts = _rows(
        database,
        """SELECT q.customer_email, q.entity_id, q.updated_at FROM quote q
        WHERE q.is_active = 1 AND q.customer_email IS NOT NULL
        AND EXISTS (SELECT 1 FROM quote_item i WHERE i.quote_id = q.entity_id)""",
    )
    assert set(open_carts) == {(p.email, c.cart_id, c.updated_at) for p in people.values() for c in p.carts}
    assert any(p.is_guest and p.carts for p in people.values())
    assert _rows(database, "SELECT COUNT(*) FROM quote WHERE is_active = 1 AND customer_email IS NULL") == [
        (truth.set_aside["anonymous_carts"],)
    ]

    # consent per store: every status; customers without a row are unknown
    rows = _rows(database, "SELECT subscriber_email, subscriber_status, store_id FROM newsletter_subscriber")
    assert {s for _, s, _ in rows} == {1, 2, 3, 4}
    assert 1 in {store for *_, store in rows} <= {1, 2}
    statuses = {e: s for e, s, _ in rows}
    for person in people.values():
        assert person.consent == (magento2.CONSENT[statuses[person.email]] if person.email in statuses else "unknown")
    assert any(p.email not in statuses and not p.is_guest for p in people.values())


def test_magento_timestamps_read_in_another_zone_come_back_shifted(database):
    """Why a reader must set its session to UTC: the same first invoice, read at -05:00, is five hours early."""
    truth = magento2.generate(_url_in_zone(database, "-05:00"), customers=CUSTOMERS, seed=3)
    order = next(o for p in truth.people.values() for o in p.orders)
    sql = f"SELECT MIN(created_at) FROM sales_invoice WHERE order_id = {order.order_id}"
    assert _rows(database, sql, zone="+00:00") == [(order.paid_at,)]
    assert _rows(database, sql, zone="-05:00") == [(order.paid_at - (datetime(2000, 1, 1, 5) - datetime(2000, 1, 1)),)]
