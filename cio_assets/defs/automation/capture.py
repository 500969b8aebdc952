"""The source sensor's binlog capture (`CIO_CHANGE_CAPTURE=binlog`): one read of the binlog per tick.

`tracking/binlog.py` reads the binlog and turns rows into keys; here a tick reads from the position its cursor
saved, keeps the keys in the state database for the runs, and says which concepts changed. The first tick (no
position yet) starts at the server's current position: the marks launched the first run. When the saved position
is gone from the server (purged, or a new server), the tick says so, starts again at the current position and asks
for one full refresh, which catches whatever was missed; when the binlog cannot be read at all (no binlog, no
privilege, the server down), the tick warns, keeps its position and relies on the marks, as with polling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pymysql.err import MySQLError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from cio_assets.defs.resources import SourceDatabase
from cio_assets.tracking.binlog import (
    BinlogUnavailable,
    Position,
    PositionPurged,
    capture,
    keep,
    key_rules,
    server_position,
)


@dataclass(frozen=True)
class BinlogTick:
    """What one tick's read of the binlog found."""

    position: dict[str, object] | None  # where the next tick reads from ({"file", "pos"}); None: not started
    changed: list[str] = field(default_factory=list)  # concepts with a row changed (sorted)
    rows: int = 0
    deletes: int = 0
    purged: str | None = None  # why one full refresh is due (the saved position was gone)


def read_binlog(
    source: SourceDatabase, state: Engine | None, saved: dict[str, object] | None, at: int, warn: Callable[[str], None]
) -> BinlogTick:
    """Read the binlog from `saved` and keep what changed in `state` (Unix seconds `at`); see the module docstring."""
    if state is None:  # the keys could not be kept: read them next tick
        return BinlogTick(saved)
    engine = source.engine
    try:
        if saved is None:
            with engine.connect() as conn:
                return BinlogTick(_shown(server_position(conn)))
        tables = set(source.relations.all_tables())
        found = capture(engine, key_rules(source.mapping_spec), tables, Position(str(saved["file"]), int(saved["pos"])))  # type: ignore[call-overload]
    except PositionPurged as error:
        with engine.connect() as conn:
            restart = server_position(conn)
        why = f"{error}; reading again from {restart.shown()}, and one full refresh catches what was missed"
        warn(why)
        return BinlogTick(_shown(restart), purged=why)
    except (BinlogUnavailable, DBAPIError, MySQLError, OSError) as error:
        warn(
            f"The binlog could not be read, so this tick relies on the marks alone (CIO_CHANGE_CAPTURE=binlog): {error}"
        )
        return BinlogTick(saved)
    keep(state, found.keys, at)
    concepts = sorted(concept for concept in found.concepts if not concept.startswith("table:"))
    return BinlogTick(_shown(found.position), concepts, found.rows, found.deletes)


def _shown(position: Position) -> dict[str, object]:
    return {"file": position.file, "pos": position.pos}
