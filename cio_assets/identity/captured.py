"""The people behind the keys binlog capture found changed (`tracking/binlog.py`): whose state to compute again.

A captured key is a concept's canonical column and a value: an order's id, a usermeta row's customer id, a
deleted order's customer id and e-mail (from the row's values before the delete). Keys that name a person
directly (a customer id, an e-mail, an anonymous id) are resolved through the identity map; keys of rows that
belong to an order or a cart (an order line's order, a refund's order, a cart line's cart) are read from the
shop by id first, then resolved as identity resolves orders and carts.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection, select

from cio_assets.identity.resolve import IdentityResolver
from cio_assets.lib.chunking import chunks
from cio_assets.lib.writes import KEYS_PER_STATEMENT
from cio_assets.schema.shop import cart_items, carts, customers, order_items, orders, refunds, subscriptions

# concept -> key name -> values, as `tracking.binlog.captured_since` gives them.
CapturedKeys = dict[str, dict[str, set[str]]]


def values(keys: CapturedKeys, *pairs: tuple[str, str]) -> set[str]:
    """Every value captured under these (concept, key name) pairs."""
    return {value for concept, key in pairs for value in keys.get(concept, {}).get(key, set())}


def ids(found: set[str]) -> list[int]:
    """The values that are whole numbers (ids), sorted."""
    return sorted({int(value) for value in found if value.lstrip("-").isdigit()})


def rows_to_read(keys: CapturedKeys) -> dict[str, list[int]]:
    """Per table identity reads (customers, orders, carts, subscriptions), the ids of the rows captured changed:
    their identifiers may have, whatever their change times say (a usermeta edit is its customer's)."""
    return {
        str(table.name): ids(values(keys, (str(table.name), "id")))
        for table in (customers, orders, carts, subscriptions)
    }


def captured_people(src: Connection, resolver: IdentityResolver, keys: CapturedKeys) -> set[str]:
    """The people any captured key leads to."""
    # A line or a refund known by its own id only (a WooCommerce itemmeta row, a refund's meta) is read for its
    # order or cart first.
    line_orders = _column_of(src, order_items.c.order_id, ids(values(keys, ("order_items", "id"))))
    line_orders |= _column_of(src, refunds.c.order_id, ids(values(keys, ("refunds", "id"))))
    line_carts = _column_of(src, cart_items.c.cart_id, ids(values(keys, ("cart_items", "id"))))
    order_ids = ids(values(keys, ("orders", "id"), ("order_items", "order_id"), ("refunds", "order_id")) | line_orders)
    cart_ids = ids(values(keys, ("carts", "id"), ("cart_items", "cart_id")) | line_carts)
    subscription_ids = ids(values(keys, ("subscriptions", "id")))
    customer_ids = ids(
        values(
            keys,
            ("customers", "id"),
            ("orders", "customer_id"),
            ("carts", "customer_id"),
            ("subscriptions", "customer_id"),
            ("identity_links", "customer_id"),
        )
    )
    emails = values(
        keys, ("customers", "email"), ("orders", "email"), ("carts", "email"), ("erasure_requests", "email")
    )
    anonymous = values(keys, ("carts", "anonymous_id"), ("identity_links", "anonymous_id"))

    owners = [
        _read(src, select(orders.c.customer_id, orders.c.email).where(orders.c.id.in_(chunk)))
        for chunk in _in(order_ids)
    ]
    owners += [
        _read(src, select(subscriptions.c.customer_id).where(subscriptions.c.id.in_(chunk))).assign(email=None)
        for chunk in _in(subscription_ids)
    ]
    owners.append(pd.DataFrame({"customer_id": pd.Series(customer_ids, dtype="object"), "email": None}))
    owners.append(pd.DataFrame({"customer_id": None, "email": pd.Series(sorted(emails), dtype="object")}))
    people = set(resolver.people_for_orders(pd.concat(owners, ignore_index=True)))

    holders = [
        _read(src, select(carts.c.customer_id, carts.c.anonymous_id, carts.c.email).where(carts.c.id.in_(chunk)))
        for chunk in _in(cart_ids)
    ]
    holders.append(
        pd.DataFrame({"customer_id": None, "anonymous_id": pd.Series(sorted(anonymous), dtype="object"), "email": None})
    )
    people |= set(resolver.people_for_carts(pd.concat(holders, ignore_index=True)))
    return {person for person in people if person is not None}


def _column_of(src: Connection, column, keys: list[int]) -> set[str]:  # type: ignore[no-untyped-def]
    """`column` of the rows of its table with these ids, as text."""
    found: set[str] = set()
    for chunk in _in(keys):
        found.update(str(value) for value in src.execute(select(column).where(column.table.c.id.in_(chunk))).scalars())
    return found


def _in(keys: list[int]) -> list[list[int]]:
    return list(chunks(keys, KEYS_PER_STATEMENT))


def _read(src: Connection, statement) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    rows = src.execute(statement).mappings().all()
    columns = [column.key for column in statement.selected_columns]
    return pd.DataFrame([dict(row) for row in rows], columns=columns, dtype="object")
