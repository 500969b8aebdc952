"""Every retention event, once, in the day it happened: order_placed, checkout_started, cart_abandoned,
refund_issued and subscription_canceled, each with a stable id.

Daily partitioned by event time (business time zone). Each family reads the whole range in keyset pages; a
re-run replaces the days it covers. The range is cut into pieces of CIO_CHUNK_DAYS days (by default 92 on
the multiprocess or Celery executor, which run them at once, and the whole range in process), each extracted
by a step of its own (`event_log_piece`) and staged; `event_log_publish` replaces the range's days with them
in one transaction. An event whose source time moved to another day (an edited paid_at) leaves its old day,
so an `event_id` is never in the log twice. A source row that was set aside and passed again during the
range (a corrected order) is extracted too, into its own day. Events held back or cut to fit Customer.io are
listed in `cio_quarantine`.
"""

import itertools
import math
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, and_, func, select

from cio_assets.catalog import family_properties, pii_tags, table_metadata
from cio_assets.contract import HELD, ContractTally, contract_check_spec, replace_quarantine, split_by_contract
from cio_assets.events import staging
from cio_assets.events.families import FAMILIES, FAMILY_TABLES, Extraction, FamilyResult, idle_deadlines
from cio_assets.events.schema import event_log_schema
from cio_assets.hygiene.rejections import released_rows
from cio_assets.hygiene.rules import Bounds
from cio_assets.identity.erasure import erased_set
from cio_assets.identity.lookup import load_resolver, require_identity
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.metadata import (
    DayFigures,
    add_partition_metadata,
    counts_per_day,
    listing_per_day,
    markdown_table,
    merge_days,
    named,
)
from cio_assets.partitions import PartitionRange, daily_partitions, on_days
from cio_assets.resources import SourceDatabase, StateDatabase
from cio_assets.schema import state as state_tables
from cio_assets.schema.events import DECLARED, EVENT_NAMES
from cio_assets.schema.shop import cart_items, carts, order_items, orders, refunds, subscriptions
from cio_assets.settings import Settings
from cio_assets.sources.assets import source_key
from cio_assets.unchanged import Inputs, RefreshConfig, kept_result, record, skip_reason

ASSET = "event_log"
SCHEMA_CHECK = "event_log_schema"
SOURCES = (orders, order_items, carts, cart_items, refunds, subscriptions)
EVENT_TABLES = tuple(dict.fromkeys(FAMILY_TABLES.values()))
LOG = state_tables.event_log

# The inputs the plan waits for: identity, hygiene's listing and the source tables (observations).
DEPS = {"identity_map": dg.AssetKey("identity_map"), "rejected_rows": dg.AssetKey("rejected_rows")} | {
    f"source_{table.name}": source_key(table) for table in SOURCES
}


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


@dg.op(
    name="event_log_plan",
    ins={name: dg.In(dg.Nothing) for name in DEPS},
    out={"plan": dg.Out(Plan), "pieces": dg.DynamicOut(Piece)},
)
def plan_op(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    source: SourceDatabase,
    state: StateDatabase,
    settings: Settings,
):
    """Keep the days when nothing they are made from changed; otherwise split the range into pieces."""
    started_at = time.time()
    prange = PartitionRange.for_keys(daily_partitions, list(context.partition_keys))
    bounds = Bounds.for_run(settings, utc_now())
    with source.connect() as src, state.begin() as dst:
        inputs = Inputs.read(src, dst, SOURCES, settings, unix(bounds.now), context.run.run_id)

        def carts_due(computed_at: int) -> bool:
            # A day that had not ended when it was computed may gain abandoned carts by the clock alone.
            then = datetime.fromtimestamp(computed_at, UTC)
            return then < prange.end and bool(idle_deadlines(src, settings, then, bounds.now))

        kept = None
        if not config.full_refresh:
            kept = skip_reason(dst, ASSET, prange.keys, inputs, EVENT_TABLES, due=carts_due)
        plan = Plan(context.run.run_id, prange.keys, unix(bounds.now), started_at, inputs, kept, config.full_refresh)
        if kept is not None:
            context.log.info(kept)
            yield dg.Output(plan, "plan")
            return
        released = {table.name: list(released_rows(dst, table, prange)["source_key"]) for table in EVENT_TABLES}
        # An event can only move here from a day outside the range (the range's own days are replaced): when
        # the log holds none, as in a first backfill, there is nothing to look up per event.
        others = _holds_other_days(dst, prange)
        executor = context.job_def.executor_def.name
        count = piece_count(len(prange.days), settings.chunk_days, executor)
        weights = _paid_orders_per_day(src, prange, settings) if count > 1 else None
    stale = staging.drop_stale(state.engine, plan.now)
    if stale:
        context.log.info(f"Dropped {stale} staging tables of runs that never published.")
    pieces = [Piece(_piece_name(piece), piece.keys) for piece in prange.split(count, weights)]
    if any(released.values()):
        pieces.append(Piece("released", prange.keys, only=released))
    n_released = sum(len(ids) for ids in released.values())
    yield dg.Output(replace(plan, others=others, released=n_released), "plan")
    context.log.info(
        f"{len(prange.keys)} days in {len(pieces)} pieces (CIO_CHUNK_DAYS={settings.chunk_days}, "
        f"{executor} executor) of about as many paid orders each: "
        + ", ".join(f"{piece.keys[0]}..{piece.keys[-1]}" for piece in pieces)
        + (f", and {n_released} source rows released from quarantine" if n_released else "")
    )
    for piece in pieces:
        yield dg.DynamicOutput(piece, mapping_key=piece.name, output_name="pieces")


@dg.op(name="event_log_piece")
def piece_op(
    context: dg.AssetExecutionContext,
    plan: Plan,
    piece: Piece,
    source: SourceDatabase,
    state: StateDatabase,
    settings: Settings,
) -> PieceResult:
    """Extract one piece's events, check them against the contract and stage them."""
    prange = PartitionRange.for_keys(daily_partitions, plan.keys)
    bounds = Bounds.for_run(settings, datetime.fromtimestamp(plan.now, UTC))
    schema = event_log_schema(unix(bounds.floor), plan.now)
    tally = ContractTally(ASSET, SCHEMA_CHECK)
    by_name: Counter[str] = Counter()
    unresolved: Counter[str] = Counter()
    staged = staging.create(state.engine, plan.batch, piece.name, plan.now)
    with source.connect() as src, state.begin() as dst:
        resolver = load_resolver(dst)
        erased = erased_set(dst)  # people an erasure request named never enter the log again
        if piece.only is None:
            extraction = Extraction(
                src, dst, resolver, PartitionRange.for_keys(daily_partitions, piece.keys), settings, bounds
            )
        else:  # every day the released rows may belong to
            history = PartitionRange.for_keys(daily_partitions, daily_partitions.get_partition_keys())
            extraction = Extraction(src, dst, resolver, history, settings, bounds, only=piece.only)
        for name, family in FAMILIES.items():
            for found in family(extraction):
                unresolved[name] += found.unresolved
                require_identity(resolver, found.unresolved)
                if piece.only is not None:  # released rows: only what the range's own pieces did not cover
                    found = _outside(found, prange)
                kept = found.events[~found.events["person_id"].isin(erased)]
                events, broken = split_by_contract(kept, schema, key_column="event_id")
                tally.note(found.listing)
                tally.note(broken)
                tally.written += staging.stage(dst, staged, events, settings.chunk_size)
                by_name[name] += len(events)
            context.log.info(f"piece {piece.name}: {dict(by_name)} events so far, {dict(+unresolved)} to nobody")
    return PieceResult(piece.name, tally.written, by_name, unresolved, tally.quarantine)


@dg.op(name="event_log_publish", out={"result": dg.Out(dg.Nothing), "check": dg.Out(dg.Nothing)})
def publish_op(
    context: dg.AssetExecutionContext, plan: Plan, results: list[PieceResult], state: StateDatabase, settings: Settings
):
    """Move the staged pieces into the log in one transaction, unless too many rows broke the contract."""
    prange = PartitionRange.for_keys(daily_partitions, plan.keys)
    if plan.kept is not None:
        with state.connect() as dst:
            kept = kept_result(
                context, dst, LOG, SCHEMA_CHECK, prange, logged_per_day, settings, plan.kept, plan.started_at
            )
        yield dg.Output(None, "result", metadata=kept.metadata)
        yield from kept.check_results
        return
    tally = ContractTally(ASSET, SCHEMA_CHECK, written=sum(r.written for r in results))
    for r in results:
        tally.note(r.listing)
    if tally.exceeded(settings):
        staging.drop_run(state.engine, plan.batch)
        yield tally.check_result(settings)
        raise tally.failure(settings)  # nothing published: the days keep their previous rows
    # Any other failure keeps the staged rows for a re-execution of this step (then the next run's clean-up).
    with state.begin() as dst:
        staged = [staging.staging_table(plan.batch, r.name) for r in results]
        written, moved = staging.publish(dst, staged, plan.keys, plan.others, expected=tally.written)
        replace_quarantine(dst, ASSET, plan.keys, tally.quarantine)
        record(dst, ASSET, plan.keys, plan.inputs)
    staging.drop_run(state.engine, plan.batch)
    # Read back from the table once committed: the figures are what the days now hold. Inside the transaction
    # that wrote them, InnoDB checks each index entry of a page it changed against the row itself, so counting a
    # year's people per day from the (day, person_id) index read the whole log (46 s instead of 1 s).
    with state.connect() as conn:
        days = merge_days(
            plan.keys, logged_per_day(conn, plan.keys), listing_per_day(tally.quarantine, plan.keys, HELD)
        )
    add_partition_metadata(context, days)
    by_name = sum((r.by_name for r in results), Counter())
    unresolved = sum((r.unresolved for r in results), Counter())
    adjusted = tally.quarantine[tally.quarantine["outcome"] != HELD]
    yield dg.Output(
        None,
        "result",
        metadata={
            **table_metadata(LOG),
            "run_rows": written,
            "run_mode": "computed",
            "run_mode_reason": "full_refresh in the run config" if plan.full_refresh else "its inputs changed",
            **named("run_events", {name: by_name[name] for name in EVENT_NAMES}),
            **named("run_unresolved", {name: unresolved[name] for name in EVENT_NAMES}),
            "run_rows_held": tally.held_items,
            "run_moved_from_other_days": moved,
            "run_released_from_quarantine": plan.released,
            "run_pieces": len(results),
            "run_days": len(plan.keys),
            "run_includes_history_before_start": prange.includes_history,
            "run_adjusted_sample": markdown_table(adjusted[["day", "item_key", "outcome", "reason"]]),
            "run_duration_s": round(time.time() - plan.started_at, 2),
        },
    )
    yield tally.check_result(settings)


@dg.graph_asset(
    key=ASSET,
    group_name="contract",
    kinds={"sql", "pandas"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={name: dg.AssetIn(key=key, dagster_type=dg.Nothing) for name, key in DEPS.items()},
    check_specs=[
        contract_check_spec(
            ASSET, SCHEMA_CHECK, "unique stable ids, known names, sane timestamps, JSON properties that fit Customer.io"
        )
    ],
    config=dg.ConfigMapping(
        config_fn=lambda config: {"event_log_plan": {"config": config}}, config_schema=RefreshConfig.to_config_schema()
    ),
    description=__doc__,
    tags=pii_tags(LOG),
    metadata={
        **table_metadata(LOG, listings=[state_tables.quarantine]),
        **{key: value for family in DECLARED for key, value in family_properties(family).items()},
    },
)
def event_log(**deps):
    """Plan, then extract the pieces (the executor places them: at once on the multiprocess or Celery executor),
    then publish them together."""
    plan, pieces = plan_op(**deps)
    result, check = publish_op(plan, pieces.map(lambda piece: piece_op(plan, piece)).collect())
    return {"result": result, f"{ASSET}_{SCHEMA_CHECK}": check}


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


def _paid_orders_per_day(src: Connection, prange: PartitionRange, settings: Settings) -> list[int]:
    """Paid orders on each day of the range (the bulk of the events), by their date in the source's time zone:
    weights to cut the range into pieces of similar work. Earlier history counts on the first day."""
    day = func.date(orders.c.paid_at)
    covered = and_(orders.c.status == "paid", prange.covers(orders.c.paid_at, orders, settings))
    counts = {str(d): int(n) for d, n in src.execute(select(day, func.count()).where(covered).group_by(day))}
    first = prange.keys[0]
    before = sum(n for d, n in counts.items() if d < first)
    return [counts.get(key, 0) + (before if key == first else 0) for key in prange.keys]


def _holds_other_days(conn: Connection, prange: PartitionRange) -> bool:
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


def _outside(result: FamilyResult, prange: PartitionRange) -> FamilyResult:
    """A released row's events outside the range's days (those inside it came with the range). Its
    listing is left out: listings belong to the runs of their own days."""
    outside = result.events[~result.events["day"].isin(prange.keys)]
    return FamilyResult(outside.reset_index(drop=True), result.listing.iloc[0:0], result.unresolved)
