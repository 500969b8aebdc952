"""What the benchmarks write into a shop, whatever tables it keeps: one `ShopWriter` per source mapping.

`make bench` and `make bench-live` generate a shop, add paid orders to it (for existing customers, and for new
customers whose account comes with the order) and, where the shop keeps carts, an idle cart; the pipeline reads it
all through the mapping, as it reads a real shop. `BENCH_PLATFORM` picks the writer: unset (or `reference`), the
reference schema (`cio_assets/demo/shop.py`); `woocommerce` or `magento2`, the platform's own tables
(`cio_assets/demo/platforms/`), read through the preset of the same name. What the benchmarks read back (which
customers exist, how many orders) they read through the mapping too.
"""

from __future__ import annotations

import os
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import ModuleType
from typing import ClassVar

from sqlalchemy import Engine, create_engine, func, select, text

from cio_assets.demo.platforms import ddl, magento2, woocommerce
from cio_assets.demo.platforms.writing import Sale
from cio_assets.demo.shop import ShopSize, generate_shop, paid_order_rows
from cio_assets.mapping.compile import compile_mapping
from cio_assets.mapping.spec import MappingSpec, load
from cio_assets.schema.shop import cart_items, carts, customers, order_items, orders

# The line of every order the reference writer adds, and of its cart.
PRODUCT = {"sku": "BEAN-HOUSE-250", "product_name": "House blend 250 g", "category": "coffee beans"}
PRICE = 14.5


class ShopWriter(ABC):
    """A shop in `url`'s database, as the benchmarks generate it, write to it and read it back."""

    mapping: ClassVar[str]  # CIO_SOURCE_MAPPING: the preset that reads the shop

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)  # writes the shop's own tables
        self._reader: Engine | None = None

    @property
    def spec(self) -> MappingSpec:
        return load(self.mapping)

    def carts_absent(self) -> str | None:
        """Why the shop keeps no carts, in the mapping's words; None when it keeps them."""
        return self.spec.absent().get(carts.name)

    @abstractmethod
    def generate(self, size: ShopSize) -> dict[str, int]:
        """(Re)create the shop's tables and fill them: `size.customers` customers, history of `size.days` days
        ending on `size.end`. Returns the rows written per table."""

    @abstractmethod
    def add_paid_orders(self, sales: Sequence[Sale], rng: random.Random) -> list[tuple[int, int]]:
        """One paid order per (customer id, or None for a new customer whose account comes with it; paid time,
        naive UTC), committed together. Returns each order's (id, customer id)."""

    def add_cart(self, customer_id: int, at: datetime, rng: random.Random) -> int:
        """An open cart of the customer with items, last changed at `at`, committed; returns its id."""
        raise NotImplementedError(f"{self.mapping}: {self.carts_absent()}")

    # --- reading it back through the mapping ---------------------------------------------------------------

    @property
    def reader(self) -> Engine:
        """An engine whose queries name the pipeline's concepts and read the shop through the mapping."""
        if self._reader is None:
            self._reader = create_engine(self.url)
            compile_mapping(self.spec).install(self._reader)
        return self._reader

    def order_count(self) -> int:
        with self.reader.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(orders)).scalar_one())

    def random_customers(self, count: int) -> list[int]:
        """Up to `count` customers, at random."""
        with self.reader.connect() as conn:
            return list(conn.execute(select(customers.c.id).order_by(func.rand()).limit(count)).scalars())

    def plain_customers(self, rng: random.Random, count: int) -> list[int]:
        """`count` customers with a plain, unique e-mail (so Customer.io knows them and no merge is involved),
        past the generators' first, odd customers."""
        email = customers.c.email
        statement = (
            select(func.min(customers.c.id))
            .where(customers.c.id >= 20, email.like("%@example.%"), email == func.lower(func.trim(email)))
            .group_by(email)
            .having(func.count() == 1)
            .limit(5000)
        )
        with self.reader.connect() as conn:
            found = [int(row[0]) for row in conn.execute(statement)]
        return rng.sample(found, count)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._reader is not None:
            self._reader.dispose()


class ReferenceWriter(ShopWriter):
    """The reference schema (`cio_assets/schema/shop.py`): `generate_shop`'s shop."""

    mapping = "reference"

    def generate(self, size: ShopSize) -> dict[str, int]:
        return generate_shop(self.engine, size)

    def add_paid_orders(self, sales: Sequence[Sale], rng: random.Random) -> list[tuple[int, int]]:
        """Orders of one line (`paid_order_rows`); a new customer is a `customers` row created two minutes before
        the payment and updated at it."""
        written = []
        with self.engine.begin() as conn:
            order_id = _next(conn, orders.c.id)
            item_id = _next(conn, order_items.c.id)
            customer_id = _next(conn, customers.c.id)
            new_customers, rows, lines = [], [], []
            for buyer, paid in sales:
                if buyer is None:
                    buyer, customer_id = customer_id, customer_id + 1
                    new_customers.append(_new_customer(buyer, paid))
                price = round(rng.uniform(15, 120), 2)
                order, line = paid_order_rows(order_id, item_id, buyer, paid, PRODUCT, 1, price)
                rows.append(order)
                lines.append(line)
                written.append((order_id, buyer))
                order_id, item_id = order_id + 1, item_id + 1
            if new_customers:
                conn.execute(customers.insert(), new_customers)
            conn.execute(orders.insert(), rows)
            conn.execute(order_items.insert(), lines)
        return written

    def add_cart(self, customer_id: int, at: datetime, rng: random.Random) -> int:
        with self.engine.begin() as conn:
            cart_id = _next(conn, carts.c.id)
            cart = {"id": cart_id, "customer_id": customer_id, "created_at": at, "updated_at": at}
            conn.execute(carts.insert(), cart)
            conn.execute(
                cart_items.insert(),
                {
                    "id": _next(conn, cart_items.c.id),
                    "cart_id": cart_id,
                    **PRODUCT,
                    "quantity": 1,
                    "unit_price": PRICE,
                    "updated_at": at,
                },
            )
        return cart_id


class PlatformWriter(ShopWriter):
    """A platform's shop, written by its generator in `cio_assets/demo/platforms/` (with the generator's own mix of
    orders: `size.orders_per_customer` and `size.steady_rates` do not apply)."""

    generator: ClassVar[ModuleType]  # the platform's generator module: generate() and add_paid_orders()

    def generate(self, size: ShopSize) -> dict[str, int]:
        self.generator.generate(self.url, customers=size.customers, end=size.end, days=size.days)
        return _row_counts(self.engine, self.mapping)

    def add_paid_orders(self, sales: Sequence[Sale], rng: random.Random) -> list[tuple[int, int]]:
        with self.engine.connect() as conn:
            return self.generator.add_paid_orders(conn, sales, rng=rng)


class WooCommerceWriter(PlatformWriter):
    """WooCommerce (HPOS) and WordPress users (`platforms/woocommerce.py`)."""

    mapping = "woocommerce"
    generator = woocommerce


class Magento2Writer(PlatformWriter):
    """Magento 2 (`platforms/magento2.py`), with carts."""

    mapping = "magento2"
    generator = magento2

    def add_cart(self, customer_id: int, at: datetime, rng: random.Random) -> int:
        with self.engine.connect() as conn:
            return magento2.add_cart(conn, customer_id, at, rng=rng)


WRITERS: dict[str, type[ShopWriter]] = {w.mapping: w for w in (ReferenceWriter, WooCommerceWriter, Magento2Writer)}


def platform() -> str:
    """BENCH_PLATFORM, checked: the mapping the benchmark's shop is written for and read through."""
    chosen = os.environ.get("BENCH_PLATFORM") or ReferenceWriter.mapping
    if chosen not in WRITERS:
        raise SystemExit(f"BENCH_PLATFORM={chosen!r}: expected one of {', '.join(WRITERS)} (or unset: reference)")
    return chosen


def writer_for(chosen: str, url: str) -> ShopWriter:
    return WRITERS[chosen](url)


def _next(conn, column) -> int:
    return int(conn.execute(select(func.coalesce(func.max(column), 0))).scalar_one()) + 1


def _new_customer(customer_id: int, paid: datetime) -> dict[str, object]:
    return {
        "id": customer_id,
        "email": f"live-{customer_id}@example.com",
        "first_name": "Live",
        "last_name": f"Buyer {customer_id}",
        "country": "US",
        "accepts_email_marketing": True,
        "accepts_sms_marketing": False,
        "created_at": paid - timedelta(minutes=2),
        "updated_at": paid,
    }


def _row_counts(engine: Engine, name: ddl.Platform) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: int(conn.execute(text(f"SELECT COUNT(*) FROM `{table}`")).scalar_one())
            for table in ddl.table_names(name)
        }
