"""Binlog change capture (`CIO_CHANGE_CAPTURE=binlog`): the shop's row changes as the server logs them.

Polling finds a change by a change time or a count (`marks.py`); a row edited in place in a table without a change
time (an order line's quantity, a usermeta row a plugin writes) shows in neither, and a deleted row leaves nothing
to find its person by. With row-based binary logging, every committed insert, update and delete is in the binlog
with its row's values, before and after. The source sensor reads it from the position it saved, non-blocking, up to
the end (`capture`), and turns each row into the keys it changes through the source mapping (`key_rules`):

- a row of a concept's base table gives the concept's columns the mapping reads as plain columns of it: its id,
  and the keys that lead to a person (`customer_id`, `email`, `order_id`, `cart_id`);
- a row of a joined, looked-up or `seen_in` table gives the key its ON or match clause equates with one of those
  (a WooCommerce usermeta row's `user_id` is its customer's id; a Magento quote line's `quote_id` its cart's id).

The keys go to the state table `cio_captured_changes`; the runs turn them into people (`captured_people`): the
snapshot computes their latest day again, identity reads their customers again. A row whose table the mapping reads
but no rule maps (a product's SKU) still makes its concept count as changed, for the sensor to launch a run.

Each tick reads at most `MOST_ROWS` rows and saves the position of the last whole transaction read, so the next tick
starts at a transaction's start, where the server logs the table maps a row event needs. A position the server has
purged (`PositionPurged`) cannot be read from: the sensor says so, starts again at the server's current position and
asks for one full refresh. The user needs `REPLICATION SLAVE` and `REPLICATION CLIENT` (MariaDB: `BINLOG MONITOR`);
`binlog_format=ROW` and `binlog_row_image=FULL` give the rows and their values (`readiness`, which `doctor` shows).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from sqlalchemy import URL, Connection, Engine, bindparam, delete, func, insert, select, text

from cio_assets.lib.writes import upsert
from cio_assets.mapping.spec import ConceptSpec, MappingSpec
from cio_assets.schema.state import captured_changes, cursors

# The key name a concept's deleted rows are noted under (its value: how many), beside the keys of those rows.
DELETES = "deleted"
# Rows read in one tick at most: the rest waits for the next tick, which starts where this one stopped.
MOST_ROWS = 200_000
# The canonical columns that lead to a person, and the concept's own id.
KEYS = ("id", "customer_id", "email", "order_id", "cart_id", "anonymous_id")

_PLAIN = re.compile(r"^\s*`?(\w+)`?\.`?(\w+)`?\s*$")
_EQUALS = re.compile(r"`?(\w+)`?\.`?(\w+)`?\s*=\s*`?(\w+)`?\.`?(\w+)`?")
_JOIN = re.compile(r"JOIN\s+`?(\w+)`?\s+(?:AS\s+)?`?(\w+)`?\s+ON\s+(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class KeyRule:
    """A value of `column` in a row of a shop table is the value of the concept's canonical `key`."""

    concept: str
    column: str  # the shop table's column (lower case)
    key: str  # the concept's canonical column (one of KEYS)
    null_if: tuple[object, ...] = ()  # values that mean none (WooCommerce's guest customer_id 0)


def key_rules(mapping: MappingSpec) -> dict[str, list[KeyRule]]:
    """Per shop table (lower case), the rules that turn its rows into concept keys."""
    rules: dict[str, list[KeyRule]] = {}
    for name, spec in mapping.concepts.items():
        plain = _plain_keys(spec)  # base column -> (canonical key, null_if)
        for column, (key, null_if) in plain.items():
            rules.setdefault(spec.table.lower(), []).append(KeyRule(name, column, key, null_if))
        related = [_join_parts(join) for join in spec.joins]
        related += [(lookup.table, lookup.alias, lookup.match) for lookup in spec.lookups.values()]
        for table, alias, condition in (part for part in related if part is not None):
            for column, key, null_if in _equated(condition, alias, spec.alias, plain):
                rules.setdefault(table.lower(), []).append(KeyRule(name, column, key, null_if))
        for column_spec in spec.columns.values():
            for seen in column_spec.seen_in:
                own = _PLAIN.match(seen.key)
                if own and own.group(1) == seen.alias:  # the place's own column is the concept's id
                    rules.setdefault(seen.table.lower(), []).append(KeyRule(name, own.group(2).lower(), "id"))
    return {table: list(dict.fromkeys(found)) for table, found in rules.items()}


def _plain_keys(spec: ConceptSpec) -> dict[str, tuple[str, tuple[object, ...]]]:
    found = {}
    for key in KEYS:
        column = spec.columns.get(key)
        match = _PLAIN.match(column.sql) if column is not None else None
        if column is not None and match and match.group(1) == spec.alias:
            found[match.group(2).lower()] = (key, column.null_if)
    return found


def _join_parts(join: str) -> tuple[str, str, str] | None:
    match = _JOIN.search(join)
    return (match.group(1), match.group(2), match.group(3)) if match else None


def _equated(
    condition: str, alias: str, base: str, plain: dict[str, tuple[str, tuple[object, ...]]]
) -> Iterable[tuple[str, str, tuple[object, ...]]]:
    """(the related table's column, the canonical key, null_if) for each `related.col = base.col` in `condition`
    whose base column the concept reads as a key."""
    for a_alias, a_col, b_alias, b_col in _EQUALS.findall(condition):
        for (mine, column), (theirs, other) in (
            ((a_alias, a_col), (b_alias, b_col)),
            ((b_alias, b_col), (a_alias, a_col)),
        ):
            if mine == alias and theirs == base and other.lower() in plain:
                key, null_if = plain[other.lower()]
                yield column.lower(), key, null_if


# ---------------------------------------------------------------------------------------------------------
# Reading the binlog
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where the binlog was read up to: the file and the offset of the next transaction."""

    file: str
    pos: int

    def shown(self) -> str:
        return f"{self.file}:{self.pos}"


class PositionPurged(RuntimeError):
    """The saved position is no longer on the server (its binlog was purged, or the server was replaced)."""


class BinlogUnavailable(RuntimeError):
    """The server keeps no binlog the pipeline can read, or the user may not read it: says which and how to fix."""


@dataclass
class Captured:
    """What one read of the binlog found."""

    position: Position  # where the next read starts
    keys: set[tuple[str, str, str]] = field(default_factory=set)  # (concept, canonical key, value as text)
    concepts: set[str] = field(default_factory=set)  # concepts with a row changed, mapped to keys or not
    rows: int = 0
    deletes: int = 0
    more: bool = False  # stopped at MOST_ROWS: the rest is read by the next tick


def server_position(conn: Connection) -> Position:
    """The server's current binlog position (where a new reader starts)."""
    row = conn.execute(text("SHOW MASTER STATUS")).first()
    if row is None:
        raise BinlogUnavailable(
            "the server keeps no binary log (log_bin is OFF): start it with --log-bin and --binlog-format=ROW, or "
            "set CIO_CHANGE_CAPTURE=poll"
        )
    return Position(str(row[0]), int(row[1]))


def readiness(conn: Connection) -> list[str]:
    """What stops binlog capture on this server for this user: each problem with its fix (none: ready)."""
    problems = []
    values = dict(
        conn.execute(
            text(
                "SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES "
                "WHERE VARIABLE_NAME IN ('LOG_BIN', 'BINLOG_FORMAT', 'BINLOG_ROW_IMAGE')"
            )
        ).all()
    )
    if str(values.get("log_bin", "OFF")).upper() != "ON":
        problems.append("log_bin is OFF: start the server with --log-bin (and --binlog-format=ROW)")
    if str(values.get("binlog_format", "")).upper() != "ROW":
        problems.append(f"binlog_format is {values.get('binlog_format')}: set it to ROW (rows, not statements)")
    if str(values.get("binlog_row_image", "FULL")).upper() != "FULL":
        problems.append(
            f"binlog_row_image is {values.get('binlog_row_image')}: set it to FULL (a deleted row's values find "
            "its person)"
        )
    grants = " ".join(str(row[0]) for row in conn.execute(text("SHOW GRANTS")).all()).upper()
    needed = [("REPLICATION SLAVE", "REPLICATION SLAVE"), ("REPLICATION CLIENT", "REPLICATION CLIENT")]
    for privilege, shown in needed:
        # MariaDB 10.5 renamed REPLICATION CLIENT to BINLOG MONITOR and shows REPLICATION SLAVE as REPLICATION REPLICA.
        aliases = {
            privilege,
            "ALL PRIVILEGES",
            "BINLOG MONITOR" if shown == "REPLICATION CLIENT" else "REPLICATION REPLICA",
        }
        if not any(f"{alias}" in grants for alias in aliases):
            problems.append(f"the user lacks {shown}: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO it")
    return problems


def replica_id(database: str) -> int:
    """The server id the reader presents: fixed per shop database, and far from the ids real replicas use."""
    return 1_000_000_000 + zlib.crc32(f"cio-assets:{database}".encode()) % 1_000_000_000


def capture(engine: Engine, rules: dict[str, list[KeyRule]], tables: set[str], since: Position) -> Captured:
    """The keys changed by the transactions committed from `since` to the end of the binlog (at most MOST_ROWS
    rows), in the engine's database, on `tables` (lower case: the tables the mapping reads)."""
    from pymysql.err import OperationalError
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.event import XidEvent
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    url = engine.url
    database = str(url.database)
    columns = _Columns(engine, database)
    stream = BinLogStreamReader(
        connection_settings=_connection_settings(url),
        server_id=replica_id(database),
        blocking=False,
        resume_stream=True,
        log_file=since.file,
        log_pos=since.pos,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent],
        only_schemas=[database],
        # Not the library's MariaDB mode, which asks for the binlog by GTID and without a position reads every
        # file from its start: the plain dump from a file and offset works on MariaDB as on MySQL.
        is_mariadb=False,
    )
    found = Captured(since)
    pending: Captured = Captured(since)
    try:
        for event in stream:
            if isinstance(event, XidEvent):  # a transaction committed: what it changed counts, and where it ends
                found.keys |= pending.keys
                found.concepts |= pending.concepts
                found.rows += pending.rows
                found.deletes += pending.deletes
                found.position = Position(stream.log_file, stream.log_pos)
                pending = Captured(found.position)
                if found.rows >= MOST_ROWS:
                    found.more = True
                    break
                continue
            table = str(event.table).lower()
            if table not in tables:
                continue
            for row in event.rows:
                images = [row["before_values"], row["after_values"]] if "before_values" in row else [row["values"]]
                for values in images:
                    _keys_of(columns.named(table, values), rules.get(table, []), pending)
                pending.concepts.update(rule.concept for rule in rules.get(table, ()))
                pending.concepts.add(f"table:{table}")
                pending.rows += 1
                if isinstance(event, DeleteRowsEvent):
                    pending.deletes += 1
                    bases = {rule.concept for rule in rules.get(table, ()) if rule.key == "id"}
                    pending.keys.update((concept, DELETES, "1") for concept in bases)
    except OperationalError as error:
        if error.args and error.args[0] == 1236:  # ER_MASTER_FATAL_ERROR_READING_BINLOG: the file is gone
            raise PositionPurged(
                f"binlog position {since.shown()} is no longer on the server: {error.args[1]}"
            ) from error
        raise
    finally:
        stream.close()
    return found


def _keys_of(values: dict[str, object], rules: list[KeyRule], into: Captured) -> None:
    for rule in rules:
        value = values.get(rule.column)
        if value is None or value in rule.null_if or value == "":
            continue
        into.keys.add((rule.concept, rule.key, value.decode() if isinstance(value, bytes) else str(value)))


def _connection_settings(url: URL) -> dict[str, object]:
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "",
        "password": url.password or "",
    }


class _Columns:
    """Column names by position, for a server that logs rows without them (binlog_row_metadata MINIMAL)."""

    def __init__(self, engine: Engine, database: str) -> None:
        self.engine, self.database = engine, database
        self._names: dict[str, list[str]] = {}

    def named(self, table: str, values: dict[str, object]) -> dict[str, object]:
        if not any(str(name).startswith("UNKNOWN_COL") for name in values):
            return {str(name).lower(): value for name, value in values.items()}
        if table not in self._names:
            with self.engine.connect() as conn:
                self._names[table] = [
                    str(name).lower()
                    for name in conn.execute(
                        text(
                            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db "
                            "AND LOWER(TABLE_NAME) = :table ORDER BY ORDINAL_POSITION"
                        ),
                        {"db": self.database, "table": table},
                    ).scalars()
                ]
        names = self._names[table]
        return {
            names[int(str(name).removeprefix("UNKNOWN_COL"))]
            if str(name).startswith("UNKNOWN_COL")
            else str(name).lower(): value
            for name, value in values.items()
            if not str(name).startswith("UNKNOWN_COL") or int(str(name).removeprefix("UNKNOWN_COL")) < len(names)
        }


# ---------------------------------------------------------------------------------------------------------
# The captured keys, kept for the runs
# ---------------------------------------------------------------------------------------------------------


# The runs' steps that read the captured keys, each keeping how far it has read (`read_through`): once both have,
# the keys are dropped (`release`).
READERS = ("identity_map", "attribute_snapshot")


def keep(state: Engine, keys: set[tuple[str, str, str]], at: int) -> None:
    """Add captured keys to `cio_captured_changes`, for the runs to read."""
    if keys:
        rows = [{"concept": c, "key_name": k, "key_value": v[:255], "captured_at": at} for c, k, v in sorted(keys)]
        with state.begin() as conn:
            conn.execute(insert(captured_changes), rows)


def newest_captured(conn: Connection) -> int:
    """The sequence number of the newest captured key (0: none): part of what a day was computed from."""
    return int(conn.execute(select(func.coalesce(func.max(captured_changes.c.seq), 0))).scalar_one())


def captured_since(conn: Connection, after: int) -> tuple[dict[str, dict[str, set[str]]], int]:
    """The keys captured after sequence number `after`, per concept and key name, and the newest number."""
    c = captured_changes.c
    found: dict[str, dict[str, set[str]]] = {}
    newest = after
    for seq, concept, key, value in conn.execute(
        select(c.seq, c.concept, c.key_name, c.key_value).where(c.seq > after).order_by(c.seq)
    ):
        found.setdefault(concept, {}).setdefault(key, set()).add(value)
        newest = max(newest, int(seq))
    return found, newest


def read_through(conn: Connection, reader: str) -> int:
    """How far `reader` (one of READERS) has read the captured keys: the sequence number of the last it read."""
    raw = conn.execute(select(cursors.c.value).where(cursors.c.asset == f"captured:{reader}")).scalar_one_or_none()
    return int(orjson.loads(raw)["seq"]) if raw else 0


def save_through(conn: Connection, reader: str, seq: int, at: int) -> None:
    """Note that `reader` has read the captured keys up to `seq` (in the transaction that used them)."""
    upsert(
        conn, cursors, [{"asset": f"captured:{reader}", "value": orjson.dumps({"seq": seq}).decode(), "updated_at": at}]
    )


def release(conn: Connection) -> None:
    """Drop the captured keys every reader has read."""
    seq = min(read_through(conn, reader) for reader in READERS)
    conn.execute(delete(captured_changes).where(captured_changes.c.seq <= bindparam("seq")), {"seq": seq})
