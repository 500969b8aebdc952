"""What the two platform generators share: the people they invent, the catalogue, times, and batched inserts."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import phonenumbers
from sqlalchemy import Connection, column, insert, table

from cio_assets.demo.shop import _COUNTRIES, _FIRST_NAMES, _LAST_NAMES, _valid_number

# Customers generated and written per transaction: bounds memory whatever the shop size.
BATCH_CUSTOMERS = 2000


def customer_batches(customers: int) -> Iterator[range]:
    """The customers' numbers, 1 to `customers`, BATCH_CUSTOMERS at a time: each batch is written before the next
    is made, so memory follows the batch, not the shop."""
    for first in range(1, customers + 1, BATCH_CUSTOMERS):
        yield range(first, min(first + BATCH_CUSTOMERS, customers + 1))


# The last day of history (exclusive end: the next midnight, UTC) and how many days it spans.
END = date(2026, 11, 20)
DAYS = 90


@dataclass(frozen=True)
class Identity:
    first_name: str
    last_name: str
    email: str
    country: str
    phone_stored: str | None  # as the shop stores it: national format or E.164
    phone: str | None  # E.164, the truth

    @classmethod
    def invent(cls, rng: random.Random, number: int, domain: str, phone_share: float = 0.85) -> Identity:
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        country = _COUNTRIES.pick(rng)
        stored = e164 = None
        if rng.random() < phone_share:
            parsed = _valid_number(rng, country)
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            national = rng.random() < 0.5
            stored = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL) if national else e164
        email = f"{first}.{last}.{number}@{domain}".lower()
        return cls(first, last, email, country, stored, e164)


@dataclass(frozen=True)
class Product:
    product_id: int
    sku: str
    name: str
    price_cents: int
    variants: tuple[int, ...] = ()  # child product ids of a configurable product


CATALOGUE: tuple[Product, ...] = (
    Product(101, "BEAN-ESP-250", "Espresso beans 250 g", 1400),
    Product(102, "BEAN-FLT-250", "Filter beans 250 g", 1300),
    Product(103, "BEAN-DEC-250", "Decaf beans 250 g", 1500),
    Product(104, "FILTER-100", "Paper filters (100)", 600),
    Product(105, "MUG-CER", "Ceramic mug", 1800),
    Product(106, "GRINDER-HND", "Hand grinder", 6500),
    Product(200, "TEE", "Roastery T-shirt", 2500, variants=(201, 202, 203)),  # S, M, L
    Product(210, "KETTLE", "Gooseneck kettle", 7900, variants=(211, 212)),  # black, steel
)


def window(end: date = END, days: int = DAYS) -> tuple[datetime, datetime]:
    stop = datetime(end.year, end.month, end.day) + timedelta(days=1)
    return stop - timedelta(days=days), stop


def between(rng: random.Random, low: datetime, high: datetime) -> datetime:
    """A whole-second instant in [low, high)."""
    seconds = max(1, int((high - low).total_seconds()))
    return low + timedelta(seconds=rng.randrange(seconds))


def weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(length))


class Rows:
    """Rows to insert, by table name, written in batches with SQLAlchemy Core (multi-row INSERTs)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._rows: dict[str, list[dict[str, object]]] = defaultdict(list)
        self.written: dict[str, int] = defaultdict(int)

    def add(self, table_name: str, /, **values: object) -> None:
        self._rows[table_name].append(values)

    def flush(self, conn: Connection, order: Sequence[str]) -> None:
        """Insert every pending row, table by table in `order`, and commit."""
        assert set(self._rows) <= set(order), f"tables missing from the write order: {set(self._rows) - set(order)}"
        for name in order:
            rows = self._rows.pop(name, [])
            by_shape: dict[tuple[str, ...], list[dict[str, object]]] = defaultdict(list)
            for row in rows:  # one executemany per set of columns, so a column left out keeps its default
                by_shape[tuple(row)].append(row)
            for columns, group in by_shape.items():
                target = table(self.prefix + name, *(column(c) for c in columns))
                conn.execute(insert(target), group)
            self.written[name] += len(rows)
        conn.commit()
