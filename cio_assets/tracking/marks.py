"""The shop's tables observed: row count, largest id and latest change time (the high-water marks), what the rows
changed lately hold, and the newest paid order (how fresh the shop is).

The source sensor compares the marks between ticks to see that the shop moved; the assets that work from
changes keep them in their cursors; the digest of what a day was computed from includes them (`computed.py`).

A high-water mark alone misses two kinds of change: an edit stamped in the same second as the newest change
already seen (`ON UPDATE CURRENT_TIMESTAMP` stamps two writes within a second alike), and a late commit (a
transaction stamps its change when its statement runs and commits after a later stamp was seen). Neither moves
a mark. So each concept with a change time also has `LATELY`: a digest of every column of the rows changed
within the look-back window (`Clock.lookback`, CIO_CHANGE_LOOKBACK_SECONDS) before its newest change, read
through the change time's index. Any committed edit within the window changes it, and reading it costs the rows
changed in the window, not the shop. A delete, or an insert committed late under a higher id, changes the row
count.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
from sqlalchemy import Column, Connection, Engine, Select, Table, func, select

from cio_assets.lib.timestamps import Clock, to_source_naive, to_unix_seconds
from cio_assets.mapping.compile import relations_of
from cio_assets.schema.shop import SOURCE_TABLES, is_paid, orders
from cio_assets.tracking.table_times import NO_READING, read_table_times, recall, remember

Marks = dict[str, object]  # "row_count", "max_id", "max_updated_at" (ISO text), LATELY, ...
# The mark of the rows changed lately: "<rows>:<digest>" of every column of the rows whose change time falls in the
# look-back window before the newest change (`changed_lately`).
LATELY = "changed_lately"
# Tables observed at once, each on its own connection.
OBSERVERS = 3


def high_water_marks(table: Table) -> dict[str, Select]:
    """The statements that show a table moved: its row count, its largest id and its latest change time. Each is
    a statement of its own, run at the top level: the maxima then come from their indexes (one statement computing
    all three scanned the whole of cart_items), on a mapped shop each reads only its own column of the concept (a
    count pays no lookup of the change time), and MariaDB may run a concept's EXISTS filter as a semi-join (inside
    a scalar subquery it probed per row: a WooCommerce user count 2.4 s -> 0.8 s)."""
    marks = {"row_count": select(func.count()).select_from(table)}
    if "id" in table.c:
        # The last id by walking the key backwards, not MAX(): on a mapped shop whose concept filters rows (a user
        # with the customer role) MAX() checked every row, the walk stops at the first that qualifies.
        marks["max_id"] = select(table.c.id).order_by(table.c.id.desc()).limit(1)
    for name in ("updated_at", "linked_at", "created_at"):
        if name in table.c:
            marks[f"max_{name}"] = latest(table.c[name])
            break
    return marks


def latest(column: Column) -> Select:
    """SQL: the column's latest value, by walking its index backwards (as the last id: MAX() of a concept that
    filters its rows read every row). On a mapped shop, a change time computed from several tables is the latest
    of the places it is seen (`mapping/compile.py`)."""
    return select(column).where(column.is_not(None)).order_by(column.desc()).limit(1)


def observe_table(conn: Connection, table: Table, clock: Clock) -> Marks:
    """The table's marks (None for the maxima of an empty table), with `LATELY` for a table with a change time."""
    marks: Marks = {}
    for name, statement in high_water_marks(table).items():
        value = conn.execute(statement).scalar_one_or_none()
        marks[name] = value.isoformat() if hasattr(value, "isoformat") else value
    if "updated_at" in table.c and "id" in table.c and marks.get("max_updated_at") is not None:
        marks[LATELY] = changed_lately(conn, table, datetime.fromisoformat(str(marks["max_updated_at"])), clock)
    return marks


def changed_lately(conn: Connection, table: Table, newest: datetime, clock: Clock) -> str:
    """ "<rows>:<digest>" of every column of the rows whose change time is within the look-back window before
    `newest` (the latest change time; before now, when a row is dated ahead of the clock, so that a row dated in
    2099 does not hide today's changes). Read by the change time's index, or on a mapped shop through the places
    its changes are seen (`mapping/compile.py`). The window is measured from the data, not the clock: while nothing
    is written, the digest stays the same however late it is read."""
    now = to_source_naive(clock.now, clock.zone_of(str(table.name)))
    since = min(newest, now) - clock.lookback
    rows = conn.execute(select(table).where(table.c.updated_at >= since).order_by(table.c.id)).all()
    text = orjson.dumps([list(row) for row in rows], default=str, option=orjson.OPT_NON_STR_KEYS)
    return f"{len(rows)}:{hashlib.sha256(text).hexdigest()[:16]}"


def observe_all(
    conn: Connection, clock: Clock, tables: Iterable[Table] = SOURCE_TABLES, kept: Engine | None = None
) -> dict[str, Marks]:
    """Several tables' marks at once, each on a connection of its own: the counts of the large tables are
    the server's work, which a second core shares (a no-change run at 100k customers: 0.45 s -> 0.3 s).
    With `kept` (the state database), a concept none of whose shop tables changed since its marks were last
    read keeps them (`table_times.py`), and the marks read now are kept for the next time, each in a short
    transaction of its own (not in the caller's, where concurrent steps would wait on each other's rows); a
    SQLite state database, which takes one writer at a time, keeps none."""
    return _observe_all(conn, clock, list(tables), kept)[0]


# Per concept, the server's notes on its tables at the reading its marks come from (`TableTimes.of`) and whether
# they vouch for a value read after it; None when there was no reading, or a table had no note.
Noted = dict[str, tuple[object, bool]]


def _observe_all(
    conn: Connection, clock: Clock, tables: list[Table], kept: Engine | None
) -> tuple[dict[str, Marks], Noted]:
    names = {str(table.name): _shop_tables(conn, table) for table in tables}
    reading, kept_marks = NO_READING, {}
    if kept is not None and conn.dialect.name == "mysql":
        with conn.engine.connect() as own:  # before any mark is read: a write after it shows in the next reading
            reading = read_table_times(own, {t for shop in names.values() for t in shop}, clock.lookback)
        kept_marks = recall(kept, reading, names)
    observed = _observe(conn, clock, [table for table in tables if str(table.name) not in kept_marks], kept is not None)
    if kept is not None:
        remember(kept, reading, {name: (names[name], marks) for name, marks in observed.items()})
    marks = {name: kept_marks[name] if name in kept_marks else observed[name] for name in names}
    # Kept marks were read under vouching notes, the very notes seen now.
    noted = {name: (reading.of(shop), name in kept_marks or reading.vouches_for(shop)) for name, shop in names.items()}
    return marks, noted


def _observe(conn: Connection, clock: Clock, tables: list[Table], fresh: bool) -> dict[str, Marks]:
    """The tables' marks read now; `fresh`: each on a connection of its own, so on a snapshot taken after the
    caller's reading of the tables' notes (the caller's own connection may hold an older one)."""
    if not tables:
        return {}
    if (len(tables) < 2 and not fresh) or conn.dialect.name == "sqlite":
        return {str(table.name): observe_table(conn, table, clock) for table in tables}

    def observe(table: Table) -> Marks:
        with conn.engine.connect() as own:
            return observe_table(own, table, clock)

    with ThreadPoolExecutor(OBSERVERS, thread_name_prefix="observe") as pool:
        return dict(zip((str(t.name) for t in tables), pool.map(observe, tables), strict=True))


def _shop_tables(conn: Connection, table: Table) -> frozenset[str]:
    """The shop's own tables a concept reads (the concept's own name on an engine without a mapping)."""
    relations = relations_of(conn.engine)
    return relations.tables_of(str(table.name)) if relations is not None else frozenset([str(table.name).lower()])


# The current run's observations (run id -> table name -> marks, and the notes they were read under), for the
# steps running in this process.
_observed: dict[str, dict[str, Marks]] = {}
_noted: dict[str, Noted] = {}


def observe_tables(
    conn: Connection, clock: Clock, tables: Iterable[Table], run_id: str | None, kept: Engine | None = None
) -> dict[str, Marks]:
    """Each table's marks, observed once per run: hygiene, identity, the snapshot and the event log all ask,
    and a count of a large table costs a fraction of a second each time. Marks seen earlier in the run are
    never newer than the rows a later step reads, so a step that uses them at worst reads again, or computes
    again, on the next run. Without a run id (a direct call), every table is observed now. `kept`: as for
    `observe_all`."""
    tables = list(tables)
    if run_id is None:
        return observe_all(conn, clock, tables, kept)
    if run_id not in _observed:
        _observed.clear()  # keep only the latest run's
        _noted.clear()
        _observed[run_id], _noted[run_id] = {}, {}
    seen = _observed[run_id]
    marks, noted = _observe_all(conn, clock, [table for table in tables if str(table.name) not in seen], kept)
    seen.update(marks)
    _noted[run_id].update(noted)
    return {str(table.name): seen[str(table.name)] for table in tables}


def noted(run_id: str | None) -> Noted:
    """The notes the run's observed marks were read under (`Noted`), per concept; empty without a run id."""
    return dict(_noted.get(run_id, {})) if run_id is not None else {}


# Rows dated after now kept with their times at most (the paid orders here, each tracked timestamp's in the
# cursors): a shop with more reads them again each time.
MOST_AHEAD = 1_000
# The name the paid times are kept under (`table_times.remember`), beside the concepts' marks.
PAID_TIMES = "orders:paid_times"


@dataclass(frozen=True)
class PaidTimes:
    """When the newest paid order at `at` was paid, and when every paid order dated after `at` is (bad rows, or a
    zone mistake's signature): while no write touches the orders, this answers for any later moment which is the
    newest paid order and which are ahead of it. Unix seconds, UTC."""

    at: int
    newest: int | None
    ahead: tuple[int, ...]  # sorted

    def newest_by(self, now: datetime) -> datetime | None:
        """When the newest paid order dated at or before `now` was paid (rows dated later are not evidence of a
        live shop)."""
        due = [self.newest or 0, *(t for t in self.ahead if t <= now.timestamp())]
        return datetime.fromtimestamp(max(due), UTC) if max(due) else None

    def ahead_of(self, now: datetime, within: timedelta) -> tuple[int, datetime | None]:
        """How many paid orders are dated after `now` (up to `within` later), and the latest of them."""
        ahead = [t for t in self.ahead if now.timestamp() < t <= (now + within).timestamp()]
        return len(ahead), datetime.fromtimestamp(max(ahead), UTC) if ahead else None


def paid_times(conn: Connection, zone: ZoneInfo, now: datetime, kept: Engine | None = None) -> PaidTimes:
    """The paid orders' times as of `now` (orders store naive times in `zone`). With `kept` (the state database),
    those kept from an earlier moment while no write has touched the orders' tables since
    (`table_times.py`): a shop without an index on its paid time (WooCommerce's `date_paid_gmt`) then reads none of
    it for a sensor tick or a run with nothing new."""
    if kept is None or conn.dialect.name != "mysql":
        return _read_paid_times(conn, zone, now)
    tables = {PAID_TIMES: _shop_tables(conn, orders)}
    with conn.engine.connect() as own:  # the notes first: a write after them shows in the next reading
        reading = read_table_times(own, tables[PAID_TIMES])
        found = recall(kept, reading, tables).get(PAID_TIMES)
        if found is not None and found["at"] <= now.timestamp():
            return PaidTimes(found["at"], found["newest"], tuple(found["ahead"]))
        paid = _read_paid_times(own, zone, now)
    if len(paid.ahead) <= MOST_AHEAD:  # only a complete list answers for a later moment
        remember(kept, reading, {PAID_TIMES: (tables[PAID_TIMES], dataclasses.asdict(paid))})
    return paid


def _read_paid_times(conn: Connection, zone: ZoneInfo, now: datetime) -> PaidTimes:
    """Two reads: the newest row at or before `now` first, by the paid_at index (MAX() with this bound made MariaDB
    scan every order), then the rows dated after it (at most MOST_AHEAD + 1)."""
    bound = to_source_naive(now, zone)
    newest = conn.execute(
        select(orders.c.paid_at)
        .where(is_paid(orders), orders.c.paid_at <= bound)
        .order_by(orders.c.paid_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    ahead = conn.execute(
        select(orders.c.paid_at)
        .where(is_paid(orders), orders.c.paid_at > bound)
        .order_by(orders.c.paid_at)
        .limit(MOST_AHEAD + 1)
    ).scalars()
    seconds = to_unix_seconds(pd.Series([newest, *ahead], dtype="object"), zone)
    first = None if newest is None else int(seconds.iloc[0])
    return PaidTimes(int(now.timestamp()), first, tuple(int(t) for t in seconds.iloc[1:]))
