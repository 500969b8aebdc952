"""`paid_orders_fresh` (WARN), on `source/orders`: the newest paid order is recent, so the shop, and the database
the pipeline reads, are still taking orders.

Evaluated by every `refresh` run, and reported by the source sensor's ticks when its outcome changes (so a
shop that stopped taking orders warns within a minute, though no run is launched).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import dagster as dg
from sqlalchemy import Connection

from cio_assets.defs.catalog import source_key
from cio_assets.defs.resources import Settings, SourceDatabase
from cio_assets.lib.timestamps import utc_now
from cio_assets.schema.shop import orders
from cio_assets.tracking.marks import newest_paid_at

SOURCE_FRESHNESS_CHECK = "paid_orders_fresh"


@dataclass(frozen=True)
class SourceFreshness:
    """How old the shop's newest paid order is, against the lag allowed."""

    newest_paid_at: datetime | None  # aware, UTC; None when the source holds no paid order
    checked_at: datetime  # aware, UTC
    max_lag_minutes: int
    source: str  # the source database as it may be shown: no password

    @property
    def lag_minutes(self) -> float | None:
        if self.newest_paid_at is None:
            return None
        return round((self.checked_at - self.newest_paid_at).total_seconds() / 60, 1)

    @property
    def passed(self) -> bool:
        lag = self.lag_minutes
        return lag is not None and lag <= self.max_lag_minutes

    @property
    def description(self) -> str:
        allowed = f"{Settings.variable('source_max_lag_minutes')} allows {self.max_lag_minutes:,}"
        if self.newest_paid_at is None:
            return f"The source ({self.source}) holds no paid order yet; {allowed} minutes."
        newest = f"newest paid order at {self.newest_paid_at:%Y-%m-%d %H:%M} UTC, {self.lag_minutes:,.0f} minutes ago"
        if self.passed:
            return f"Fresh: {newest} ({allowed})."
        return (
            f"Stale: {newest}; {allowed}. The shop may have stopped taking orders, or the database the pipeline "
            f"reads ({self.source}) stopped receiving them (a replica that stopped replicating)."
        )

    @property
    def metadata(self) -> dict[str, dg.MetadataValue]:
        metadata: dict[str, dg.MetadataValue] = {
            "max_lag_minutes": dg.MetadataValue.int(self.max_lag_minutes),
            "source_database": dg.MetadataValue.text(self.source),
        }
        if self.newest_paid_at is not None:
            metadata["newest_paid_at"] = dg.MetadataValue.timestamp(self.newest_paid_at)
            metadata["lag_minutes"] = dg.MetadataValue.float(float(self.lag_minutes or 0.0))
        return metadata

    def check_result(self) -> dg.AssetCheckResult:
        """The result a run reports (a stale source is for a person to look at: WARN)."""
        return dg.AssetCheckResult(
            passed=self.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=self.description,
            metadata=self.metadata,
        )

    def evaluation(self) -> dg.AssetCheckEvaluation:
        """The same result, as a sensor reports it outside any run."""
        return dg.AssetCheckEvaluation(
            asset_key=source_key(orders),
            check_name=SOURCE_FRESHNESS_CHECK,
            passed=self.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=self.description,
            metadata=self.metadata,
        )


def read_source_freshness(conn: Connection, source: SourceDatabase, settings: Settings) -> SourceFreshness:
    now = utc_now()
    return SourceFreshness(
        newest_paid_at=newest_paid_at(conn, settings.zones(source.mapping_spec).of(orders.name), now),
        checked_at=now,
        max_lag_minutes=settings.source_max_lag_minutes,
        source=source.origin.url,
    )


@dg.asset_check(
    asset=source_key(orders),
    name=SOURCE_FRESHNESS_CHECK,
    description=(
        "The newest paid order is at most CIO_SOURCE_MAX_LAG_MINUTES old: the shop, and the database the "
        "pipeline reads, are still taking orders. Warns; delivery goes on with what the source holds."
    ),
)
def paid_orders_fresh(source: SourceDatabase, settings: Settings) -> dg.AssetCheckResult:
    with source.connect() as conn:
        return read_source_freshness(conn, source, settings).check_result()
