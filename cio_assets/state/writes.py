"""Idempotent writes to the pipeline's own tables: replace a whole table or a range of days.

Each write runs inside the caller's transaction, so a partition is either replaced entirely or
left as it was: a re-run or a crash never leaves half a day behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pandas as pd
from sqlalchemy import Connection, Table, delete


def replace_all(conn: Connection, table: Table, frame: pd.DataFrame, chunk_rows: int) -> int:
    conn.execute(delete(table))
    return insert_frame(conn, table, frame, chunk_rows)


def replace_days(conn: Connection, table: Table, days: Sequence[str], frame: pd.DataFrame, chunk_rows: int) -> int:
    """Delete the rows of `days`, then insert `frame` (whose rows all belong to those days)."""
    for chunk in _chunks(list(days), 500):
        conn.execute(delete(table).where(table.c.day.in_(chunk)))
    return insert_frame(conn, table, frame, chunk_rows)


def insert_frame(conn: Connection, table: Table, frame: pd.DataFrame, chunk_rows: int) -> int:
    """Bulk insert (one multi-row statement per chunk on MySQL); NA becomes NULL."""
    columns = [c.name for c in table.columns if c.name in frame.columns]
    for start in range(0, len(frame), chunk_rows):
        conn.execute(table.insert(), _records(frame.iloc[start : start + chunk_rows], columns))
    return len(frame)


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    plain = frame[columns].astype(object)
    plain = plain.where(plain.notna(), None)
    return plain.to_dict("records")


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def delete_keys(conn: Connection, column, keys: Sequence[object]) -> int:
    """Delete rows whose `column` is in `keys`; returns how many went."""
    deleted = 0
    for chunk in _chunks(list(keys), 1000):
        deleted += conn.execute(delete(column.table).where(column.in_(chunk))).rowcount or 0
    return deleted
