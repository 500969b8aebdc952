"""Listing the source rows the hygiene rules set aside, and remembering which of them came back.

`cio_rejected_rows` is kept across runs. A row that fails a rule is listed with the moment it was
first seen; a listed row that passes again is not deleted but marked `released_at`, so that the
attribute snapshot and the event log of the run that saw it can pick the corrected row up, even when
its own day is not re-run.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Column, ColumnElement, Connection, Table, and_, func, select, true

from cio_assets.hygiene.rules import REJECTING_TABLES, RULES, rejection_reason, row_rejection
from cio_assets.lib.chunking import chunks
from cio_assets.lib.days import PartitionRange
from cio_assets.lib.reads import read_frame
from cio_assets.lib.timestamps import Clock
from cio_assets.lib.writes import KEYS_PER_STATEMENT
from cio_assets.schema.shop import cart_items, carts, customers, order_items, orders, refunds, subscriptions
from cio_assets.schema.state import rejected_rows
from cio_assets.tracking.cursors import Cursor, changed_keys

KEY = ["source_table", "source_key", "column_name"]
LISTED = [*KEY, "raw_value", "reason"]
COLUMNS = [*LISTED, "first_rejected_at", "released_at"]


def current_rejections(
    conn: Connection,
    clock: Clock,
    only: pd.DataFrame | None = None,
    changed: dict[str, set[int] | None] | None = None,
) -> pd.DataFrame:
    """Every source row that fails a rule now: source_table, source_key, column_name, raw_value, reason.
    With `only` (a listing) and/or `changed` (per table, the ids changed since the last run, or None for
    every row), just the rows among those that fail."""
    frames = []
    for table in REJECTING_TABLES:
        if only is None and changed is None:
            frames.append(_failing(conn, table, clock, true()))
            continue
        listed = only.loc[only["source_table"] == table.name, "source_key"] if only is not None else []
        ids = sorted({int(k) for k in listed})
        if changed is not None and table.name in changed:
            moved = changed[table.name]
            if moved is None:
                frames.append(_failing(conn, table, clock, true()))
                continue
            ids = sorted(set(ids) | moved)
        frames.extend(_failing(conn, table, clock, table.c.id.in_(chunk)) for chunk in chunks(ids, KEYS_PER_STATEMENT))
    if not frames:
        return pd.DataFrame(columns=LISTED)
    return pd.concat(frames, ignore_index=True)[LISTED].drop_duplicates(KEY, ignore_index=True)


def changed_since(conn: Connection, cursor: Cursor, clock: Clock) -> dict[str, set[int] | None]:
    """Per judged table, the ids of the rows changed since `cursor` and of the rows whose judgement depends
    on a changed row (an order or cart whose lines changed; a refund whose order changed); None for a table
    whose every row counts. Rows set aside for a future timestamp are listed, and judged again anyway."""

    def moved(*keys: Column) -> set[int] | None:
        found: set[int] = set()
        for key in keys:
            ids = changed_keys(conn, key, cursor, clock, crossing=False)
            if ids is None:
                return None
            found |= ids
        return found

    orders_changed = moved(orders.c.id, order_items.c.order_id)
    refunds_changed = moved(refunds.c.id)
    if refunds_changed is not None:
        if orders_changed is None:
            refunds_changed = None
        else:
            for chunk in chunks(sorted(orders_changed), KEYS_PER_STATEMENT):
                refunds_changed |= set(
                    conn.execute(select(refunds.c.id).where(refunds.c.order_id.in_(chunk))).scalars()
                )
    return {
        customers.name: moved(customers.c.id),
        orders.name: orders_changed,
        carts.name: moved(carts.c.id, cart_items.c.cart_id),
        refunds.name: refunds_changed,
        subscriptions.name: moved(subscriptions.c.id),
    }


def _failing(conn: Connection, table: Table, clock: Clock, where: ColumnElement[bool]) -> pd.DataFrame:
    """One scan of `table` (the rows meeting `where`) for the rows failing any rule (the same CASE every
    query filters with), then one listing row per rule each of them fails."""
    rules = [rule for rule in RULES if rule.table is table]
    frame = read_frame(
        conn,
        select(
            table.c.id.label("source_key"),
            *(rejection_reason(rule, clock).label(f"reason_{i}") for i, rule in enumerate(rules)),
            *(rule.raw().label(f"raw_{i}") for i, rule in enumerate(rules)),
        ).where(where, row_rejection(table, clock).is_not(None)),
    )
    listed = [
        pd.DataFrame(
            {
                "source_table": table.name,
                "source_key": frame["source_key"].astype(str),
                "column_name": rule.column,
                "raw_value": [None if pd.isna(v) else str(v) for v in frame[f"raw_{i}"]],
                "reason": frame[f"reason_{i}"],
            }
        )
        for i, rule in enumerate(rules)
    ]
    rows = pd.concat(listed, ignore_index=True)
    return rows[rows["reason"].notna()]


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
