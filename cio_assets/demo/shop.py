"""A deterministic sample D2C coffee shop, written into the source tables.

`generate_shop(engine, size, seed)` drops and recreates the source tables and fills them. The same seed and
size always produce the same rows, so tests, the demo and benchmarks can refer to ids.

The data has two layers:

* A hand-made *cast*, written first with fixed ids (customers 1-18, orders 1-19, carts 1-8, refunds 1-3,
  subscriptions 1-3, one identity link) and times at fixed fractions of the window, so it fits any
  `ShopSize`. `MESSY_CASES` names the ids that carry each messy case. The one-off cases (the 1970 `paid_at`,
  the 2099 timestamps, the paid order without `paid_at`, the duplicate-email pair, and the rows that must
  not stop the feed: a 400-line order, an order of a deleted customer, a 1,020-byte first name, a negative
  total, an unknown status, a payment before its order) exist only in the cast. Customer id 19 is a hole:
  that customer deleted their account, their order stayed.
* Bulk customers (ids from 20) with random activity from `random.Random(seed)`, which repeat the recurring
  messy cases at realistic rates: ~20% padded mixed-case emails, ~0.5% invalid and ~0.5% NULL emails, phones
  in national format (~30% none, ~1% garbage, ~5% already E.164), ~10% guest orders (half using a
  customer's address spelled differently), anonymous carts (linked later, never linked, or email only),
  ~8% failed payments, refunds on ~5% of paid orders, abandoned carts (a few followed by a paid order
  within the hour) and subscriptions for ~10% of customers.

Times are naive UTC in the window [end - days, end + 1 day). The exceptions are deliberate: ~25% of customers
were created up to a year before the window (history from before the pipeline's start date), and the cast's
bad timestamps. Only the named column is bad: such a row's `updated_at` stays a real time in the window, so
an incremental load still sees the row.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import EllipsisType
from typing import Generic, TypeVar

import phonenumbers
import sqlalchemy
from sqlalchemy import Table

from cio_assets.schema.shop import (
    OPTIONAL_TABLES,
    SOURCE_TABLES,
    cart_items,
    carts,
    customers,
    erasure_requests,
    identity_links,
    order_items,
    orders,
    refunds,
    source_metadata,
    subscriptions,
)

Row = dict[str, object]
Chunk = dict[Table, list[Row]]
# Every table the sample shop fills: the reference tables, and the optional erasure requests.
SHOP_TABLES = (*SOURCE_TABLES, *OPTIONAL_TABLES)
T = TypeVar("T")


@dataclass(frozen=True)
class ShopSize:
    customers: int = 3000
    days: int = 90
    orders_per_customer: float = 1.6  # average, paid + failed + pending + cancelled
    end: date = date(2026, 11, 20)  # last day of history (exclusive end is end+1 day, 00:00)
    # Orders and refunds at steady rates: each buyer orders evenly over the days they are a customer, and a
    # refund that would fall after the end of history has not happened yet. Otherwise the newest customers'
    # orders and late refunds crowd into the last days (a spike the volume checks rightly flag). Off by
    # default so that `make bench` keeps generating the shop its published figures were measured on.
    steady_rates: bool = False


EPOCH = datetime(1970, 1, 1)
FAR_FUTURE = datetime(2099, 1, 1)
CURRENCY = "USD"

# Customers generated and written per transaction: bounds memory whatever the shop size.
CHUNK_CUSTOMERS = 5000

LINKED_ANONYMOUS_ID = "anon-5eed0000000000a4"
UNLINKED_ANONYMOUS_ID = "anon-5eed0000000000a5"

# Which ids carry each messy case in the cast. Keys within a case: "customers", "orders", "carts",
# "refunds", "subscriptions"; "older" names the older customer of the duplicate pair.
MESSY_CASES: dict[str, dict[str, tuple[int, ...]]] = {
    # 1-3: emails
    "duplicate_email_pair": {"customers": (1, 2), "older": (1,), "orders": (1, 2)},
    "padded_mixed_case_email": {"customers": (2, 3)},
    "invalid_email": {"customers": (5, 6)},
    "null_email": {"customers": (7,)},
    # 2: phones (national format is valid for the customer's country)
    "local_phone": {"customers": (1, 3, 4, 5, 10, 11, 12, 13, 14, 15, 16, 17, 18)},
    "e164_phone": {"customers": (8,)},
    "garbage_phone": {"customers": (6, 7)},
    "no_phone": {"customers": (2, 9)},
    # 4: guest orders; order 4's email is customer 3's address in another spelling
    "guest_order_known_email": {"orders": (4,), "customers": (3,)},
    "guest_order_unknown_email": {"orders": (5,)},
    # 5 and 8: carts
    "converted_cart": {"carts": (1,), "orders": (3,), "customers": (3,)},
    "abandoned_cart": {"carts": (2, 8), "customers": (10, 13)},
    "abandoned_cart_then_paid": {"carts": (3,), "orders": (6,), "customers": (9,)},
    "anonymous_cart_linked": {"carts": (4,), "customers": (11,)},
    "anonymous_cart_unlinked": {"carts": (5,)},
    "email_only_cart_known_email": {"carts": (6,), "customers": (12,)},
    "email_only_cart_unknown_email": {"carts": (7,)},
    # 6: unpaid orders
    "payment_failed": {"orders": (12,)},
    "pending": {"orders": (13,)},
    "cancelled": {"orders": (14,)},
    # 7: refunds
    "refund_full": {"refunds": (1,), "orders": (7,)},
    "refund_partial": {"refunds": (2,), "orders": (8,)},
    # 9: subscriptions
    "subscription_active": {"subscriptions": (1,), "customers": (12,)},
    "subscription_paused": {"subscriptions": (2,), "customers": (13,)},
    "subscription_canceled": {"subscriptions": (3,), "customers": (14,)},
    # 10-12: bad timestamps (EPOCH and FAR_FUTURE are the exact values)
    "epoch_paid_at": {"orders": (10,)},
    "future_customer_created_at": {"customers": (4,)},
    "future_refund_created_at": {"refunds": (3,), "orders": (9,)},
    "paid_without_paid_at": {"orders": (11,)},
    # issue 6, one bad row never stops the feed: each is set aside with a reason, clipped or truncated
    "wholesale_order_400_lines": {"orders": (15,), "customers": (8,)},
    "orphan_order": {"orders": (16,)},  # its customer_id is DELETED_CUSTOMER_ID, its email nobody's
    "overlong_first_name": {"customers": (18,)},
    "negative_total_order": {"orders": (17,), "customers": (14,)},
    "unknown_status_order": {"orders": (18,), "customers": (17,)},
    "paid_before_created": {"orders": (19,), "customers": (11,)},
}

# The values those rows carry. A 400-line order is far over Customer.io's 32 KB item limit; 255 emoji fill a
# VARCHAR(255) first_name with 1,020 bytes of UTF-8, over its 1,000-byte attribute value limit.
WHOLESALE_LINES = 400
DELETED_CUSTOMER_ID = 19  # no customer row has this id: the account was deleted
OVERLONG_FIRST_NAME = "\N{SMILING FACE WITH SUNGLASSES}" * 255
NEGATIVE_TOTAL = -500  # dollars
UNKNOWN_STATUS = "on_hold"  # not in schema.shop.ORDER_STATUSES


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price_cents: int


def _category(category: str, *items: tuple[str, str, int]) -> tuple[Product, ...]:
    return tuple(Product(sku, name, category, cents) for sku, name, cents in items)


PRODUCTS: tuple[Product, ...] = (
    *_category(
        "coffee",
        ("COF-ETH-250", "Ethiopia Yirgacheffe 250g", 1650),
        ("COF-COL-250", "Colombia Huila 250g", 1450),
        ("COF-BRA-250", "Brazil Cerrado 250g", 1290),
        ("COF-KEN-250", "Kenya AA 250g", 1790),
        ("COF-GUA-250", "Guatemala Antigua 250g", 1550),
        ("COF-SUM-250", "Sumatra Mandheling 250g", 1590),
        ("COF-PNG-250", "Papua New Guinea 250g", 1690),
        ("COF-DEC-250", "Swiss Water Decaf 250g", 1490),
        ("COF-ESP-1000", "House Espresso 1kg", 3990),
        ("COF-COL-1000", "Colombia Huila 1kg", 4990),
    ),
    *_category(
        "tea",
        ("TEA-SEN-100", "Sencha 100g", 1190),
        ("TEA-ASS-100", "Assam Breakfast 100g", 890),
        ("TEA-EGR-100", "Earl Grey 100g", 950),
        ("TEA-CHA-100", "Masala Chai 100g", 1050),
        ("TEA-ROO-100", "Rooibos 100g", 850),
        ("TEA-OOL-100", "Oolong 100g", 1390),
        ("TEA-MAT-030", "Ceremonial Matcha 30g", 2490),
    ),
    *_category(
        "equipment",
        ("EQP-V60", "V60 Dripper", 2500),
        ("EQP-FRP", "French Press 1L", 3490),
        ("EQP-AER", "AeroPress", 3995),
        ("EQP-SCL", "Brew Scale", 4500),
        ("EQP-GRD-HND", "Hand Grinder", 6900),
        ("EQP-KTL", "Gooseneck Kettle", 7900),
        ("EQP-GRD-ELC", "Burr Grinder", 14900),
    ),
    *_category(
        "subscriptions box",
        ("SUB-COF-MON", "Monthly Coffee Box", 2900),
        ("SUB-COF-DUO", "Duo Coffee Box", 4900),
        ("SUB-TEA-MON", "Monthly Tea Box", 2400),
        ("SUB-MIX-MON", "Coffee & Tea Box", 3400),
    ),
    *_category(
        "accessories",
        ("ACC-FLT-100", "Paper Filters x100", 690),
        ("ACC-BRS", "Grinder Brush", 900),
        ("ACC-CLN", "Descaler", 1200),
        ("ACC-MUG", "Stoneware Mug", 1800),
        ("ACC-CAN", "Airtight Canister", 2200),
        ("ACC-TMB", "Travel Tumbler", 2900),
    ),
    *_category(
        "gifts",
        ("GFT-CARD-25", "Gift Card $25", 2500),
        ("GFT-CARD-50", "Gift Card $50", 5000),
        ("GFT-SET-TST", "Tasting Set", 3900),
        ("GFT-SET-TEA", "Tea Lover's Set", 4400),
        ("GFT-SET-BRW", "Brewer's Starter Kit", 7400),
        ("GFT-HMP", "Holiday Hamper", 8900),
    ),
)
_PRODUCT_BY_SKU = {product.sku: product for product in PRODUCTS}
SUBSCRIPTION_SKUS = tuple(p.sku for p in PRODUCTS if p.category == "subscriptions box")


class _Mix(Generic[T]):
    """Values with relative weights, each draw costing one `random()` (the bulk draws millions)."""

    def __init__(self, weights: dict[T, float]) -> None:
        self._values = tuple(weights)
        self._bounds = tuple(itertools.accumulate(weights.values()))

    def pick(self, rng: random.Random) -> T:
        return self._values[bisect.bisect(self._bounds, rng.random() * self._bounds[-1])]


# Rates of the bulk customers' behaviour.
_COUNTRIES = _Mix({"US": 50, "GB": 15, "DE": 12, "FR": 10, "CA": 13})
_PRE_WINDOW_SHARE = 0.25
# The average share of the window a customer exists in: those from before it all of it, the others (created
# at a uniform moment in it) half of it. Dividing by it keeps the shop's order total with steady rates.
_MEAN_ACTIVE_SHARE = _PRE_WINDOW_SHARE + (1 - _PRE_WINDOW_SHARE) / 2
_PROFILE_EDIT_SHARE = 0.30
# Marketing consent in the reference schema's three states, as (opted in, opted out) shares; the rest were never
# asked (NULL). SMS is asked only of customers with a phone; without one it is never asked.
_EMAIL_CONSENT = (0.60, 0.12)
_SMS_CONSENT = (0.30, 0.15)
_EMAIL_KINDS = _Mix({"clean": 79, "padded": 20, "invalid": 0.5, "null": 0.5})
_PHONE_KINDS = _Mix({"none": 30, "national": 64, "e164": 5, "garbage": 1})
_NEVER_ORDERS_SHARE = 0.20
_GUEST_ORDER_SHARE = 0.10
_KNOWN_GUEST_EMAIL_SHARE = 0.5
_ORDER_STATUSES = _Mix({"paid": 80, "payment_failed": 8, "pending": 6, "cancelled": 6})
_PAID_VIA_CART_SHARE = 0.85
_GUEST_PAID_VIA_CART_SHARE = 0.5
_DISCOUNT_SHARE = 0.20
_DISCOUNT_CODES = ("WELCOME10", "SAVE5", "FREESHIP")
_FREE_SHIPPING_FROM = 6000  # cents
_SHIPPING_BY_COUNTRY = {"US": 595, "CA": 595, "GB": 795, "DE": 795, "FR": 795}
_REFUND_SHARE = 0.05
_FULL_REFUND_SHARE = 0.4
_REFUND_REASONS = ("damaged", "late", "wrong item", "changed mind", None)
_ABANDONED_CART_SHARE = 0.35
_CHECKOUT_STARTED_SHARE = 0.4
_PAID_SOON_AFTER_ABANDON_SHARE = 0.03
_ANONYMOUS_CARTS_PER_CUSTOMER = 0.06
_ANONYMOUS_CART_KINDS = _Mix({"linked": 50, "unlinked": 30, "email_only": 20})
_SUBSCRIBER_SHARE = 0.10
_SUBSCRIPTION_STATUSES = _Mix({"active": 60, "paused": 20, "canceled": 20})
_LINE_COUNTS = _Mix({1: 50, 2: 30, 3: 15, 4: 5})
_QUANTITIES = _Mix({1: 70, 2: 22, 3: 8})
_CANCEL_REASONS = ("too much coffee", "too expensive", "moving abroad", "switching brands", "other")

_FIRST_NAMES = (
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Leon", "Sofia", "Ethan", "Chloe", "Jack",
    "Amelia", "Hugo", "Hannah", "Oscar", "Lea", "Arthur", "Grace", "Felix", "Zoe", "Louis", "Isla", "Ben",
    "Nora", "Theo", "Alice", "Max", "Ruby", "Jules",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Johnson", "Brown", "Taylor", "Wilson", "Martin", "Bernard", "Dubois", "Muller", "Schmidt",
    "Schneider", "Fischer", "Tremblay", "Roy", "Gagnon", "Clarke", "Hughes", "Evans", "Garcia", "Lee",
    "Patel", "Nguyen", "Kim", "Walker", "Moreau", "Laurent", "Weber", "Wagner", "Campbell", "Murphy",
)  # fmt: skip
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")

# National significant number prefixes and how many digits follow; every generated number is still
# checked with `phonenumbers`, because validity also depends on the digits after the prefix.
_PHONE_PREFIXES: dict[str, tuple[tuple[str, int], ...]] = {
    "US": (("212", 7), ("305", 7), ("312", 7), ("415", 7), ("512", 7), ("617", 7), ("206", 7), ("720", 7)),
    "CA": (("416", 7), ("514", 7), ("604", 7), ("403", 7), ("613", 7), ("905", 7)),
    "GB": (("20", 8), ("161", 7), ("131", 7), ("7400", 6), ("7700", 6), ("7911", 6)),
    "DE": (("30", 7), ("30", 6), ("89", 7), ("40", 7), ("151", 8), ("170", 7)),
    "FR": (("1", 8), ("4", 8), ("5", 8), ("6", 8), ("7", 8)),
}
_GARBAGE_PHONES = ("12", "n/a", "none", "000", "-", "tbd")


# --- window and time -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    start: datetime
    end: datetime  # exclusive

    @classmethod
    def of(cls, size: ShopSize) -> _Window:
        last_day = datetime(size.end.year, size.end.month, size.end.day)
        return cls(start=last_day - timedelta(days=size.days), end=last_day + timedelta(days=1))

    def at(self, fraction: float, minutes: float = 0) -> datetime:
        # The cast sits at fixed fractions of the window, so it fits a window of any length.
        offset = round((self.end - self.start).total_seconds() * fraction)
        return self.start + timedelta(seconds=offset, minutes=minutes)


def _between(rng: random.Random, low: datetime, high: datetime) -> datetime:
    """A uniform time in [low, high), to the microsecond (the source columns are DATETIME(6))."""
    span = (high - low) // timedelta(microseconds=1)
    # random() rather than randrange(): several times faster, and 53 bits cover a year in microseconds.
    return low + timedelta(microseconds=int(rng.random() * span)) if span > 0 else low


def _minutes_after(rng: random.Random, moment: datetime, low: float, high: float) -> datetime:
    return _between(rng, moment + timedelta(minutes=low), moment + timedelta(minutes=high))


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means of orders per customer.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _occurrences(rng: random.Random, expected: float) -> int:
    """`expected` rounded up or down at random, so small chunks still get their share on average."""
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


# --- money -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    product: Product
    quantity: int


@dataclass(frozen=True)
class _Totals:
    subtotal: int  # cents: integer arithmetic keeps total = subtotal - discount + shipping exact
    discount: int
    shipping: int

    @property
    def total(self) -> int:
        return self.subtotal - self.discount + self.shipping


def _dollars(cents: int) -> float:
    return round(cents / 100, 2)


def _lines(*items: tuple[str, int]) -> tuple[_Line, ...]:
    return tuple(_Line(_PRODUCT_BY_SKU[sku], quantity) for sku, quantity in items)


def _random_lines(rng: random.Random) -> tuple[_Line, ...]:
    products = rng.sample(PRODUCTS, _LINE_COUNTS.pick(rng))
    return tuple(_Line(product, _QUANTITIES.pick(rng)) for product in products)


def _price(lines: Sequence[_Line], country: str, discount_code: str | None) -> _Totals:
    subtotal = sum(line.product.price_cents * line.quantity for line in lines)
    # A credit (a subtotal of zero or less) ships nothing.
    free_shipping = subtotal <= 0 or subtotal >= _FREE_SHIPPING_FROM or discount_code == "FREESHIP"
    shipping = 0 if free_shipping else _SHIPPING_BY_COUNTRY[country]
    if discount_code == "WELCOME10":
        discount = (subtotal + 5) // 10
    elif discount_code == "SAVE5":
        discount = min(500, subtotal)
    else:
        discount = 0
    return _Totals(subtotal=subtotal, discount=discount, shipping=shipping)


# --- contact details -------------------------------------------------------------------------------------


def _email_address(first: str, last: str, customer_id: int, domain: str) -> str:
    # The id keeps bulk addresses unique after normalising: the cast owns the one duplicate pair.
    return f"{first}.{last}{customer_id}@{domain}".lower()


def _as_typed(rng: random.Random, address: str) -> str:
    """The address as a person might type it: capitals here and there, stray spaces around it."""
    local, _, domain = address.partition("@")
    local = ".".join(part.upper() if rng.random() < 0.2 else part.capitalize() for part in local.split("."))
    domain = domain.upper() if rng.random() < 0.5 else domain.capitalize()
    return " " * rng.randint(0, 2) + f"{local}@{domain}" + " " * rng.randint(1, 2)


def _respelled(rng: random.Random, address: str, stored: str) -> str:
    """The same address spelled differently from how the customer's own row stores it."""
    typed = _as_typed(rng, address)
    return typed if typed != stored else f" {address.upper()}"


def _invalid_email(rng: random.Random, first: str, last: str, customer_id: int) -> str:
    if rng.random() < 0.5:
        return f"{first}.{last}{customer_id}@@example".lower()
    return f"{first}.{last}{customer_id}.example.com".lower()  # no @ at all


def _valid_number(rng: random.Random, country: str) -> phonenumbers.PhoneNumber:
    calling_code = phonenumbers.country_code_for_region(country)
    for _ in range(100):
        prefix, digits = rng.choice(_PHONE_PREFIXES[country])
        subscriber = rng.randrange(2 * 10 ** (digits - 1), 10**digits)  # no leading 0 or 1
        number = phonenumbers.PhoneNumber(country_code=calling_code, national_number=int(f"{prefix}{subscriber}"))
        if phonenumbers.is_valid_number_for_region(number, country):
            return number
    raise RuntimeError(f"no valid {country} phone number from {_PHONE_PREFIXES[country]}")


def _phone(rng: random.Random, country: str) -> str | None:
    kind = _PHONE_KINDS.pick(rng)
    if kind == "none":
        return None
    if kind == "garbage":
        return rng.choice(_GARBAGE_PHONES)
    number = _valid_number(rng, country)
    style = phonenumbers.PhoneNumberFormat.E164 if kind == "e164" else phonenumbers.PhoneNumberFormat.NATIONAL
    return phonenumbers.format_number(number, style)


def _anonymous_id(rng: random.Random) -> str:
    return f"anon-{rng.getrandbits(64):016x}"


# --- rows ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Owner:
    """Whom a cart belongs to: a customer, an anonymous browser, or just an email typed at checkout."""

    customer_id: int | None = None
    anonymous_id: str | None = None
    email: str | None = None


class _Rows:
    """The rows of one chunk, and the primary key sequences every chunk continues."""

    def __init__(self) -> None:
        self.by_table: dict[Table, list[Row]] = {table: [] for table in SHOP_TABLES}
        self._next_id: dict[Table, int] = {table: 1 for table in SHOP_TABLES}

    def next_id(self, table: Table) -> int:
        """The id the next row added to `table` will take (callers add that row before asking again)."""
        return self._next_id[table]

    def add(self, table: Table, row: Row) -> None:
        row_id = row.get("id")
        if isinstance(row_id, int):  # explicit ids (the cast's) move the sequence past them
            self._next_id[table] = max(self._next_id[table], row_id + 1)
        self.by_table[table].append(row)

    def take(self) -> Chunk:
        """Hand over the rows gathered so far and start an empty chunk (the id sequences carry on)."""
        chunk, self.by_table = self.by_table, {table: [] for table in SHOP_TABLES}
        return chunk

    def customer(
        self,
        customer_id: int,
        *,
        email: str | None,
        phone: str | None,
        name: tuple[str, str],
        country: str,
        accepts: tuple[bool | None, bool | None],  # e-mail, SMS: opted in, opted out, or None (never asked)
        created_at: datetime,
        updated_at: datetime,
    ) -> None:
        self.add(
            customers,
            {
                "id": customer_id,
                "email": email,
                "phone": phone,
                "first_name": name[0],
                "last_name": name[1],
                "country": country,
                "accepts_email_marketing": accepts[0],
                "accepts_sms_marketing": accepts[1],
                "created_at": created_at,
                "updated_at": updated_at,
            },
        )

    def order(
        self,
        order_id: int,
        *,
        customer_id: int | None,
        email: str | None,
        cart_id: int | None,
        status: str,
        lines: Sequence[_Line],
        totals: _Totals,
        discount_code: str | None,
        created_at: datetime,
        paid_at: datetime | None,
    ) -> None:
        # A bad (1970) paid_at is not the row's last change: updated_at never goes before created_at.
        updated_at = max(created_at, paid_at) if paid_at is not None else created_at
        self.add(
            orders,
            {
                "id": order_id,
                "customer_id": customer_id,
                "email": email,
                "cart_id": cart_id,
                "status": status,
                "currency": CURRENCY,
                "subtotal": _dollars(totals.subtotal),
                "discount_total": _dollars(totals.discount),
                "shipping_total": _dollars(totals.shipping),
                "total": _dollars(totals.total),
                "discount_code": discount_code,
                "created_at": created_at,
                "paid_at": paid_at,
                "updated_at": updated_at,
            },
        )
        for line in lines:
            self.add(order_items, {"id": self.next_id(order_items), "order_id": order_id, **_item(line)})

    def cart(
        self,
        cart_id: int,
        owner: _Owner,
        *,
        lines: Sequence[_Line],
        item_times: Sequence[datetime],
        checkout_started_at: datetime | None = None,
        converted_order_id: int | None = None,
        updated_at: datetime,
    ) -> None:
        self.add(
            carts,
            {
                "id": cart_id,
                "customer_id": owner.customer_id,
                "anonymous_id": owner.anonymous_id,
                "email": owner.email,
                "created_at": item_times[0],
                "updated_at": updated_at,
                "checkout_started_at": checkout_started_at,
                "converted_order_id": converted_order_id,
            },
        )
        for line, added_at in zip(lines, item_times, strict=True):
            row = {"id": self.next_id(cart_items), "cart_id": cart_id, **_item(line), "updated_at": added_at}
            self.add(cart_items, row)

    def refund(self, refund_id: int, *, order_id: int, amount: int, reason: str | None, created_at: datetime) -> None:
        self.add(
            refunds,
            {
                "id": refund_id,
                "order_id": order_id,
                "amount": _dollars(amount),
                "reason": reason,
                "created_at": created_at,
            },
        )

    def subscription(
        self,
        subscription_id: int,
        *,
        customer_id: int,
        sku: str,
        status: str,
        started_at: datetime,
        canceled_at: datetime | None = None,
        cancel_reason: str | None = None,
        updated_at: datetime,
    ) -> None:
        self.add(
            subscriptions,
            {
                "id": subscription_id,
                "customer_id": customer_id,
                "sku": sku,
                "status": status,
                "started_at": started_at,
                "canceled_at": canceled_at,
                "cancel_reason": cancel_reason,
                "updated_at": updated_at,
            },
        )

    def link(self, anonymous_id: str, customer_id: int, linked_at: datetime) -> None:
        self.add(identity_links, {"anonymous_id": anonymous_id, "customer_id": customer_id, "linked_at": linked_at})


def _item(line: _Line) -> Row:
    product = line.product
    return {
        "sku": product.sku,
        "product_name": product.name,
        "category": product.category,
        "quantity": line.quantity,
        "unit_price": _dollars(product.price_cents),
    }


def _spaced(start: datetime, *minutes: float) -> list[datetime]:
    return [start + timedelta(minutes=m) for m in minutes]


# --- the cast --------------------------------------------------------------------------------------------


def _write_cast(rows: _Rows, window: _Window) -> None:
    """The hand-made customers and events that `MESSY_CASES` names."""
    _cast_customers(rows, window)
    _cast_orders(rows, window)
    _cast_carts(rows, window)
    _cast_subscriptions(rows, window)


def _consent(draw: float, shares: tuple[float, float]) -> bool | None:
    """Opted in, opted out, or never asked (None), from one uniform draw and the (opted in, opted out) shares."""
    opted_in, opted_out = shares
    if draw < opted_in:
        return True
    return False if draw < opted_in + opted_out else None


def _cast_customers(rows: _Rows, window: _Window) -> None:
    at = window.at
    before_window = window.start - timedelta(days=200)
    cast = (
        # id, email, phone, first, last, country, created_at
        (1, "Sam.Lee@example.com", "(212) 555-0143", "Sam", "Lee", "US", before_window),
        (2, " sam.lee@EXAMPLE.com", None, "Sam", "Lee", "US", at(0.40)),
        (3, "  Jane.Doe@Example.COM ", "(415) 555-2671", "Jane", "Doe", "US", at(0.05)),
        (4, "oliver.hughes@example.com", "020 7946 0018", "Oliver", "Hughes", "GB", FAR_FUTURE),
        (5, "jane@@example", "030 901820", "Jana", "Becker", "DE", at(0.10)),
        (6, "no-at-sign.com", "12", "Louis", "Martin", "FR", at(0.12)),
        (7, None, "n/a", "Amelia", "Clarke", "GB", at(0.15)),
        (8, "maria.garcia@example.com", "+16175550123", "Maria", "Garcia", "US", at(0.20)),
        (9, "lucie.bernard@example.com", None, "Lucie", "Bernard", "FR", at(0.10)),
        (10, "ethan.tremblay@example.com", "(416) 555-0199", "Ethan", "Tremblay", "CA", at(0.08)),
        (11, "noah.schmidt@example.com", "089 1234567", "Noah", "Schmidt", "DE", at(0.60)),
        (12, "Priya.Patel@example.com", "0161 496 0734", "Priya", "Patel", "GB", at(0.02)),
        (13, "liam.wilson@example.com", "(604) 555-0182", "Liam", "Wilson", "CA", window.start - timedelta(days=30)),
        (14, "chloe.dubois@example.com", "06 12 34 56 78", "Chloe", "Dubois", "FR", at(0.03)),
        (15, "olivia.brown@example.com", "(305) 555-0110", "Olivia", "Brown", "US", at(0.04)),
        (16, "mia.muller@example.com", "0151 23456789", "Mia", "Muller", "DE", at(0.06)),
        (17, "jack.taylor@example.com", "07400 123456", "Jack", "Taylor", "GB", at(0.07)),
        (18, "zoe.nguyen@example.com", "(512) 555-0147", OVERLONG_FIRST_NAME, "Nguyen", "US", at(0.09)),
    )
    # Jack asked to be forgotten: he is suppressed in Customer.io and never sent (identity/erasure.py).
    rows.add(erasure_requests, {"customer_id": 17, "email": None, "requested_at": at(0.90)})
    # Jane edited her profile in the window; the 2099 customer's row was last touched at a real time.
    edited = {3: at(0.50), 4: at(0.30)}
    for customer_id, email, phone, first, last, country, created_at in cast:
        rows.customer(
            customer_id,
            email=email,
            phone=phone,
            name=(first, last),
            country=country,
            # e-mail: 3, 9 and 15 opted out, 6, 12 and 18 never asked; SMS: asked only of those with a phone
            accepts=(
                None if customer_id % 6 == 0 else customer_id % 3 != 0,
                None if phone is None else customer_id % 2 == 0,
            ),
            created_at=created_at,
            updated_at=edited.get(customer_id, created_at),
        )


def _cast_order(
    rows: _Rows,
    order_id: int,
    customer_id: int | None,
    email: str | None,
    created_at: datetime,
    *,
    status: str = "paid",
    paid_at: datetime | EllipsisType | None = ...,  # ...: three minutes after created_at when paid
    lines: tuple[_Line, ...] = _lines(("COF-ETH-250", 2), ("ACC-FLT-100", 1)),
    cart_id: int | None = None,
    discount_code: str | None = None,
) -> _Totals:
    if isinstance(paid_at, EllipsisType):
        paid_at = created_at + timedelta(minutes=3) if status == "paid" else None
    totals = _price(lines, "US", discount_code)
    rows.order(
        order_id,
        customer_id=customer_id,
        email=email,
        cart_id=cart_id,
        status=status,
        lines=lines,
        totals=totals,
        discount_code=discount_code,
        created_at=created_at,
        paid_at=paid_at,
    )
    return totals


def _cast_orders(rows: _Rows, window: _Window) -> None:
    at = window.at
    # The duplicate pair both buy, each under their own spelling of the address.
    _cast_order(rows, 1, 1, "Sam.Lee@example.com", at(0.30))
    _cast_order(rows, 2, 2, " sam.lee@EXAMPLE.com", at(0.45), lines=_lines(("TEA-SEN-100", 1)))
    # Order 3 is Jane's converted cart 1, written with the carts.
    _cast_order(rows, 4, None, " JANE.DOE@EXAMPLE.COM", at(0.35), lines=_lines(("GFT-CARD-50", 1)))
    _cast_order(rows, 5, None, "Walk.In.Guest@example.net", at(0.36), lines=_lines(("EQP-V60", 1)))
    # Order 6 follows abandoned cart 3, written with the carts.
    full = _cast_order(rows, 7, 15, "olivia.brown@example.com", at(0.25), lines=_lines(("EQP-FRP", 1)))
    partial = _cast_order(rows, 8, 15, "olivia.brown@example.com", at(0.40), lines=_lines(("ACC-MUG", 4)))
    future = _cast_order(rows, 9, 15, "olivia.brown@example.com", at(0.50), lines=_lines(("COF-KEN-250", 2)))
    rows.refund(1, order_id=7, amount=full.total, reason="damaged", created_at=at(0.30))
    rows.refund(2, order_id=8, amount=partial.total * 3 // 10, reason=None, created_at=at(0.45))
    rows.refund(3, order_id=9, amount=future.total // 2, reason="late", created_at=FAR_FUTURE)
    _cast_order(rows, 10, 16, "mia.muller@example.com", at(0.55), paid_at=EPOCH)
    _cast_order(rows, 11, 16, "mia.muller@example.com", at(0.60), paid_at=None)
    _cast_order(rows, 12, 17, "jack.taylor@example.com", at(0.62), status="payment_failed")
    _cast_order(rows, 13, 17, "jack.taylor@example.com", at(0.64), status="pending")
    _cast_order(rows, 14, 17, "jack.taylor@example.com", at(0.66), status="cancelled")
    # Rows that must not stop the feed. A café's wholesale order: 400 lines with 255-character names.
    _cast_order(rows, 15, 8, "maria.garcia@example.com", at(0.78), lines=_wholesale_lines())
    # An order of the customer who deleted their account, with an address no customer has.
    _cast_order(rows, 16, DELETED_CUSTOMER_ID, "Former.Customer@example.net", at(0.80), lines=_lines(("ACC-MUG", 1)))
    # A goodwill credit booked as a paid order: subtotal and total -500.
    credit = _Line(Product("ADJ-CREDIT", "Goodwill credit", "adjustments", NEGATIVE_TOTAL * 100), 1)
    _cast_order(rows, 17, 14, "chloe.dubois@example.com", at(0.82), lines=(credit,))
    _cast_order(rows, 18, 17, "jack.taylor@example.com", at(0.68), status=UNKNOWN_STATUS)
    # Paid an hour and a half before the order was created (a clock or an import gone wrong).
    _cast_order(rows, 19, 11, "noah.schmidt@example.com", at(0.86), paid_at=at(0.86, minutes=-90))


def _wholesale_lines() -> tuple[_Line, ...]:
    """`WHOLESALE_LINES` lines of distinct SKUs (WHL-0001...), each named with exactly 255 characters."""
    lines = []
    for n in range(1, WHOLESALE_LINES + 1):
        base = PRODUCTS[n % len(PRODUCTS)]
        description = f"Wholesale lot {n:04d}: {base.name}, {base.category} for cafe resale, packed to order. "
        name = (description * 4)[:254] + "."
        lines.append(_Line(Product(f"WHL-{n:04d}", name, base.category, base.price_cents), (1, 2, 3, 6)[n % 4]))
    return tuple(lines)


def _cast_carts(rows: _Rows, window: _Window) -> None:
    at = window.at
    two = _lines(("COF-COL-250", 1), ("EQP-AER", 1))
    one = _lines(("TEA-MAT-030", 1))

    # Cart 1: Jane's cart, converted into order 3.
    started = at(0.20)
    order_created = started + timedelta(minutes=35)
    rows.cart(
        1,
        _Owner(customer_id=3),
        lines=two,
        item_times=_spaced(started, 5, 12),
        checkout_started_at=started + timedelta(minutes=30),
        converted_order_id=3,
        updated_at=order_created,
    )
    _cast_order(rows, 3, 3, "  Jane.Doe@Example.COM ", order_created, lines=two, cart_id=1, discount_code="WELCOME10")

    # Cart 2: a genuine abandonment after checkout started.
    started = at(0.70)
    checkout = started + timedelta(minutes=9)
    rows.cart(
        2,
        _Owner(customer_id=10),
        lines=two,
        item_times=_spaced(started, 3, 6),
        checkout_started_at=checkout,
        updated_at=checkout,
    )

    # Cart 3: abandoned, but its owner pays for order 6 23 minutes after the cart's last activity.
    started = at(0.50)
    checkout = started + timedelta(minutes=10)
    rows.cart(
        3,
        _Owner(customer_id=9),
        lines=one,
        item_times=_spaced(started, 4),
        checkout_started_at=checkout,
        updated_at=checkout,
    )
    _cast_order(rows, 6, 9, "lucie.bernard@example.com", checkout + timedelta(minutes=20), lines=one)

    # Cart 4: an anonymous browser that later signs up as customer 11.
    _cast_idle_cart(rows, 4, _Owner(anonymous_id=LINKED_ANONYMOUS_ID), at(0.55), one)
    rows.link(LINKED_ANONYMOUS_ID, 11, at(0.60, minutes=2))
    # Cart 5: never linked to anyone.
    _cast_idle_cart(rows, 5, _Owner(anonymous_id=UNLINKED_ANONYMOUS_ID), at(0.58), one)
    # Cart 6: only an email, customer 12's address in another spelling; cart 7: only an email, nobody's.
    _cast_idle_cart(rows, 6, _Owner(email=" priya.patel@example.COM"), at(0.72), one)
    _cast_idle_cart(rows, 7, _Owner(email="Window.Shopper@example.org"), at(0.74), one)
    # Cart 8: abandoned before checkout.
    _cast_idle_cart(rows, 8, _Owner(customer_id=13), at(0.76), two)


def _cast_idle_cart(rows: _Rows, cart_id: int, owner: _Owner, started: datetime, lines: tuple[_Line, ...]) -> None:
    """A cart whose items went in a minute apart and that nobody checked out."""
    item_times = _spaced(started, *range(len(lines)))
    rows.cart(cart_id, owner, lines=lines, item_times=item_times, updated_at=item_times[-1])


def _cast_subscriptions(rows: _Rows, window: _Window) -> None:
    at = window.at
    rows.subscription(1, customer_id=12, sku="SUB-COF-MON", status="active", started_at=at(0.30), updated_at=at(0.30))
    rows.subscription(2, customer_id=13, sku="SUB-TEA-MON", status="paused", started_at=at(0.20), updated_at=at(0.50))
    rows.subscription(
        3,
        customer_id=14,
        sku="SUB-COF-DUO",
        status="canceled",
        started_at=at(0.10),
        canceled_at=at(0.40),
        cancel_reason="too much coffee",
        updated_at=at(0.40),
    )


# --- the bulk --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    id: int
    email: str | None  # as stored
    address: str | None  # the clean address; None when the stored email is missing or invalid
    country: str
    created_at: datetime


def _known_addresses(people: Sequence[_Person]) -> list[tuple[str, str]]:
    """(clean address, stored email) of the people someone else could type the address of."""
    return [(person.address, person.email) for person in people if person.address and person.email]


class _Crowd:
    """Random customers and everything they do, drawn from one seeded generator."""

    def __init__(self, rows: _Rows, window: _Window, size: ShopSize, seed: int) -> None:
        self.rows = rows
        self.window = window
        self.rng = random.Random(seed)
        self.orders_per_customer = size.orders_per_customer
        # Guests take their share of all orders; customers who never order are made up by the rest.
        registered = size.orders_per_customer * (1 - _GUEST_ORDER_SHARE)
        self.orders_per_buyer = registered / (1 - _NEVER_ORDERS_SHARE)
        self.steady_rates = size.steady_rates

    def add_chunk(self, customer_ids: range) -> None:
        people = [self._customer(customer_id) for customer_id in customer_ids]
        for person in people:
            self._activity(person)
        self._guest_orders(people)
        self._anonymous_carts(people)

    # customers

    def _customer(self, customer_id: int) -> _Person:
        rng, window = self.rng, self.window
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        country = _COUNTRIES.pick(rng)
        address: str | None = _email_address(first, last, customer_id, rng.choice(_EMAIL_DOMAINS))
        kind = _EMAIL_KINDS.pick(rng)
        email = address
        if kind == "padded":
            email = _as_typed(rng, address)
        elif kind == "invalid":
            email, address = _invalid_email(rng, first, last, customer_id), None
        elif kind == "null":
            email = address = None
        phone = _phone(rng, country)
        if rng.random() < _PRE_WINDOW_SHARE:
            created_at = _between(rng, window.start - timedelta(days=365), window.start)
        else:
            created_at = _between(rng, window.start, window.end - timedelta(hours=1))
        updated_at = created_at
        if rng.random() < _PROFILE_EDIT_SHARE:
            updated_at = _between(rng, max(created_at, window.start), window.end)
        email_consent = _consent(rng.random(), _EMAIL_CONSENT)
        accepts = (email_consent, None if phone is None else _consent(rng.random(), _SMS_CONSENT))
        self.rows.customer(
            customer_id,
            email=email,
            phone=phone,
            name=(first, last),
            country=country,
            accepts=accepts,
            created_at=created_at,
            updated_at=updated_at,
        )
        return _Person(customer_id, email, address, country, created_at)

    def _activity(self, person: _Person) -> None:
        rng, window = self.rng, self.window
        earliest = max(person.created_at, window.start) + timedelta(minutes=30)
        latest = window.end - timedelta(minutes=30)
        if earliest < latest and rng.random() >= _NEVER_ORDERS_SHARE:
            mean = self.orders_per_buyer
            if self.steady_rates:
                mean *= (latest - earliest) / (window.end - window.start) / _MEAN_ACTIVE_SHARE
            for _ in range(_poisson(rng, mean)):
                self._registered_order(person, _between(rng, earliest, latest))
        if rng.random() < _ABANDONED_CART_SHARE:
            self._abandoned_cart_of(person)
        if rng.random() < _SUBSCRIBER_SHARE:
            self._subscription(person)

    def _subscription(self, person: _Person) -> None:
        rng, window = self.rng, self.window
        started_at = _between(rng, max(person.created_at, window.start), window.end - timedelta(hours=1))
        status = _SUBSCRIPTION_STATUSES.pick(rng)
        canceled_at = cancel_reason = None
        updated_at = started_at
        if status == "paused":
            updated_at = _between(rng, started_at, window.end)
        elif status == "canceled":
            canceled_at = updated_at = _between(rng, started_at, window.end)
            cancel_reason = rng.choice(_CANCEL_REASONS)
        self.rows.subscription(
            self.rows.next_id(subscriptions),
            customer_id=person.id,
            sku=rng.choice(SUBSCRIPTION_SKUS),
            status=status,
            started_at=started_at,
            canceled_at=canceled_at,
            cancel_reason=cancel_reason,
            updated_at=updated_at,
        )

    # orders

    def _registered_order(self, person: _Person, created_at: datetime, status: str | None = None) -> None:
        rng = self.rng
        status = status or _ORDER_STATUSES.pick(rng)
        lines = _random_lines(rng)
        order_id = self.rows.next_id(orders)
        cart_id = None
        if status == "paid" and rng.random() < _PAID_VIA_CART_SHARE:
            earliest = max(person.created_at, self.window.start)
            cart_id = self._converted_cart(_Owner(customer_id=person.id), order_id, lines, created_at, earliest)
        self._order(order_id, person.id, person.email, person.country, lines, created_at, status, cart_id)

    def _guest_orders(self, people: Sequence[_Person]) -> None:
        rng, window = self.rng, self.window
        known = _known_addresses(people)
        for _ in range(_occurrences(rng, len(people) * self.orders_per_customer * _GUEST_ORDER_SHARE)):
            order_id = self.rows.next_id(orders)
            country = _COUNTRIES.pick(rng)
            if known and rng.random() < _KNOWN_GUEST_EMAIL_SHARE:
                email = _respelled(rng, *rng.choice(known))
            else:
                first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
                email = f"{first}.{last}.g{order_id}@{rng.choice(_EMAIL_DOMAINS)}"  # nobody's address
            created_at = _between(rng, window.start + timedelta(minutes=30), window.end - timedelta(minutes=30))
            status = _ORDER_STATUSES.pick(rng)
            lines = _random_lines(rng)
            cart_id = None
            if status == "paid" and rng.random() < _GUEST_PAID_VIA_CART_SHARE:
                # A guest's cart is known by its browser or by the email typed at checkout.
                owner = _Owner(anonymous_id=_anonymous_id(rng)) if rng.random() < 0.5 else _Owner(email=email)
                cart_id = self._converted_cart(owner, order_id, lines, created_at, window.start)
            self._order(order_id, None, email, country, lines, created_at, status, cart_id)

    def _order(
        self,
        order_id: int,
        customer_id: int | None,
        email: str | None,
        country: str,
        lines: Sequence[_Line],
        created_at: datetime,
        status: str,
        cart_id: int | None,
    ) -> None:
        rng = self.rng
        discount_code = rng.choice(_DISCOUNT_CODES) if rng.random() < _DISCOUNT_SHARE else None
        totals = _price(lines, country, discount_code)
        paid_at = _minutes_after(rng, created_at, 1, 10) if status == "paid" else None
        self.rows.order(
            order_id,
            customer_id=customer_id,
            email=email,
            cart_id=cart_id,
            status=status,
            lines=lines,
            totals=totals,
            discount_code=discount_code,
            created_at=created_at,
            paid_at=paid_at,
        )
        if paid_at is not None and rng.random() < _REFUND_SHARE:
            self._refund(order_id, totals.total, paid_at)

    def _refund(self, order_id: int, total: int, paid_at: datetime) -> None:
        rng = self.rng
        earliest = paid_at + timedelta(hours=1)
        latest = min(paid_at + timedelta(days=14), self.window.end)
        if earliest >= latest:
            return  # paid too close to the end of history to have been refunded yet
        amount = total if rng.random() < _FULL_REFUND_SHARE else round(total * rng.uniform(0.1, 0.6))
        reason = rng.choice(_REFUND_REASONS)
        created_at = _between(rng, earliest, paid_at + timedelta(days=14) if self.steady_rates else latest)
        if created_at >= self.window.end:
            return  # (steady rates) not refunded yet
        self.rows.refund(
            self.rows.next_id(refunds), order_id=order_id, amount=amount, reason=reason, created_at=created_at
        )

    # carts

    def _converted_cart(
        self, owner: _Owner, order_id: int, lines: Sequence[_Line], order_created_at: datetime, earliest: datetime
    ) -> int:
        rng = self.rng
        checkout_started_at = _minutes_after(rng, order_created_at, -20, -1)
        # Browsing starts up to three days before checkout, but not before the owner or the history exists.
        created_at = _between(
            rng, max(earliest, checkout_started_at - timedelta(days=3)), checkout_started_at - timedelta(minutes=2)
        )
        item_times = sorted(_between(rng, created_at, checkout_started_at) for _ in lines)
        item_times[0] = created_at  # the first item added is what creates the cart
        cart_id = self.rows.next_id(carts)
        self.rows.cart(
            cart_id,
            owner,
            lines=lines,
            item_times=item_times,
            checkout_started_at=checkout_started_at,
            converted_order_id=order_id,
            updated_at=order_created_at,  # converting is the cart's last change
        )
        return cart_id

    def _abandoned_cart(self, owner: _Owner, earliest: datetime) -> datetime | None:
        """A cart with items that never became an order; returns its last activity."""
        rng, window = self.rng, self.window
        latest = window.end - timedelta(hours=3)  # room for the idle hour before history ends
        if earliest >= latest:
            return None
        created_at = _between(rng, earliest, latest)
        lines = _random_lines(rng)
        item_times = [created_at, *sorted(_minutes_after(rng, created_at, 0, 60) for _ in lines[1:])]
        last_activity = item_times[-1]
        checkout_started_at = None
        if rng.random() < _CHECKOUT_STARTED_SHARE:
            checkout_started_at = last_activity = _minutes_after(rng, last_activity, 1, 30)
        self.rows.cart(
            self.rows.next_id(carts),
            owner,
            lines=lines,
            item_times=item_times,
            checkout_started_at=checkout_started_at,
            updated_at=last_activity,
        )
        return last_activity

    def _abandoned_cart_of(self, person: _Person) -> None:
        last_activity = self._abandoned_cart(_Owner(customer_id=person.id), max(person.created_at, self.window.start))
        if last_activity is not None and self.rng.random() < _PAID_SOON_AFTER_ABANDON_SHARE:
            # Bought something else within the hour (paid by 50 minutes after the cart went idle): no
            # abandoned-cart message should go out. From 25 minutes on, so that the order's own cart, if any,
            # can start after this one did.
            self._registered_order(person, _minutes_after(self.rng, last_activity, 25, 40), status="paid")

    def _anonymous_carts(self, people: Sequence[_Person]) -> None:
        rng, window = self.rng, self.window
        linkable = [person for person in people if person.created_at < window.end - timedelta(hours=3)]
        known = _known_addresses(people)
        for _ in range(_occurrences(rng, len(people) * _ANONYMOUS_CARTS_PER_CUSTOMER)):
            kind = _ANONYMOUS_CART_KINDS.pick(rng)
            if kind == "email_only":
                if known and rng.random() < 0.5:
                    email = _respelled(rng, *rng.choice(known))
                else:
                    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
                    email = f"{first}.{last}.c{self.rows.next_id(carts)}@{rng.choice(_EMAIL_DOMAINS)}"
                self._abandoned_cart(_Owner(email=email), window.start)
                continue
            anonymous_id = _anonymous_id(rng)
            last_activity = self._abandoned_cart(_Owner(anonymous_id=anonymous_id), window.start)
            if kind == "linked" and linkable and last_activity is not None:
                # The browser signs in (or signs up) after leaving the cart.
                person = rng.choice(linkable)
                earliest = max(last_activity, person.created_at) + timedelta(minutes=1)
                self.rows.link(anonymous_id, person.id, _between(rng, earliest, window.end))


# --- entry points ----------------------------------------------------------------------------------------

_CAST_CUSTOMERS = 18  # customer rows in the cast (ids 1-18); the bulk starts after the deleted id 19
_FIRST_BULK_CUSTOMER = DELETED_CUSTOMER_ID + 1


def paid_order_rows(
    order_id: int,
    item_id: int,
    customer_id: int,
    paid_at: datetime,
    product: dict[str, str],
    quantity: int,
    price: float,
) -> tuple[dict, dict]:
    """An order paid at `paid_at` (created a minute before) with one line of `product` (sku, product_name,
    category): its `orders` row and its `order_items` row, for the benchmarks that add orders to a shop."""
    total = round(quantity * price, 2)
    order = {
        "id": order_id,
        "customer_id": customer_id,
        "email": None,
        "cart_id": None,
        "status": "paid",
        "currency": CURRENCY,
        "subtotal": total,
        "discount_total": 0,
        "shipping_total": 0,
        "total": total,
        "created_at": paid_at - timedelta(minutes=1),
        "paid_at": paid_at,
        "updated_at": paid_at,
    }
    line = {"id": item_id, "order_id": order_id, **product, "quantity": quantity, "unit_price": price}
    return order, line


def generate_shop(engine: sqlalchemy.Engine, size: ShopSize = ShopSize(), seed: int = 7) -> dict[str, int]:
    """Drops and recreates the source tables on `engine` (source_metadata.drop_all/create_all), fills them,
    returns row counts per table name."""
    if size.customers < _CAST_CUSTOMERS:
        raise ValueError(f"a shop needs at least {_CAST_CUSTOMERS} customers (the cast), got {size.customers}")
    if size.days < 1 or size.orders_per_customer < 0:
        raise ValueError(f"days must be >= 1 and orders_per_customer >= 0, got {size}")
    source_metadata.drop_all(engine)
    source_metadata.create_all(engine)
    return _insert_all(engine, _shop_chunks(size, seed))


def _shop_chunks(size: ShopSize, seed: int) -> Iterator[Chunk]:
    """The cast, then the bulk customers `CHUNK_CUSTOMERS` at a time, each chunk with all its rows."""
    window = _Window.of(size)
    rows = _Rows()
    _write_cast(rows, window)
    yield rows.take()
    crowd = _Crowd(rows, window, size, seed)
    end = _FIRST_BULK_CUSTOMER + size.customers - _CAST_CUSTOMERS  # size.customers rows in all
    for first in range(_FIRST_BULK_CUSTOMER, end, CHUNK_CUSTOMERS):
        crowd.add_chunk(range(first, min(first + CHUNK_CUSTOMERS, end)))
        yield rows.take()


def _insert(engine: sqlalchemy.Engine, chunk: Chunk) -> dict[str, int]:
    """Insert a chunk and empty it; returns how many rows went into each table."""
    counts = {table.name: len(rows) for table, rows in chunk.items()}
    # One transaction per chunk: a chunk's rows only refer to each other, so each commit is consistent.
    with engine.begin() as conn:
        for table in SHOP_TABLES:  # parents before children, for the foreign keys
            if chunk[table]:
                conn.execute(table.insert(), chunk[table])
    for rows in chunk.values():
        rows.clear()  # the caller still holds the chunk while the next one is generated
    return counts


def _insert_all(engine: sqlalchemy.Engine, chunks: Iterator[Chunk]) -> dict[str, int]:
    """Insert every chunk as it is generated; returns the rows inserted per table name."""
    counts = {table.name: 0 for table in SHOP_TABLES}
    for chunk in chunks:
        for table, count in _insert(engine, chunk).items():
            counts[table] += count
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fill a database with the deterministic sample shop.")
    parser.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. sqlite:///shop.sqlite")
    parser.add_argument("--customers", type=int, default=ShopSize.customers)
    parser.add_argument("--orders-per-customer", type=float, default=ShopSize.orders_per_customer)
    parser.add_argument("--days", type=int, default=ShopSize.days)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    size = ShopSize(customers=args.customers, days=args.days, orders_per_customer=args.orders_per_customer)
    engine = sqlalchemy.create_engine(args.url)
    started = time.perf_counter()
    counts = generate_shop(engine, size, seed=args.seed)
    elapsed = time.perf_counter() - started
    for table, count in counts.items():
        print(f"{table:<16}{count:>12,}")
    print(f"elapsed {elapsed:.1f}s")


if __name__ == "__main__":
    main()
