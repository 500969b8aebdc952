"""`customerio_events`: every event in the log delivered exactly once, after its person's identify. The asset's
description is `delivery/events.py`'s."""

import dagster as dg

from cio_assets.defs.assets.sync import run_sync
from cio_assets.defs.catalog import listing_schemas
from cio_assets.defs.partitions import context_range
from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets.delivery import events
from cio_assets.delivery.events import EventOptions, EventStream
from cio_assets.schema import state as state_tables


def customerio_events_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key="customerio_events",
        group_name="customerio",
        kinds={"customerio"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        # After the people sync: a person's identify reaches Customer.io before their events.
        deps=["event_log", "customerio_people"],
        pool="customerio_api",
        description=events.__doc__,
        metadata=listing_schemas(
            state_tables.event_ledger, state_tables.delivery_rejections, state_tables.ledger_identity
        ),
    )
    def customerio_events(
        context: dg.AssetExecutionContext,
        state: StateDatabase,
        customerio: CustomerIO,
        settings: Settings,
        source: SourceDatabase,
    ) -> dg.MaterializeResult:
        off = source.mapping_spec.families_off()  # the shop has nothing they are made from
        options = EventOptions(
            chunk_size=settings.chunk_size,
            families=tuple(family for family in settings.families if family not in off),
            families_off=off,
            sent_names=settings.sent_names,
            live_window_hours=settings.live_window_hours,
            history_events=settings.history_events,
        )
        stream = EventStream(state.database, context_range(context), options, dry_run=not customerio.sends)
        return run_sync(context, stream, state, customerio)

    return customerio_events
