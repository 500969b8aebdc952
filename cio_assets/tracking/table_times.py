"""When the server last changed each of the shop's tables, as it notes it itself: one cheap read that shows a
concept's tables have not changed since its marks were read, so that a mark the platform does not index (a
WooCommerce user's role, a Magento quote line's change time) is not computed again to find that nothing moved.

The note is `information_schema.TABLES.UPDATE_TIME`, which MariaDB and MySQL keep in memory for InnoDB tables
(MyISAM's is the data file's time):
- it is NULL after a restart, after DDL, or once the server evicts the table from its cache, until the next
  write: a table without one vouches for nothing, and its concept's marks are read as they always were;
- MariaDB stamps the *start* of the last transaction that changed the table, to the second, so a transaction
  that started in that same second and commits later leaves the note as it was. A reading therefore vouches
  for a table only when no transaction still open then started at or before its note
  (`information_schema.INNODB_TRX`, which needs the PROCESS privilege; without it, only once the note is older
  than the late-commit window the cursors look back over, CIO_CHANGE_LOOKBACK_SECONDS), and the note is a second
  it has left;
- MySQL 8 serves the column from a cache kept a day unless `information_schema_stats_expiry` is 0, which the
  reading sets for its session.
A kept value is used again only while every one of its tables shows the very note it was read under
(`tracking/marks.py`); any write in between changes a note, and the value is read again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, bindparam, select, text
from sqlalchemy.exc import DBAPIError

from cio_assets.lib.writes import upsert
from cio_assets.schema.state import source_marks

# How long a transaction may stay open between stamping a change and committing it, when the server does not say
# which are open and the caller does not say either (`Clock.lookback`, CIO_CHANGE_LOOKBACK_SECONDS, whose default
# this is).
SETTLE = timedelta(minutes=10)

_NOTES = text(
    "SELECT LOWER(TABLE_NAME), UNIX_TIMESTAMP(UPDATE_TIME) FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN :names"
).bindparams(bindparam("names", expanding=True))
# When the oldest open transaction started: INNODB_TRX shows it in the server's own zone, whatever the session's.
_OLDEST_OPEN = text(
    "SELECT UNIX_TIMESTAMP(CONVERT_TZ(MIN(trx_started), 'SYSTEM', '+00:00')), COUNT(*), "
    "UNIX_TIMESTAMP(UTC_TIMESTAMP()) FROM information_schema.INNODB_TRX"
)


@dataclass(frozen=True)
class TableTimes:
    """One reading: each table's note (Unix seconds; None when the server has none) and the tables whose note
    no transaction open at the reading can still repeat."""

    database: str  # the schema the tables are in: a note vouches only for that database's tables
    notes: dict[str, int | None]
    settled: frozenset[str]
    read_at: int | None  # the server's clock at the reading (Unix seconds); None: no reading (not MySQL)
    sees_open: bool = False  # whether the open transactions were seen (the PROCESS privilege)

    def of(self, tables: Iterable[str]) -> dict[str, object] | None:
        """The notes of `tables` (lower case) with the database's name, or None when one of them has none."""
        notes = {table: self.notes.get(table) for table in tables}
        if self.read_at is None or any(note is None for note in notes.values()):
            return None
        return {"database": self.database, "tables": notes}

    def vouches_for(self, tables: Iterable[str]) -> bool:
        """Whether a value read after this reading may be kept under these tables' notes."""
        tables = list(tables)
        return self.of(tables) is not None and all(table in self.settled for table in tables)


NO_READING = TableTimes("", {}, frozenset(), None)


def read_table_times(conn: Connection, tables: Iterable[str], settle: timedelta = SETTLE) -> TableTimes:
    """The notes of `tables` (the shop's own names) in the connection's database. Anything but MySQL or MariaDB,
    or a server that refuses the read, gives no reading: every mark is then read as it always was. `settle`: how
    long a transaction may stay open, for when the open ones cannot be seen."""
    names = sorted({table.lower() for table in tables})
    if conn.dialect.name != "mysql" or not names:
        return NO_READING
    if not conn.dialect.is_mariadb:  # type: ignore[attr-defined]
        try:
            conn.execute(text("SET SESSION information_schema_stats_expiry = 0"))
        except DBAPIError:  # MySQL before 8.0 has no such cache
            conn.rollback()
    database = str(conn.execute(text("SELECT DATABASE()")).scalar_one())
    notes: dict[str, int | None] = dict.fromkeys(names)
    for name, note in conn.execute(_NOTES, {"names": names}):
        notes[name] = None if note is None else int(note)
    try:
        oldest, open_count, now = conn.execute(_OLDEST_OPEN).one()
    except DBAPIError:  # no PROCESS privilege: the open transactions are not known
        conn.rollback()
        now = int(conn.execute(text("SELECT UNIX_TIMESTAMP(UTC_TIMESTAMP())")).scalar_one())
        oldest, open_count = None, None
    settled = frozenset(
        name
        for name, note in notes.items()
        if note is not None and _settled(note, int(now), oldest, open_count, settle)
    )
    return TableTimes(database, notes, settled, int(now), sees_open=open_count is not None)


def _settled(note: int, now: int, oldest_open: object, open_count: int | None, settle: timedelta = SETTLE) -> bool:
    """No write still to commit can leave `note` as it is: the server's clock has left that second, and every
    transaction open now started after it (or, when they cannot be seen, the note is older than `settle`)."""
    if note >= now:
        return False
    if open_count is None:
        return note < now - settle.total_seconds()
    # One second of slack: the two clocks are read a moment apart.
    return not open_count or (oldest_open is not None and int(oldest_open) > note + 1)  # type: ignore[call-overload]


def recall(state: Engine, reading: TableTimes, tables: dict[str, frozenset[str]]) -> dict[str, Any]:
    """The values kept under each name of `tables` (a concept's marks, a figure of it) whose shop tables all show
    now the very notes the value was read under."""
    m = source_marks.c
    with state.connect() as conn:
        rows = conn.execute(select(m.concept, m.notes, m.marks).where(m.concept.in_(list(tables)))).all()
    kept = {}
    for name, notes, value in rows:
        now = reading.of(tables[name])
        if now is not None and orjson.loads(notes) == now:
            kept[name] = orjson.loads(value)
    return kept


def remember(state: Engine, reading: TableTimes, values: dict[str, tuple[frozenset[str], Any]]) -> None:
    """Keep each value (name -> its shop tables and the value, read after `reading`) whose tables' notes vouch
    for it, in a short transaction of its own (not the caller's, where steps running at once would wait on each
    other's rows). A SQLite state database, which takes one writer at a time, keeps none."""
    rows = [
        {
            "concept": name,
            "notes": orjson.dumps(reading.of(tables), option=orjson.OPT_SORT_KEYS).decode(),
            "marks": orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode(),
            "read_at": reading.read_at,
        }
        for name, (tables, value) in sorted(values.items())
        if reading.vouches_for(tables)
    ]
    if rows and state.dialect.name != "sqlite":
        with state.begin() as conn:
            upsert(conn, source_marks, rows)
