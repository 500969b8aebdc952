"""The event log's staging area: where a run's pieces wait until the run publishes them all at once.

The steps that extract the pieces of a range may run at the same time, in other processes or on other
machines (the multiprocess or Celery executor), each in its own transaction. They write to a table of the
run's own (`cio_stage_<digest of the run id>`, made by the plan step and listed in `cio_event_log_staging`),
each row marked with its piece; a piece written again (a retried step) starts by deleting its rows. The step
that publishes the run then, in one transaction, empties the range's days, takes out of other days the
events that moved into the range, and copies the staged rows into the log, so the log changes for the whole
range or not at all. Then it drops the run's table (a drop costs nothing, where deleting a year's staged
rows took seconds). A run that dies before publishing leaves its table for a re-execution of the failed
step; the next run drops it once it is a week old.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, delete, func, insert, select

from cio_assets.chunking import chunks
from cio_assets.state.tables import event_columns, event_log, event_log_staging
from cio_assets.state.writes import delete_keys, insert_frame, upsert

RUNS = event_log_staging
# A run's table is dropped by the next run once this old (no run takes a week).
STALE_AFTER_SECONDS = 7 * 86400


class StagingIncomplete(Exception):
    """The staging area lacks rows the pieces reported: the range must be extracted again."""


def staging_table(run_id: str) -> Table:
    """The table a run's pieces write to (its name from a digest of the run id: any id makes a valid name)."""
    name = f"cio_stage_{hashlib.sha256(run_id.encode()).hexdigest()[:16]}"
    piece = Column("piece", String(64), nullable=False, comment="The step's piece of the range (its mapping key)")
    return Table(name, MetaData(), piece, *event_columns())


def create(engine: Engine, run_id: str, at: int) -> Table:
    """Make the run's table (again, empty, for a run planned twice) and list it."""
    table = staging_table(run_id)
    table.drop(engine, checkfirst=True)
    table.create(engine)
    with engine.begin() as conn:
        upsert(conn, RUNS, [{"run_id": run_id, "table_name": table.name, "created_at": at}])
    return table


def clear_piece(conn: Connection, table: Table, piece: str) -> None:
    """Delete what an earlier attempt of the same piece staged (a retried step starts over)."""
    conn.execute(delete(table).where(table.c.piece == piece))


def stage(conn: Connection, table: Table, piece: str, events: pd.DataFrame, chunk_rows: int) -> int:
    """Stage some of a piece's events (columns as in the log); returns how many rows were written."""
    return insert_frame(conn, table, events.assign(piece=piece), chunk_rows)


def publish(conn: Connection, table: Table, days: Sequence[str], others: bool, expected: int) -> tuple[int, int]:
    """Replace the log's `days` with the staged events, inside the caller's transaction; returns (events
    written, events moved out of other days). `others`: whether the log may hold days outside `days` (asked
    before anything was deleted), so staged events may have to leave another day. `expected`: the rows the
    pieces staged; if the table holds another number, nothing is published (StagingIncomplete)."""
    staged = conn.execute(select(func.count()).select_from(table)).scalar_one()
    if staged != expected:
        raise StagingIncomplete(
            f"The pieces staged {expected} events but {table.name} holds {staged}: rows were deleted, so nothing "
            "was published. Materialize the range again."
        )
    for chunk in chunks(list(days), 500):
        conn.execute(delete(event_log).where(event_log.c.day.in_(chunk)))
    moved = 0
    if others:
        moved = delete_keys(conn, event_log.c.event_id, conn.execute(select(table.c.event_id)).scalars().all())
    columns = [column.name for column in event_log.columns]
    rows = select(*(table.c[name] for name in columns)).order_by(table.c.event_id)
    written = conn.execute(insert(event_log).from_select(columns, rows)).rowcount
    return int(written or 0), moved


def drop(engine: Engine, run_id: str) -> None:
    """Drop a run's table and its listing (published or not)."""
    staging_table(run_id).drop(engine, checkfirst=True)
    with engine.begin() as conn:
        conn.execute(delete(RUNS).where(RUNS.c.run_id == run_id))


def drop_stale(engine: Engine, now: int) -> int:
    """Drop the tables of runs that never published (older than STALE_AFTER_SECONDS); returns how many."""
    with engine.connect() as conn:
        stale = conn.execute(select(RUNS.c.run_id).where(RUNS.c.created_at < now - STALE_AFTER_SECONDS)).scalars()
        run_ids = list(stale)
    for run_id in run_ids:
        drop(engine, run_id)
    return len(run_ids)
