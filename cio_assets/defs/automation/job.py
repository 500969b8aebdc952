"""`refresh`: the one job that delivers, launched by the sensor, the schedule and the demo; `read_back`: the
read-back of the latest people sync, in a run of its own.

One job rather than declarative automation conditions:
- the sync runs in the same run as the snapshot and event log it delivers, after their blocking checks, so a
  failed contract stops that run's sync step and nothing else has to know about it;
- the trigger is the shop's database, which Dagster sees only through a sensor anyway, and `eager()` only
  updates the latest partition, so finalising yesterday would still need a schedule;
- every run names the same job (its Target in the UI) and there is no `default_automation_condition_sensor` to
  remember to turn on.
The source assets are external (nothing materialises them); the job carries their freshness check.

The read-back (`customerio_people_reconciled`) is left out of `refresh`: Dagster starts `customerio_events`, which
depends on `customerio_people`, only after every check on `customerio_people` in the same run has finished, and the
read-back may wait `CIO_RECONCILE_SETTLE_SECONDS` (30 s) for Customer.io to apply identifies before it reads again.
So it runs as `read_back`, a job of that check alone, which the `read_back_after_sync` sensor (`read_back.py`)
launches once a sync's run has finished: what the read-back finds, and how long it waits, never delays delivery.
(A run that selects `customerio_people` by hand brings the check back with it; there it skips, naming `read_back`.)
"""

import dagster as dg

from cio_assets.defs.assets.shared import REFRESHING
from cio_assets.defs.catalog import SOURCE_GROUP
from cio_assets.defs.checks.reconcile import customerio_people_reconciled
from cio_assets.defs.checks.source import paid_orders_fresh

refresh = dg.define_asset_job(
    "refresh",
    selection=(
        dg.AssetSelection.all()
        - dg.AssetSelection.groups(SOURCE_GROUP)
        - dg.AssetSelection.checks(customerio_people_reconciled)
    )
    | dg.AssetSelection.checks(paid_orders_fresh),
    description=(
        "Rebuild identity and the partition's attribute snapshot and event log from the shop, run their checks "
        "and the source's freshness check, and deliver them to Customer.io. The read-back of the people sync is "
        "not part of it: it runs as read_back, after this run has delivered."
    ),
)

read_back = dg.define_asset_job(
    "read_back",
    selection=dg.AssetSelection.checks(customerio_people_reconciled),
    description=(
        "Read the latest people sync's people back from Customer.io's App API and compare them with the people "
        "ledger (the customerio_people_reconciled check), in a run of its own: the read_back_after_sync sensor "
        "launches it once per people sync, after that sync's run has finished, so its settle wait "
        "(CIO_RECONCILE_SETTLE_SECONDS) never holds up delivery."
    ),
)

# Run config that rebuilds everything from the whole shop rather than from what changed: it catches what no
# high-water mark sees (a row edited without moving `updated_at`, a deleted guest order; identity/refresh.py and
# tracking/computed.py). The daily schedule sends it.
FULL_REFRESH = {"ops": {asset: {"config": {"full_refresh": True}} for asset in REFRESHING}}
