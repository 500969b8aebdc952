"""The reference source schema: every source table and column name the pipeline reads.

Point the pipeline at a shop with another schema by editing these definitions (names, or a
`Table(..., schema="shop")`); every query is built from them. `reference_schema.sql` beside this file
is the same schema as MySQL/MariaDB DDL, generated from these definitions.

DATETIME columns are naive: their time zone is configuration (`Settings.zone_of(table)`).
"""

from __future__ import annotations

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
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

source_metadata = MetaData()


def _datetime() -> DateTime:
    # DATETIME(6) on MySQL/MariaDB (microseconds); plain DATETIME elsewhere.
    return DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _money() -> Numeric:
    return Numeric(12, 2, asdecimal=False)


ORDER_STATUSES = ("pending", "paid", "payment_failed", "cancelled")
SUBSCRIPTION_STATUSES = ("active", "paused", "canceled")

customers = Table(
    "customers",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("email", String(320)),
    Column("phone", String(64)),
    Column("first_name", String(255)),
    Column("last_name", String(255)),
    Column("country", CHAR(2)),
    Column("accepts_email_marketing", Boolean, nullable=False, default=False),
    Column("accepts_sms_marketing", Boolean, nullable=False, default=False),
    Column("created_at", _datetime()),
    Column("updated_at", _datetime()),
    Index("ix_customers_updated_at", "updated_at"),
    Index("ix_customers_email", "email"),
)

orders = Table(
    "orders",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("customer_id", BigInteger),  # NULL for a guest checkout
    Column("email", String(320)),
    Column("cart_id", BigInteger),
    Column("status", String(32), nullable=False),  # one of ORDER_STATUSES
    Column("currency", CHAR(3), nullable=False),
    Column("subtotal", _money(), nullable=False),
    Column("discount_total", _money(), nullable=False, default=0),
    Column("shipping_total", _money(), nullable=False, default=0),
    Column("total", _money(), nullable=False),
    Column("discount_code", String(64)),
    Column("created_at", _datetime()),
    Column("paid_at", _datetime()),
    Column("updated_at", _datetime()),
    Index("ix_orders_customer_id", "customer_id"),
    Index("ix_orders_email", "email"),
    Index("ix_orders_paid_at", "paid_at"),
    Index("ix_orders_updated_at", "updated_at"),
    Index("ix_orders_cart_id", "cart_id"),
)

order_items = Table(
    "order_items",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("order_id", BigInteger, ForeignKey("orders.id"), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("product_name", String(255)),
    Column("category", String(255)),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", _money(), nullable=False),
    Index("ix_order_items_order_id", "order_id"),
)

carts = Table(
    "carts",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("customer_id", BigInteger),
    Column("anonymous_id", String(64)),
    Column("email", String(320)),
    Column("created_at", _datetime()),
    Column("updated_at", _datetime()),
    Column("checkout_started_at", _datetime()),
    Column("converted_order_id", BigInteger),
    Index("ix_carts_updated_at", "updated_at"),
    Index("ix_carts_checkout_started_at", "checkout_started_at"),
    Index("ix_carts_anonymous_id", "anonymous_id"),
)

cart_items = Table(
    "cart_items",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("cart_id", BigInteger, ForeignKey("carts.id"), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("product_name", String(255)),
    Column("category", String(255)),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", _money(), nullable=False),
    Column("updated_at", _datetime()),
    Index("ix_cart_items_cart_id", "cart_id"),
)

refunds = Table(
    "refunds",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("order_id", BigInteger, ForeignKey("orders.id"), nullable=False),
    Column("amount", _money(), nullable=False),
    Column("reason", String(255)),
    Column("created_at", _datetime()),
    Index("ix_refunds_order_id", "order_id"),
    Index("ix_refunds_created_at", "created_at"),
)

subscriptions = Table(
    "subscriptions",
    source_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("customer_id", BigInteger, nullable=False),
    Column("sku", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # one of SUBSCRIPTION_STATUSES
    Column("started_at", _datetime()),
    Column("canceled_at", _datetime()),
    Column("cancel_reason", String(255)),
    Column("updated_at", _datetime()),
    Index("ix_subscriptions_customer_id", "customer_id"),
    Index("ix_subscriptions_updated_at", "updated_at"),
)

identity_links = Table(
    "identity_links",
    source_metadata,
    Column("anonymous_id", String(64), nullable=False),
    Column("customer_id", BigInteger, nullable=False),
    Column("linked_at", _datetime()),
    Index("ix_identity_links_anonymous_id", "anonymous_id"),
)

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


def reference_ddl() -> str:
    """MySQL/MariaDB DDL for the reference schema (what `reference_schema.sql` holds)."""
    from sqlalchemy.dialects import mysql as mysql_dialect
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = mysql_dialect.dialect()
    statements = []
    for table in SOURCE_TABLES:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda ix: ix.name or ""):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    header = "-- Reference source schema for cio-assets (MySQL/MariaDB). Generated from cio_assets/sources/tables.py.\n"
    return header + "\n\n".join(f"{s};" for s in statements) + "\n"
