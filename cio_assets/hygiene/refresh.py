"""One run of hygiene: judge the source rows that may have changed, and keep the listing of those set aside.

Not partitioned: a row with a null, pre-2000 or future timestamp, an unknown status or a negative amount has
no trustworthy day to live in. Every rule scans the whole source (in the database) on the first run, when the
settings the rules read changed, and when asked (`full_refresh`); otherwise only the rows changed since the
last run, and the rows already listed (one may have been fixed in place, or reached the time it was dated
at). When no source table moved at all, only the listed rows are judged again. Rows that pass again stay
listed as released, for the snapshot and the event log.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection

from cio_assets.hygiene.rejections import changed_since, current_rejections, merge_rejections, previous_rejections
from cio_assets.hygiene.rules import REJECTING_TABLES
from cio_assets.lib.timestamps import Clock, unix
from cio_assets.lib.writes import replace_all
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import cart_items, order_items
from cio_assets.tracking.computed import WHOLE, Inputs, record, skip_reason
from cio_assets.tracking.cursors import Cursor, read_marks

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
    marks = read_marks(src, run_id)
    inputs = Inputs.read(src, dst, SOURCES, settings_digest, now, run_id)
    cursor = Cursor.load(dst, ASSET)
    previous = previous_rejections(dst)
    listed = previous[previous["released_at"].isna()]
    kept = None if full_refresh else skip_reason(dst, ASSET, [WHOLE], inputs, ())
    full = why_full(full_refresh, cursor, clock, settings_digest)
    if kept is not None:
        # Nothing moved, so no other row can have started failing; a listed row may have been fixed
        # without touching its change time, or have reached the time it was dated at: judge those again.
        mode, reason = "unchanged", kept
        current = current_rejections(src, clock, only=listed)
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
    Cursor(ASSET, marks, now, unix(clock.floor), {"settings": settings_digest}).save(dst)
    released = int((listing["released_at"] == now).sum())
    return HygieneRun(mode, reason, current, released)


def why_full(full_refresh: bool, cursor: Cursor | None, clock: Clock, settings_digest: str) -> str | None:
    """Why every source row must be judged (a full scan), or None when the changed and listed ones do."""
    if full_refresh:
        return "full_refresh in the run config"
    if cursor is None:
        return "no cursor yet: the first run"
    if cursor.floor != unix(clock.floor) or cursor.details.get("settings") != settings_digest:
        return "the settings the rules read changed"
    return None
