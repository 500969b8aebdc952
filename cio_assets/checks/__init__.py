"""Data-quality and delivery checks on the pipeline's own assets, as Dagster asset checks.

Each module reads what it judges (SQL on the state or source database, or the latest sync's
metadata), hands it to a pure function that returns the `AssetCheckResult`, and explains a
failure in its metadata (counts as int/float entries, the offending rows as a Markdown sample).
Severities: ERROR and blocking where the data would reach Customer.io wrong (the sync assets
depend on `attribute_snapshot` and `event_log`); WARN for what a person should look at; ERROR
without blocking for refusals that retries have not fixed. Thresholds are settings
(`CIO_CHECK_*`). The README's "Operations / Checks" lists each check and what to do on failure.
"""

from cio_assets.checks.attribute_snapshot import attribute_snapshot_checks
from cio_assets.checks.delivery import customerio_events_checks, customerio_people_checks
from cio_assets.checks.event_log import event_log_checks
from cio_assets.checks.hygiene import rejected_rows_share
from cio_assets.checks.identity import identity_map_health
from cio_assets.checks.profiles import customerio_people_profile_checks

CHECKS = [
    rejected_rows_share,
    identity_map_health,
    attribute_snapshot_checks,
    event_log_checks,
    customerio_people_checks,
    customerio_events_checks,
    customerio_people_profile_checks,
]
