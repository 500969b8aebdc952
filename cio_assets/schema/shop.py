"""The concepts the pipeline reads (customers, orders, …), as tables: their names, columns and types; and the
reference schema, which is the same tables as a shop's own.

The pipeline's queries name these tables and read results by these column names only. A source mapping
(`cio_assets/mapping/`, `CIO_SOURCE_MAPPING`) says how a shop's own tables make each concept; the `reference` preset
maps each to the table of the same name. `reference_schema.sql` beside this file is the same schema as
MySQL/MariaDB DDL, generated from these definitions (`make reference`); the demo and the tests build their shops
from it.

DATETIME columns are naive: their time zone is the mapping's (`time_zone`), or configuration where it says
"source" (CIO_SOURCE_TZ and CIO_SOURCE_TZ_OVERRIDES, read as `lib.timestamps.SourceZones`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
)
from sqlalchemy.dialects import mysql

from cio_assets.schema.columns import PII

source_metadata = MetaData()


def _datetime() -> DateTime:
    # DATETIME(6) on MySQL/MariaDB (microseconds); plain DATETIME elsewhere.
    return DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _money() -> Numeric:
    return Numeric(12, 2, asdecimal=False)


# An order's status as the pipeline reads it (a mapping's `values` put a shop's own statuses onto these). A
# refunded order was paid: its refunds subtract from what the person spent.
ORDER_STATUSES = ("pending", "paid", "payment_failed", "cancelled", "refunded")
PAID_STATUSES = ("paid", "refunded")
SUBSCRIPTION_STATUSES = ("active", "paused", "canceled")

customers = Table(
    "customers",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False, comment="Customer id"),
    Column("email", String(320), info=PII, comment="E-mail as typed (normalised and validated by the pipeline)"),
    Column(
        "phone",
        String(64),
        info=PII,
        comment="Phone as typed, any format (made E.164 by the pipeline, reading national formats by country)",
    ),
    Column("first_name", String(255), info=PII, comment="First name"),
    Column("last_name", String(255), info=PII, comment="Last name"),
    Column("country", CHAR(2), comment="ISO 3166 country code, for national phone formats"),
    Column(
        "accepts_email_marketing",
        Boolean,
        nullable=True,
        comment="E-mail marketing consent: 1 opted in, 0 opted out, NULL never asked (unknown: never unsubscribes)",
    ),
    Column(
        "accepts_sms_marketing",
        Boolean,
        nullable=True,
        comment="SMS marketing consent: 1 opted in, 0 opted out, NULL never asked (unknown)",
    ),
    Column("created_at", _datetime(), comment="When the account was created"),
    Column("updated_at", _datetime(), comment="Last change to the row (the sensor's high-water mark)"),
    Index("ix_customers_updated_at", "updated_at"),
    Index("ix_customers_email", "email"),
    comment="One row per customer account",
)

orders = Table(
    "orders",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False, comment="Order id"),
    Column("customer_id", BigInteger, comment="The customer, or null for a guest checkout"),
    Column("email", String(320), info=PII, comment="Checkout e-mail (links guest orders to people)"),
    Column("cart_id", BigInteger, comment="The cart the order came from, if any"),
    Column(
        "status",
        String(32),
        nullable=False,
        comment="pending, paid, payment_failed, cancelled or refunded (ORDER_STATUSES)",
    ),
    Column("currency", CHAR(3), nullable=False, comment="ISO 4217 currency code"),
    Column("subtotal", _money(), nullable=False, comment="Sum of the lines"),
    Column("discount_total", _money(), nullable=False, default=0, comment="Discounts applied"),
    Column("shipping_total", _money(), nullable=False, default=0, comment="Shipping charged"),
    Column("total", _money(), nullable=False, comment="Amount paid"),
    Column("discount_code", String(64), comment="Discount code used, if any"),
    Column("created_at", _datetime(), comment="When the order was placed"),
    Column("paid_at", _datetime(), comment="When payment succeeded; null until then"),
    Column("updated_at", _datetime(), comment="Last change to the row"),
    Index("ix_orders_customer_id", "customer_id"),
    Index("ix_orders_email", "email"),
    Index("ix_orders_paid_at", "paid_at"),
    Index("ix_orders_updated_at", "updated_at"),
    Index("ix_orders_cart_id", "cart_id"),
    comment="One row per order, paid or not",
)

order_items = Table(
    "order_items",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False, comment="Line id"),
    Column("order_id", BigInteger, ForeignKey("orders.id"), nullable=False, comment="The order"),
    Column("sku", String(64), nullable=False, comment="Product SKU"),
    Column("product_name", String(255), comment="Product name"),
    Column("category", String(255), comment="Product category"),
    Column("quantity", Integer, nullable=False, comment="Units"),
    Column("unit_price", _money(), nullable=False, comment="Price per unit"),
    Index("ix_order_items_order_id", "order_id"),
    comment="One row per order line",
)

carts = Table(
    "carts",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False, comment="Cart id"),
    Column("customer_id", BigInteger, comment="The customer, if logged in"),
    Column("anonymous_id", String(64), comment="The visitor's anonymous id"),
    Column("email", String(320), info=PII, comment="E-mail given at checkout, if any"),
    Column("created_at", _datetime(), comment="When the cart was created"),
    Column(
        "updated_at",
        _datetime(),
        comment="Last change to the cart (idle carts are abandoned after CIO_CART_IDLE_MINUTES)",
    ),
    Column("checkout_started_at", _datetime(), comment="When checkout started, if it did"),
    Column("converted_order_id", BigInteger, comment="The order it became, if any"),
    Index("ix_carts_updated_at", "updated_at"),
    Index("ix_carts_checkout_started_at", "checkout_started_at"),
    Index("ix_carts_anonymous_id", "anonymous_id"),
    comment="One row per shopping cart, of a customer or an anonymous visitor",
)

cart_items = Table(
    "cart_items",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False, comment="Line id"),
    Column("cart_id", BigInteger, ForeignKey("carts.id"), nullable=False, comment="The cart"),
    Column("sku", String(64), nullable=False, comment="Product SKU"),
    Column("product_name", String(255), comment="Product name"),
    Column("category", String(255), comment="Product category"),
    Column("quantity", Integer, nullable=False, comment="Units"),
    Column("unit_price", _money(), nullable=False, comment="Price per unit"),
    Column("updated_at", _datetime(), comment="Last change to the line"),
    Index("ix_cart_items_cart_id", "cart_id"),
    # Lines edited under an unchanged cart, the newest change (every run's observation) and the sensor's idle
    # carts all ask by this column: without it each was a scan of the table (0.24 s at 100,000 customers).
    Index("ix_cart_items_updated_at", "updated_at"),
    comment="One row per cart line",
)

refunds = Table(
    "refunds",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False, comment="Refund id"),
    Column("order_id", BigInteger, ForeignKey("orders.id"), nullable=False, comment="The refunded order"),
    Column("amount", _money(), nullable=False, comment="Amount refunded"),
    Column("reason", String(255), comment="Why, as entered"),
    Column("created_at", _datetime(), comment="When the refund was issued"),
    Index("ix_refunds_order_id", "order_id"),
    Index("ix_refunds_created_at", "created_at"),
    comment="One row per refund",
)

subscriptions = Table(
    "subscriptions",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False, comment="Subscription id"),
    Column("customer_id", BigInteger, nullable=False, comment="The subscriber"),
    Column("sku", String(64), nullable=False, comment="Subscribed product SKU"),
    Column("status", String(16), nullable=False, comment="active, paused or canceled (SUBSCRIPTION_STATUSES)"),
    Column("started_at", _datetime(), comment="When it started"),
    Column("canceled_at", _datetime(), comment="When it was canceled, if it was"),
    Column("cancel_reason", String(255), comment="Why, as entered"),
    Column("updated_at", _datetime(), comment="Last change to the row"),
    Index("ix_subscriptions_customer_id", "customer_id"),
    Index("ix_subscriptions_updated_at", "updated_at"),
    comment="One row per product subscription",
)

identity_links = Table(
    "identity_links",
    source_metadata,
    Column("anonymous_id", String(64), nullable=False, comment="The visitor's anonymous id"),
    Column("customer_id", BigInteger, nullable=False, comment="The customer it belongs to"),
    Column("linked_at", _datetime(), comment="When the link was made"),
    Index("ix_identity_links_anonymous_id", "anonymous_id"),
    comment="Anonymous visitor ids linked to customers (e.g. at login)",
)

# Optional: a shop without it has no erasure requests. A matching person is suppressed (or deleted) in Customer.io,
# purged from the pipeline's tables and ledgers, and kept out of them from then on (cio_assets/identity/erasure.py).
erasure_requests = Table(
    "erasure_requests",
    source_metadata,
    Column("customer_id", BigInteger, comment="The customer to erase, if known by id"),
    Column("email", String(320), info=PII, comment="The e-mail to erase, as typed (normalised by the pipeline)"),
    Column("requested_at", _datetime(), nullable=False, comment="When the person asked"),
    comment="Right-to-erasure requests (GDPR/CCPA), by customer id or e-mail; optional",
)

REQUIRED_CONCEPTS = ("customers", "orders")

# Consent as a mapping writes it (`values = { subscribed = "opted_in" }`): true, false, or NULL for never asked.
CONSENT = ("opted_in", "opted_out", "unknown")
_VOCABULARIES: dict[tuple[str, str], tuple[str, ...]] = {
    ("orders", "status"): ORDER_STATUSES,
    ("subscriptions", "status"): SUBSCRIPTION_STATUSES,
    ("customers", "accepts_email_marketing"): CONSENT,
    ("customers", "accepts_sms_marketing"): CONSENT,
}


def vocabulary(column: Column) -> tuple[str, ...] | None:
    """The values a mapping may map a source's own onto, for a column that has a fixed vocabulary."""
    return _VOCABULARIES.get((column.table.name, column.name))


def is_paid(table: Table) -> ColumnElement[bool]:
    """SQL: the order was paid (the one place that says which statuses mean it)."""
    return table.c.status.in_(PAID_STATUSES)


SOURCE_TABLES: tuple[Table, ...] = (
    customers,
    orders,
    order_items,
    carts,
    cart_items,
    refunds,
    subscriptions,
    identity_links,
)


# Tables a shop may lack: the reference preset marks them optional, and a shop without them reads them as empty.
OPTIONAL_TABLES: tuple[Table, ...] = (erasure_requests,)

# The concepts a source mapping makes from a shop's own tables (`cio_assets/mapping/`), by name. These tables are
# their shape: the pipeline's queries name them, and the mapping compiles each into SQL over the shop's tables.
CONCEPTS: dict[str, Table] = {str(table.name): table for table in (*SOURCE_TABLES, *OPTIONAL_TABLES)}


REFERENCE_DDL_PATH = Path(__file__).with_name("reference_schema.sql")


def reference_ddl() -> str:
    """MySQL/MariaDB DDL for the reference schema (what `reference_schema.sql` holds), optional tables last."""
    from sqlalchemy.dialects import mysql as mysql_dialect
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = mysql_dialect.dialect()
    statements = []
    for table in (*SOURCE_TABLES, *OPTIONAL_TABLES):
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda ix: ix.name or ""):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    header = "-- Reference source schema for cio-assets (MySQL/MariaDB). Generated from cio_assets/schema/shop.py.\n"
    return header + "\n\n".join(f"{s};" for s in statements) + "\n"
