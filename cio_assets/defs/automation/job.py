"""`refresh`: the one job the sensor, the schedule and the demo launch.

One job rather than declarative automation conditions:
- the sync runs in the same run as the snapshot and event log it delivers, after their blocking checks, so a
  failed contract stops that run's sync step and nothing else has to know about it;
- the trigger is the shop's database, which Dagster sees only through a sensor anyway, and `eager()` only
  updates the latest partition, so finalising yesterday would still need a schedule;
- every run names the same job (its Target in the UI) and there is no `default_automation_condition_sensor` to
  remember to turn on.
The source assets are external (nothing materialises them); the job carries their freshness check.
"""

import dagster as dg

from cio_assets.defs.assets.shared import REFRESHING
from cio_assets.defs.catalog import SOURCE_GROUP
from cio_assets.defs.checks.source import paid_orders_fresh

refresh = dg.define_asset_job(
    "refresh",
    selection=(dg.AssetSelection.all() - dg.AssetSelection.groups(SOURCE_GROUP))
    | dg.AssetSelection.checks(paid_orders_fresh),
    description=(
        "Rebuild identity and the partition's attribute snapshot and event log from the shop, run their checks "
        "and the source's freshness check, and deliver them to Customer.io."
    ),
)

# Run config that rebuilds everything from the whole shop rather than from what changed: it catches what no
# high-water mark sees (a row edited without moving `updated_at`, a deleted guest order; identity/refresh.py and
# tracking/computed.py). The daily schedule sends it.
FULL_REFRESH = {"ops": {asset: {"config": {"full_refresh": True}} for asset in REFRESHING}}
