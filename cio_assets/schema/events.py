"""The event families: their names, what each event's properties hold, declared once.

A family's name is fixed: it is part of every event id (`order_placed:123`), so the ledger and
Customer.io's de-duplication key never change. What Customer.io sees can differ: `CIO_EVENT_NAMES`
maps a family to the exact name existing journeys listen for, and `CIO_EVENT_FAMILIES` chooses which
families this pipeline sends at all (`cio_assets/config.py`).

The data dictionary (`cio_assets/dictionary.py`) prints the declared properties, and the tests check
every property the extractors in `events/families.py` build against them (`test_data_dictionary.py`): a
property added, renamed or retyped there without its declaration here fails, so the dictionary cannot
drift from the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table

from cio_assets.schema.shop import SOURCE_TABLES

ORDER_PLACED = "order_placed"
CHECKOUT_STARTED = "checkout_started"
CART_ABANDONED = "cart_abandoned"
REFUND_ISSUED = "refund_issued"
SUBSCRIPTION_CANCELED = "subscription_canceled"
EVENT_NAMES = (ORDER_PLACED, CHECKOUT_STARTED, CART_ABANDONED, REFUND_ISSUED, SUBSCRIPTION_CANCELED)

# JSON Schema types
INTEGER, NUMBER, STRING, BOOLEAN, ARRAY = "integer", "number", "string", "boolean", "array"


@dataclass(frozen=True)
class Property:
    name: str
    type: str
    definition: str
    nullable: bool = False
    required: bool = True


@dataclass(frozen=True)
class Family:
    name: str
    definition: str
    timestamp: str  # what the event's `timestamp` is
    source_table: str  # the shop's table whose primary key makes the event id
    properties: tuple[Property, ...]


LINE_ITEM = (
    Property("sku", STRING, "The product's SKU", nullable=True),
    Property("product_name", STRING, "The product's name, clipped to 255 characters", nullable=True),
    Property("category", STRING, "The product's category", nullable=True),
    Property("quantity", INTEGER, "Units", nullable=True),
    Property("price", NUMBER, "Unit price", nullable=True),
)
ITEMS = Property(
    "items",
    ARRAY,
    "The lines (sku, product_name, category, quantity, price); the most valuable ones when they do not all fit "
    "Customer.io's 32 KB item limit",
)
ITEM_COUNT = Property("item_count", INTEGER, "Units across all lines, including any left out of `items`")
TRUNCATED = Property(
    "items_truncated", BOOLEAN, "Present and true when `items` holds only the most valuable lines", required=False
)
BACKFILL = Property(
    "backfill",
    BOOLEAN,
    "Present and true on history (older than CIO_LIVE_WINDOW_HOURS when sent): journeys should filter it out",
    required=False,
)
CART = (
    Property("cart_id", INTEGER, "The cart's id in the shop"),
    ITEM_COUNT,
    Property("value", NUMBER, "Sum of quantity x unit price over the cart's lines"),
    ITEMS,
    TRUNCATED,
)

# Every family, in the log's order of names (EVENT_NAMES).
DECLARED: tuple[Family, ...] = (
    Family(
        ORDER_PLACED,
        "A paid order (its paid time, not its creation)",
        "orders.paid_at",
        "orders",
        (
            Property("order_id", INTEGER, "The order's id in the shop"),
            Property("currency", STRING, "ISO 4217 code", nullable=True),
            Property("subtotal", NUMBER, "Before discounts and shipping", nullable=True),
            Property("discount_total", NUMBER, "Discounts applied", nullable=True),
            Property("shipping_total", NUMBER, "Shipping charged", nullable=True),
            Property("total", NUMBER, "What the customer paid"),
            Property("discount_code", STRING, "The code used, if any", nullable=True),
            ITEM_COUNT,
            ITEMS,
            TRUNCATED,
        ),
    ),
    Family(
        CHECKOUT_STARTED,
        "A cart that reached checkout",
        "carts.checkout_started_at",
        "carts",
        CART,
    ),
    Family(
        CART_ABANDONED,
        "A cart with lines, not converted, idle for CIO_CART_IDLE_MINUTES (not sent when the person paid an order "
        "since)",
        "the cart's last activity plus CIO_CART_IDLE_MINUTES",
        "carts",
        (*CART, Property("last_activity_at", INTEGER, "Unix seconds: the cart's or a line's latest change")),
    ),
    Family(
        REFUND_ISSUED,
        "A refund issued on a paid order",
        "refunds.created_at",
        "refunds",
        (
            Property("refund_id", INTEGER, "The refund's id in the shop"),
            Property("order_id", INTEGER, "The refunded order"),
            Property("amount", NUMBER, "Amount refunded"),
            Property("currency", STRING, "The order's ISO 4217 code", nullable=True),
            Property("reason", STRING, "Why, as the shop records it, clipped to 255 characters", nullable=True),
        ),
    ),
    Family(
        SUBSCRIPTION_CANCELED,
        "A subscription canceled",
        "subscriptions.canceled_at",
        "subscriptions",
        (
            Property("subscription_id", INTEGER, "The subscription's id in the shop"),
            Property("sku", STRING, "The subscribed product", nullable=True),
            Property("cancel_reason", STRING, "Why, as the shop records it, clipped to 255 characters", nullable=True),
            Property("started_at", INTEGER, "Unix seconds: when it started", nullable=True),
        ),
    ),
)

# The shop's table whose primary key makes each family's event ids (from the declarations above).
FAMILY_TABLES: dict[str, Table] = {
    family.name: next(table for table in SOURCE_TABLES if table.name == family.source_table) for family in DECLARED
}
