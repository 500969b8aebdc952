"""The event log's staging area: where a run's pieces wait until the run publishes them all at once.

The steps that extract the pieces of a range may run at the same time, in other processes or on other
machines (the multiprocess or Celery executor), each in its own transaction. Each writes its events under
the run's id and its piece's name; a piece written again (a retried step) starts by deleting its rows. The step that
publishes the run then, in one transaction, empties the range's days, takes out of other days the events
that moved into the range, and moves the staged rows into the log, so the log changes for the whole range
or not at all. Whatever happens, the run's staged rows are then deleted; a run that died before publishing
leaves rows that the next run deletes once they are a week old.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Connection, delete, func, insert, select

from cio_assets.chunking import chunks
from cio_assets.state.tables import event_log, event_log_staging
from cio_assets.state.writes import delete_keys, insert_frame

STAGED = event_log_staging
# Rows of a run that never published are deleted once this old (no run takes a week).
STALE_AFTER_SECONDS = 7 * 86400


def clear_piece(conn: Connection, run_id: str, piece: str) -> None:
    """Delete what an earlier attempt of the same piece staged (a retried step starts over)."""
    conn.execute(delete(STAGED).where(STAGED.c.run_id == run_id, STAGED.c.piece == piece))


def stage(conn: Connection, run_id: str, piece: str, events: pd.DataFrame, at: int, chunk_rows: int) -> int:
    """Stage some of a piece's events (columns as in the log); returns how many rows were written."""
    return insert_frame(conn, STAGED, events.assign(run_id=run_id, piece=piece, staged_at=at), chunk_rows)


class StagingIncomplete(Exception):
    """The staging area lacks rows the pieces reported: they were deleted, so the range must be extracted again."""


def publish(conn: Connection, run_id: str, days: Sequence[str], others: bool, expected: int) -> tuple[int, int]:
    """Replace the log's `days` with the run's staged events, inside the caller's transaction; returns (events
    written, events moved out of other days). `others`: whether the log may hold days outside `days` (asked
    before anything was deleted), so staged events may have to leave another day. `expected`: the rows the
    pieces staged; if the area holds another number, nothing is published (StagingIncomplete)."""
    staged = conn.execute(select(func.count()).where(STAGED.c.run_id == run_id)).scalar_one()
    if staged != expected:
        raise StagingIncomplete(
            f"The pieces of run {run_id} staged {expected} events but {STAGED.name} holds {staged}: rows of that run "
            "were deleted (a run that died is cleaned up after a week), so nothing was published. Materialize the "
            "range again."
        )
    for chunk in chunks(list(days), 500):
        conn.execute(delete(event_log).where(event_log.c.day.in_(chunk)))
    moved = 0
    if others:
        staged = conn.execute(select(STAGED.c.event_id).where(STAGED.c.run_id == run_id)).scalars().all()
        moved = delete_keys(conn, event_log.c.event_id, staged)
    columns = [column.name for column in event_log.columns]
    rows = select(*(STAGED.c[name] for name in columns)).where(STAGED.c.run_id == run_id).order_by(STAGED.c.event_id)
    written = conn.execute(insert(event_log).from_select(columns, rows)).rowcount
    return int(written or 0), moved


def discard(conn: Connection, run_id: str) -> None:
    """Delete a run's staged rows (published or not)."""
    conn.execute(delete(STAGED).where(STAGED.c.run_id == run_id))


def discard_stale(conn: Connection, now: int) -> int:
    """Delete rows staged by runs that never published (older than STALE_AFTER_SECONDS); returns how many."""
    return conn.execute(delete(STAGED).where(STAGED.c.staged_at < now - STALE_AFTER_SECONDS)).rowcount or 0
