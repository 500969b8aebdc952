"""What exists, wired together: MySQL sources → identity and hygiene → snapshot and event log → Customer.io.

Entry point for `dagster dev -m cio_assets.definitions` (and `workspace.yaml`).
"""

import dagster as dg

from cio_assets.attributes.assets import attribute_snapshot
from cio_assets.automation import finalize_yesterday, paid_orders_fresh, refresh, with_sync_freshness
from cio_assets.checks import CHECKS
from cio_assets.events.assets import event_log
from cio_assets.hygiene.assets import rejected_rows
from cio_assets.identity.assets import identity_map
from cio_assets.resources import customerio_resource, database_resources
from cio_assets.settings import Settings
from cio_assets.sources.assets import source_tables
from cio_assets.sources.sensors import source_changes
from cio_assets.sync.events import customerio_events
from cio_assets.sync.people import customerio_people
from cio_assets.sync.reconcile import customerio_people_reconciled

defs = dg.Definitions(
    # Code references: the catalog links each asset to the function that computes it.
    assets=dg.with_source_code_references(
        [
            *source_tables,
            rejected_rows,
            identity_map,
            attribute_snapshot,
            event_log,
            *with_sync_freshness([customerio_people, customerio_events]),
        ]
    ),
    asset_checks=[
        *CHECKS,  # data quality and delivery (cio_assets/checks/)
        paid_orders_fresh,
        customerio_people_reconciled,
        # Warns when a table the pipeline owns changes its columns between two materializations.
        *dg.build_column_schema_change_checks(assets=[rejected_rows, identity_map, attribute_snapshot, event_log]),
    ],
    jobs=[refresh],
    schedules=[finalize_yesterday],
    sensors=[source_changes],
    resources={"settings": Settings.from_env(), "customerio": customerio_resource(), **database_resources()},
    # Steps here are database-bound and short; the multiprocess executor's ~4 s start-up per step
    # would dominate a run, so everything runs in one process.
    executor=dg.in_process_executor,
)
