"""`paid_orders_fresh` (WARN), on `source/orders`: the newest paid order is recent, so the shop, and the database
the pipeline reads, are still taking orders; and no paid order is dated after now, the signature of a wrong time
zone when it is the shop's recent orders (an order paid a minute ago, read in a zone five hours off, is five hours
ahead or behind).

Evaluated by every `refresh` run, and reported by the source sensor's ticks when its outcome changes (so a
shop that stopped taking orders warns within a minute, though no run is launched).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg
from sqlalchemy import Connection, Engine

from cio_assets.defs.catalog import source_key
from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets.lib.timestamps import utc_now
from cio_assets.schema.shop import orders
from cio_assets.tracking.marks import paid_times

SOURCE_FRESHNESS_CHECK = "paid_orders_fresh"


@dataclass(frozen=True)
class SourceFreshness:
    """How old the shop's newest paid order is, against the lag allowed."""

    newest_paid_at: datetime | None  # aware, UTC; None when the source holds no paid order
    checked_at: datetime  # aware, UTC
    max_lag_minutes: int
    source: str  # the source database as it may be shown: no password
    future_paid: int = 0  # paid orders dated after checked_at (within FUTURE_WINDOW)
    latest_future: datetime | None = None  # aware, UTC: the latest of them

    @property
    def lag_minutes(self) -> float | None:
        if self.newest_paid_at is None:
            return None
        return round((self.checked_at - self.newest_paid_at).total_seconds() / 60, 1)

    @property
    def passed(self) -> bool:
        lag = self.lag_minutes
        return lag is not None and lag <= self.max_lag_minutes and not self.future_paid

    @property
    def zone_hint(self) -> str:
        """What points at a wrong time zone: orders dated ahead of now, or a lag of whole hours."""
        variables = f"the source mapping's time_zone, or {Settings.variable('source_tz')}"
        if self.future_paid and self.latest_future is not None:
            hours = (self.latest_future - self.checked_at).total_seconds() / 3600
            return (
                f" {self.future_paid:,} paid order(s) are dated up to {hours:.1f} h after now; they are set aside "
                f"until their time comes. A bad row or two is just that; the shop's recent orders hours ahead "
                f"mean the orders' time zone is wrong ({variables})."
            )
        lag = self.lag_minutes
        if lag is not None and lag > self.max_lag_minutes and lag >= 55 and abs(lag / 60 - round(lag / 60)) < 0.1:
            return (
                f" A lag of about {round(lag / 60)} h, whole hours, is also the signature of a time zone read "
                f"wrong ({variables})."
            )
        return ""

    @property
    def description(self) -> str:
        allowed = f"{Settings.variable('source_max_lag_minutes')} allows {self.max_lag_minutes:,}"
        if self.newest_paid_at is None:
            return f"The source ({self.source}) holds no paid order yet; {allowed} minutes.{self.zone_hint}"
        newest = f"newest paid order at {self.newest_paid_at:%Y-%m-%d %H:%M} UTC, {self.lag_minutes:,.0f} minutes ago"
        if self.passed:
            return f"Fresh: {newest} ({allowed})."
        if self.lag_minutes is not None and self.lag_minutes <= self.max_lag_minutes:
            return f"Fresh: {newest} ({allowed}), but dated ahead:{self.zone_hint}"
        return (
            f"Stale: {newest}; {allowed}. The shop may have stopped taking orders, or the database the pipeline "
            f"reads ({self.source}) stopped receiving them (a replica that stopped replicating).{self.zone_hint}"
        )

    @property
    def metadata(self) -> dict[str, dg.MetadataValue]:
        metadata: dict[str, dg.MetadataValue] = {
            "max_lag_minutes": dg.MetadataValue.int(self.max_lag_minutes),
            "source_database": dg.MetadataValue.text(self.source),
        }
        metadata["paid_orders_in_future"] = dg.MetadataValue.int(self.future_paid)
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


# How far ahead of now a paid order is looked for: a zone is at most 14 h off UTC, so two zones 26 h apart.
FUTURE_WINDOW = timedelta(hours=26)


def read_source_freshness(
    conn: Connection, source: SourceDatabase, settings: Settings, kept: Engine | None = None
) -> SourceFreshness:
    """The check's figures now; `kept` (the state database) keeps the paid orders' times while no write touches the
    orders (`tracking/marks.py`), so a tick or a run with nothing new reads none of them."""
    now = utc_now()
    zone = settings.zones(source.mapping_spec).of(orders.name)
    paid = paid_times(conn, zone, now, kept)
    future_paid, latest_future = paid.ahead_of(now, FUTURE_WINDOW)
    return SourceFreshness(
        newest_paid_at=paid.newest_by(now),
        checked_at=now,
        max_lag_minutes=settings.source_max_lag_minutes,
        source=source.origin.url,
        future_paid=future_paid,
        latest_future=latest_future,
    )


@dg.asset_check(
    asset=source_key(orders),
    name=SOURCE_FRESHNESS_CHECK,
    description=(
        "The newest paid order is at most CIO_SOURCE_MAX_LAG_MINUTES old: the shop, and the database the "
        "pipeline reads, are still taking orders; and none is dated after now (recent orders hours ahead mean a "
        "wrong time zone). Warns; delivery goes on with what the source holds."
    ),
)
def paid_orders_fresh(source: SourceDatabase, state: StateDatabase, settings: Settings) -> dg.AssetCheckResult:
    with source.connect() as conn:
        return read_source_freshness(conn, source, settings, kept=state.engine).check_result()
