"""One run of hygiene: judge the source rows that may have changed, and keep the listing of those set aside.

Not partitioned: a row with a null, pre-2000 or future timestamp, an unknown status or a negative amount has
no trustworthy day to live in. Every rule scans the whole source (in the database) on the first run, when the
settings the rules read changed, and when asked (`full_refresh`); otherwise only the rows changed since the
last run, and the rows already listed (one may have been fixed in place, or reached the time it was dated
at). When no source table moved at all, only the listed rows are judged again, and of a table the server shows
no write has touched since the last run (`tracking/table_times.py`), only those set aside for a time still in the
future (the clock, not a write, changes their judgement). Rows that pass again stay listed as released, for the
snapshot and the event log.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection

from cio_assets.hygiene.rejections import (
    LISTED,
    changed_since,
    current_rejections,
    merge_rejections,
    previous_rejections,
)
from cio_assets.hygiene.rules import IN_FUTURE, REJECTING_TABLES
from cio_assets.lib.timestamps import Clock, unix
from cio_assets.lib.writes import replace_all
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import cart_items, carts, order_items, orders, refunds
from cio_assets.tracking.computed import WHOLE, Inputs, record, skip_reason
from cio_assets.tracking.cursors import NOTES, Cursor, read_marks, vouching
from cio_assets.tracking.marks import noted

ASSET = "rejected_rows"
# The shop's tables the rules read (line items are judged under their order or cart).
SOURCES = (*REJECTING_TABLES, order_items, cart_items)


@dataclass(frozen=True)
class HygieneRun:
    """What one run judged and listed."""

    mode: str  # computed (every row), incremental (changed and listed rows) or unchanged (listed rows)
    reason: str  # why that mode
    current: pd.DataFrame  # the rows set aside now: source_table, source_key, column_name, raw_value, reason
    released: int  # listed rows that passed again in this run


def refresh_rejections(
    src: Connection,
    dst: Connection,
    clock: Clock,
    settings_digest: str,
    chunk_size: int,
    full_refresh: bool,
    run_id: str | None = None,
) -> HygieneRun:
    """Judge the rows that may have changed and replace the listing, in `dst`'s transaction with the cursor."""
    now = unix(clock.now)
    marks = read_marks(src, clock, run_id, kept=dst.engine)
    inputs = Inputs.read(src, dst, SOURCES, settings_digest, clock, run_id)
    now_noted = noted(run_id)
    cursor = Cursor.load(dst, ASSET, now_noted)
    previous = previous_rejections(dst)
    listed = previous[previous["released_at"].isna()]
    kept = None if full_refresh else skip_reason(dst, ASSET, [WHOLE], inputs, ())
    full = why_full(full_refresh, cursor, clock, settings_digest)
    if kept is not None:
        # Nothing moved, so no other row can have started failing; a listed row may have been fixed
        # without touching its change time, or have reached the time it was dated at: judge those again.
        mode, reason = "unchanged", kept
        again = may_have_changed(listed, cursor.quiet if cursor else frozenset())
        # The others still fail as listed: judged again or not, no listed row may go unjudged and be released.
        still = listed.loc[~listed.index.isin(again.index), LISTED]
        current = pd.concat([current_rejections(src, clock, only=again), still], ignore_index=True)
    elif full is not None:
        mode, reason = "computed", full
        current = current_rejections(src, clock)
    else:
        assert cursor is not None
        mode, reason = "incremental", "the rows changed since the last run, and the rows listed"
        current = current_rejections(src, clock, only=listed, changed=changed_since(src, cursor, clock))
    listing = merge_rejections(previous, current, now)
    replace_all(dst, state_tables.rejected_rows, listing, chunk_size)
    record(dst, ASSET, [WHOLE], inputs)
    details = {"settings": settings_digest, NOTES: vouching(now_noted)}
    Cursor(ASSET, marks, now, unix(clock.floor), details).save(dst)
    released = int((listing["released_at"] == now).sum())
    return HygieneRun(mode, reason, current, released)


# The other tables a table's rules read: an order's lines, a refund's order, a cart's lines.
READS_ALSO: dict[str, tuple[str, ...]] = {
    str(orders.name): (str(order_items.name),),
    str(refunds.name): (str(orders.name),),
    str(carts.name): (str(cart_items.name),),
}


def may_have_changed(listed: pd.DataFrame, quiet: frozenset[str]) -> pd.DataFrame:
    """The listings (every one of a row's) whose judgement may have changed while no mark moved: those of a
    table that a write touched (or that its rules also read: `READS_ALSO`), and those of a row set aside for a
    time in the future, which the clock alone clears. `quiet`: the tables no write touched since the last run
    (`Cursor.quiet`)."""
    written = {table for table in listed["source_table"].unique() if {table, *READS_ALSO.get(table, ())} - quiet}
    row = listed["source_table"] + ":" + listed["source_key"].astype(str)
    ahead = set(row[listed["reason"] == IN_FUTURE])
    return listed[listed["source_table"].isin(written) | row.isin(ahead)]


def why_full(full_refresh: bool, cursor: Cursor | None, clock: Clock, settings_digest: str) -> str | None:
    """Why every source row must be judged (a full scan), or None when the changed and listed ones do."""
    if full_refresh:
        return "full_refresh in the run config"
    if cursor is None:
        return "no cursor yet: the first run"
    if cursor.floor != unix(clock.floor) or cursor.details.get("settings") != settings_digest:
        return "the settings the rules read changed"
    return None
