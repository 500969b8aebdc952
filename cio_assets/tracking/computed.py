"""Skipping what the shop has not changed: a re-run costs nothing when nothing it reads moved.

Each asset that rebuilds from the shop records, per day it computed (`cio_computed_days`; hygiene, which
is not partitioned, under the day "all"), when and from what: a digest of the marks of the source tables it
reads (row count, largest id, latest change time and what the rows changed lately hold, as the sensor observes
them: `marks.py`), of the identity map's last change and of the settings. A later run skips a day, keeping the
rows it holds, when
- the digest is the same: no row added or deleted, no change time moved, no row changed within the look-back
  window before the newest change (a same-second edit, a late commit), identity and settings unchanged;
- no source row was released from quarantine since it was computed;
- nothing the clock drives has come due since (the event log: a cart crossing the idle window).
Hygiene, when it keeps its listing, still judges the rows already listed again (a fix in place, a row
dated in the future reaching its time), which costs what is listed, not the shop.
A run that skips says so in its metadata (`run_mode: unchanged`), and its figures still describe the day,
read back from the tables (`defs/assets/kept.py`). `full_refresh: true` in the run config always recomputes.

Not seen (until a run with `full_refresh`, which the daily schedule launches): a row edited without moving its
change time, older than the look-back window, in a table with no other mark that moved; a row of a table without
a change time (an order line) edited in place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import Connection, Table, func, select

from cio_assets.lib.chunking import chunks
from cio_assets.lib.timestamps import Clock, unix
from cio_assets.lib.writes import upsert
from cio_assets.schema.state import computed_days, rejected_rows
from cio_assets.tracking.binlog import newest_captured
from cio_assets.tracking.cursors import identity_changed_at
from cio_assets.tracking.marks import observe_tables

WHOLE = "all"  # the day an unpartitioned asset records itself under


@dataclass(frozen=True)
class Inputs:
    """What a computation was made from."""

    digest: str
    at: int  # Unix seconds: the run's clock when it computed

    @classmethod
    def read(
        cls,
        src: Connection,
        dst: Connection,
        tables: Sequence[Table],
        settings_digest: str,
        clock: Clock,
        run_id: str | None = None,
    ) -> Inputs:
        """The high-water marks of `tables` (with what their rows changed lately hold), identity's last change and
        the settings (`settings_digest`: a digest of every setting, so a computation made under other settings is
        not kept), as the run with `clock` reads them."""
        fingerprint = {
            "marks": observe_tables(src, clock, tables, run_id, kept=dst.engine),
            "identity_changed_at": identity_changed_at(dst),
            # A change only binlog capture saw (an order line edited in place) moves no mark.
            "captured": newest_captured(dst),
            "settings": settings_digest,
        }
        text = orjson.dumps(fingerprint, option=orjson.OPT_SORT_KEYS)
        return cls(hashlib.sha256(text).hexdigest(), unix(clock.now))


def computed_at(dst: Connection, asset: str, days: Sequence[str], inputs: Inputs) -> int | None:
    """When every one of `days` was last computed from the same inputs (the earliest), or None when one of
    them never was, or was computed from other inputs."""
    t = computed_days
    found: dict[str, tuple[str, int]] = {}
    for chunk in chunks(sorted(days), 500):
        rows = dst.execute(select(t.c.day, t.c.digest, t.c.computed_at).where(t.c.asset == asset, t.c.day.in_(chunk)))
        found.update({day: (digest, at) for day, digest, at in rows})
    if any(found.get(day, ("", 0))[0] != inputs.digest for day in days):
        return None
    return min(found[day][1] for day in days)


def record(dst: Connection, asset: str, days: Sequence[str], inputs: Inputs) -> None:
    """Note that `days` were computed now from `inputs` (in the transaction that wrote them)."""
    for chunk in chunks(sorted(days), 500):
        rows = [{"asset": asset, "day": day, "digest": inputs.digest, "computed_at": inputs.at} for day in chunk]
        upsert(dst, computed_days, rows)


def last_computed(dst: Connection, asset: str) -> tuple[str, int] | None:
    """The latest day `asset` computed, and when it last computed it (Unix seconds); None before its first run."""
    t = computed_days
    found = dst.execute(
        select(t.c.day, t.c.computed_at).where(t.c.asset == asset, t.c.day != WHOLE).order_by(t.c.day.desc()).limit(1)
    ).one_or_none()
    return None if found is None else (str(found[0]), int(found[1]))


def released_since(dst: Connection, tables: Sequence[Table], since: int) -> int:
    """Source rows of `tables` released from quarantine after `since`."""
    r = rejected_rows.c
    names = [str(table.name) for table in tables]
    statement = select(func.count()).where(r.source_table.in_(names), r.released_at > since)
    return int(dst.execute(statement).scalar_one())


def skip_reason(
    dst: Connection,
    asset: str,
    days: Sequence[str],
    inputs: Inputs,
    tables: Sequence[Table],
    due: Callable[[int], bool] | None = None,
) -> str | None:
    """Why the run can keep what `days` hold (a sentence for the log and metadata), or None to compute.
    `due(computed_at)` says whether something the clock drives has come due since."""
    at = computed_at(dst, asset, days, inputs)
    if at is None or released_since(dst, tables, at) or (due is not None and due(at)):
        return None
    return (
        f"Nothing this asset reads changed since it was computed at {_iso(at)}: no source row added, deleted or "
        "edited in its tables, no row released from quarantine, identity and settings unchanged. "
        "It keeps the rows it holds (full_refresh in the run config recomputes)."
    )


def _iso(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
