"""`event_log`: every retention event, once, in the day it happened: order_placed, checkout_started,
cart_abandoned, refund_issued and subscription_canceled, each with a stable id (`events/log.py`).

Daily partitioned by event time (business time zone). Each family reads the whole range in keyset pages; a
re-run replaces the days it covers. The range is cut into pieces of CIO_CHUNK_DAYS days (by default 92 on
the multiprocess or Celery executor, which run them at once, and the whole range in process), each extracted
by a step of its own (`event_log_piece`) and staged; `event_log_publish` replaces the range's days with them
in one transaction. An event whose source time moved to another day (an edited paid_at) leaves its old day,
so an `event_id` is never in the log twice. A source row that was set aside and passed again during the
range (a corrected order) is extracted too, into its own day. Events held back or cut to fit Customer.io are
listed in `cio_quarantine`.
"""

import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg

from cio_assets.contract import HELD, ContractTally, replace_quarantine
from cio_assets.defs.assets.shared import RefreshConfig, kept_result
from cio_assets.defs.catalog import family_properties, pii_tags, source_key, table_metadata
from cio_assets.defs.checks.contract import contract_check_spec, contract_exceeded, contract_failure, contract_result
from cio_assets.defs.failures import stops_as_failures
from cio_assets.defs.metadata import add_partition_metadata, markdown_table
from cio_assets.defs.partitions import partition_range, whole_range
from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets.events import staging
from cio_assets.events.idle_carts import idle_deadlines
from cio_assets.events.log import (
    ASSET,
    EVENT_TABLES,
    SCHEMA_CHECK,
    SOURCES,
    Piece,
    PieceResult,
    Plan,
    extract_piece,
    holds_other_days,
    logged_per_day,
    paid_orders_per_day,
    piece_count,
    pieces_of,
)
from cio_assets.hygiene.rejections import released_rows
from cio_assets.lib.frames import listing_per_day, merge_days, named
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.schema import state as state_tables
from cio_assets.schema.events import DECLARED, EVENT_NAMES
from cio_assets.tracking.computed import Inputs, record, skip_reason

LOG = state_tables.event_log
# The inputs the plan waits for: identity, hygiene's listing and the source tables (observations).
DEPS = {"identity_map": dg.AssetKey("identity_map"), "rejected_rows": dg.AssetKey("rejected_rows")} | {
    f"source_{table.name}": source_key(table) for table in SOURCES
}


def event_log_asset(partitions: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
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
        prange = partition_range(partitions, list(context.partition_keys))
        clock = settings.clock(utc_now(), source.mapping_spec)
        now = unix(clock.now)
        with source.connect() as src, state.begin() as dst:
            inputs = Inputs.read(
                src, dst, SOURCES, settings.fingerprint(source.mapping_spec), clock, context.run.run_id
            )

            def carts_due(computed_at: int) -> bool:
                # A day that had not ended when it was computed may gain abandoned carts by the clock alone.
                then = datetime.fromtimestamp(computed_at, UTC)
                return then < prange.end and bool(
                    idle_deadlines(src, clock.zones, settings.cart_idle, settings.chunk_size, then, clock.now)
                )

            kept = None
            if not config.full_refresh:
                kept = skip_reason(dst, ASSET, prange.keys, inputs, EVENT_TABLES, due=carts_due)
            plan = Plan(context.run.run_id, prange.keys, now, started_at, inputs, kept, config.full_refresh)
            if kept is not None:
                context.log.info(kept)
                yield dg.Output(plan, "plan")
                return
            released = {table.name: list(released_rows(dst, table, prange)["source_key"]) for table in EVENT_TABLES}
            # An event can only move here from a day outside the range (the range's own days are replaced): when
            # the log holds none, as in a first backfill, there is nothing to look up per event.
            others = holds_other_days(dst, prange)
            executor = context.job_def.executor_def.name
            count = piece_count(len(prange.days), settings.chunk_days, executor)
            weights = paid_orders_per_day(src, prange, clock) if count > 1 else None
        stale = staging.drop_stale(state.engine, plan.now)
        if stale:
            context.log.info(f"Dropped {stale} staging tables of runs that never published.")
        pieces = pieces_of(prange, count, weights, released)
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
        prange = partition_range(partitions, plan.keys)
        # Released rows may belong to any day so far; the range's own pieces read their days.
        reads = whole_range(partitions) if piece.only is not None else partition_range(partitions, piece.keys)
        clock = settings.clock(datetime.fromtimestamp(plan.now, UTC), source.mapping_spec)
        staged = staging.create(state.engine, plan.batch, piece.name, plan.now)
        with source.connect() as src, state.begin() as dst, stops_as_failures():
            return extract_piece(
                src,
                dst,
                staged,
                piece,
                reads,
                prange,
                clock,
                settings.chunk_size,
                settings.cart_idle,
                context.log.info,
            )

    @dg.op(name="event_log_publish", out={"result": dg.Out(dg.Nothing), "check": dg.Out(dg.Nothing)})
    def publish_op(
        context: dg.AssetExecutionContext,
        plan: Plan,
        results: list[PieceResult],
        state: StateDatabase,
        settings: Settings,
    ):
        """Move the staged pieces into the log in one transaction, unless too many rows broke the contract."""
        prange = partition_range(partitions, plan.keys)
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
        if contract_exceeded(tally, settings):
            staging.drop_run(state.engine, plan.batch)
            yield contract_result(tally, settings)
            raise contract_failure(tally, settings)  # nothing published: the days keep their previous rows
        # Any other failure keeps the staged rows for a re-execution of this step (then the next run's clean-up).
        with state.begin() as dst:
            staged = [staging.staging_table(plan.batch, r.name) for r in results]
            written, moved = staging.publish(dst, staged, plan.keys, plan.others, expected=tally.written)
            replace_quarantine(dst, ASSET, plan.keys, tally.quarantine)
            record(dst, ASSET, plan.keys, plan.inputs)
        staging.drop_run(state.engine, plan.batch)
        # Read back from the table once committed: the figures are what the days now hold. Inside the transaction
        # that wrote them, InnoDB checks each index entry of a page it changed against the row itself, so counting
        # a year's people per day from the (day, person_id) index read the whole log (46 s instead of 1 s).
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
        yield contract_result(tally, settings)

    @dg.graph_asset(
        key=ASSET,
        group_name="contract",
        kinds={"sql", "pandas"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={name: dg.AssetIn(key=key, dagster_type=dg.Nothing) for name, key in DEPS.items()},
        check_specs=[
            contract_check_spec(
                ASSET,
                SCHEMA_CHECK,
                "unique stable ids, known names, sane timestamps, JSON properties that fit Customer.io",
            )
        ],
        config=dg.ConfigMapping(
            config_fn=lambda config: {"event_log_plan": {"config": config}},
            config_schema=RefreshConfig.to_config_schema(),
        ),
        description=__doc__,
        tags=pii_tags(LOG),
        metadata={
            **table_metadata(LOG, listings=[state_tables.quarantine]),
            **{key: value for family in DECLARED for key, value in family_properties(family).items()},
        },
    )
    def event_log(**deps):
        """Plan, then extract the pieces (the executor places them: at once on the multiprocess or Celery
        executor), then publish them together."""
        plan, pieces = plan_op(**deps)
        result, check = publish_op(plan, pieces.map(lambda piece: piece_op(plan, piece)).collect())
        return {"result": result, f"{ASSET}_{SCHEMA_CHECK}": check}

    return event_log
