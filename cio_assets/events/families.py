"""The event families: one extractor per event name, each a few range-wide queries.

Every extractor reads the whole range (in keyset pages), resolves each row to a person and returns
one row per event instance: `event_id` (derived from the source key, so re-extraction never mints
a new id), `day`, `person_id`, `name`, `timestamp` (Unix seconds, UTC) and `properties` (JSON).

A row that the hygiene rules set aside is not an event: it comes back in the family's listing as
`held`, with its source key and reason. Free text inside properties is clipped to
`PROPERTY_TEXT_CHARS`, and an order or cart whose lines do not fit Customer.io's item limit keeps
its most valuable lines (`truncated` in the listing, `items_truncated: true` in the event).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
from sqlalchemy import ColumnElement, Connection, Table, and_, exists, false, or_, select, true

from cio_assets.contract import HELD, TRUNCATED, quarantine_rows
from cio_assets.customerio.limits import MAX_EVENT_PROPERTIES_BYTES, MAX_ITEM_BYTES, fit_line_items
from cio_assets.events.idle_carts import abandonable, idle_at, last_activity, last_item_at
from cio_assets.hygiene.rules import row_is_valid, row_rejection
from cio_assets.identity.membership import Spellings, chunk_people, guest_spellings
from cio_assets.identity.resolve import IdentityResolver
from cio_assets.lib.days import PartitionRange
from cio_assets.lib.reads import read_frame, read_pages
from cio_assets.lib.text import clip_column
from cio_assets.lib.timestamps import Clock, to_source_naive, to_unix_seconds, unix
from cio_assets.schema.events import (
    CART_ABANDONED,
    CHECKOUT_STARTED,
    FAMILY_TABLES,
    ORDER_PLACED,
    REFUND_ISSUED,
    SUBSCRIPTION_CANCELED,
)
from cio_assets.schema.shop import cart_items, carts, is_paid, order_items, orders, refunds, subscriptions

# Free text inside event properties (product names, reasons, codes) is clipped to this many characters.
PROPERTY_TEXT_CHARS = 255


@dataclass
class Extraction:
    """What a family needs to read one range (or, `only`, just some source rows of it)."""

    conn: Connection
    state: Connection  # the state database, where identity keeps its inputs
    resolver: IdentityResolver
    prange: PartitionRange
    clock: Clock
    chunk_size: int
    cart_idle: timedelta
    only: dict[str, list[int]] | None = None  # table name -> the only source ids to read

    def restrict(self, table: Table) -> ColumnElement[bool]:
        """SQL: the row is one this extraction reads."""
        return true() if self.only is None else table.c.id.in_(self.only.get(table.name, []))

    @cached_property
    def guest_spellings(self) -> Spellings:
        """Guest orders' raw e-mail spellings, looked up in the identity inputs kept in the state database."""
        return guest_spellings(self.state)


@dataclass
class FamilyResult:
    events: pd.DataFrame  # event_id, day, person_id, name, timestamp, properties (JSON text)
    listing: pd.DataFrame  # quarantine rows: events held back (`held`) or cut to fit (`truncated`)
    unresolved: int  # valid source rows that would be events but belong to nobody (listed by identity)


def event_id(name: str, source_id: object) -> str:
    return f"{name}:{int(source_id)}"


def event_family(event_id: str) -> str:
    """The family an event id belongs to (`order_placed:123` -> `order_placed`)."""
    return event_id.partition(":")[0]


def _events(x: Extraction, name: str, frame: pd.DataFrame, properties: list[dict]) -> FamilyResult:
    """One family's rows from a page with id, person_id, timestamp and reason (NULL when the row is fit)."""
    table = FAMILY_TABLES[name]
    encoded = [_encode(p) for p in properties]
    rows = pd.DataFrame(
        {
            "event_id": [event_id(name, i) for i in frame["id"]],
            "day": x.prange.day_of(frame["timestamp"]).to_numpy() if len(frame) else [],
            "person_id": frame["person_id"].to_numpy(),
            "name": name,
            "timestamp": frame["timestamp"].astype("int64").to_numpy(),
            "properties": [text for text, _ in encoded],
            "reason": frame["reason"].to_numpy(),
            "source_key": frame["id"].astype(str).to_numpy(),
            "truncation": [note for _, note in encoded],
        }
    )
    held = rows[rows["reason"].notna()]
    fit = rows[rows["reason"].isna()]
    events = fit[fit["person_id"].notna()]
    truncated = events[events["truncation"].notna()]
    listing = pd.concat(
        [_listing(held, table, HELD, held["reason"]), _listing(truncated, table, TRUNCATED, truncated["truncation"])],
        ignore_index=True,
    )
    columns = ["event_id", "day", "person_id", "name", "timestamp", "properties"]
    return FamilyResult(events[columns].reset_index(drop=True), listing, int(fit["person_id"].isna().sum()))


def _encode(properties: dict) -> tuple[str, str | None]:
    """Properties as JSON text that fits Customer.io, and a note when lines had to be left out."""
    text = orjson.dumps(properties, option=orjson.OPT_SORT_KEYS)
    if len(text) <= MAX_EVENT_PROPERTIES_BYTES:
        return text.decode(), None
    fitted, left_out = fit_line_items(properties)
    lines = len(properties["items"])
    note = f"{lines} lines; the {lines - left_out} most valuable kept to fit the {MAX_ITEM_BYTES}-byte item limit"
    return orjson.dumps(fitted, option=orjson.OPT_SORT_KEYS).decode(), note


def _listing(rows: pd.DataFrame, table: Table, outcome: str, reasons) -> pd.DataFrame:
    return quarantine_rows(
        {
            "day": rows["day"].to_numpy(),
            "item_key": rows["event_id"].to_numpy(),
            "outcome": outcome,
            "source_table": table.name,
            "source_key": rows["source_key"].to_numpy(),
            "reason": list(reasons),
        }
    )


def _items_by(conn: Connection, table: Table, parent: str, parent_ids: list[int]) -> dict[int, list[dict]]:
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
    lines = _plain(frame, texts=("sku", "product_name", "category"), money=("unit_price",), whole=("quantity",))
    items: dict[int, list[dict]] = {}
    for parent_id, sku, name, category, quantity, price in zip(
        frame[parent].tolist(),
        *(lines[c] for c in ("sku", "product_name", "category", "quantity", "unit_price")),
        strict=True,
    ):
        items.setdefault(int(parent_id), []).append(
            {"sku": sku, "product_name": name, "category": category, "quantity": quantity, "price": price}
        )
    return items


def _plain(frame: pd.DataFrame, texts=(), money=(), whole=()) -> dict[str, list]:
    """Columns as JSON-ready Python lists, a page at a time: free text clipped to PROPERTY_TEXT_CHARS,
    money rounded to cents, whole numbers as ints, and NULL (or NaN) as None."""
    cleaned = {c: clip_column(frame[c], PROPERTY_TEXT_CHARS) for c in texts}
    cleaned |= {c: pd.to_numeric(frame[c]).round(2) for c in money}
    cleaned |= {c: pd.to_numeric(frame[c]).astype("Int64") for c in whole}
    return {c: values.astype(object).where(values.notna(), None).tolist() for c, values in cleaned.items()}


def _item_count(items: list[dict]) -> int:
    """Units across the lines (the true count, even when the lines sent are truncated)."""
    return sum(item["quantity"] or 0 for item in items)


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
        row_rejection(orders, x.clock).label("reason"),
    ).where(
        is_paid(orders),
        x.restrict(orders),
        x.prange.covers(orders.c.paid_at, x.clock.zone_of(orders.name)),
    )
    for frame in read_pages(x.conn, statement, orders.c.id, x.chunk_size):
        items = _items_by(x.conn, order_items, "order_id", [int(i) for i in frame["id"]])
        frame["timestamp"] = to_unix_seconds(frame["paid_at"], x.clock.zone_of(orders.name))
        frame["person_id"] = x.resolver.people_for_orders(frame)
        values = _plain(
            frame,
            texts=("currency", "discount_code"),
            money=("subtotal", "discount_total", "shipping_total", "total"),
            whole=("id",),
        )
        properties = [
            {
                "order_id": order_id,
                "currency": currency,
                "subtotal": subtotal,
                "discount_total": discount_total,
                "shipping_total": shipping_total,
                "total": total,
                "discount_code": discount_code,
                "item_count": _item_count(items.get(order_id, [])),
                "items": items.get(order_id, []),
            }
            for order_id, currency, subtotal, discount_total, shipping_total, total, discount_code in zip(
                *(values[c] for c in ("id", "currency", "subtotal", "discount_total", "shipping_total", "total")),
                values["discount_code"],
                strict=True,
            )
        ]
        yield _events(x, ORDER_PLACED, frame, properties)


def _cart_properties(cart_id: int, items: list[dict]) -> dict:
    return {
        "cart_id": cart_id,
        "item_count": _item_count(items),
        "value": round(sum((item["quantity"] or 0) * (item["price"] or 0) for item in items), 2),
        "items": items,
    }


def checkout_started(x: Extraction) -> Iterator[FamilyResult]:
    """One event per cart that started checkout, at checkout_started_at."""
    statement = select(
        carts.c.id,
        carts.c.customer_id,
        carts.c.anonymous_id,
        carts.c.email,
        carts.c.checkout_started_at,
        row_rejection(carts, x.clock).label("reason"),
    ).where(
        carts.c.checkout_started_at.is_not(None),
        x.restrict(carts),
        x.prange.covers(carts.c.checkout_started_at, x.clock.zone_of(carts.name)),
    )
    for frame in read_pages(x.conn, statement, carts.c.id, x.chunk_size):
        items = _items_by(x.conn, cart_items, "cart_id", [int(i) for i in frame["id"]])
        frame["timestamp"] = to_unix_seconds(frame["checkout_started_at"], x.clock.zone_of(carts.name))
        frame["person_id"] = x.resolver.people_for_carts(frame)
        properties = [_cart_properties(int(i), items.get(int(i), [])) for i in frame["id"]]
        yield _events(x, CHECKOUT_STARTED, frame, properties)


def cart_abandoned(x: Extraction) -> Iterator[FamilyResult]:
    """Once per cart with items, never converted, idle longer than the window (`idle_carts.py`).

    The event's time is the moment the cart became abandoned (last activity + idle window), and it
    is only emitted once that moment has passed. It is suppressed when the same person paid for an
    order after the cart's last activity and before the end of that day, so that a re-run of the
    day gives the same answer.
    """
    idle = x.cart_idle
    zone, item_zone = x.clock.zone_of(carts.name), x.clock.zone_of(cart_items.name)
    # Activity in [range start - idle, min(range end, now) - idle) becomes abandoned inside the range,
    # at a moment already past. The exact moment is checked again below, after items are considered.
    activity_low = None if x.prange.start is None else x.prange.start - idle
    activity_high = min(x.prange.end, x.clock.now + timedelta(seconds=1)) - idle

    def active_between(column, column_zone: ZoneInfo) -> ColumnElement[bool]:
        upper = column < to_source_naive(activity_high, column_zone)
        return upper if activity_low is None else and_(column >= to_source_naive(activity_low, column_zone), upper)

    statement = select(
        carts.c.id,
        carts.c.customer_id,
        carts.c.anonymous_id,
        carts.c.email,
        carts.c.updated_at,
        last_item_at().label("last_item_at"),
        row_rejection(carts, x.clock).label("reason"),
    ).where(
        abandonable(),
        x.restrict(carts),
        _active(x.conn, active_between(carts.c.updated_at, zone), active_between(cart_items.c.updated_at, item_zone)),
    )
    for frame in read_pages(x.conn, statement, carts.c.id, x.chunk_size):
        activity = last_activity(frame["updated_at"], frame["last_item_at"], x.clock.zones)
        frame["timestamp"] = idle_at(activity, idle)
        frame["last_activity"] = activity.astype("int64")
        frame = _abandoned_in_range(frame, x)
        frame["person_id"] = x.resolver.people_for_carts(frame)
        frame = _drop_suppressed(frame, x)
        items = _items_by(x.conn, cart_items, "cart_id", [int(i) for i in frame["id"]])
        properties = [
            {**_cart_properties(int(i), items.get(int(i), [])), "last_activity_at": int(t)}
            for i, t in zip(frame["id"], frame["last_activity"], strict=True)
        ]
        yield _events(x, CART_ABANDONED, frame, properties)


# More carts active in the range than this, and they are read by the activity itself rather than by id.
MOST_ACTIVE_CARTS = 50_000


def _active(
    conn: Connection, cart_active: ColumnElement[bool], line_active: ColumnElement[bool]
) -> ColumnElement[bool]:
    """SQL: the carts active in the range, themselves or through a line: found first, one query for each (a shop
    that does not index the change times, Magento's quotes and their lines, then reads each table once, where an
    OR with a probe of every cart's lines read them all per cart: 1.6 s for a live run's day at 100,000
    customers), then read by id; for a range with more of them (a backfill), by the activity itself."""
    found = set(conn.execute(select(carts.c.id).where(cart_active)).scalars())
    found.update(conn.execute(select(cart_items.c.cart_id).where(line_active)).scalars())
    if len(found) > MOST_ACTIVE_CARTS:
        lines = exists().where(cart_items.c.cart_id == carts.c.id, line_active)
        return or_(cart_active, lines)
    return carts.c.id.in_(sorted(int(cart) for cart in found if cart is not None)) if found else false()


def _abandoned_in_range(frame: pd.DataFrame, x: Extraction) -> pd.DataFrame:
    """Exactly the carts whose abandonment moment is inside the range and already past."""
    upper = min(unix(x.prange.end), unix(x.clock.now) + 1)
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
    day_end = {day.key: min(unix(day.end), unix(x.clock.now) + 1) for day in x.prange.days}
    frame["suppress_until"] = x.prange.day_of(frame["timestamp"]).map(day_end)
    paid = _paid_times(x, people, earliest=int(frame["last_activity"].min()))
    candidates = frame[["id", "person_id", "last_activity", "suppress_until"]].merge(paid, on="person_id")
    bought = candidates[
        (candidates["paid_at"] > candidates["last_activity"]) & (candidates["paid_at"] < candidates["suppress_until"])
    ]
    return frame[~frame["id"].isin(bought["id"])].drop(columns="suppress_until").reset_index(drop=True)


def _paid_times(x: Extraction, people: list[str], earliest: int) -> pd.DataFrame:
    """person_id, paid_at of the people's valid paid orders since `earliest` (Unix seconds)."""
    zone = x.clock.zone_of(orders.name)
    since = to_source_naive(datetime.fromtimestamp(earliest, tz=x.clock.now.tzinfo), zone)
    frames = []
    for chunk in chunk_people(people, x.resolver, x.guest_spellings, x.chunk_size):
        frame = read_frame(
            x.conn,
            select(orders.c.customer_id, orders.c.email, orders.c.paid_at).where(
                is_paid(orders),
                row_is_valid(orders, x.clock),
                orders.c.paid_at >= since,
                chunk.owns_order(),
            ),
        )
        frame["person_id"] = x.resolver.people_for_orders(frame)
        frame["paid_at"] = to_unix_seconds(frame["paid_at"], zone)
        frames.append(frame[["person_id", "paid_at"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["person_id", "paid_at"])


def refund_issued(x: Extraction) -> Iterator[FamilyResult]:
    """One event per refund, at its created_at, for the person who placed the (paid) order."""
    statement = (
        select(
            refunds.c.id,
            refunds.c.order_id,
            refunds.c.amount,
            refunds.c.reason.label("refund_reason"),
            refunds.c.created_at,
            orders.c.customer_id,
            orders.c.email,
            orders.c.currency,
            row_rejection(refunds, x.clock).label("reason"),
        )
        # An outer join: a refund of a missing order is listed (order_not_paid), not silently dropped.
        .select_from(refunds.join(orders, refunds.c.order_id == orders.c.id, isouter=True))
        .where(x.restrict(refunds), x.prange.covers(refunds.c.created_at, x.clock.zone_of(refunds.name)))
    )
    for frame in read_pages(x.conn, statement, refunds.c.id, x.chunk_size):
        frame["timestamp"] = to_unix_seconds(frame["created_at"], x.clock.zone_of(refunds.name))
        frame["person_id"] = x.resolver.people_for_orders(frame)
        values = _plain(frame, texts=("currency", "refund_reason"), money=("amount",), whole=("id", "order_id"))
        properties = [
            {"refund_id": refund_id, "order_id": order_id, "amount": amount, "currency": currency, "reason": reason}
            for refund_id, order_id, amount, currency, reason in zip(
                *(values[c] for c in ("id", "order_id", "amount", "currency", "refund_reason")), strict=True
            )
        ]
        yield _events(x, REFUND_ISSUED, frame, properties)


def subscription_canceled(x: Extraction) -> Iterator[FamilyResult]:
    """One event per canceled subscription, at canceled_at."""
    statement = select(
        subscriptions.c.id,
        subscriptions.c.customer_id,
        subscriptions.c.sku,
        subscriptions.c.cancel_reason,
        subscriptions.c.started_at,
        subscriptions.c.canceled_at,
        row_rejection(subscriptions, x.clock).label("reason"),
    ).where(
        subscriptions.c.status == "canceled",
        x.restrict(subscriptions),
        x.prange.covers(subscriptions.c.canceled_at, x.clock.zone_of(subscriptions.name)),
    )
    zone = x.clock.zone_of(subscriptions.name)
    for frame in read_pages(x.conn, statement, subscriptions.c.id, x.chunk_size):
        frame["timestamp"] = to_unix_seconds(frame["canceled_at"], zone)
        frame["person_id"] = x.resolver.people_for_customers(frame["customer_id"])
        frame["started"] = to_unix_seconds(frame["started_at"], zone)
        values = _plain(frame, texts=("sku", "cancel_reason"), whole=("id", "started"))
        properties = [
            {"subscription_id": subscription_id, "sku": sku, "cancel_reason": reason, "started_at": started}
            for subscription_id, sku, reason, started in zip(
                *(values[c] for c in ("id", "sku", "cancel_reason", "started")), strict=True
            )
        ]
        yield _events(x, SUBSCRIPTION_CANCELED, frame, properties)


FAMILIES: dict[str, Callable[[Extraction], Iterator[FamilyResult]]] = {
    ORDER_PLACED: order_placed,
    CHECKOUT_STARTED: checkout_started,
    CART_ABANDONED: cart_abandoned,
    REFUND_ISSUED: refund_issued,
    SUBSCRIPTION_CANCELED: subscription_canceled,
}
