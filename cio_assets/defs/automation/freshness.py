"""The sync assets' freshness policies: Dagster's own, evaluated by the daemon from the materialisation history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from cio_assets.config import AutomationSettings

SYNC_ASSET_KEYS = frozenset({dg.AssetKey("customerio_people"), dg.AssetKey("customerio_events")})


def sync_freshness_policy(settings: AutomationSettings) -> dg.FreshnessPolicy:
    """Fails when the last successful sync is older than CIO_SYNC_MAX_LAG_MINUTES; warns past
    CIO_SYNC_WARN_LAG_MINUTES (0: no warning). A failed sync records no materialisation, so it ages."""
    warn = settings.sync_warn_lag_minutes
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=settings.sync_max_lag_minutes),
        warn_window=timedelta(minutes=warn) if warn else None,
    )


def with_sync_freshness(assets: Sequence[dg.AssetsDefinition], policy: dg.FreshnessPolicy) -> list[dg.AssetsDefinition]:
    """`assets` with the sync freshness policy on the Customer.io sync assets among them."""

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        return dg.apply_freshness_policy(spec, policy) if spec.key in SYNC_ASSET_KEYS else spec

    return list(dg.map_asset_specs(apply, assets))
