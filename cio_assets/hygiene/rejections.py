"""Listing the source rows the hygiene rules set aside, and remembering which of them came back.

`cio_rejected_rows` is kept across runs. A row that fails a rule is listed with the moment it was
first seen; a listed row that passes again is not deleted but marked `released_at`, so that the
attribute snapshot and the event log of the run that saw it can pick the corrected row up, even when
its own day is not re-run.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection, Table, and_, cast, func, select
from sqlalchemy.types import String

from cio_assets.hygiene.rules import RULES, Bounds, Rule, rejection_reason
from cio_assets.partitions import PartitionRange
from cio_assets.settings import Settings
from cio_assets.sources.reads import read_frame
from cio_assets.state.tables import rejected_rows

KEY = ["source_table", "source_key", "column_name"]
COLUMNS = [*KEY, "raw_value", "reason", "first_rejected_at", "released_at"]


def current_rejections(conn: Connection, settings: Settings, bounds: Bounds) -> pd.DataFrame:
    """Every source row that fails a rule now: source_table, source_key, column_name, raw_value, reason."""
    frames = [_failing(conn, rule, settings, bounds) for rule in RULES]
    return pd.concat(frames, ignore_index=True)


def _failing(conn: Connection, rule: Rule, settings: Settings, bounds: Bounds) -> pd.DataFrame:
    reason = rejection_reason(rule, settings, bounds)
    frame = read_frame(
        conn,
        select(
            cast(rule.table.c.id, String).label("source_key"),
            rule.raw().label("raw_value"),
            reason.label("reason"),
        ).where(reason.is_not(None)),
    )
    frame["raw_value"] = [None if pd.isna(v) else str(v) for v in frame["raw_value"]]
    frame.insert(0, "source_table", rule.table.name)
    frame.insert(2, "column_name", rule.column)
    return frame


def merge_rejections(previous: pd.DataFrame, current: pd.DataFrame, now: int) -> pd.DataFrame:
    """The listing after this run: current rejections keep the time they were first seen (a row
    rejected again after a release starts over); earlier ones that now pass are released at `now`."""
    earlier = previous.set_index(KEY)
    rows = current.set_index(KEY)
    continuing = rows.index.isin(earlier[earlier["released_at"].isna()].index)
    first_seen = earlier["first_rejected_at"].reindex(rows.index)
    rows["first_rejected_at"] = first_seen.where(continuing, now)
    rows["released_at"] = None
    gone = earlier[~earlier.index.isin(rows.index)].copy()
    gone["released_at"] = gone["released_at"].where(gone["released_at"].notna(), now)
    merged = pd.concat([rows, gone]).reset_index()
    return merged.astype({"first_rejected_at": "int64"})[COLUMNS]


def previous_rejections(conn: Connection) -> pd.DataFrame:
    frame = read_frame(conn, select(*(rejected_rows.c[c] for c in COLUMNS)))
    return frame.astype({"released_at": object})


def released_rows(conn: Connection, table: Table, prange: PartitionRange) -> pd.DataFrame:
    """source_key (int) and released_at of `table`'s rows that passed again during the range."""
    released = rejected_rows.c.released_at
    in_range = released < int(prange.end.timestamp())
    if prange.start is not None:
        in_range = and_(in_range, released >= int(prange.start.timestamp()))
    frame = read_frame(
        conn,
        select(rejected_rows.c.source_key, func.max(released).label("released_at"))
        .where(rejected_rows.c.source_table == table.name, in_range)
        .group_by(rejected_rows.c.source_key),
    )
    return frame.astype({"source_key": "int64", "released_at": "int64"})
