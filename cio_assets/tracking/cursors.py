"""Which source rows changed since an asset last read the shop: cursors of high-water marks.

An asset that works from changes keeps a `Cursor` in `cio_cursors`, written in the same transaction as
what it derived: per tracked table, the newest `updated_at` and the largest id it had seen when it started
(marks are read before the rows are, so a row written meanwhile is read again next time, never missed),
the run's clock, and the timestamp floor its rows were judged with. `changed_keys` finds the ids of the rows
to read again, one query per reason (each served by its own index), and `changed` the SQL for them by id:
- `updated_at` after the newest seen, or within `LOOKBACK` of the last run (a transaction that set its
  `updated_at` before that run started but committed after it);
- an id above the largest seen;
- a timestamp that was in the future at the last run and is not any more (hygiene sets such rows aside
  until their time comes), for the columns `TRACKED` names.
A row edited without moving its `updated_at` is not seen; the daily full refresh catches it. On a mapped shop,
`updated_at` may be computed from several tables; the mapping then says where its changes show (`seen_in`), and
"after the newest seen" is asked there (`mapping/compile.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import Column, ColumnElement, Connection, Table, and_, false, or_, select, true

from cio_assets.lib.timestamps import Clock, to_source_naive
from cio_assets.lib.writes import upsert
from cio_assets.schema.shop import (
    cart_items,
    carts,
    customers,
    identity_links,
    order_items,
    orders,
    refunds,
    subscriptions,
)
from cio_assets.schema.state import cursors
from cio_assets.tracking.marks import observe_tables

LOOKBACK = timedelta(minutes=10)
# Per tracked table, the timestamps whose rows turn valid when the clock passes them (indexed in the
# reference schema; customers' created_at is not, and identity finds those among the inputs it keeps).
TRACKED: dict[Table, tuple[str, ...]] = {
    customers: (),
    orders: ("paid_at",),
    order_items: (),
    carts: ("updated_at", "checkout_started_at"),
    cart_items: (),
    refunds: ("created_at",),
    subscriptions: ("started_at", "canceled_at"),
}


@dataclass(frozen=True)
class Cursor:
    """Where an asset's last successful run stopped reading the shop."""

    asset: str
    marks: dict[str, dict[str, object]]  # table -> {"updated_at": ISO text or None, "id": int or None}
    checked_at: int  # Unix seconds: the `now` of that run's hygiene bounds
    floor: int  # Unix seconds: the timestamp floor its rows were judged with
    details: dict[str, object] = field(default_factory=dict)  # what else the asset keeps with it

    @classmethod
    def load(cls, conn: Connection, asset: str) -> Cursor | None:
        raw = conn.execute(select(cursors.c.value).where(cursors.c.asset == asset)).scalar_one_or_none()
        if raw is None:
            return None
        data = orjson.loads(raw)
        return cls(asset, data["marks"], data["checked_at"], data["floor"], data.get("details", {}))

    def save(self, conn: Connection) -> None:
        data = {"marks": self.marks, "checked_at": self.checked_at, "floor": self.floor, "details": self.details}
        value = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
        upsert(conn, cursors, [{"asset": self.asset, "value": value, "updated_at": self.checked_at}])


# The tables whose marks a cursor keeps.
MARKED: tuple[Table, ...] = (*TRACKED, identity_links)


def read_marks(conn: Connection, run_id: str | None = None) -> dict[str, dict[str, object]]:
    """Per tracked table its newest `updated_at` (ISO text) and largest id; for identity links, the newest
    `linked_at`. Read before the changes are (observed once per run, see `observe_tables`)."""
    return cursor_marks(observe_tables(conn, MARKED, run_id))


def cursor_marks(observed: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """What a cursor keeps of the `MARKED` tables' observation (`read_marks`)."""
    marks: dict[str, dict[str, object]] = {
        str(table.name): {
            "updated_at": observed[str(table.name)].get("max_updated_at"),
            "id": observed[str(table.name)].get("max_id"),
        }
        for table in TRACKED
    }
    marks[str(identity_links.name)] = {"linked_at": observed[str(identity_links.name)].get("max_linked_at")}
    return marks


# More changed rows than this, and every row is read again: one read of the table is then cheaper than the keys.
MOST_CHANGED_KEYS = 50_000


def changed(conn: Connection, table: Table, cursor: Cursor, clock: Clock) -> ColumnElement[bool]:
    """SQL: the rows of `table` (one of `TRACKED`) changed since `cursor`, or whose timestamps stopped being in the
    future, by id: found first, one query per reason (`changed_keys`), so that no reason without an index makes
    the read that follows a scan of the table with everything it computes."""
    keys = changed_keys(conn, table.c.id, cursor, clock)
    if keys is None or len(keys) > MOST_CHANGED_KEYS:
        return true()
    return table.c.id.in_(sorted(keys)) if keys else false()


def changed_keys(conn: Connection, key: Column, cursor: Cursor, clock: Clock, crossing: bool = True) -> set[int] | None:
    """The values of `key` (a column of a `TRACKED` table: its id, or the id of the row it belongs to) over
    the rows changed since `cursor`; None when every row counts (the table was empty then). One query per
    reason a row counts, each served by its own index: an OR of them made MariaDB scan the whole table."""
    table = key.table
    clauses = _changed_clauses(table, cursor, clock, crossing)  # type: ignore[arg-type]
    if clauses is None:
        return None
    found: set[int] = set()
    for clause in clauses:
        found.update(int(value) for value in conn.execute(select(key).where(clause)).scalars() if value is not None)
    return found


def _changed_clauses(table: Table, cursor: Cursor, clock: Clock, crossing: bool) -> list[ColumnElement[bool]] | None:
    mark = cursor.marks.get(str(table.name), {})
    if mark.get("updated_at") is None and mark.get("id") is None:
        return None  # the table was empty: every row is new
    zone = clock.zone_of(table.name)
    since = to_source_naive(datetime.fromtimestamp(cursor.checked_at, UTC), zone)
    until = to_source_naive(clock.now, zone)
    clauses: list[ColumnElement[bool]] = []
    if "updated_at" in table.c:
        clauses.append(_changed_after(table.c.updated_at, mark.get("updated_at"), since - LOOKBACK))
    if mark.get("id") is not None:
        clauses.append(table.c.id > int(mark["id"]))  # type: ignore[call-overload]
    if crossing:
        clauses.extend(and_(table.c[column] > since, table.c[column] <= until) for column in TRACKED[table])
    return clauses


def _changed_after(column: Column, newest_seen: object, window: datetime) -> ColumnElement[bool]:
    """SQL: `column` after the newest value seen, or within the look-back window: one lower bound, the earlier of
    the two (a change time computed from several tables is then looked up once, `mapping/compile.py`)."""
    if newest_seen is None:
        return column >= window
    newest = datetime.fromisoformat(str(newest_seen))
    return column > newest if newest < window else column >= window


def changed_links(cursor: Cursor, clock: Clock) -> ColumnElement[bool]:
    """SQL: identity links made after the newest the cursor saw, within `LOOKBACK` of its run, or without a
    time (links have neither an id nor an `updated_at`)."""
    since = to_source_naive(datetime.fromtimestamp(cursor.checked_at, UTC), clock.zone_of(identity_links.name))
    linked_at = identity_links.c.linked_at
    newest = cursor.marks.get(str(identity_links.name), {}).get("linked_at")
    clauses = [linked_at >= since - LOOKBACK, linked_at.is_(None)]
    if newest is not None:
        clauses.append(linked_at > datetime.fromisoformat(str(newest)))
    return or_(*clauses)


# The cursor identity keeps (`identity/refresh.py`): its details say when the identity tables last changed.
IDENTITY_CURSOR = "identity_map"


def identity_changed_at(conn: Connection) -> int | None:
    """When identity last changed what its tables hold (Unix seconds), or None before its first run."""
    cursor = Cursor.load(conn, IDENTITY_CURSOR)
    return None if cursor is None else int(cursor.details.get("changed_at", 0))  # type: ignore[call-overload]
