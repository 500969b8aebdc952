"""The event families: one extractor per event name, each a few range-wide queries.

Every extractor reads the whole range at once (streamed in chunks), keeps only rows that pass
timestamp hygiene, resolves each row to a person and returns one row per event instance:
`event_id` (derived from the source key, so re-extraction never mints a new id), `person_id`,
`name`, `timestamp` (Unix seconds, UTC) and `properties`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import ColumnElement, Connection, and_, exists, func, or_, select

from cio_assets.hygiene.rules import Bounds, row_is_valid
from cio_assets.identity.membership import chunk_people, guest_emails
from cio_assets.identity.resolve import IdentityResolver
from cio_assets.partitions import PartitionRange
from cio_assets.settings import Settings
from cio_assets.sources.reads import read_frame, read_pages
from cio_assets.sources.tables import cart_items, carts, order_items, orders, refunds, subscriptions
from cio_assets.timestamps import to_source_naive, to_unix_seconds, unix

ORDER_PLACED = "order_placed"
CHECKOUT_STARTED = "checkout_started"
CART_ABANDONED = "cart_abandoned"
REFUND_ISSUED = "refund_issued"
SUBSCRIPTION_CANCELED = "subscription_canceled"
EVENT_NAMES = (ORDER_PLACED, CHECKOUT_STARTED, CART_ABANDONED, REFUND_ISSUED, SUBSCRIPTION_CANCELED)


@dataclass
class Extraction:
    """What a family needs to read one range."""

    conn: Connection
    resolver: IdentityResolver
    prange: PartitionRange
    settings: Settings
    bounds: Bounds

    @cached_property
    def guest_spellings(self) -> dict[str, list[str]]:
        """Read once per run: every page of carts needs it to find its people's guest orders."""
        return guest_emails(self.conn, self.settings, self.bounds)


@dataclass
class FamilyResult:
    events: pd.DataFrame
    unresolved: int  # source rows that would be events but belong to nobody


def event_id(name: str, source_id: object) -> str:
    return f"{name}:{int(source_id)}"


def _events(name: str, frame: pd.DataFrame, id_column: str, properties: list[dict]) -> FamilyResult:
    """Assemble one family's rows, setting aside the ones that resolve to nobody."""
    events = pd.DataFrame(
        {
            "event_id": [event_id(name, i) for i in frame[id_column]],
            "person_id": frame["person_id"].to_numpy(),
            "name": name,
            "timestamp": frame["timestamp"].astype("int64").to_numpy(),
            "properties": properties,
        }
    )
    resolved = events["person_id"].notna()
    return FamilyResult(events[resolved].reset_index(drop=True), int((~resolved).sum()))


def _items_by(conn: Connection, table, parent: str, parent_ids: list[int]) -> dict[int, list[dict]]:
    """Line items of the given orders or carts, in line order, as Customer.io-ready dicts."""
    if not parent_ids:
        return {}
    frame = read_frame(
        conn,
        select(
            table.c[parent], table.c.sku, table.c.product_name, table.c.category, table.c.quantity, table.c.unit_price
        )
        .where(table.c[parent].in_(parent_ids))
        .order_by(table.c[parent], table.c.id),
    )
    items: dict[int, list[dict]] = {}
    for parent_id, sku, product_name, category, quantity, price in frame.itertuples(index=False, name=None):
        items.setdefault(int(parent_id), []).append(
            {
                "sku": sku,
                "product_name": product_name,
                "category": category,
                "quantity": int(quantity),
                "price": round(float(price), 2),
            }
        )
    return items


def order_placed(x: Extraction) -> Iterator[FamilyResult]:
    """One event per paid order, at paid_at (never created_at: a failed payment is not a purchase)."""
    statement = select(
        orders.c.id,
        orders.c.customer_id,
        orders.c.email,
        orders.c.paid_at,
        orders.c.currency,
        orders.c.subtotal,
        orders.c.discount_total,
        orders.c.shipping_total,
        orders.c.total,
        orders.c.discount_code,
    ).where(
        orders.c.status == "paid",
        row_is_valid(orders, x.settings, x.bounds),
        x.prange.covers(orders.c.paid_at, orders, x.settings),
    )
    for frame in read_pages(x.conn, statement, orders.c.id, x.settings.chunk_size):
        items = _items_by(x.conn, order_items, "order_id", [int(i) for i in frame["id"]])
        frame["timestamp"] = to_unix_seconds(frame["paid_at"], x.settings.zone_of(orders.name))
        frame["person_id"] = x.resolver.people_for_orders(frame)
        properties = [
            {
                "order_id": int(row.id),
                "currency": row.currency,
                "subtotal": round(float(row.subtotal), 2),
                "discount_total": round(float(row.discount_total), 2),
                "shipping_total": round(float(row.shipping_total), 2),
                "total": round(float(row.total), 2),
                "discount_code": row.discount_code,
                "items": items.get(int(row.id), []),
            }
            for row in frame.itertuples(index=False)
        ]
        yield _events(ORDER_PLACED, frame, "id", properties)


def _cart_people(x: Extraction, frame: pd.DataFrame) -> list[str | None]:
    return [
        x.resolver.person_for_cart(c, a, e)
        for c, a, e in zip(frame["customer_id"], frame["anonymous_id"], frame["email"], strict=True)
    ]


def _cart_properties(cart_id: int, items: list[dict]) -> dict:
    return {
        "cart_id": cart_id,
        "item_count": sum(item["quantity"] for item in items),
        "value": round(sum(item["quantity"] * item["price"] for item in items), 2),
        "items": items,
    }


def checkout_started(x: Extraction) -> Iterator[FamilyResult]:
    """One event per cart that started checkout, at checkout_started_at."""
    statement = select(
        carts.c.id, carts.c.customer_id, carts.c.anonymous_id, carts.c.email, carts.c.checkout_started_at
    ).where(
        carts.c.checkout_started_at.is_not(None),
        row_is_valid(carts, x.settings, x.bounds),
        x.prange.covers(carts.c.checkout_started_at, carts, x.settings),
    )
    for frame in read_pages(x.conn, statement, carts.c.id, x.settings.chunk_size):
        items = _items_by(x.conn, cart_items, "cart_id", [int(i) for i in frame["id"]])
        frame["timestamp"] = to_unix_seconds(frame["checkout_started_at"], x.settings.zone_of(carts.name))
        frame["person_id"] = _cart_people(x, frame)
        properties = [_cart_properties(int(i), items.get(int(i), [])) for i in frame["id"]]
        yield _events(CHECKOUT_STARTED, frame, "id", properties)


def cart_abandoned(x: Extraction) -> Iterator[FamilyResult]:
    """Once per cart with items, never converted, idle longer than the window.

    The event's time is the moment the cart became abandoned (last activity + idle window), and it
    is only emitted once that moment has passed. It is suppressed when the same person paid for an
    order after the cart's last activity and before the end of that day, so that a re-run of the
    day gives the same answer.
    """
    idle = x.settings.cart_idle
    zone, item_zone = x.settings.zone_of(carts.name), x.settings.zone_of(cart_items.name)
    # Activity in [range start - idle, min(range end, now) - idle) becomes abandoned inside the range,
    # at a moment already past. The exact moment is checked again below, after items are considered.
    activity_low = None if x.prange.start is None else x.prange.start - idle
    activity_high = min(x.prange.end, x.bounds.now + timedelta(seconds=1)) - idle

    def active_between(column, column_zone: ZoneInfo) -> ColumnElement[bool]:
        upper = column < to_source_naive(activity_high, column_zone)
        return upper if activity_low is None else and_(column >= to_source_naive(activity_low, column_zone), upper)

    last_item_at = select(func.max(cart_items.c.updated_at)).where(cart_items.c.cart_id == carts.c.id).scalar_subquery()
    has_items = exists().where(cart_items.c.cart_id == carts.c.id, cart_items.c.quantity > 0)
    converted = exists().where(orders.c.cart_id == carts.c.id, orders.c.status == "paid")
    item_activity = exists().where(
        cart_items.c.cart_id == carts.c.id, active_between(cart_items.c.updated_at, item_zone)
    )
    statement = select(
        carts.c.id,
        carts.c.customer_id,
        carts.c.anonymous_id,
        carts.c.email,
        carts.c.updated_at,
        last_item_at.label("last_item_at"),
    ).where(
        carts.c.converted_order_id.is_(None),
        row_is_valid(carts, x.settings, x.bounds),
        has_items,
        ~converted,
        or_(active_between(carts.c.updated_at, zone), item_activity),
    )
    for frame in read_pages(x.conn, statement, carts.c.id, x.settings.chunk_size):
        last_activity = pd.concat(
            [to_unix_seconds(frame["updated_at"], zone), to_unix_seconds(frame["last_item_at"], item_zone)], axis=1
        ).max(axis=1)
        frame["timestamp"] = last_activity.astype("int64") + int(idle.total_seconds())
        frame["last_activity"] = last_activity.astype("int64")
        frame = _abandoned_in_range(frame, x)
        frame["person_id"] = _cart_people(x, frame)
        frame = _drop_suppressed(frame, x)
        items = _items_by(x.conn, cart_items, "cart_id", [int(i) for i in frame["id"]])
        properties = [
            {**_cart_properties(int(i), items.get(int(i), [])), "last_activity_at": int(t)}
            for i, t in zip(frame["id"], frame["last_activity"], strict=True)
        ]
        yield _events(CART_ABANDONED, frame, "id", properties)


def _abandoned_in_range(frame: pd.DataFrame, x: Extraction) -> pd.DataFrame:
    """Exactly the carts whose abandonment moment is inside the range and already past."""
    upper = min(unix(x.prange.end), unix(x.bounds.now) + 1)
    inside = frame["timestamp"] < upper
    if x.prange.start is not None:
        inside &= frame["timestamp"] >= unix(x.prange.start)
    return frame[inside].reset_index(drop=True)


def _drop_suppressed(frame: pd.DataFrame, x: Extraction) -> pd.DataFrame:
    """Drop carts whose person paid after the cart's last activity, up to the end of the event's day."""
    people = sorted(p for p in frame["person_id"].dropna().unique())
    if not people:
        return frame
    # Exclusive: a payment at midnight belongs to the next day and must not reach back.
    day_end = {day.key: min(unix(day.end), unix(x.bounds.now) + 1) for day in x.prange.days}
    frame["suppress_until"] = x.prange.day_of(frame["timestamp"]).map(day_end)
    paid = _paid_times(x, people, earliest=int(frame["last_activity"].min()))
    candidates = frame[["id", "person_id", "last_activity", "suppress_until"]].merge(paid, on="person_id")
    bought = candidates[
        (candidates["paid_at"] > candidates["last_activity"]) & (candidates["paid_at"] < candidates["suppress_until"])
    ]
    return frame[~frame["id"].isin(bought["id"])].drop(columns="suppress_until").reset_index(drop=True)


def _paid_times(x: Extraction, people: list[str], earliest: int) -> pd.DataFrame:
    """person_id, paid_at of the people's valid paid orders since `earliest` (Unix seconds)."""
    zone = x.settings.zone_of(orders.name)
    since = to_source_naive(datetime.fromtimestamp(earliest, tz=x.bounds.now.tzinfo), zone)
    frames = []
    for chunk in chunk_people(people, x.resolver, x.guest_spellings, x.settings.chunk_size):
        frame = read_frame(
            x.conn,
            select(orders.c.customer_id, orders.c.email, orders.c.paid_at).where(
                orders.c.status == "paid",
                row_is_valid(orders, x.settings, x.bounds),
                orders.c.paid_at >= since,
                chunk.owns_order(),
            ),
        )
        frame["person_id"] = x.resolver.people_for_orders(frame)
        frame["paid_at"] = to_unix_seconds(frame["paid_at"], zone)
        frames.append(frame[["person_id", "paid_at"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["person_id", "paid_at"])


def refund_issued(x: Extraction) -> Iterator[FamilyResult]:
    """One event per refund, at its created_at, for the person who placed the order."""
    statement = (
        select(
            refunds.c.id,
            refunds.c.order_id,
            refunds.c.amount,
            refunds.c.reason,
            refunds.c.created_at,
            orders.c.customer_id,
            orders.c.email,
            orders.c.currency,
        )
        .select_from(refunds.join(orders, refunds.c.order_id == orders.c.id))
        .where(
            row_is_valid(refunds, x.settings, x.bounds),
            x.prange.covers(refunds.c.created_at, refunds, x.settings),
        )
    )
    for frame in read_pages(x.conn, statement, refunds.c.id, x.settings.chunk_size):
        frame["timestamp"] = to_unix_seconds(frame["created_at"], x.settings.zone_of(refunds.name))
        frame["person_id"] = x.resolver.people_for_orders(frame)
        properties = [
            {
                "refund_id": int(row.id),
                "order_id": int(row.order_id),
                "amount": round(float(row.amount), 2),
                "currency": row.currency,
                "reason": row.reason,
            }
            for row in frame.itertuples(index=False)
        ]
        yield _events(REFUND_ISSUED, frame, "id", properties)


def subscription_canceled(x: Extraction) -> Iterator[FamilyResult]:
    """One event per canceled subscription, at canceled_at."""
    statement = select(
        subscriptions.c.id,
        subscriptions.c.customer_id,
        subscriptions.c.sku,
        subscriptions.c.cancel_reason,
        subscriptions.c.started_at,
        subscriptions.c.canceled_at,
    ).where(
        subscriptions.c.status == "canceled",
        row_is_valid(subscriptions, x.settings, x.bounds),
        x.prange.covers(subscriptions.c.canceled_at, subscriptions, x.settings),
    )
    zone = x.settings.zone_of(subscriptions.name)
    for frame in read_pages(x.conn, statement, subscriptions.c.id, x.settings.chunk_size):
        frame["timestamp"] = to_unix_seconds(frame["canceled_at"], zone)
        frame["person_id"] = [x.resolver.person_for_customer(c) for c in frame["customer_id"]]
        started = to_unix_seconds(frame["started_at"], zone)
        properties = [
            {"subscription_id": int(i), "sku": sku, "cancel_reason": reason, "started_at": int(s)}
            for i, sku, reason, s in zip(frame["id"], frame["sku"], frame["cancel_reason"], started, strict=True)
        ]
        yield _events(SUBSCRIPTION_CANCELED, frame, "id", properties)


FAMILIES: dict[str, Callable[[Extraction], Iterator[FamilyResult]]] = {
    ORDER_PLACED: order_placed,
    CHECKOUT_STARTED: checkout_started,
    CART_ABANDONED: cart_abandoned,
    REFUND_ISSUED: refund_issued,
    SUBSCRIPTION_CANCELED: subscription_canceled,
}
