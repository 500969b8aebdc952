"""What identity is resolved from: five inputs read from the shop, and the same rows as kept in the state database.

The inputs are customers, paid guest orders (naming no existing customer), carts that need identity (an
anonymous id, or no existing customer), identity links, and subscriptions naming no existing customer; only
rows that pass the hygiene rules (a customer whose id another row carries too is not one: `duplicate_key`).
A customer's `created_at` that fails its value rule is read as unknown, and listed (`bad_created_at`).
Each read takes an optional extra condition, so a full run reads every
row and an incremental run reads only the rows that changed, with the same query.

`cio_identity_inputs` keeps every row resolution used, one row per source row with the keys it connects
by: the customer id it is or names, its normalised e-mail and phone, its anonymous id. An incremental run
looks up the rows connected to a change through those keys and resolves them from there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

import pandas as pd
from sqlalchemy import ColumnElement, Connection, Select, Table, exists, or_, select, true

from cio_assets.hygiene.rules import rejection_reason, row_is_valid, value_rule
from cio_assets.identity.normalize import normalize_email, normalize_phone
from cio_assets.identity.resolve import INVALID_COLUMNS
from cio_assets.lib.reads import read_frame
from cio_assets.lib.timestamps import Clock, to_unix_seconds
from cio_assets.schema.shop import carts, customers, identity_links, is_paid, orders, subscriptions
from cio_assets.schema.state import ID_WIDTH, identity_inputs

# The source table each input comes from, as `cio_identity_inputs.source_table` names it.
CUSTOMERS, GUEST_ORDERS, CARTS, LINKS, SUBSCRIPTIONS = "customers", "orders", "carts", "identity_links", "subscriptions"
INPUT_COLUMNS = [c.name for c in identity_inputs.columns]


@dataclass
class IdentityInputs:
    """The frames `resolve_identity` takes."""

    customers: pd.DataFrame  # id, email, phone, country, created_at (NA when missing or rejected), created_at_raw
    guest_orders: pd.DataFrame  # id, customer_id, email
    links: pd.DataFrame  # anonymous_id, customer_id, linked_at
    carts: pd.DataFrame  # id, customer_id, anonymous_id, email
    orphan_subscriptions: pd.DataFrame  # id, customer_id

    @classmethod
    def read(cls, conn: Connection, clock: Clock, only: dict[str, ColumnElement[bool]] | None = None) -> IdentityInputs:
        """Every input from the shop; with `only`, just the rows of each table that also meet its condition
        (a table missing from `only` is not read at all)."""

        def where(table: Table) -> ColumnElement[bool] | None:
            if only is None:
                return true()
            return only.get(table.name)

        return cls(
            customers=_read(conn, _customers(clock), where(customers), _customer_frame, clock),
            guest_orders=_read(conn, _guest_orders(clock), where(orders), None, clock),
            links=_read(conn, _links(), where(identity_links), _link_frame, clock),
            carts=_read(conn, _carts(clock), where(carts), None, clock),
            orphan_subscriptions=_read(conn, _orphan_subscriptions(clock), where(subscriptions), None, clock),
        )

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, existing_customers: set[int] | None = None) -> IdentityInputs:
        """The inputs as `cio_identity_inputs` keeps them. With `existing_customers` (the customers among
        `rows`), a kept order, cart or subscription whose customer now exists is no longer a guest's."""

        def of(table: str, columns: list[str]) -> pd.DataFrame:
            frame = rows[rows["source_table"] == table]
            if table != LINKS:
                frame = frame.assign(id=frame["source_key"].astype("int64"))
            return frame[columns].reset_index(drop=True)

        def orphan(frame: pd.DataFrame) -> pd.Series:
            named = frame["customer_id"]
            return named.isna() | ~named.isin(existing_customers or set())

        guest_orders = of(GUEST_ORDERS, ["id", "customer_id", "email"])
        carts_ = of(CARTS, ["id", "customer_id", "anonymous_id", "email"])
        subscriptions_ = of(SUBSCRIPTIONS, ["id", "customer_id"])
        if existing_customers is not None:
            guest_orders = guest_orders[orphan(guest_orders)].reset_index(drop=True)
            carts_ = carts_[carts_["anonymous_id"].notna() | orphan(carts_)].reset_index(drop=True)
            subscriptions_ = subscriptions_[orphan(subscriptions_)].reset_index(drop=True)
        return cls(
            customers=_nullable_ints(
                of(CUSTOMERS, ["id", "email", "phone", "country", "created_at", "created_at_raw"])
            ),
            guest_orders=_nullable_ints(guest_orders),
            links=_nullable_ints(of(LINKS, ["anonymous_id", "customer_id", "linked_at"])),
            carts=_nullable_ints(carts_),
            orphan_subscriptions=_nullable_ints(subscriptions_),
        )

    def rows(self) -> pd.DataFrame:
        """One `cio_identity_inputs` row per input row, with its keys."""
        parts = [
            _keyed(CUSTOMERS, self.customers, email=True, phone=True),
            _keyed(GUEST_ORDERS, self.guest_orders, email=True),
            _keyed(CARTS, self.carts, email=True, anonymous=True),
            _keyed(LINKS, self.links, anonymous=True),
            _keyed(SUBSCRIPTIONS, self.orphan_subscriptions),
        ]
        present = [part.reindex(columns=INPUT_COLUMNS).astype(object) for part in parts if not part.empty]
        if not present:
            return pd.DataFrame(columns=INPUT_COLUMNS)
        return pd.concat(present, ignore_index=True)

    def __len__(self) -> int:
        return sum(len(getattr(self, f.name)) for f in fields(self))


def _read(conn, statement: Select, where, shape, clock: Clock) -> pd.DataFrame:
    frame = read_frame(conn, statement.where(where)) if where is not None else read_frame(conn, statement.limit(0))
    return shape(frame, clock) if shape else frame


def _nullable_ints(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer columns that may hold nulls as pandas' nullable Int64, the way the shop's reads give them."""
    for column in ("customer_id", "created_at", "created_at_raw", "linked_at"):
        if column in frame.columns:
            frame[column] = pd.array(frame[column].astype(object).where(frame[column].notna(), None), dtype="Int64")
    return frame


def _customers(clock: Clock) -> Select:
    return select(
        customers.c.id,
        customers.c.email,
        customers.c.phone,
        customers.c.country,
        customers.c.created_at,
        rejection_reason(value_rule(customers, "created_at"), clock).label("created_at_rejection"),
    ).where(row_is_valid(customers, clock))


def bad_created_at(conn: Connection, clock: Clock, where: ColumnElement[bool]) -> pd.DataFrame:
    """The customers (among those meeting `where`) whose `created_at` fails its value rule, as `cio_invalid_values`
    rows: the person is resolved and sent without it (unknown), and the value is listed with its reason."""
    reason = rejection_reason(value_rule(customers, "created_at"), clock)
    frame = read_frame(
        conn,
        select(customers.c.id, customers.c.created_at, reason.label("reason")).where(
            where, row_is_valid(customers, clock), reason.is_not(None)
        ),
    )
    return pd.DataFrame(
        {
            "source_table": CUSTOMERS,
            "source_key": frame["id"].astype("int64").astype(str),
            "column_name": "created_at",
            "raw_value": [None if pd.isna(v) else str(v) for v in frame["created_at"]],
            "reason": frame["reason"],
        },
        columns=INVALID_COLUMNS,
    )


def _customer_frame(frame: pd.DataFrame, clock: Clock) -> pd.DataFrame:
    created = to_unix_seconds(frame["created_at"], clock.zone_of(customers.name))
    frame["created_at_raw"] = created
    frame["created_at"] = created.where(frame["created_at_rejection"].isna())
    return frame.drop(columns="created_at_rejection")


def _without_known_customer(table: Table) -> ColumnElement[bool]:
    """SQL: the row names no customer, or one that does not exist (deleted, or bad data)."""
    return or_(table.c.customer_id.is_(None), ~exists().where(customers.c.id == table.c.customer_id))


def _guest_orders(clock: Clock) -> Select:
    return select(orders.c.id, orders.c.customer_id, orders.c.email).where(
        _without_known_customer(orders), is_paid(orders), row_is_valid(orders, clock)
    )


def _links() -> Select:
    return select(identity_links.c.anonymous_id, identity_links.c.customer_id, identity_links.c.linked_at)


def _link_frame(frame: pd.DataFrame, clock: Clock) -> pd.DataFrame:
    frame["linked_at"] = to_unix_seconds(frame["linked_at"], clock.zone_of(identity_links.name))
    return frame


def _carts(clock: Clock) -> Select:
    return select(carts.c.id, carts.c.customer_id, carts.c.anonymous_id, carts.c.email).where(
        or_(_without_known_customer(carts), carts.c.anonymous_id.is_not(None)),
        row_is_valid(carts, clock),
    )


def _orphan_subscriptions(clock: Clock) -> Select:
    return select(subscriptions.c.id, subscriptions.c.customer_id).where(
        ~exists().where(customers.c.id == subscriptions.c.customer_id),
        row_is_valid(subscriptions, clock),
    )


def link_key(customer_id: object, anonymous_id: object, linked_at: object) -> str:
    """A link's key in `cio_identity_inputs` (links have no id): a digest of what it says."""
    text = "\x1f".join("" if pd.isna(v) else str(v) for v in (customer_id, anonymous_id, linked_at))
    return hashlib.sha1(text.encode()).hexdigest()


def _keyed(table: str, frame: pd.DataFrame, email: bool = False, phone: bool = False, anonymous: bool = False):
    if frame.empty:
        return pd.DataFrame(columns=INPUT_COLUMNS)
    rows = frame.copy()
    rows["source_table"] = table
    if table == LINKS:
        rows["source_key"] = [
            link_key(c, a, t)
            for c, a, t in zip(rows["customer_id"], rows["anonymous_id"], rows["linked_at"], strict=True)
        ]
    else:
        rows["source_key"] = rows["id"].astype("int64").astype(str)
    if table == CUSTOMERS:
        rows["customer_id"] = rows["id"]
    if email:
        rows["email_key"] = [normalize_email(raw).value for raw in rows["email"]]
    if phone:
        rows["phone_key"] = [
            normalize_phone(raw, c).value for raw, c in zip(rows["phone"], rows["country"], strict=True)
        ]
    if anonymous:
        rows["anonymous_key"] = [a if isinstance(a, str) and len(a) <= ID_WIDTH else None for a in rows["anonymous_id"]]
    return rows.drop(columns=[c for c in ("id",) if c in rows.columns]).drop_duplicates(["source_table", "source_key"])
