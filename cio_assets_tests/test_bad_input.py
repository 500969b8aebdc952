"""Any value a shop's columns can hold has a defined outcome: stored, clipped, or set aside with a reason.

Real shops' columns are wider than the reference schema's (TEXT where it says VARCHAR(255), NULL where
it says NOT NULL). This module writes one shop into such a widened schema, with an over-long value in
every text column, runs the whole pipeline and its delivery once, and then states each value's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import orjson
import pandas as pd
import pytest
from sqlalchemy import CHAR, Column, MetaData, String, Table, Text, create_engine, select

from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets.hygiene.rules import REJECTING_TABLES, row_is_valid
from cio_assets.lib.timestamps import utc_now
from cio_assets.mapping.spec import load
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import source_metadata
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.definitions import rejected_rows
from cio_assets_tests.fake_customerio import validate_batch_body

LONG_EMAIL = "a" * 390 + "@shop.com"  # 399 characters: no valid address is that long
LONG_ANONYMOUS_ID = "anon-" + "x" * 395
DAY = "2026-10-02"


def _long(label: str, length: int) -> str:
    return (label + "-") + "x" * (length - len(label) - 1)


def widened_schema() -> MetaData:
    """The reference schema with every text column unbounded and every non-key column nullable."""
    wide = MetaData()
    for table in source_metadata.sorted_tables:
        columns = [
            Column(
                column.name,
                Text() if isinstance(column.type, String | CHAR) else column.type,
                primary_key=column.primary_key,
                autoincrement=False,
                nullable=column.primary_key is False,
            )
            for column in table.columns
        ]
        Table(table.name, wide, *columns)
    return wide


def _rows(**tables: list[dict]) -> dict[str, list[dict]]:
    return tables


def _long_line(**keys: object) -> dict:
    """An order or cart line whose every text is over-long."""
    texts = dict(sku=_long("sku", 300), product_name=_long("product", 2000), category=_long("category", 360))
    return {**texts, "quantity": 1, **keys}


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


SHOP = _rows(
    customers=[
        # customer 1: every profile text over-long; customers 2 and 3: ordinary profiles
        dict(
            id=1,
            email=LONG_EMAIL,
            phone="5" * 300,
            first_name=_long("first", 300),
            last_name="é" * 600,  # 1200 bytes
            country=_long("country", 50),
            accepts_email_marketing=True,
            accepts_sms_marketing=True,
            created_at=_at("2026-10-01 09:00"),
            updated_at=_at("2026-10-01 09:00"),
        ),
        *(
            dict(
                id=customer_id,
                email=f"customer{customer_id}@shop.com",
                first_name="Bob",
                country="US",
                accepts_email_marketing=True,
                accepts_sms_marketing=False,
                created_at=_at("2026-10-01 09:00"),
                updated_at=_at("2026-10-01 09:00"),
            )
            for customer_id in (2, 3)
        ),
    ],
    orders=[
        dict(id=1, customer_id=1, email=LONG_EMAIL, status="paid", currency="USD", discount_code=_long("code", 300)),
        # customer 3 holds the rows that break the contract (their days are held back, as they should be)
        dict(id=2, customer_id=3, status=_long("status", 300), currency="USD"),
        dict(id=3, customer_id=3, status=None, currency="USD"),
        dict(id=4, customer_id=3, status="paid", currency=_long("currency", 50)),
        dict(id=5, customer_id=None, email=LONG_EMAIL, status="paid", currency="USD"),
    ],
    order_items=[
        _long_line(id=1, order_id=1, unit_price=20.0),
        *(dict(id=i, order_id=i, sku="SKU-1", quantity=1, unit_price=20.0) for i in (2, 3, 4, 5)),
    ],
    carts=[
        dict(id=1, customer_id=2, checkout_started_at=_at("2026-10-02 09:00")),
        dict(id=2, anonymous_id=LONG_ANONYMOUS_ID),
        dict(id=3, email=LONG_EMAIL),
    ],
    cart_items=[
        _long_line(id=1, cart_id=1, unit_price=5.0),
        *(dict(id=i, cart_id=i, sku="SKU-1", quantity=1, unit_price=5.0) for i in (2, 3)),
    ],
    refunds=[dict(id=1, order_id=1, amount=5.0, reason=_long("reason", 2000), created_at=_at("2026-10-02 12:00"))],
    subscriptions=[
        dict(
            id=1,
            customer_id=1,
            sku=_long("sku", 300),
            status="canceled",
            started_at=_at("2026-10-01 10:00"),
            canceled_at=_at("2026-10-02 10:00"),
            cancel_reason=_long("cancel", 2000),
        ),
        dict(id=2, customer_id=3, sku="BOX-1", status=_long("status", 300), started_at=_at("2026-10-01 10:00")),
    ],
    identity_links=[dict(anonymous_id=LONG_ANONYMOUS_ID, customer_id=2, linked_at=_at("2026-10-02 08:00"))],
)
ORDER_DEFAULTS = dict(subtotal=20.0, discount_total=0.0, shipping_total=0.0, total=20.0)
ORDER_TIMES = dict(
    created_at=_at("2026-10-02 10:00"), paid_at=_at("2026-10-02 10:02"), updated_at=_at("2026-10-02 10:02")
)
CART_TIMES = dict(created_at=_at("2026-10-02 08:00"), updated_at=_at("2026-10-02 08:30"))


@dataclass
class Outcome:
    result: dg.ExecuteInProcessResult
    state: dict[str, pd.DataFrame]
    people: dict[str, dict]
    events: dict[str, dict]  # event name -> the attributes of the one such event

    def listed(self, table: Table, **where: str) -> pd.DataFrame:
        frame = self.state[table.name]
        for column, value in where.items():
            frame = frame[frame[column] == value]
        return frame


@pytest.fixture(scope="module")
def outcome(database_urls, _served_customerio) -> Outcome:
    fake, url = _served_customerio
    fake.reset()
    source_url, state_url = database_urls
    source = create_engine(source_url)
    state = create_engine(state_url)
    source_metadata.drop_all(source)
    state_tables.state_metadata.drop_all(state)
    wide = widened_schema()
    wide.create_all(source)
    with source.begin() as conn:
        for name, rows in SHOP.items():
            defaults = {**ORDER_DEFAULTS, **ORDER_TIMES} if name == "orders" else CART_TIMES if name == "carts" else {}
            blank = dict.fromkeys(wide.tables[name].columns.keys())  # the widened schema allows NULL anywhere
            conn.execute(wide.tables[name].insert(), [{**blank, **defaults, **row} for row in rows])

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            SYNC,
            instance=instance,
            tags={"dagster/asset_partition_range_start": "2026-10-01", "dagster/asset_partition_range_end": DAY},
            resources={
                "settings": Settings(),
                "source": SourceDatabase(url=source_url),
                "state": StateDatabase(url=state_url),
                "customerio": CustomerIO(site_id=fake.site_id, api_key=fake.api_key, track_url=url, rate_limit=1000.0),
            },
            raise_on_error=False,
        )
    with state.connect() as conn:
        tables = {
            t.name: pd.DataFrame(conn.execute(select(t)).mappings().all(), columns=[c.name for c in t.columns])
            for t in state_tables.state_metadata.sorted_tables
        }
    requests = [orjson.loads(r.body) for r in fake.requests]
    assert all(validate_batch_body(body) == [] for body in requests)
    events = {e["name"]: e["attributes"] for e in fake.events}
    source_metadata.drop_all(source)  # the next test module's fixtures start from the reference schema
    source.dispose()
    state.dispose()
    return Outcome(result, tables, dict(fake.people), events)


def test_the_whole_run_succeeds_on_over_long_values(outcome):
    failures = [e for e in outcome.result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures == [], [f.event_specific_data.error.message for f in failures]
    assert outcome.result.success


def _clipped(text: object, chars: int = 255) -> bool:
    return isinstance(text, str) and len(text) == chars and text.endswith("…")


def _reason(o: Outcome, table: Table, **where: str) -> list[str]:
    return o.listed(table, **where)["reason"].tolist()


# Each over-long source value, and what became of it.
OUTCOMES = {
    # customers.email: not an address, so nulled and listed as an invalid value with its raw text
    "customers.email": lambda o: (
        o.listed(state_tables.invalid_values, source_key="1", column_name="email")["raw_value"].tolist() == [LONG_EMAIL]
        and "email" not in o.people["1"]
    ),
    # customers.phone (with an over-long country): not a number, so nulled and listed as an invalid value
    "customers.phone": lambda o: (
        _reason(o, state_tables.invalid_values, source_key="1", column_name="phone")[0].startswith("invalid phone")
        and "phone" not in o.people["1"]
    ),
    # customers.first_name: 300 bytes fit Customer.io's 1000-byte value limit, so stored and sent whole
    "customers.first_name": lambda o: o.people["1"]["first_name"] == _long("first", 300),
    # customers.last_name: 1200 bytes, clipped to 1000 at a character boundary and listed as clipped
    "customers.last_name": lambda o: (
        o.people["1"]["last_name"] == "é" * 500
        # listed once per day the person has a row: the first day (history) and the day of the order
        and set(_reason(o, state_tables.quarantine, item_key="1", outcome="clipped"))
        == {"last_name is 1200 bytes, clipped to 1000 (Customer.io's limit is 1000)"}
    ),
    # orders.email of a guest order: no valid address, so the order is listed as unresolved
    "orders.email": lambda o: _reason(o, state_tables.unresolved_identifiers, source_table="orders", source_key="5")[
        0
    ].startswith("invalid email"),
    # orders.status over-long or NULL: an unknown status, set aside with its reason
    "orders.status": lambda o: (
        _reason(o, state_tables.rejected_rows, source_table="orders", source_key="2") == ["unknown_status"]
        and _reason(o, state_tables.rejected_rows, source_table="orders", source_key="3") == ["unknown_status"]
    ),
    # orders.currency over-long: not a currency code, set aside with its reason
    "orders.currency": lambda o: (
        _reason(o, state_tables.rejected_rows, source_table="orders", source_key="4") == ["invalid_value"]
    ),
    # orders.discount_code: free text inside the event, clipped to 255 characters
    "orders.discount_code": lambda o: _clipped(o.events["order_placed"]["discount_code"]),
    # order_items.sku, product_name, category: clipped to 255 characters inside items[]
    "order_items.*": lambda o: all(
        _clipped(o.events["order_placed"]["items"][0][k]) for k in ("sku", "product_name", "category")
    ),
    # order_items.category as the last product category: 360 characters fit, stored and sent whole
    "order_items.category": lambda o: o.people["1"]["last_product_category"] == _long("category", 360),
    # carts.anonymous_id: too long to keep as an identifier, so the cart is listed with that reason
    "carts.anonymous_id": lambda o: (
        _reason(o, state_tables.unresolved_identifiers, source_table="carts", source_key="2")
        == ["anonymous id longer than 320 characters"]
    ),
    # carts.email: no valid address, so the e-mail-only cart is listed as unresolved
    "carts.email": lambda o: (
        _reason(o, state_tables.unresolved_identifiers, source_table="carts", source_key="3")
        == ["anonymous cart linked to no customer"]
    ),
    # cart_items.sku, product_name, category: clipped to 255 characters inside items[]
    "cart_items.*": lambda o: all(
        _clipped(o.events["checkout_started"]["items"][0][k]) for k in ("sku", "product_name", "category")
    ),
    # refunds.reason: free text inside the event, clipped to 255 characters
    "refunds.reason": lambda o: _clipped(o.events["refund_issued"]["reason"]),
    # subscriptions.sku and cancel_reason: free text inside the event, clipped to 255 characters
    "subscriptions.*": lambda o: all(_clipped(o.events["subscription_canceled"][k]) for k in ("sku", "cancel_reason")),
    # subscriptions.status over-long: an unknown status, set aside with its reason
    "subscriptions.status": lambda o: (
        _reason(o, state_tables.rejected_rows, source_table="subscriptions", source_key="2") == ["unknown_status"]
    ),
    # identity_links.anonymous_id: too long to keep, so the link is listed with that reason
    "identity_links.anonymous_id": lambda o: (
        _reason(o, state_tables.unresolved_identifiers, source_table="identity_links", source_key="2")
        == ["anonymous id longer than 320 characters"]
    ),
}


@pytest.mark.parametrize("column", list(OUTCOMES))
def test_every_over_long_value_has_a_defined_outcome(outcome, column):
    assert OUTCOMES[column](outcome)


def test_listings_keep_over_long_raw_values_clipped_to_their_columns(outcome):
    unknown = outcome.listed(state_tables.rejected_rows, source_table="orders", source_key="2")
    assert _clipped(unknown["raw_value"].iloc[0])  # a 300-character status, listed within VARCHAR(255)
    guest = outcome.listed(state_tables.unresolved_identifiers, source_table="orders", source_key="5")
    assert _clipped(guest["identifier"].iloc[0], 320)  # a 399-character e-mail, listed within VARCHAR(320)


def test_every_source_row_is_either_valid_or_listed_even_with_nulls_everywhere(
    database_urls, source_engine, state_engine, pipeline
):
    # A row whose every non-key column is NULL meets each rule's checks with NULLs: the rule must still
    # decide, so that what the pipeline leaves out is exactly what `rejected_rows` lists.
    wide = widened_schema()
    source_metadata.drop_all(source_engine)
    wide.create_all(source_engine)
    with source_engine.begin() as conn:
        for table in REJECTING_TABLES:
            blank = dict.fromkeys(wide.tables[table.name].columns.keys())
            conn.execute(wide.tables[table.name].insert(), [{**blank, "id": i} for i in (1, 2)])
    pipeline.run(assets=[rejected_rows])

    listed = pipeline.table(state_tables.rejected_rows)
    clock = Settings().clock(utc_now(), load("reference"))
    with source_engine.connect() as conn:
        for table in REJECTING_TABLES:
            valid = set(conn.execute(select(table.c.id).where(row_is_valid(table, clock))).scalars())
            keys = {int(k) for k in listed[listed["source_table"] == table.name]["source_key"]}
            assert valid | keys == {1, 2} and not valid & keys, table.name
