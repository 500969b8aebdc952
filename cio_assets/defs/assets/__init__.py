"""One module per asset: the shop's tables (external), rejected_rows, identity_map, attribute_snapshot, event_log,
customerio_people and customerio_events."""

import warnings

import dagster as dg

# `backfill_policy` (single-run backfills) is Beta in dagster 1.13 and central to this project: every partitioned
# asset is range-aware on purpose. Say so once instead of warning on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
