"""Every setting of the pipeline, its environment variable and its default, documented once.

`Settings` is a Dagster resource, so the values a run used are visible in the UI and assets
receive them by parameter name. Secrets (database URLs with passwords) are not here: they are
resources of their own in `resources.py`, read through `dagster.EnvVar`.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field, field_validator

# Where the embedded demo keeps its SQLite files and Dagster instance.
DATA_DIR = Path(os.environ.get("CIO_DATA_DIR", ".cio")).resolve()

DEMO_SOURCE_URL = f"sqlite:///{DATA_DIR / 'shop.sqlite'}"
DEMO_STATE_URL = f"sqlite:///{DATA_DIR / 'state.sqlite'}"

CANONICAL_ID_POLICIES = ("customer_id", "email")


class Settings(dg.ConfigurableResource):
    """Behaviour of the pipeline. Each field's environment variable is named in its description."""

    source_tz: str = Field(
        default="UTC",
        description="CIO_SOURCE_TZ: time zone of the naive DATETIME columns in the source.",
    )
    source_tz_overrides: str = Field(
        default="",
        description=(
            "CIO_SOURCE_TZ_OVERRIDES: per-table time zones, e.g. 'orders=America/New_York,carts=UTC', "
            "for shops whose tables mix UTC and store-local columns."
        ),
    )
    canonical_id: str = Field(
        default="customer_id",
        description="CIO_CANONICAL_ID: 'customer_id' (sent as Customer.io `id`) or 'email'.",
    )
    timestamp_floor: str = Field(
        default="2000-01-01",
        description="CIO_TIMESTAMP_FLOOR: timestamps before this UTC date are rejected (the 1970 bug).",
    )
    cart_idle_minutes: int = Field(
        default=60,
        description="CIO_CART_IDLE_MINUTES: a cart idle this long without an order is abandoned.",
    )
    vip_tiers: str = Field(
        default="silver:250,gold:500,platinum:1000",
        description="CIO_VIP_TIERS: tier:minimum net lifetime value, ascending; below the first is 'none'.",
    )
    live_window_hours: int = Field(
        default=24,
        description=(
            "CIO_LIVE_WINDOW_HOURS: events older than this are history: sent with `backfill: true` "
            "(Customer.io never triggers campaigns from events older than 72 h)."
        ),
    )
    history_events: str = Field(
        default="send",
        description="CIO_HISTORY_EVENTS: 'send' history events marked backfill, or 'skip' them (attributes only).",
    )
    chunk_size: int = Field(
        default=5000,
        description="CIO_CHUNK_SIZE: people per aggregation query and rows per bulk write.",
    )

    @field_validator("canonical_id")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value not in CANONICAL_ID_POLICIES:
            raise ValueError(f"CIO_CANONICAL_ID must be one of {CANONICAL_ID_POLICIES}, got {value!r}")
        return value

    @field_validator("history_events")
    @classmethod
    def _known_history_mode(cls, value: str) -> str:
        if value not in ("send", "skip"):
            raise ValueError(f"CIO_HISTORY_EVENTS must be 'send' or 'skip', got {value!r}")
        return value

    @field_validator("source_tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises with the bad name in the message
        return value

    @field_validator("source_tz_overrides")
    @classmethod
    def _known_override_zones(cls, value: str) -> str:
        _parse_overrides(value)
        return value

    @field_validator("vip_tiers")
    @classmethod
    def _ascending_tiers(cls, value: str) -> str:
        _parse_tiers(value)
        return value

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            source_tz=env.get("CIO_SOURCE_TZ", "UTC"),
            source_tz_overrides=env.get("CIO_SOURCE_TZ_OVERRIDES", ""),
            canonical_id=env.get("CIO_CANONICAL_ID", "customer_id"),
            timestamp_floor=env.get("CIO_TIMESTAMP_FLOOR", "2000-01-01"),
            cart_idle_minutes=int(env.get("CIO_CART_IDLE_MINUTES", "60")),
            vip_tiers=env.get("CIO_VIP_TIERS", "silver:250,gold:500,platinum:1000"),
            live_window_hours=int(env.get("CIO_LIVE_WINDOW_HOURS", "24")),
            history_events=env.get("CIO_HISTORY_EVENTS", "send"),
            chunk_size=int(env.get("CIO_CHUNK_SIZE", "5000")),
        )

    def zone_of(self, table: str) -> ZoneInfo:
        """The time zone in which `table` stores its naive DATETIMEs."""
        return ZoneInfo(_parse_overrides(self.source_tz_overrides).get(table, self.source_tz))

    @property
    def floor_utc(self) -> datetime:
        return datetime.combine(date.fromisoformat(self.timestamp_floor), datetime.min.time(), ZoneInfo("UTC"))

    @property
    def cart_idle(self) -> timedelta:
        return timedelta(minutes=self.cart_idle_minutes)

    @property
    def tiers(self) -> list[tuple[str, float]]:
        return _parse_tiers(self.vip_tiers)


class PartitionSettings:
    """Settings that shape the partitions. They fix asset definitions, so they are read at load time."""

    def __init__(self, start_date: str, business_tz: str) -> None:
        date.fromisoformat(start_date)
        ZoneInfo(business_tz)
        self.start_date = start_date
        self.business_tz = business_tz

    @classmethod
    def from_env(cls) -> PartitionSettings:
        return cls(
            # CIO_START_DATE: first daily partition; it also covers all history before it.
            start_date=os.environ.get("CIO_START_DATE", "2026-10-01"),
            # CIO_BUSINESS_TZ: the time zone whose midnights cut the daily partitions.
            business_tz=os.environ.get("CIO_BUSINESS_TZ", "UTC"),
        )


def _parse_overrides(raw: str) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        table, sep, zone = item.partition("=")
        if not sep or not table.strip() or not zone.strip():
            raise ValueError(f"CIO_SOURCE_TZ_OVERRIDES entries look like 'table=Zone/Name', got {item!r}")
        ZoneInfo(zone.strip())
        overrides[table.strip()] = zone.strip()
    return overrides


def _parse_tiers(raw: str) -> list[tuple[str, float]]:
    tiers: list[tuple[str, float]] = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, minimum = item.partition(":")
        if not sep:
            raise ValueError(f"CIO_VIP_TIERS entries look like 'gold:500', got {item!r}")
        tiers.append((name.strip(), float(minimum)))
    if [m for _, m in tiers] != sorted(m for _, m in tiers):
        raise ValueError(f"CIO_VIP_TIERS must be in ascending order of minimum, got {raw!r}")
    return tiers
