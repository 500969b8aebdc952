"""Every retention event, once, in the day it happened: order_placed, checkout_started, cart_abandoned,
refund_issued and subscription_canceled, each with a stable id.

Daily partitioned by event time (business time zone). Each family reads the whole range in keyset
pages; a re-run replaces the days it covers. An event whose source time moved to another day (an
edited paid_at) leaves its old day, so an `event_id` is never in the log twice. A source row that
was set aside and passed again during the range (a corrected order) is extracted too, into its own
day. Events held back or cut to fit Customer.io are listed in `cio_quarantine`.
"""

import itertools
import time
from collections import Counter
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, func, select

from cio_assets.catalog import pii_tags, table_metadata
from cio_assets.contract import HELD, ContractTally, split_by_contract
from cio_assets.events.families import (
    EVENT_NAMES,
    FAMILIES,
    FAMILY_TABLES,
    Extraction,
    FamilyResult,
    idle_deadlines,
)
from cio_assets.events.schema import event_log_schema
from cio_assets.hygiene.rejections import released_rows
from cio_assets.hygiene.rules import Bounds
from cio_assets.identity.lookup import load_resolver, require_identity
from cio_assets.metadata import (
    DayFigures,
    add_partition_metadata,
    counts_per_day,
    listing_per_day,
    markdown_table,
    merge_days,
    named,
)
from cio_assets.partitions import PartitionRange, daily_partitions
from cio_assets.resources import SourceDatabase, StateDatabase
from cio_assets.settings import Settings
from cio_assets.sources.assets import source_key
from cio_assets.sources.tables import cart_items, carts, order_items, orders, refunds, subscriptions
from cio_assets.state import tables as state_tables
from cio_assets.state.writes import delete_keys, insert_frame, replace_days, replace_quarantine
from cio_assets.timestamps import unix, utc_now
from cio_assets.unchanged import Inputs, RefreshConfig, kept_result, record, skip_reason

ASSET = "event_log"
SCHEMA_CHECK = "event_log_schema"
SOURCES = (orders, order_items, carts, cart_items, refunds, subscriptions)
EVENT_TABLES = tuple(dict.fromkeys(FAMILY_TABLES.values()))
LOG = state_tables.event_log


@dg.asset(
    key=ASSET,
    group_name="contract",
    kinds={"sql", "pandas"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["identity_map", "rejected_rows", *(source_key(t) for t in SOURCES)],
    check_specs=[
        dg.AssetCheckSpec(
            SCHEMA_CHECK,
            asset=ASSET,
            blocking=True,
            description=(
                "Pandera contract, row by row: unique stable ids, known names, sane timestamps, JSON properties "
                "that fit Customer.io. Fails when the held share passes CIO_QUARANTINE_MAX_SHARE."
            ),
        )
    ],
    description=__doc__,
    tags=pii_tags(LOG),
    metadata=table_metadata(LOG, listings=[state_tables.quarantine]),
)
def event_log(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    source: SourceDatabase,
    state: StateDatabase,
    settings: Settings,
):
    started = time.monotonic()
    prange = PartitionRange.from_context(context)
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
        if kept is not None:
            context.log.info(kept)
            yield kept_result(context, dst, LOG, SCHEMA_CHECK, prange, logged_per_day, settings, kept, started)
            return
    schema = event_log_schema(unix(bounds.floor), unix(bounds.now))
    tally = ContractTally(ASSET, SCHEMA_CHECK)
    by_name: Counter[str] = Counter()
    unresolved: Counter[str] = Counter()
    moved = 0

    with source.connect() as src, state.begin() as dst:
        resolver = load_resolver(dst)
        released = {table.name: list(released_rows(dst, table, prange)["source_key"]) for table in EVENT_TABLES}
        # An event can only move here from a day outside the range (the range's own days are emptied below):
        # when the log holds none, as in a first backfill, there is nothing to look up per event. Asked before
        # the range is emptied: among a year of rows just deleted, the probe scanned them all (46 s).
        others = _holds_other_days(dst, prange)
        replace_days(dst, state_tables.event_log, prange.keys, pd.DataFrame(), settings.chunk_size)
        for extraction in _extractions(src, dst, resolver, prange, settings, bounds, released):
            for name, family in FAMILIES.items():
                for result in family(extraction):
                    unresolved[name] += result.unresolved
                    require_identity(resolver, result.unresolved)
                    if extraction.only is not None:  # released rows: only what the range itself did not cover
                        result = _outside(result, prange)
                    events, broken = split_by_contract(result.events, schema, key_column="event_id")
                    tally.note(result.listing)
                    tally.note(broken)
                    if others:
                        moved += delete_keys(dst, state_tables.event_log.c.event_id, list(events["event_id"]))
                    tally.written += insert_frame(dst, state_tables.event_log, events, settings.chunk_size)
                    by_name[name] += len(events)
            context.log.info(f"{dict(by_name)} events so far, {tally.held_items} held, {dict(+unresolved)} to nobody")
        if tally.exceeded(settings):
            yield tally.check_result(settings)
            raise tally.failure(settings)  # rolls the whole range back: the days keep their previous rows
        replace_quarantine(dst, ASSET, prange.keys, tally.quarantine)
        record(dst, ASSET, prange.keys, inputs)
    # Read back from the table once committed: the figures are what the days now hold. Inside the transaction
    # that wrote them, InnoDB checks each index entry of a page it changed against the row itself, so counting a
    # year's people per day from the (day, person_id) index read the whole log (46 s instead of 1 s).
    with state.connect() as conn:
        days = merge_days(
            prange.keys, logged_per_day(conn, prange.keys), listing_per_day(tally.quarantine, prange.keys, HELD)
        )

    add_partition_metadata(context, days)
    adjusted = tally.quarantine[tally.quarantine["outcome"] != HELD]
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(LOG),
            "run_rows": tally.written,
            "run_mode": "computed",
            "run_mode_reason": "full_refresh in the run config" if config.full_refresh else "its inputs changed",
            **named("run_events", {name: by_name[name] for name in EVENT_NAMES}),
            **named("run_unresolved", {name: unresolved[name] for name in EVENT_NAMES}),
            "run_rows_held": tally.held_items,
            "run_moved_from_other_days": moved,
            "run_released_from_quarantine": sum(len(keys) for keys in released.values()),
            "run_days": len(prange.days),
            "run_includes_history_before_start": prange.includes_history,
            "run_adjusted_sample": markdown_table(adjusted[["day", "item_key", "outcome", "reason"]]),
            "run_duration_s": round(time.monotonic() - started, 2),
        },
        check_results=[tally.check_result(settings)],
    )


def logged_per_day(conn: Connection, days: list[str]) -> DayFigures:
    """Each day's events as the log holds them: rows, people with an event, and events per name (every
    name, zeros included)."""
    in_range = LOG.c.day.between(min(days), max(days))
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


def _holds_other_days(conn: Connection, prange: PartitionRange) -> bool:
    """Whether the log may hold rows outside the range's days (two probes of the day index; a range with gaps
    between its days always may)."""
    if any(day.end != following.start for day, following in itertools.pairwise(prange.days)):
        return True
    before = select(LOG.c.day).where(LOG.c.day < min(prange.keys)).limit(1)
    after = select(LOG.c.day).where(LOG.c.day > max(prange.keys)).limit(1)
    return any(conn.execute(probe).first() is not None for probe in (before, after))


def _extractions(src, dst, resolver, prange: PartitionRange, settings: Settings, bounds: Bounds, released):
    """The range itself, then (if any) the source rows released from quarantine during it, wherever their day."""
    yield Extraction(src, dst, resolver, prange, settings, bounds)
    if any(released.values()):
        history = PartitionRange.for_keys(daily_partitions, daily_partitions.get_partition_keys())
        yield Extraction(src, dst, resolver, history, settings, bounds, only=released)


def _outside(result: FamilyResult, prange: PartitionRange) -> FamilyResult:
    """A released row's events outside the range's days (those inside it came with the range). Its
    listing is left out: listings belong to the runs of their own days."""
    outside = result.events[~result.events["day"].isin(prange.keys)]
    return FamilyResult(outside.reset_index(drop=True), result.listing.iloc[0:0], result.unresolved)
