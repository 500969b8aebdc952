"""UTC everywhere: converting the source's naive DATETIMEs to instants and back.

Source DATETIME columns are naive, in a per-table zone (`SourceZones`: CIO_SOURCE_TZ and its overrides).
Query bounds go to the database as naive datetimes in that table's zone; values come back as naive datetimes
and are turned into UTC Unix seconds here, vectorised over whole columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd


@dataclass(frozen=True)
class SourceZones:
    """The time zone each source table stores its naive DATETIMEs in: one zone, and some tables' own."""

    default: str = "UTC"
    overrides: Mapping[str, str] = field(default_factory=dict)

    def of(self, table: str) -> ZoneInfo:
        return ZoneInfo(self.overrides.get(table, self.default))


@dataclass(frozen=True)
class Clock:
    """How one run reads the shop's times: the zone each table stores its naive DATETIMEs in, and the sane range
    of instants [floor, now] (aware, UTC). Hygiene sets aside a row dated outside it; the contracts refuse a derived
    row dated outside it. Every step of a run uses the same `now`. `lookback`: how long a transaction may stay open
    between stamping a change time and committing (CIO_CHANGE_LOOKBACK_SECONDS): rows changed within it before the
    newest change seen are read again (`tracking/`)."""

    zones: SourceZones
    floor: datetime
    now: datetime
    lookback: timedelta

    def zone_of(self, table: str) -> ZoneInfo:
        return self.zones.of(table)


def to_source_naive(instant: datetime, zone: ZoneInfo) -> datetime:
    """An aware instant as the naive wall-clock time a table in `zone` would store."""
    return instant.astimezone(zone).replace(tzinfo=None)


def to_unix_seconds(values: pd.Series, zone: ZoneInfo) -> pd.Series:
    """Naive source datetimes in `zone` → nullable Int64 Unix seconds (UTC)."""
    stamps = pd.to_datetime(values, errors="coerce")
    if stamps.dt.tz is None:
        # A wall time that falls in a DST gap or overlap resolves to the earlier instant, as MySQL's
        # CONVERT_TZ does, rather than failing the run.
        stamps = stamps.dt.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
    stamps = stamps.dt.tz_convert(UTC)
    seconds = stamps.astype("int64") // 10**9 if stamps.notna().all() else _nullable_seconds(stamps)
    return pd.Series(seconds, index=values.index, dtype="Int64")


def _nullable_seconds(stamps: pd.Series) -> pd.Series:
    result = pd.Series(pd.NA, index=stamps.index, dtype="Int64")
    present = stamps.notna()
    result[present] = stamps[present].astype("int64") // 10**9
    return result


def unix(instant: datetime) -> int:
    return int(instant.timestamp())


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
