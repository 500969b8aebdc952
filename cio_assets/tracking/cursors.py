"""Which source rows changed since an asset last read the shop: cursors of high-water marks.

An asset that works from changes keeps a `Cursor` in `cio_cursors`, written in the same transaction as
what it derived: per tracked table, the newest `updated_at` and the largest id it had seen when it started
(marks are read before the rows are, so a row written meanwhile is read again next time, never missed),
the run's clock, and the timestamp floor its rows were judged with. `changed_keys` finds the ids of the rows
to read again, one query per reason (each served by its own index), and `changed` the SQL for them by id:
- `updated_at` after the newest seen, or within the look-back window (`Clock.lookback`,
  CIO_CHANGE_LOOKBACK_SECONDS) of the last run (a transaction that set its `updated_at` before that run started
  but committed after it);
- an id above the largest seen;
- a timestamp that was in the future at the last run and is not any more (hygiene sets such rows aside
  until their time comes), for the columns `TRACKED` names.
A row edited without moving its `updated_at` is not seen; the daily full refresh catches it. A row deleted is
found by the counts (`rows_deleted`): fewer rows than the cursor saw plus those added above its largest id. On a
mapped shop, `updated_at` may be computed from several tables; the mapping then says where its changes show
(`seen_in`), and "after the newest seen" is asked there (`mapping/compile.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from sqlalchemy import Column, ColumnElement, Connection, Engine, Table, false, func, or_, select, true

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
from cio_assets.tracking.marks import MOST_AHEAD, Noted, observe_tables

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
    # Tables no write has touched since this cursor's marks were read (`load`; not saved).
    quiet: frozenset[str] = frozenset()

    @classmethod
    def load(cls, conn: Connection, asset: str, now: Noted | None = None) -> Cursor | None:
        """The asset's cursor; with `now` (the run's reading of the server's notes, `tracking/marks.py`), knowing
        which of its tables no write touched since its marks were read: those whose notes now are the vouching
        notes it kept (`quiet`)."""
        raw = conn.execute(select(cursors.c.value).where(cursors.c.asset == asset)).scalar_one_or_none()
        if raw is None:
            return None
        data = orjson.loads(raw)
        details = data.get("details", {})
        kept = details.get(NOTES, {})
        quiet = {table for table, (notes, _) in (now or {}).items() if notes is not None and kept.get(table) == notes}
        return cls(asset, data["marks"], data["checked_at"], data["floor"], details, frozenset(quiet))

    def save(self, conn: Connection) -> None:
        data = {"marks": self.marks, "checked_at": self.checked_at, "floor": self.floor, "details": self.details}
        value = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
        upsert(conn, cursors, [{"asset": self.asset, "value": value, "updated_at": self.checked_at}])


# The cursor detail that keeps, per table, the server's notes its marks were read under, when they vouch for them.
NOTES = "notes"


def vouching(now: Noted) -> dict[str, object]:
    """What a cursor keeps under NOTES of the run's reading: the notes that vouch for the marks read after them."""
    return {table: notes for table, (notes, vouched) in now.items() if vouched}


# The tables whose marks a cursor keeps.
MARKED: tuple[Table, ...] = (*TRACKED, identity_links)


def read_marks(
    conn: Connection, clock: Clock, run_id: str | None = None, kept: Engine | None = None
) -> dict[str, dict[str, object]]:
    """Per tracked table its newest `updated_at` (ISO text) and largest id; for identity links, the newest
    `linked_at`. Read before the changes are (observed once per run, see `observe_tables`; `kept`, the state
    database, as there)."""
    return cursor_marks(observe_tables(conn, clock, MARKED, run_id, kept))


def cursor_marks(observed: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """What a cursor keeps of the `MARKED` tables' observation (`read_marks`)."""
    marks: dict[str, dict[str, object]] = {
        str(table.name): {
            "updated_at": observed[str(table.name)].get("max_updated_at"),
            "id": observed[str(table.name)].get("max_id"),
            "rows": observed[str(table.name)].get("row_count"),
        }
        for table in TRACKED
    }
    marks[str(identity_links.name)] = {"linked_at": observed[str(identity_links.name)].get("max_linked_at")}
    return marks


def rows_deleted(conn: Connection, cursor: Cursor, marks: dict[str, dict[str, object]]) -> list[str]:
    """The `TRACKED` tables rows were deleted from since `cursor` (`marks`: the cursor marks read now): fewer rows
    now than the cursor counted plus those added since above its largest id (counted by the id's index, so the
    cost is the rows added). A deleted row leaves no change time to find it by: only its count shows it. Tables
    the cursor did not count (an older cursor) are not judged."""
    deleted = []
    for table in TRACKED:
        then, now = cursor.marks.get(str(table.name), {}), marks[str(table.name)]
        if then.get("rows") is None or now.get("rows") is None or now["rows"] == then["rows"]:
            continue
        added = 0
        if then.get("id") is not None and now.get("id") is not None and now["id"] != then["id"]:
            statement = select(func.count()).select_from(table).where(table.c.id > int(then["id"]))  # type: ignore[call-overload]
            added = int(conn.execute(statement).scalar_one())
        if int(now["rows"]) < int(then["rows"]) + added:  # type: ignore[call-overload]
            deleted.append(str(table.name))
    return deleted


# More changed rows than this, and every row is read again: one read of the table is then cheaper than the keys.
MOST_CHANGED_KEYS = 50_000


def changed(
    conn: Connection, table: Table, cursor: Cursor, clock: Clock, ahead: Ahead | None = None
) -> ColumnElement[bool]:
    """SQL: the rows of `table` (one of `TRACKED`) changed since `cursor`, or whose timestamps stopped being in the
    future, by id: found first, one query per reason (`changed_keys`), so that no reason without an index makes
    the read that follows a scan of the table with everything it computes. `ahead`: see `come_due`."""
    keys = changed_keys(conn, table.c.id, cursor, clock, ahead=ahead)
    if keys is None or len(keys) > MOST_CHANGED_KEYS:
        return true()
    return table.c.id.in_(sorted(keys)) if keys else false()


def changed_keys(
    conn: Connection, key: Column, cursor: Cursor, clock: Clock, crossing: bool = True, ahead: Ahead | None = None
) -> set[int] | None:
    """The values of `key` (a column of a `TRACKED` table: its id, or the id of the row it belongs to) over
    the rows changed since `cursor`; None when every row counts (the table was empty then). One query per
    reason a row counts, each served by its own index: an OR of them made MariaDB scan the whole table.
    `crossing`: also the rows whose timestamps stopped being in the future (`come_due`, for the table's id)."""
    table = key.table
    clauses = _changed_clauses(table, cursor, clock)  # type: ignore[arg-type]
    if clauses is None:
        return None
    found: set[int] = set()
    for clause in clauses:
        found.update(int(value) for value in conn.execute(select(key).where(clause)).scalars() if value is not None)
    if crossing:  # ids: only a table's own timestamps are tracked (`TRACKED`), so `key` is its id where any are
        found |= come_due(conn, table, cursor, clock, ahead)  # type: ignore[arg-type]
    return found


# Per TRACKED timestamp ("orders.paid_at"), the rows dated after the run's clock when it looked: [id, ISO time].
Ahead = dict[str, list[list[object]]]
# The cursor detail that keeps them (`come_due`); more rows than MOST_AHEAD, and none are kept.
AHEAD = "ahead"


def come_due(conn: Connection, table: Table, cursor: Cursor, clock: Clock, ahead: Ahead | None = None) -> set[int]:
    """The ids of the rows whose `TRACKED` timestamps were in the future at the cursor's run and are not any more
    (hygiene sets such rows aside until their time comes). A table no write touched since the cursor (`quiet`)
    holds the very rows it saw dated ahead, which the cursor keeps (AHEAD): no read of the shop at all, where a
    timestamp without an index (WooCommerce's paid time) was a scan of every order. Otherwise one read per
    timestamp, of the rows dated after the cursor's run; those still ahead of the clock go into `ahead`, for the
    next cursor to keep."""
    since = _since(table, cursor, clock)
    if since is None:
        return set()  # the table was empty: every row is read as new anyway
    until = to_source_naive(clock.now, clock.zone_of(table.name))
    kept: Ahead = cursor.details.get(AHEAD, {}) if str(table.name) in cursor.quiet else {}  # type: ignore[assignment]
    due: set[int] = set()
    for column in TRACKED[table]:
        name = f"{table.name}.{column}"
        if name in kept:
            rows = [(int(key), datetime.fromisoformat(str(at))) for key, at in kept[name]]  # type: ignore[call-overload]
        else:
            found = conn.execute(select(table.c.id, table.c[column]).where(table.c[column] > since))
            rows = [(int(key), at) for key, at in found if key is not None and at is not None]
        due.update(key for key, at in rows if since < at <= until)
        later = sorted((at, key) for key, at in rows if at > until)
        if ahead is not None and len(later) <= MOST_AHEAD:
            ahead[name] = [[key, at.isoformat()] for at, key in later]
    return due


def _since(table: Table, cursor: Cursor, clock: Clock) -> datetime | None:
    """The cursor's run, as `table` stores its times; None when the table was empty then."""
    mark = cursor.marks.get(str(table.name), {})
    if mark.get("updated_at") is None and mark.get("id") is None:
        return None
    return to_source_naive(datetime.fromtimestamp(cursor.checked_at, UTC), clock.zone_of(table.name))


def _changed_clauses(table: Table, cursor: Cursor, clock: Clock) -> list[ColumnElement[bool]] | None:
    mark = cursor.marks.get(str(table.name), {})
    since = _since(table, cursor, clock)
    if since is None:
        return None  # the table was empty: every row is new
    clauses: list[ColumnElement[bool]] = []
    # A table no write touched since the cursor's marks holds no row changed since: only the clock's reasons remain.
    written = str(table.name) not in cursor.quiet
    if "updated_at" in table.c and written:
        clauses.append(_changed_after(table.c.updated_at, mark.get("updated_at"), since - clock.lookback))
    if mark.get("id") is not None and written:
        clauses.append(table.c.id > int(mark["id"]))  # type: ignore[call-overload]
    return clauses


def _changed_after(column: Column, newest_seen: object, window: datetime) -> ColumnElement[bool]:
    """SQL: `column` after the newest value seen, or within the look-back window: one lower bound, the earlier of
    the two (a change time computed from several tables is then looked up once, `mapping/compile.py`)."""
    if newest_seen is None:
        return column >= window
    newest = datetime.fromisoformat(str(newest_seen))
    return column > newest if newest < window else column >= window


def changed_links(cursor: Cursor, clock: Clock) -> ColumnElement[bool]:
    """SQL: identity links made after the newest the cursor saw, within the look-back window of its run, or without a
    time (links have neither an id nor an `updated_at`)."""
    since = to_source_naive(datetime.fromtimestamp(cursor.checked_at, UTC), clock.zone_of(identity_links.name))
    linked_at = identity_links.c.linked_at
    newest = cursor.marks.get(str(identity_links.name), {}).get("linked_at")
    clauses = [linked_at >= since - clock.lookback, linked_at.is_(None)]
    if newest is not None:
        clauses.append(linked_at > datetime.fromisoformat(str(newest)))
    return or_(*clauses)


# The cursor identity keeps (`identity/refresh.py`): its details say when the identity tables last changed.
IDENTITY_CURSOR = "identity_map"


# The identity cursor's detail that keeps, per TRACKED table, when identity last found rows deleted from it (Unix
# seconds): what is derived from those rows (a person's order count) must be computed again (`deleted_since`).
DELETED = "deleted_at"


def deleted_since(conn: Connection, tables: Iterable[Table], since: int) -> bool:
    """Whether identity found rows deleted from one of `tables` after `since` (Unix seconds)."""
    cursor = Cursor.load(conn, IDENTITY_CURSOR)
    found: dict[str, int] = cursor.details.get(DELETED, {}) if cursor is not None else {}  # type: ignore[assignment]
    return any(found.get(str(table.name), 0) > since for table in tables)


def identity_changed_at(conn: Connection) -> int | None:
    """When identity last changed what its tables hold (Unix seconds), or None before its first run."""
    cursor = Cursor.load(conn, IDENTITY_CURSOR)
    return None if cursor is None else int(cursor.details.get("changed_at", 0))  # type: ignore[call-overload]
