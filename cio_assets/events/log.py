"""One run of the event log: plan the range in pieces, extract each piece's events, publish them together.

Each family reads the whole range (in keyset pages); a re-run replaces the days it covers. The range is cut into
pieces of CIO_CHUNK_DAYS days (by default 92 on an executor that runs steps at once, and the whole range
otherwise), each extracted by a step of its own and staged (`staging.py`); the publish step replaces the range's
days with them in one transaction. An event whose source time moved to another day (an edited paid_at) leaves
its old day, so an `event_id` is never in the log twice. A source row that was set aside and passed again during
the range (a corrected order) is extracted too, into its own day. Events held back or cut to fit Customer.io are
noted in the piece's listing, for `cio_quarantine`.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
from sqlalchemy import Connection, Table, and_, func, select

from cio_assets.contract import ContractTally, split_by_contract
from cio_assets.events import staging
from cio_assets.events.families import FAMILIES, Extraction, FamilyResult
from cio_assets.events.schema import event_log_schema
from cio_assets.identity.erasure import erased_set
from cio_assets.identity.lookup import load_resolver, require_identity
from cio_assets.lib.days import PartitionRange, on_days
from cio_assets.lib.frames import DayFigures, counts_per_day
from cio_assets.lib.timestamps import Clock, unix
from cio_assets.schema.events import EVENT_NAMES, FAMILY_TABLES
from cio_assets.schema.shop import cart_items, carts, is_paid, order_items, orders, refunds, subscriptions
from cio_assets.schema.state import event_log as LOG
from cio_assets.tracking.computed import Inputs

ASSET = "event_log"
SCHEMA_CHECK = "event_log_schema"
SOURCES = (orders, order_items, carts, cart_items, refunds, subscriptions)
# The tables whose rows, once released from quarantine, are extracted again.
EVENT_TABLES: tuple[Table, ...] = tuple(dict.fromkeys(FAMILY_TABLES.values()))

# Executors that run a run's steps one after the other, and the piece length (days) on those that run them at once.
SERIAL_EXECUTORS = ("in_process", "execute_in_process_executor")
PARALLEL_CHUNK_DAYS = 92


def piece_count(days: int, chunk_days: int, executor: str) -> int:
    """How many pieces a range of `days` days is cut into: one per `chunk_days` days. With 0 (the default), one per
    PARALLEL_CHUNK_DAYS days on an executor that runs steps at once, and one piece on an executor that runs them one
    after the other: there pieces run in turn anyway, and each repeats every family's scan of its source tables (a
    year at 100,000 customers in process: 99 s in one piece, 120 s in five)."""
    if chunk_days == 0:
        chunk_days = days if executor in SERIAL_EXECUTORS else PARALLEL_CHUNK_DAYS
    return math.ceil(days / chunk_days)


@dataclass(frozen=True)
class Plan:
    """What a run decided before extracting anything (passed from the plan step to the publish step)."""

    batch: str  # the staging rows' run id: the planning run's (a re-execution of a failed step reuses them)
    keys: list[str]
    now: int  # Unix seconds: the run's clock, the same for every piece
    started_at: float  # Unix seconds, for the run's duration
    inputs: Inputs
    kept: str | None  # why the run keeps what the days hold, or None when it computes
    full_refresh: bool = False
    others: bool = False  # whether the log may hold days outside the range (events may move in from them)
    released: int = 0  # source rows released from quarantine during the range


@dataclass(frozen=True)
class Piece:
    """One step's share of the range: some of its days, or the source rows released from quarantine."""

    name: str  # the step's mapping key
    keys: list[str]
    only: dict[str, list[int]] | None = None  # table name -> the only source ids to read (released rows)


@dataclass
class PieceResult:
    """What one piece staged, held back and could not resolve."""

    name: str
    written: int
    by_name: Counter[str]
    unresolved: Counter[str]
    listing: pd.DataFrame  # quarantine rows


def pieces_of(
    prange: PartitionRange, count: int, weights: list[int] | None, released: dict[str, list[int]]
) -> list[Piece]:
    """The range in `count` pieces of about equal `weights`, and a piece for the released rows, if any."""
    pieces = [Piece(_piece_name(piece), piece.keys) for piece in prange.split(count, weights)]
    if any(released.values()):
        pieces.append(Piece("released", prange.keys, only=released))
    return pieces


def extract_piece(
    src: Connection,
    dst: Connection,
    staged: Table,
    piece: Piece,
    reads: PartitionRange,
    prange: PartitionRange,
    clock: Clock,
    chunk_size: int,
    cart_idle: timedelta,
    log: Callable[[str], None],
) -> PieceResult:
    """Extract one piece's events (`reads`: the piece's days; for the released rows, every day so far), check them
    against the contract and stage them in `staged`, in `dst`'s transaction. `prange` is the run's whole range."""
    schema = event_log_schema(unix(clock.floor), unix(clock.now))
    tally = ContractTally(ASSET, SCHEMA_CHECK)
    by_name: Counter[str] = Counter()
    unresolved: Counter[str] = Counter()
    resolver = load_resolver(dst)
    erased = erased_set(dst)  # people an erasure request named never enter the log again
    extraction = Extraction(src, dst, resolver, reads, clock, chunk_size, cart_idle, only=piece.only)
    for name, family in FAMILIES.items():
        for found in family(extraction):
            unresolved[name] += found.unresolved
            require_identity(resolver, found.unresolved)
            if piece.only is not None:  # released rows: only what the range's own pieces did not cover
                found = outside(found, prange)
            kept = found.events[~found.events["person_id"].isin(erased)]
            events, broken = split_by_contract(kept, schema, key_column="event_id")
            tally.note(found.listing)
            tally.note(broken)
            tally.written += staging.stage(dst, staged, events, chunk_size)
            by_name[name] += len(events)
        log(f"piece {piece.name}: {dict(by_name)} events so far, {dict(+unresolved)} to nobody")
    return PieceResult(piece.name, tally.written, by_name, unresolved, tally.quarantine)


def logged_per_day(conn: Connection, days: list[str]) -> DayFigures:
    """Each day's events as the log holds them: rows, people with an event, and events per name (every
    name, zeros included)."""
    in_range = on_days(LOG.c.day, days)
    per_name = pd.DataFrame(
        conn.execute(
            select(LOG.c.day, LOG.c.name, func.count().label("n")).where(in_range).group_by(LOG.c.day, LOG.c.name)
        ).all(),
        columns=["day", "name", "n"],
    )
    people = dict(
        conn.execute(
            select(LOG.c.day, func.count(func.distinct(LOG.c.person_id))).where(in_range).group_by(LOG.c.day)
        ).all()
    )
    by_name = counts_per_day(per_name, "name", days, "events", EVENT_NAMES, count="n")
    return {
        day: {
            "dagster/row_count": int(per_name.loc[per_name["day"] == day, "n"].sum()),
            "people": int(people.get(day, 0)),
            **by_name[day],
        }
        for day in days
    }


def paid_orders_per_day(src: Connection, prange: PartitionRange, clock: Clock) -> list[int]:
    """Paid orders on each day of the range (the bulk of the events), by their date in the source's time zone:
    weights to cut the range into pieces of similar work. Earlier history counts on the first day."""
    day = func.date(orders.c.paid_at)
    covered = and_(is_paid(orders), prange.covers(orders.c.paid_at, clock.zone_of(orders.name)))
    counts = {str(d): int(n) for d, n in src.execute(select(day, func.count()).where(covered).group_by(day))}
    first = prange.keys[0]
    before = sum(n for d, n in counts.items() if d < first)
    return [counts.get(key, 0) + (before if key == first else 0) for key in prange.keys]


def holds_other_days(conn: Connection, prange: PartitionRange) -> bool:
    """Whether the log may hold rows outside the range's days (two probes of the day index; a range with gaps
    between its days always may)."""
    if any(day.end != following.start for day, following in itertools.pairwise(prange.days)):
        return True
    before = select(LOG.c.day).where(LOG.c.day < min(prange.keys)).limit(1)
    after = select(LOG.c.day).where(LOG.c.day > max(prange.keys)).limit(1)
    return any(conn.execute(probe).first() is not None for probe in (before, after))


def _piece_name(piece: PartitionRange) -> str:
    """A step's mapping key for a piece of days (letters, digits and underscores only)."""
    first, last = piece.keys[0], piece.keys[-1]
    return f"days_{first}".replace("-", "_") + ("" if first == last else f"_to_{last}".replace("-", "_"))


def outside(result: FamilyResult, prange: PartitionRange) -> FamilyResult:
    """A released row's events outside the range's days (those inside it came with the range). Its
    listing is left out: listings belong to the runs of their own days."""
    outside_days = result.events[~result.events["day"].isin(prange.keys)]
    return FamilyResult(outside_days.reset_index(drop=True), result.listing.iloc[0:0], result.unresolved)
