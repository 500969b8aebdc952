"""`attribute_snapshot`: each changed person's attributes as of the end of each day, one authoritative row per
person and day (`attributes/snapshot.py`).

For every person whose inputs (profile, paid orders, refunds, subscriptions) changed during a day, one row
with their state as of the end of that day, computed from full history. A re-run of a day writes the same rows,
so backfills are safe; the first partition also covers all earlier history. A person's day whose inputs include
a source row set aside by the hygiene rules is held back, and a row that breaks the contract is held back
alone; both are listed in `cio_quarantine`.
"""

import time

import dagster as dg

from cio_assets.attributes.queries import CHANGE_TABLES
from cio_assets.attributes.snapshot import (
    ASSET,
    SCHEMA_CHECK,
    SOURCES,
    compute_snapshot,
    written_in_run,
    written_per_day,
)
from cio_assets.contract import HELD, replace_quarantine
from cio_assets.defs.assets.shared import RefreshConfig, kept_result
from cio_assets.defs.catalog import pii_tags, source_key, table_metadata
from cio_assets.defs.checks.contract import contract_check_spec, contract_exceeded, contract_failure, contract_result
from cio_assets.defs.failures import stops_as_failures
from cio_assets.defs.metadata import add_partition_metadata, markdown_table
from cio_assets.defs.partitions import context_range
from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets.lib.frames import listing_per_day, merge_days
from cio_assets.lib.timestamps import utc_now
from cio_assets.schema import state as state_tables
from cio_assets.tracking.computed import Inputs, record, skip_reason

SNAPSHOT = state_tables.attribute_snapshot


def attribute_snapshot_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=ASSET,
        group_name="contract",
        kinds={"sql", "pandas"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["identity_map", "rejected_rows", *(source_key(t) for t in SOURCES)],
        check_specs=[
            contract_check_spec(
                ASSET,
                SCHEMA_CHECK,
                "types, one row per person and day, sane timestamps, eligibility, values that fit Customer.io",
            )
        ],
        description=__doc__,
        tags=pii_tags(SNAPSHOT),
        metadata=table_metadata(SNAPSHOT, listings=[state_tables.quarantine]),
    )
    def attribute_snapshot(
        context: dg.AssetExecutionContext,
        config: RefreshConfig,
        source: SourceDatabase,
        state: StateDatabase,
        settings: Settings,
    ):
        started = time.time()
        prange = context_range(context)
        clock = settings.clock(utc_now(), source.mapping_spec)
        with source.connect() as src, state.begin() as dst:
            inputs = Inputs.read(
                src, dst, SOURCES, settings.fingerprint(source.mapping_spec), clock, context.run.run_id
            )
            kept = None if config.full_refresh else skip_reason(dst, ASSET, prange.keys, inputs, CHANGE_TABLES)
            if kept is not None:
                context.log.info(kept)
                yield kept_result(
                    context,
                    dst,
                    SNAPSHOT,
                    SCHEMA_CHECK,
                    prange,
                    written_per_day,
                    settings,
                    kept,
                    started,
                    run=written_in_run(dst, prange.keys),
                )
                return

        with source.connect() as src, state.begin() as dst, stops_as_failures():
            run = compute_snapshot(
                src,
                dst,
                prange,
                clock,
                settings.tiers,
                settings.canonical_id,
                settings.unknown_consent_eligible,
                settings.chunk_size,
                context.log.info,
            )
            tally = run.tally
            if contract_exceeded(tally, settings):
                yield contract_result(tally, settings)
                raise contract_failure(tally, settings)  # rolls the whole range back: the days keep their rows
            replace_quarantine(dst, ASSET, prange.keys, tally.quarantine)
            record(dst, ASSET, prange.keys, inputs)
            # Read back from the table, in the same transaction: the figures are what the days now hold.
            days = merge_days(
                prange.keys, written_per_day(dst, prange.keys), listing_per_day(tally.quarantine, prange.keys, HELD)
            )

        add_partition_metadata(context, days)
        adjusted = tally.quarantine[tally.quarantine["outcome"] != HELD]
        yield dg.MaterializeResult(
            metadata={
                **table_metadata(SNAPSHOT),
                **run.totals,
                "run_mode": "computed",
                "run_mode_reason": "full_refresh in the run config" if config.full_refresh else "its inputs changed",
                "run_rows_held": tally.held_items,
                "run_days": len(prange.days),
                "run_without_customer_record": run.without_profile,
                "run_erased_left_out": run.erased_left_out,
                "run_unresolved_change_rows": run.unresolved,
                "run_released_from_quarantine": run.released,
                "run_everyone_after_deletes": run.everyone_again,
                "run_captured_people": run.captured_people,
                "run_includes_history_before_start": prange.includes_history,
                "run_adjusted_sample": markdown_table(adjusted[["day", "item_key", "outcome", "reason"]]),
                "run_duration_s": round(time.time() - started, 2),
            },
            check_results=[contract_result(tally, settings)],
        )

    return attribute_snapshot
