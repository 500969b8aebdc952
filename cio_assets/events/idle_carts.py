"""When a cart is abandoned: the one rule that `cart_abandoned` (the event log) and the source sensor share.

A cart can be abandoned when it has a line of positive quantity and never became an order (no
`converted_order_id`, and no paid order names it). Its last activity is the latest change of the cart or of
any of its lines; it is abandoned once that last activity, to the whole second, plus the idle window
(`CIO_CART_IDLE_MINUTES`) has passed, and that moment is the event's time. The sensor asks which carts crossed
that moment since its last tick, so that the partition they fall in is refreshed without anything written to
the shop; the event log emits the event itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import ColumnElement, Connection, and_, exists, func, select, union

from cio_assets.lib.timestamps import SourceZones, to_source_naive, to_unix_seconds
from cio_assets.schema.shop import cart_items, carts, is_paid, orders


def abandonable() -> ColumnElement[bool]:
    """SQL: the cart has a line of positive quantity and never became an order."""
    has_items = exists().where(cart_items.c.cart_id == carts.c.id, cart_items.c.quantity > 0)
    converted = exists().where(orders.c.cart_id == carts.c.id, is_paid(orders))
    return and_(carts.c.converted_order_id.is_(None), has_items, ~converted)


def last_item_at() -> ColumnElement:
    """SQL: the latest change of any of the cart's lines."""
    return select(func.max(cart_items.c.updated_at)).where(cart_items.c.cart_id == carts.c.id).scalar_subquery()


def last_activity(updated_at: pd.Series, item_updated_at: pd.Series, zones: SourceZones) -> pd.Series:
    """Unix seconds of each cart's last activity: its own change time or its lines' latest, whichever is later."""
    cart = to_unix_seconds(updated_at, zones.of(carts.name))
    lines = to_unix_seconds(item_updated_at, zones.of(cart_items.name))
    return pd.concat([cart, lines], axis=1).max(axis=1)


def idle_at(activity: pd.Series, idle: timedelta) -> pd.Series:
    """Unix seconds at which carts last active at `activity` are abandoned."""
    return activity.astype("int64") + int(idle.total_seconds())


def idle_deadlines(
    conn: Connection, zones: SourceZones, idle: timedelta, chunk_rows: int, after: datetime, until: datetime
) -> list[datetime]:
    """When carts went idle, for the carts whose idle deadline falls in (after, until], as `cart_abandoned` emits
    them. Aware UTC instants, sorted.

    Two cheap reads: the carts changed since `after - idle` (an index range on the carts, one scan of the
    lines' change times), then those carts' last activity and state by primary key."""
    since = after - idle
    recent = union(
        select(carts.c.id).where(carts.c.updated_at > to_source_naive(since, zones.of(carts.name))),
        select(cart_items.c.cart_id).where(cart_items.c.updated_at > to_source_naive(since, zones.of(cart_items.name))),
    )
    cart_ids = sorted(int(i) for (i,) in conn.execute(recent))
    rows = []
    for start in range(0, len(cart_ids), chunk_rows):
        statement = select(carts.c.updated_at, last_item_at().label("last_item_at")).where(
            carts.c.id.in_(cart_ids[start : start + chunk_rows]), abandonable()
        )
        rows += conn.execute(statement).all()
    if not rows:
        return []
    frame = pd.DataFrame(rows, columns=["updated_at", "last_item_at"])
    activity = last_activity(frame["updated_at"], frame["last_item_at"], zones).dropna()
    low, high = after.timestamp(), until.timestamp()
    deadlines = [int(d) for d in idle_at(activity, idle)]
    return sorted(datetime.fromtimestamp(d, UTC) for d in deadlines if low < d <= high)
