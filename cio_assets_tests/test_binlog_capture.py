"""Binlog change capture (`CIO_CHANGE_CAPTURE=binlog`): rows traced to keys through the mapping, a purged position
survived, doctor's word on the server, and the same result as polling for the same changes (on a MariaDB of the
session's own that logs rows, `binlog_server.py`; the end-to-end cases are in `test_never_miss.py`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime

import pytest
from sqlalchemy import create_engine, select, text

from cio_assets.defs.automation.job import FULL_REFRESH
from cio_assets.defs.automation.sensor import SourceCursor
from cio_assets.doctor import OK, WARN, diagnose
from cio_assets.mapping.spec import load
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import source_metadata
from cio_assets.tracking.binlog import key_rules, readiness
from cio_assets_tests.conftest import SERVER_URL, LocalCustomerIO, own_database
from cio_assets_tests.definitions import ENV
from cio_assets_tests.fake_customerio import FakeCustomerIO, serve
from cio_assets_tests.following import execute, followed_shop, seconds_ago
from cio_assets_tests.shop import ShopBuilder


@pytest.mark.parametrize(
    ("preset", "table", "column", "concept", "key"),
    [
        # a usermeta row is its user's: a phone written by a plugin, with no change time, is that customer's change
        ("woocommerce", "wp_usermeta", "user_id", "customers", "id"),
        # an order's operational data (its paid time) is the order's, by the join's ON clause
        ("woocommerce", "wp_wc_order_operational_data", "order_id", "orders", "id"),
        # a refund row in the orders table leads to the order it refunds
        ("woocommerce", "wp_wc_orders", "parent_order_id", "refunds", "order_id"),
        # a deleted order's customer, from the row's values before the delete
        ("woocommerce", "wp_wc_orders", "customer_id", "orders", "customer_id"),
        # an order line's meta (its quantity) is the line's, then its order's
        ("woocommerce", "wp_woocommerce_order_itemmeta", "order_item_id", "order_items", "id"),
        # a Magento invoice (the paid time) is its order's
        ("magento2", "sales_invoice", "order_id", "orders", "id"),
        # a quote line is its quote's: the cart
        ("magento2", "quote_item", "quote_id", "cart_items", "cart_id"),
        # a billing address is its customer's (seen_in)
        ("magento2", "customer_address_entity", "parent_id", "customers", "id"),
    ],
)
def test_a_row_of_any_table_the_mapping_reads_is_traced_to_its_key(preset, table, column, concept, key):
    rules = key_rules(load(preset))[table]
    assert (concept, key) in {(rule.concept, rule.key) for rule in rules if rule.column == column}


def test_doctor_says_whether_binlog_capture_works_on_the_server(binlog_server_url, throwaway_database):
    """The shared test server keeps no binlog; the session's own logs rows."""
    name = f"cio_test_{uuid.uuid4().hex[:10]}"
    with own_database(name, binlog_server_url) as url:
        for shop_url, expected in ((url, OK), (throwaway_database, WARN)):
            engine = create_engine(shop_url)
            source_metadata.create_all(engine)
            report = diagnose(engine, load("reference"), ENV.pipeline, shop_url)
            engine.dispose()
            found = {
                (level, line)
                for section in report.sections
                for level, line in section.lines
                if section.title.startswith("Binlog capture")
            }
            if expected == OK:
                assert (
                    OK,
                    "the server logs rows and the user may read them: CIO_CHANGE_CAPTURE=binlog works here",
                ) in found
            else:
                assert any(level == WARN and "log_bin is OFF" in line for level, line in found), found


def test_a_user_without_replication_privileges_is_told_what_to_grant(binlog_server_url):
    admin = create_engine(binlog_server_url)
    user = f"reader_{uuid.uuid4().hex[:6]}"
    with admin.begin() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"))
        conn.execute(text(f"GRANT SELECT ON *.* TO '{user}'@'%'"))
    reader = create_engine(binlog_server_url.replace("root@", f"{user}:pw@"))
    try:
        with reader.connect() as conn:
            problems = readiness(conn)
    finally:
        reader.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP USER '{user}'@'%'"))
        admin.dispose()
    assert problems == [
        "the user lacks REPLICATION SLAVE: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO it",
        "the user lacks REPLICATION CLIENT: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO it",
    ]


def test_a_purged_position_is_said_restarted_and_caught_up_by_one_full_refresh(binlog_server_url, customerio, tmp_path):
    with ExitStack() as stack:
        live, _ = followed_shop(binlog_server_url, "binlog", customerio, tmp_path, stack)
        admin = create_engine(binlog_server_url)
        with admin.connect() as conn:  # the binlog the sensor's position is in, gone
            conn.execute(text("FLUSH BINARY LOGS"))
            newest = str(conn.execute(text("SHOW MASTER STATUS")).one()[0])
            for _ in range(50):  # MariaDB keeps a file until its transactions are checkpointed
                conn.execute(text(f"PURGE BINARY LOGS TO '{newest}'"))
                if len(conn.execute(text("SHOW BINARY LOGS")).all()) == 1:
                    break
                time.sleep(0.2)
        admin.dispose()

        result = live.tick()
        again = live.tick()

    [request] = result.run_requests
    assert request.tags["cio/full_refresh"] == "the saved binlog position was purged from the server"
    assert request.run_config == FULL_REFRESH
    assert (SourceCursor.parse(result.cursor).binlog or {})["file"] == newest  # read again from the current file
    assert again.run_requests == []


# ---------------------------------------------------------------------------------------------------------
# Polling and binlog capture give the same result
# ---------------------------------------------------------------------------------------------------------

# The state compared: who is who, every event, and each person's latest state. Not every snapshot row: on a
# delete, polling computes everyone's latest day again where binlog capture knows whose order it was, so polling's
# snapshot holds more rows for the same state (the people sync sends only what differs).
COMPARED = (state_tables.identity_map, state_tables.event_log)
SNAPSHOT = state_tables.attribute_snapshot


def _rows(engine) -> dict[str, list[tuple]]:
    found = {}
    with engine.connect() as conn:
        for table in COMPARED:
            found[table.name] = sorted(tuple(str(v) for v in row) for row in conn.execute(select(table)).all())
        latest: dict[str, tuple] = {}
        for row in conn.execute(select(SNAPSHOT).order_by(SNAPSHOT.c.day)).mappings():
            latest[row["person_id"]] = tuple(str(v) for k, v in row.items() if k not in ("day", "as_of"))
        found[SNAPSHOT.name] = sorted(latest.values())
    return found


def _customerio(fake: FakeCustomerIO) -> tuple[dict, list]:
    people = {person: dict(attributes) for person, attributes in fake.people.items()}
    events = sorted((str(e.get("id")), str(e.get("name")), str(e.get("timestamp"))) for e in fake.events)
    return people, events


def _insert(shop: ShopBuilder, at: datetime) -> None:
    shop.customer(4, updated_at=at)
    shop.order(4, paid_at=at, items=[("SKU-3", "tea", 2, 20.0)])


def _same_second(shop: ShopBuilder, at: datetime) -> None:
    execute(
        shop.engine,
        "UPDATE customers SET first_name = 'Grace', "
        "updated_at = (SELECT t FROM (SELECT MAX(updated_at) AS t FROM customers) AS n) WHERE id = 2",
    )


def _late_commit(shop: ShopBuilder, at: datetime) -> None:
    execute(
        shop.engine,
        "UPDATE customers SET last_name = 'Late', "
        "updated_at = (SELECT t FROM (SELECT MAX(updated_at) - INTERVAL 3 SECOND AS t FROM customers) AS n) "
        "WHERE id = 3",
    )


def _line_of_a_cart(shop: ShopBuilder, at: datetime) -> None:
    """A cart line edited in place, its change time stamped in the same second as the newest line's."""
    execute(
        shop.engine,
        "UPDATE cart_items SET quantity = 3, "
        "updated_at = (SELECT t FROM (SELECT MAX(updated_at) AS t FROM cart_items) AS n) WHERE id = 1",
    )


def _delete(shop: ShopBuilder, at: datetime) -> None:
    """The older order of customer 2."""
    execute(shop.engine, "DELETE FROM order_items WHERE order_id = (SELECT MIN(id) FROM orders)")
    execute(shop.engine, "DELETE FROM orders WHERE id = (SELECT id FROM (SELECT MIN(id) AS id FROM orders) AS o)")


# The same changes, in order, to both shops; `at`: a time 30 s before the step, the same for both.
CHANGES: list[tuple[str, Callable[[ShopBuilder, datetime], None]]] = [
    (
        "a cart with two lines",
        lambda shop, at: shop.cart(
            customer_id=1,
            updated_at=at,
            items=[("SKU-1", "tea", 1, 5.0), ("SKU-2", "tea", 1, 5.0)],
            item_updated_at=at,
        ),
    ),
    ("an insert", _insert),
    ("a same-second edit", _same_second),
    ("a late commit", _late_commit),
    ("a child table's edit", _line_of_a_cart),
    ("a delete", _delete),
]


def test_polling_and_binlog_capture_give_the_same_result(binlog_server_url, tmp_path):
    with ExitStack() as stack:
        followed = []
        for server_url, capture in ((SERVER_URL, "poll"), (binlog_server_url, "binlog")):
            fake = FakeCustomerIO()  # each its own Customer.io
            customerio = LocalCustomerIO(fake, stack.enter_context(serve(fake)))
            followed.append((*followed_shop(server_url, capture, customerio, tmp_path, stack), fake))
        for name, change in CHANGES:
            at = seconds_ago(30)
            for live, shop, _ in followed:
                change(shop, at)
                assert live.follow(), (name, live.capture)

        (poll, _, poll_fake), (binlog, _, binlog_fake) = followed
        assert _rows(poll.pipeline.state_engine) == _rows(binlog.pipeline.state_engine)
        assert _customerio(poll_fake) == _customerio(binlog_fake)
        assert poll_fake.people and poll_fake.events  # something was compared
