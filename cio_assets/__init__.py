"""cio-assets: a D2C shop's MySQL data as clean Customer.io people and events, as Dagster assets."""

import warnings

import dagster as dg

# `backfill_policy` (single-run backfills) is Beta in dagster 1.13 and central to this project:
# every partitioned asset is range-aware on purpose. Say so once instead of warning on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
