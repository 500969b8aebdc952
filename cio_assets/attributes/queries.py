"""SQL for the attribute snapshot: who changed in a range of days, and their history, per chunk of people.

History queries read only rows that pass the hygiene rules (`row_is_valid`) and filter in the
database; per-order work (the top item's category) is done by the database too. Results come back
per order, refund or subscription for one chunk of people, and `compute.py` turns them into state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import ColumnElement, Connection, FromClause, Select, Table, and_, literal, select

from cio_assets.contract import HELD, quarantine_rows
from cio_assets.hygiene.rules import row_is_valid, row_rejection, valid_value
from cio_assets.identity.membership import PeopleChunk
from cio_assets.identity.normalize import normalize_email, normalize_phone
from cio_assets.identity.resolve import IdentityResolver
from cio_assets.lib.chunking import chunks
from cio_assets.lib.days import PartitionRange
from cio_assets.lib.reads import read_frame, read_frames
from cio_assets.lib.timestamps import Clock, to_unix_seconds, unix
from cio_assets.lib.writes import KEYS_PER_STATEMENT
from cio_assets.schema.shop import customers, is_paid, order_items, orders, refunds, subscriptions


@dataclass(frozen=True)
class ChangeSource:
    """A timestamp whose movement means a person's attributes may have changed."""

    table: Table
    timestamp: str
    select_from: FromClause | None = None  # a join, when the person's keys live in another table

    def person_keys(self) -> list[ColumnElement]:
        """(customer_id, email) as the order resolver expects them."""
        if self.table is customers:
            return [customers.c.id.label("customer_id"), customers.c.email]
        if self.table is subscriptions:
            return [subscriptions.c.customer_id, literal(None).label("email")]
        return [orders.c.customer_id, orders.c.email]

    def select(self, *columns: ColumnElement) -> Select:
        statement = select(*self.person_keys(), self.table.c.id.label("source_key"), *columns)
        return statement.select_from(self.select_from) if self.select_from is not None else statement


_refunds_of_orders = refunds.join(orders, refunds.c.order_id == orders.c.id, isouter=True)

CHANGE_SOURCES: tuple[ChangeSource, ...] = (
    ChangeSource(customers, "created_at"),
    ChangeSource(customers, "updated_at"),
    ChangeSource(orders, "paid_at"),
    ChangeSource(orders, "updated_at"),
    ChangeSource(refunds, "created_at", select_from=_refunds_of_orders),
    ChangeSource(subscriptions, "started_at"),
    ChangeSource(subscriptions, "canceled_at"),
    ChangeSource(subscriptions, "updated_at"),
)
# The tables whose rows, once released from quarantine, change their person's attributes.
CHANGE_TABLES: tuple[Table, ...] = tuple(dict.fromkeys(source.table for source in CHANGE_SOURCES))


@dataclass
class Changes:
    """Who changed in a range: the (person, day) pairs to compute, and those held back."""

    pairs: pd.DataFrame  # person_id, day
    held: pd.DataFrame  # quarantine rows: a person's day whose inputs include a set-aside source row
    unresolved: int  # changed source rows that resolve to nobody


def changed_people(
    conn: Connection,
    resolver: IdentityResolver,
    prange: PartitionRange,
    clock: Clock,
    chunk_size: int,
    released: dict[str, pd.DataFrame],
) -> Changes:
    """Distinct (person_id, day) pairs whose inputs moved in the range, minus the held ones.

    A person's day is held when one of the source rows that changed that day is set aside by the
    hygiene rules: nothing derived from the row is sent, not even the person's state for that day.
    Their other days are computed without the row.
    A row released from quarantine during the range (`released`: source_key, released_at per table)
    is a change of its person at the moment it was released, so a corrected row flows through.
    """
    pairs: list[pd.DataFrame] = []
    held: list[pd.DataFrame] = []
    unresolved = 0
    for source in CHANGE_SOURCES:
        column = source.table.c[source.timestamp]
        zone = clock.zone_of(source.table.name)
        reason = row_rejection(source.table, clock)
        statement = source.select(column.label("ts"), reason.label("reason")).where(
            column.is_not(None), prange.covers(column, zone)
        )
        for frame in read_frames(conn, statement, chunk_size * 10):
            frame["person_id"] = resolver.people_for_orders(frame)
            unresolved += int(frame["person_id"].isna().sum())
            frame = frame[frame["person_id"].notna()]
            ts = to_unix_seconds(frame["ts"], zone)
            frame = frame.assign(day=prange.day_of(ts))
            pairs.append(frame[["person_id", "day"]].drop_duplicates())
            # History before the first day has no day of its own: a set-aside row there is left out of
            # the person's initial state (and listed by `rejected_rows`), but holds nothing back.
            dated = ts >= unix(prange.days[0].start)
            held.append(_held(frame[frame["reason"].notna() & dated], source.table))
    pairs.extend(_released_pairs(conn, resolver, prange, released))
    all_pairs = pd.concat(pairs, ignore_index=True).drop_duplicates() if pairs else _no_pairs()
    held_rows = pd.concat(held, ignore_index=True).drop_duplicates() if held else quarantine_rows()
    is_held = all_pairs.set_index(["person_id", "day"]).index.isin(held_rows.set_index(["item_key", "day"]).index)
    return Changes(all_pairs[~is_held].reset_index(drop=True), held_rows, unresolved)


def _no_pairs() -> pd.DataFrame:
    return pd.DataFrame(columns=["person_id", "day"])


def _held(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    return quarantine_rows(
        {
            "day": frame["day"].to_numpy(),
            "item_key": frame["person_id"].to_numpy(),
            "outcome": HELD,
            "source_table": table.name,
            "source_key": frame["source_key"].astype(str).to_numpy(),
            "reason": frame["reason"].to_numpy(),
        }
    )


def _released_pairs(
    conn: Connection, resolver: IdentityResolver, prange: PartitionRange, released: dict[str, pd.DataFrame]
) -> list[pd.DataFrame]:
    """(person_id, day of release) for each source row released from quarantine during the range."""
    pairs = []
    for table in CHANGE_TABLES:
        rows = released.get(table.name)
        if rows is None or rows.empty:
            continue
        source = next(s for s in CHANGE_SOURCES if s.table is table)
        for keys in chunks(list(rows["source_key"]), KEYS_PER_STATEMENT):
            frame = read_frame(conn, source.select().where(table.c.id.in_(keys)))
            frame = frame.merge(rows, on="source_key")
            frame["person_id"] = resolver.people_for_orders(frame)
            frame = frame[frame["person_id"].notna()]
            pairs.append(pd.DataFrame({"person_id": frame["person_id"], "day": prange.day_of(frame["released_at"])}))
    return pairs


@dataclass
class History:
    """Everything the snapshot needs about one chunk of people, one row per source row."""

    customers: pd.DataFrame  # person_id, customer_id, email, phone, first/last name, opt-ins, created_at
    orders: pd.DataFrame  # person_id, order_id, paid_at, total, category
    refunds: pd.DataFrame  # person_id, refunded_at, amount
    subscriptions: pd.DataFrame  # person_id, status, started_at, canceled_at, updated_at


def read_history(conn: Connection, chunk: PeopleChunk, resolver: IdentityResolver, clock: Clock) -> History:
    paid_orders = _paid_orders(conn, chunk, resolver, clock)
    return History(
        customers=_customers(conn, chunk, resolver, clock),
        orders=paid_orders,
        refunds=_refunds(conn, paid_orders, clock),
        subscriptions=_subscriptions(conn, chunk, resolver, clock),
    )


def _with_person(frame: pd.DataFrame, resolver: IdentityResolver, chunk: PeopleChunk) -> pd.DataFrame:
    frame["person_id"] = resolver.people_for_orders(frame)
    frame = frame.drop(columns=["customer_id", "email"])
    return frame[frame["person_id"].isin(set(chunk.person_ids))].reset_index(drop=True)


def _paid(clock: Clock) -> ColumnElement[bool]:
    return and_(is_paid(orders), row_is_valid(orders, clock))


def _top_category():
    """The category of the order's most valuable line (ties: the first line)."""
    line_value = order_items.c.quantity * order_items.c.unit_price
    return (
        select(order_items.c.category)
        .where(order_items.c.order_id == orders.c.id)
        .order_by(line_value.desc(), order_items.c.id)
        .limit(1)
        .scalar_subquery()
    )


def _customers(conn: Connection, chunk: PeopleChunk, resolver: IdentityResolver, clock: Clock) -> pd.DataFrame:
    columns = ["customer_id", "email", "phone", "first_name", "last_name", "email_opt_in", "sms_opt_in", "created_at"]
    if not chunk.customer_ids:
        return pd.DataFrame(columns=["person_id", *columns])
    frame = read_frame(
        conn,
        select(
            customers.c.id.label("customer_id"),
            customers.c.email,
            customers.c.phone,
            customers.c.country,
            customers.c.first_name,
            customers.c.last_name,
            customers.c.accepts_email_marketing.label("email_opt_in"),
            customers.c.accepts_sms_marketing.label("sms_opt_in"),
            # Unknown (NULL) when it fails its value rule: the person is sent without it (identity lists it).
            valid_value(customers, "created_at", clock).label("created_at"),
        ).where(customers.c.id.in_(chunk.customer_ids), row_is_valid(customers, clock)),
    )
    frame["person_id"] = resolver.people_for_customers(frame["customer_id"])
    frame["email"] = [normalize_email(e).value for e in frame["email"]]
    frame["phone"] = [normalize_phone(p, c).value for p, c in zip(frame["phone"], frame.pop("country"), strict=True)]
    frame["created_at"] = to_unix_seconds(frame["created_at"], clock.zone_of(customers.name))
    # Consent in three states: True (opted in), False (opted out), NA (NULL: never asked).
    frame["email_opt_in"] = frame["email_opt_in"].astype("boolean")
    frame["sms_opt_in"] = frame["sms_opt_in"].astype("boolean")
    return frame


def _paid_orders(conn: Connection, chunk: PeopleChunk, resolver: IdentityResolver, clock: Clock) -> pd.DataFrame:
    frame = read_frame(
        conn,
        select(
            orders.c.id.label("order_id"),
            orders.c.customer_id,
            orders.c.email,
            orders.c.paid_at,
            orders.c.total,
            _top_category().label("category"),
        ).where(_paid(clock), chunk.owns_order()),
    )
    frame["paid_at"] = to_unix_seconds(frame["paid_at"], clock.zone_of(orders.name))
    frame["total"] = frame["total"].astype(float)
    return _with_person(frame, resolver, chunk)


def _refunds(conn: Connection, paid_orders: pd.DataFrame, clock: Clock) -> pd.DataFrame:
    """The refunds of the chunk's valid paid orders (as `_paid_orders` read them), with their order's person.

    Looked up by order id: joining orders again and filtering by the chunk's people made MariaDB judge every
    refund of the shop, and its order's lines, once per chunk (0.8 s a chunk at 100k customers)."""
    columns = ["refund_id", "order_id", "refunded_at", "amount"]
    frames = [
        read_frame(
            conn,
            select(
                refunds.c.id.label("refund_id"),
                refunds.c.order_id,
                refunds.c.created_at.label("refunded_at"),
                refunds.c.amount,
            ).where(
                refunds.c.order_id.in_(order_ids),
                # The order is paid and valid (`_paid_orders` read it): only the refund's own rules remain.
                row_is_valid(refunds, clock, given=("order_id",)),
            ),
        )
        for order_ids in chunks([int(i) for i in paid_orders["order_id"]], KEYS_PER_STATEMENT)
    ]
    found = [f for f in frames if not f.empty]  # pandas warns when empty pieces are concatenated
    frame = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=columns)
    frame["refunded_at"] = to_unix_seconds(frame["refunded_at"], clock.zone_of(refunds.name))
    frame["amount"] = frame["amount"].astype(float)
    people = paid_orders[["order_id", "person_id"]].astype({"order_id": "int64"})
    return frame.astype({"order_id": "int64"}).merge(people, on="order_id").drop(columns="order_id")


def _subscriptions(conn: Connection, chunk: PeopleChunk, resolver: IdentityResolver, clock: Clock) -> pd.DataFrame:
    columns = ["person_id", "status", "started_at", "canceled_at", "updated_at"]
    if not chunk.customer_ids:
        return pd.DataFrame(columns=columns)
    frame = read_frame(
        conn,
        select(
            subscriptions.c.customer_id,
            subscriptions.c.status,
            subscriptions.c.started_at,
            subscriptions.c.canceled_at,
            subscriptions.c.updated_at,
        ).where(subscriptions.c.customer_id.in_(chunk.customer_ids), row_is_valid(subscriptions, clock)),
    )
    zone = clock.zone_of(subscriptions.name)
    for column in ("started_at", "canceled_at", "updated_at"):
        frame[column] = to_unix_seconds(frame[column], zone)
    frame["person_id"] = resolver.people_for_customers(frame.pop("customer_id"))
    return frame[columns]


def as_of_instants(prange: PartitionRange, now: datetime) -> dict[str, datetime]:
    """When each day's state holds: the end of the day, or now for the day in progress."""
    return {day.key: min(day.end, now) for day in prange.days}
