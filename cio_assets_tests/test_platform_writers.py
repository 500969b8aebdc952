"""What the benchmarks write into a platform's tables reads, through the platform's preset, as what they meant.

`make bench` and `make bench-live` with BENCH_PLATFORM=woocommerce|magento2 add paid orders (for existing
customers, and for new customers whose account comes with the order) and, on Magento, an open cart to a generated
shop (`add_paid_orders`, `add_cart` in `cio_assets/demo/platforms/`, behind `cio_assets/demo/writers.py`). Their
figures mean something only if the pipeline sees those writes as paid orders at their paid time, a new person and
an open cart: each test writes into a small generated shop and reads it back through the preset, as the pipeline
does, on a connection whose session is not in UTC (the writers must write UTC themselves).
"""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from sqlalchemy import Engine, create_engine, make_url, select

from cio_assets.demo.platforms import magento2, woocommerce
from cio_assets.demo.platforms.truth import ShopTruth
from cio_assets.demo.shop import ShopSize
from cio_assets.demo.writers import writer_for
from cio_assets.mapping.compile import compile_mapping
from cio_assets.mapping.spec import load
from cio_assets.schema.shop import cart_items, carts, customers, order_items, orders

PAID = datetime(2026, 11, 21, 9, 30, 5)  # naive UTC, after the generated history (which ends on 2026-11-20)
LATER = datetime(2026, 11, 21, 9, 41, 17)
MODULES = {"woocommerce": woocommerce, "magento2": magento2}


def _not_utc(url: str) -> str:
    """The URL with every session starting at -05:00: a server whose default zone is not UTC."""
    return make_url(url).update_query_dict({"init_command": "SET time_zone = '-05:00'"}).render_as_string(False)


def _through_preset(url: str, platform: str) -> Engine:
    """An engine reading the pipeline's concepts through the platform's preset, in a UTC session (as the pipeline
    reads a preset whose time zone is UTC)."""
    engine = create_engine(make_url(url).update_query_dict({"init_command": "SET time_zone = '+00:00'"}))
    compile_mapping(load(platform)).install(engine)
    return engine


def _account_holder(truth: ShopTruth) -> int:
    """A generated customer with one account (not one of the first, odd ones)."""
    return next(p.customer_ids[0] for p in list(truth.people.values())[20:] if len(p.customer_ids) == 1)


@pytest.mark.parametrize("platform", ["woocommerce", "magento2"])
def test_paid_orders_for_an_existing_and_a_new_customer_read_as_paid_at_their_paid_time(
    throwaway_database: str, platform: str
) -> None:
    module = MODULES[platform]
    truth = module.generate(throwaway_database, customers=20)
    existing = _account_holder(truth)
    writer = create_engine(_not_utc(throwaway_database))
    with writer.connect() as conn:
        written = module.add_paid_orders(conn, [(existing, PAID), (None, LATER)], rng=random.Random(3))
    writer.dispose()
    (existing_order, buyer), (new_order, new_customer) = written
    assert buyer == existing

    reader = _through_preset(throwaway_database, platform)
    with reader.connect() as conn:
        found = set(
            conn.execute(
                select(orders.c.id, orders.c.paid_at, orders.c.status, orders.c.customer_id).where(
                    orders.c.id.in_([existing_order, new_order])
                )
            ).tuples()
        )
        lines = conn.execute(
            select(order_items.c.order_id, order_items.c.quantity, order_items.c.unit_price).where(
                order_items.c.order_id.in_([existing_order, new_order])
            )
        ).all()
        person = conn.execute(
            select(customers.c.email, customers.c.created_at, customers.c.updated_at).where(
                customers.c.id == new_customer
            )
        ).one_or_none()
    reader.dispose()

    assert found == {(existing_order, PAID, "paid", existing), (new_order, LATER, "paid", new_customer)}
    # Every order has product lines, each with a quantity and a price.
    assert {order_id for order_id, _, _ in lines} == {existing_order, new_order}
    assert all(quantity > 0 and price > 0 for _, quantity, price in lines)
    # The new customer is a customer of the shop, saved at the order's payment, with an e-mail no one else has.
    assert person is not None
    email, created_at, updated_at = person
    assert created_at <= LATER and updated_at == LATER
    assert email.endswith("@example.com") and email not in truth.people


def test_a_magento_cart_written_for_a_customer_reads_as_their_open_cart_with_its_lines(throwaway_database: str) -> None:
    truth = magento2.generate(throwaway_database, customers=20)
    customer = _account_holder(truth)
    writer = create_engine(_not_utc(throwaway_database))
    with writer.connect() as conn:
        cart_id = magento2.add_cart(conn, customer, PAID, rng=random.Random(3))
    writer.dispose()

    reader = _through_preset(throwaway_database, "magento2")
    with reader.connect() as conn:
        cart = conn.execute(
            select(carts.c.customer_id, carts.c.updated_at, carts.c.converted_order_id).where(carts.c.id == cart_id)
        ).one()
        lines = conn.execute(select(cart_items.c.quantity).where(cart_items.c.cart_id == cart_id)).scalars().all()
    reader.dispose()
    # Open (no order), last changed when written, with at least one product line.
    assert tuple(cart) == (customer, PAID, None)
    assert lines and all(quantity > 0 for quantity in lines)


@pytest.mark.parametrize(
    "platform, has_carts",
    [
        ("reference", True),  # the reference schema's carts table
        ("magento2", True),  # quotes are carts
        ("woocommerce", False),  # WooCommerce keeps no carts: the live benchmark skips its cart step
    ],
)
def test_the_benchmark_writer_finds_customers_and_orders_through_the_preset(
    throwaway_database: str, platform: str, has_carts: bool
) -> None:
    writer = writer_for(platform, throwaway_database)
    try:
        writer.generate(ShopSize(customers=40, days=30))
        before = writer.order_count()
        buyers = writer.plain_customers(random.Random(5), 3)
        [(order_id, customer_id)] = writer.add_paid_orders([(buyers[0], PAID)], random.Random(5))
        with writer.reader.connect() as conn:
            buyer = conn.execute(select(orders.c.customer_id).where(orders.c.id == order_id)).scalar_one()
        assert (customer_id, buyer, writer.order_count()) == (buyers[0], buyers[0], before + 1)
        assert (writer.carts_absent() is None) is has_carts
    finally:
        writer.dispose()
