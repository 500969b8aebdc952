"""A key carried by two source rows never stops the feed: those rows are set aside as `duplicate_key` and listed;
everyone else flows.

The reference schema makes every id a primary key, but a shop read through views or a mapping has no such
promise: a WordPress usermeta key written twice, joined into the customers relation, gives one customer id
twice. Here the shop's tables are the reference schema without its keys (and, for orders, a view over a base
table holding one row twice), on the real MariaDB.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Engine, MetaData, Table, text

from cio_assets.defs.resources import Settings
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import cart_items, customers, order_items, orders, source_metadata
from cio_assets_tests.conftest import SYNC, ts
from cio_assets_tests.definitions import rejected_rows
from cio_assets_tests.shop import ShopBuilder
from cio_assets_tests.test_identity_incremental import _now, _refresh_direct, _seed, _tables

DAYS = ("2026-10-01", "2026-10-02")


def _keyless(keyless: str, base_of_view: bool) -> MetaData:
    """The reference schema without foreign keys (MariaDB wants the referenced key), and `keyless` without its
    primary key; with `base_of_view`, that table is named `<name>_rows`, for a view to stand in its place."""
    schema = MetaData()
    for table in source_metadata.sorted_tables:
        plain = table.name != keyless
        name = table.name if plain or not base_of_view else f"{table.name}_rows"
        columns = [
            Column(c.name, c.type, primary_key=c.primary_key and plain, autoincrement=False, nullable=c.nullable)
            for c in table.columns
        ]
        Table(name, schema, *columns)
    return schema


class KeylessShop:
    """Builds the keyless schema on the test source database and puts the reference schema's place back after."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.schema: MetaData | None = None
        self.view: str | None = None

    def without_key(self, table: Table, as_view: bool = False) -> ShopBuilder:
        source_metadata.drop_all(self.engine)
        self.schema = _keyless(table.name, as_view)
        self.schema.create_all(self.engine)
        if as_view:
            self.view = table.name
            with self.engine.begin() as conn:
                conn.execute(text(f"CREATE VIEW `{table.name}` AS SELECT * FROM `{table.name}_rows`"))
        return ShopBuilder(self.engine)  # its inserts go through the view (a view over one table takes them)

    def duplicate(self, table: Table, **row: object) -> None:
        """One more row with an id that a row already carries."""
        with self.engine.begin() as conn:
            conn.execute(table.insert(), [row])

    def drop(self) -> None:
        with self.engine.begin() as conn:
            if self.view:
                conn.execute(text(f"DROP VIEW IF EXISTS `{self.view}`"))
        if self.schema is not None:
            self.schema.drop_all(self.engine)


@pytest.fixture
def keyless(source_engine: Engine) -> Iterator[KeylessShop]:
    shop = KeylessShop(source_engine)
    try:
        yield shop
    finally:
        shop.drop()


def _duplicates(pipeline) -> list[list[str]]:
    listed = pipeline.table(state_tables.rejected_rows, ["source_table", "source_key", "column_name"])
    listed = listed[listed["reason"] == "duplicate_key"]
    return listed[["source_table", "source_key", "column_name", "raw_value"]].values.tolist()


def _customer_row(id: int, email: str) -> dict:
    return dict(
        id=id,
        email=email,
        country="US",
        first_name="Twice",
        accepts_email_marketing=True,
        accepts_sms_marketing=False,
        created_at=ts("2026-10-01 09:00"),
        updated_at=ts("2026-10-01 09:00"),
    )


def test_a_customer_id_carried_twice_is_set_aside_and_everyone_else_is_delivered(keyless, pipeline, customerio):
    shop = keyless.without_key(customers)
    shop.customer(1)
    shop.customer(2, email="first@shop.com")
    # the same id with another e-mail: nothing says which is the customer's
    keyless.duplicate(customers, **_customer_row(2, "second@shop.com"))
    shop.customer(3, email="three@shop.com")
    # the case: a usermeta key written twice, joined in, repeats the whole row (it made identity's
    # shared-e-mail conflict list customer 3 twice, and the run failed on the conflicts table's key)
    keyless.duplicate(customers, **_customer_row(3, "three@shop.com"))
    kept = shop.order(1, total=30.0, paid_at="2026-10-02 10:00")
    shop.order(2, total=20.0, paid_at="2026-10-02 11:00")
    shop.order(3, total=10.0, paid_at="2026-10-02 12:00")

    result = pipeline.run(partition_range=DAYS, assets=SYNC, customerio=customerio.resource())

    assert result.success
    assert _duplicates(pipeline) == [["customers", "2", "id", "2"], ["customers", "3", "id", "2"]]
    conflicts = pipeline.table(state_tables.identity_conflicts)
    assert conflicts.empty
    mapped = pipeline.table(state_tables.identity_map)
    assert set(mapped.loc[mapped["identifier_type"] == "customer_id", "identifier"]) == {"1"}
    assert set(customerio.fake.people) == {"1"}
    assert customerio.fake.people["1"]["total_orders"] == 1
    assert [(e["name"], e["attributes"]["order_id"]) for e in customerio.fake.events] == [("order_placed", kept)]


def test_an_order_id_carried_twice_through_a_view_is_set_aside_and_never_counted(keyless, pipeline, customerio):
    shop = keyless.without_key(orders, as_view=True)
    shop.customer(1)
    shop.customer(2)
    # set aside on its day (1 October), whose state of customer 1 is held back, as for any set-aside order
    twice = shop.order(1, total=25.0, paid_at="2026-10-01 09:00")
    # the base table holds order `twice` again, as a join with a repeated meta row would give it
    order = dict(
        id=twice,
        customer_id=1,
        status="paid",
        currency="USD",
        subtotal=99.0,
        discount_total=0,
        shipping_total=0,
        total=99.0,
        created_at=ts("2026-10-01 08:58"),
        paid_at=ts("2026-10-01 09:00"),
        updated_at=ts("2026-10-01 09:00"),
    )
    keyless.duplicate(orders, **order)
    once = shop.order(1, total=40.0, paid_at="2026-10-02 10:00")
    other = shop.order(2, total=15.0, paid_at="2026-10-02 11:00")

    result = pipeline.run(partition_range=DAYS, assets=SYNC, customerio=customerio.resource())

    assert result.success
    assert _duplicates(pipeline) == [["orders", str(twice), "id", "2"]]
    person = pipeline.person("1", "2026-10-02")
    assert (person["total_orders"], person["lifetime_value_net"]) == (1, 40.0)
    sent = sorted((e["identifiers"]["id"], e["attributes"]["order_id"]) for e in customerio.fake.events)
    assert sent == [("1", once), ("2", other)]
    assert customerio.fake.people["1"]["total_orders"] == 1 and customerio.fake.people["2"]["total_orders"] == 1
    held = pipeline.table(state_tables.quarantine)
    assert set(held.loc[held["source_key"] == str(twice), "reason"]) == {"duplicate_key: id"}


def _twice(shop: ShopBuilder, keyless: KeylessShop, table: Table) -> str:
    """Builds a small shop in which one row of `table` has its id carried twice; the set-aside row's key."""
    shop.customer(1)
    if table is customers:
        keyless.duplicate(customers, **_customer_row(1, "again@shop.com"))
        return "1"
    order_id = shop.order(1, paid_at="2026-10-02 10:00", cart_id=1)
    cart_id = shop.cart(customer_id=1, checkout_started_at="2026-10-02 09:50")
    if table is orders:
        shop.order(1, id=order_id, paid_at="2026-10-02 10:30")
        return str(order_id)
    if table is order_items:  # the order's line twice: the order is set aside, not counted with it
        keyless.duplicate(order_items, id=1, order_id=order_id, sku="SKU-1", quantity=1, unit_price=50.0)
        return str(order_id)
    if table is cart_items:
        keyless.duplicate(cart_items, id=1, cart_id=cart_id, sku="SKU-1", quantity=1, unit_price=5.0)
        return str(cart_id)
    if table.name == "carts":
        keyless.duplicate(
            table, id=cart_id, customer_id=2, created_at=ts("2026-10-02 08:00"), updated_at=ts("2026-10-02 08:00")
        )
        return str(cart_id)
    if table.name == "refunds":
        refund_id = shop.refund(order_id, 5.0, created_at="2026-10-02 12:00")
        keyless.duplicate(table, id=refund_id, order_id=order_id, amount=6.0, created_at=ts("2026-10-02 12:05"))
        return str(refund_id)
    shop.subscription(1, status="active", started_at="2026-10-01 10:00")
    keyless.duplicate(table, id=1, customer_id=1, sku="BOX-2", status="active", started_at=ts("2026-10-01 11:00"))
    return "1"


@pytest.mark.parametrize(
    ("table", "listed_as"),
    [
        # every table whose id the pipeline joins or counts by: the row itself is listed
        (customers, ("customers", "id")),
        (orders, ("orders", "id")),
        (source_metadata.tables["carts"], ("carts", "id")),
        (source_metadata.tables["refunds"], ("refunds", "id")),
        (source_metadata.tables["subscriptions"], ("subscriptions", "id")),
        # lines are judged under their order or cart, which is listed (a line counted twice inflates it)
        (order_items, ("orders", "order_items")),
        (cart_items, ("carts", "cart_items")),
    ],
    ids=lambda v: v.name if isinstance(v, Table) else None,
)
def test_every_keyed_table_lists_a_key_carried_twice(keyless, pipeline, table, listed_as):
    shop = keyless.without_key(table)
    key = _twice(shop, keyless, table)

    pipeline.run(assets=[rejected_rows])

    listed = pipeline.table(state_tables.rejected_rows)
    found = listed[listed["reason"] == "duplicate_key"]
    assert found[["source_table", "source_key", "column_name"]].values.tolist() == [[*listed_as[:1], key, listed_as[1]]]


def test_identity_refreshed_incrementally_drops_a_customer_whose_id_becomes_carried_twice_and_takes_them_back(
    keyless, database_urls, state_engine, second_state_url
):
    source_url, state_url = database_urls
    shop = keyless.without_key(customers)
    _seed(shop)
    settings = Settings()
    _refresh_direct(source_url, state_url, settings, full=False)

    # customer 6's row is repeated (a usermeta key written twice), as of now
    keyless.duplicate(customers, **{**_customer_row(6, "six@shop.com"), "updated_at": _now()})
    incremental = _refresh_direct(source_url, state_url, settings, full=False)
    _refresh_direct(source_url, second_state_url, settings, full=True)

    assert incremental.mode == "incremental"
    assert _tables(state_url) == _tables(second_state_url)
    mapped = {row[1] for row in _tables(state_url)[state_tables.identity_map.name] if row[0] == "customer_id"}
    assert "6" not in mapped and "5" in mapped

    # the shop removes the extra row (nothing else moves): the count of customers tells
    with shop.engine.begin() as conn:
        conn.execute(text("DELETE FROM customers WHERE id = 6 AND first_name = 'Twice'"))
    _refresh_direct(source_url, state_url, settings, full=False)
    _refresh_direct(source_url, second_state_url, settings, full=True)

    assert _tables(state_url) == _tables(second_state_url)
    mapped = {row[1] for row in _tables(state_url)[state_tables.identity_map.name] if row[0] == "customer_id"}
    assert "6" in mapped
