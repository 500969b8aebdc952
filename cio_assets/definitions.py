"""What exists, wired together: MySQL sources → identity and hygiene → snapshot and event log → Customer.io.

Entry point for `dagster dev -m cio_assets.definitions` (and `workspace.yaml`).
"""

import dagster as dg

from cio_assets.attributes.assets import attribute_snapshot
from cio_assets.automation import finalize_yesterday, paid_orders_fresh, refresh, with_sync_freshness
from cio_assets.checks import CHECKS
from cio_assets.delivery.events import customerio_events
from cio_assets.delivery.people import customerio_people
from cio_assets.delivery.reconcile import customerio_people_reconciled
from cio_assets.events.assets import event_log
from cio_assets.hygiene.assets import rejected_rows
from cio_assets.identity.assets import identity_map
from cio_assets.resources import customerio_resource, database_resources
from cio_assets.settings import CELERY_BROKER, EXECUTOR, Settings
from cio_assets.sources.assets import source_tables
from cio_assets.sources.sensors import source_changes


def executor_named(name: str) -> dg.ExecutorDefinition:
    """The executor `CIO_EXECUTOR` names (one of `settings.EXECUTORS`). Celery is imported only when chosen:
    it comes with the optional scale-out extra."""
    if name == "celery":
        from dagster_celery import celery_executor
        from dagster_celery.executor import CELERY_CONFIG

        def with_broker(config: dict) -> dict:
            # A broker named in the run's `execution: config:` wins; otherwise CIO_CELERY_BROKER, read in the
            # process that runs the run, so its password never becomes part of a run's stored config.
            return {**config, "broker": config.get("broker") or CELERY_BROKER.read() or None}

        # The same config as dagster-celery's own (backend, queue through config_source, retries), so a run
        # (or a schedule's run request) can still set any of it; deploy/README.md shows the workers' side.
        return celery_executor.configured(with_broker, config_schema=CELERY_CONFIG)
    if name == "multiprocess":
        return dg.multiprocess_executor
    # Steps here are database-bound and short; the multiprocess executor's ~4 s start-up per step
    # would dominate a run, so by default everything runs in one process.
    return dg.in_process_executor


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
    # CIO_EXECUTOR, read once here: in_process (the default, and the demo's), multiprocess or celery.
    executor=executor_named(EXECUTOR.read()),
)
