"""Data-quality and delivery checks on the pipeline's own assets, as Dagster asset checks.

Each module reads what it judges (SQL on the state or source database, or the latest sync's
metadata), hands it to a pure function that returns the `AssetCheckResult`, and explains a
failure in its metadata (counts as int/float entries, the offending rows as a Markdown sample).
Severities: ERROR and blocking where the data would reach Customer.io wrong (the sync assets
depend on `attribute_snapshot` and `event_log`); WARN for what a person should look at; ERROR
without blocking for refusals that retries have not fixed. Thresholds are settings
(`CIO_CHECK_*`). docs/operations.md lists each check and what to do on failure.

Every asset check is defined under this package: the blocking contract checks of the snapshot and the event
log (`contract.py`, check specs their assets report), the source's freshness (`source.py`), the read-back
(`reconcile.py`), and Dagster's own column schema change checks on the tables the pipeline owns.
"""

from collections.abc import Sequence

import dagster as dg

from cio_assets.defs.checks.attribute_snapshot import attribute_snapshot_checks
from cio_assets.defs.checks.delivery import customerio_events_checks, customerio_people_checks
from cio_assets.defs.checks.event_log import event_log_checks
from cio_assets.defs.checks.hygiene import rejected_rows_share
from cio_assets.defs.checks.identity import identity_map_health
from cio_assets.defs.checks.profiles import customerio_people_profile_checks
from cio_assets.defs.checks.reconcile import customerio_people_reconciled
from cio_assets.defs.checks.source import paid_orders_fresh


def build_checks(partitions: dg.TimeWindowPartitionsDefinition, owned: Sequence[dg.AssetsDefinition]) -> list:
    """Every check on the pipeline's assets; `owned`: the assets whose tables the column schema checks watch."""
    return [
        paid_orders_fresh,
        rejected_rows_share,
        identity_map_health,
        attribute_snapshot_checks(partitions),
        event_log_checks(partitions),
        customerio_people_checks,
        customerio_events_checks,
        customerio_people_profile_checks,
        customerio_people_reconciled,
        # Warns when a table the pipeline owns changes its columns between two materializations.
        *dg.build_column_schema_change_checks(assets=owned),
    ]
