"""`customerio_people`: each changed person identified once, with only the attributes that changed, and who
people are (merges, erasures, anonymous ids). The asset's description is `delivery/people.py`'s."""

import dagster as dg

from cio_assets.defs.assets.sync import run_sync
from cio_assets.defs.catalog import listing_schemas, pii_tags
from cio_assets.defs.metadata import markdown_table
from cio_assets.defs.partitions import context_range
from cio_assets.defs.resources import CustomerIO, Settings, StateDatabase
from cio_assets.delivery import people
from cio_assets.delivery.people import PeopleOptions, PeopleStream, pending_merges_frame
from cio_assets.schema import state as state_tables


def customerio_people_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key="customerio_people",
        group_name="customerio",
        kinds={"customerio"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["attribute_snapshot"],
        pool="customerio_api",
        description=people.__doc__,
        tags=pii_tags(state_tables.people_ledger),
        metadata=listing_schemas(
            state_tables.people_ledger,
            state_tables.delivery_rejections,
            state_tables.ledger_identity,
            state_tables.anonymous_ledger,
            state_tables.merge_ledger,
            state_tables.unsubscribed_in_customerio,
        ),
    )
    def customerio_people(
        context: dg.AssetExecutionContext, state: StateDatabase, customerio: CustomerIO, settings: Settings
    ) -> dg.MaterializeResult:
        options = PeopleOptions(
            chunk_size=settings.chunk_size,
            unsubscribe=settings.unsubscribe,
            merge_duplicates=settings.merge_duplicates,
            erasure=settings.erasure,
            vanished=settings.vanished,
        )
        stream = PeopleStream(state.database, context_range(context), options, dry_run=not customerio.sends)
        result = run_sync(context, stream, state, customerio)
        pending = {"pending_merges": markdown_table(pending_merges_frame(stream.pending_merges))}
        return dg.MaterializeResult(metadata={**(result.metadata or {}), **pending})

    return customerio_people
