"""Every setting of the pipeline, its environment variable and its default, documented once.

`Settings` is a Dagster resource, so the values a run used are visible in the UI and assets
receive them by parameter name. Secrets (database URLs with passwords, the Customer.io API key) are
resources of their own in `resources.py`, read through `dagster.EnvVar`; their variables are declared
here like every other, and their values are never echoed.

Each environment variable is declared once below, with its default and its rule, by one of the
`env_*` helpers. The same declaration checks the value when the definitions load (`from_env`) and
when a run builds its resources from (possibly launchpad-edited) config (the resources' pydantic
validators), so a bad value stops the load, or the run before any step, with a `SettingsError` that
names the variable, the value (never for URLs or keys, which may hold secrets) and what is expected:

    CIO_CHUNK_SIZE='-1' is invalid: expected a whole number >= 1

An unset or empty variable takes its default.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field, ValidationInfo, field_validator
from sqlalchemy import make_url

from cio_assets.customerio.client import REGION_URLS
from cio_assets.customerio.limits import MAX_EVENT_NAME_BYTES
from cio_assets.schema.events import EVENT_NAMES
from cio_assets.schema.shop import SOURCE_TABLES
from cio_assets.schema.state import ATTRIBUTE_COLUMNS

# Where the embedded demo keeps its SQLite files and Dagster instance.
DATA_DIR = Path(os.environ.get("CIO_DATA_DIR", ".cio")).resolve()

DEMO_SOURCE_URL = f"sqlite:///{DATA_DIR / 'shop.sqlite'}"
DEMO_STATE_URL = f"sqlite:///{DATA_DIR / 'state.sqlite'}"

CANONICAL_ID_POLICIES = ("customer_id", "email")
HISTORY_MODES = ("send", "skip")
# How the shop's e-mail opt-out reaches Customer.io's global `unsubscribed` (cio_assets/sync/people.py).
UNSUBSCRIBE_MODES = ("one_way", "mirror", "off")
# What Customer.io is told about a person an erasure request names, and about one who vanished from the shop.
ERASURE_ACTIONS = ("suppress", "delete")
VANISHED_ACTIONS = ("keep", "delete")
# Whether duplicates' own Customer.io profiles are merged into their survivor's (cio_assets/sync/profiles.py).
MERGE_MODES = ("apply", "plan")
# The snapshot's vip_tier column is String(32).
MAX_TIER_NAME = 32

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting holds a value the pipeline cannot use. The message names the variable and what is expected."""


class _Invalid(Exception):
    """Raised by a rule: why the value is unusable ('expected ...'); `EnvSetting` adds the name and value."""


@dataclass(frozen=True)
class EnvSetting(Generic[T]):
    """One environment variable: its name, its default and the rule that parses and checks it."""

    name: str
    default: T
    rule: Callable[[Any], T]
    secret: bool = False  # never echo the value (URLs may carry passwords; keys are keys)

    def read(self) -> T:
        """The variable's value from the environment, checked; its default when unset or empty."""
        raw = os.environ.get(self.name)
        return self.default if raw is None or not raw.strip() else self.check(raw)

    def is_set(self) -> bool:
        return bool(os.environ.get(self.name, "").strip())

    def check(self, value: Any) -> T:
        """Check a value given in code or launchpad config. An `EnvVar` (its value is the variable's
        name until Dagster resolves it at launch) is checked when the run resolves it, so it passes here."""
        if isinstance(value, dg.EnvVar):
            return value  # type: ignore[return-value]
        try:
            return self.rule(value.strip() if isinstance(value, str) else value)
        except _Invalid as invalid:
            shown = self.name if self.secret else f"{self.name}={str(value)!r}"
            raise SettingsError(f"{shown} is invalid: {invalid}") from None


def read_all(settings: Mapping[str, EnvSetting]) -> dict[str, Any]:
    """Every setting of `settings` (field name -> setting) from the environment; one error lists every bad one."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field, setting in settings.items():
        try:
            values[field] = setting.read()
        except SettingsError as error:
            problems.append(str(error))
    if problems:
        raise SettingsError("; ".join(problems))
    return values


def check_field(settings: Mapping[str, EnvSetting], value: Any, info: ValidationInfo) -> Any:
    """The body of a resource's `field_validator("*", mode="before")`: the field's setting checks the value."""
    setting = settings.get(info.field_name or "")
    return setting.check(value) if setting else value


# ---------------------------------------------------------------------------------------------------------
# The helpers: one per kind of value. Each returns the declaration of one environment variable.
# ---------------------------------------------------------------------------------------------------------


def env_text(name: str, default: str = "", secret: bool = False) -> EnvSetting[str]:
    def rule(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid("expected text")
        return value

    return EnvSetting(name, default, rule, secret)


def env_int(name: str, default: int, minimum: int, maximum: int | None = None) -> EnvSetting[int]:
    expected = f"expected a whole number from {minimum} to {maximum}" if maximum is not None else ""

    def rule(value: Any) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value)
        ):
            number = int(value)
        if number is None or number < minimum or (maximum is not None and number > maximum):
            raise _Invalid(expected or f"expected a whole number >= {minimum}")
        return number

    return EnvSetting(name, default, rule)


def env_float(
    name: str, default: float, above: float | None = None, at_least: float | None = None, at_most: float | None = None
) -> EnvSetting[float]:
    if at_least is not None and at_most is not None:
        expected = f"expected a number from {at_least:g} to {at_most:g}"
    elif above is not None:
        expected = f"expected a number > {above:g}"
    else:
        expected = f"expected a number >= {at_least:g}" if at_least is not None else "expected a number"

    def rule(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise _Invalid(expected) from None
        if (
            not math.isfinite(number)
            or (above is not None and number <= above)
            or (at_least is not None and number < at_least)
            or (at_most is not None and number > at_most)
        ):
            raise _Invalid(expected)
        return number

    return EnvSetting(name, default, rule)


def env_date(name: str, default: str) -> EnvSetting[str]:
    """A calendar date, kept as its ISO text (YYYY-MM-DD)."""

    def rule(value: Any) -> str:
        text = value.isoformat() if isinstance(value, date) and not isinstance(value, datetime) else value
        if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise _Invalid("expected a date as YYYY-MM-DD")
        try:
            date.fromisoformat(text)
        except ValueError as error:
            raise _Invalid(f"expected a date as YYYY-MM-DD ({error})") from None
        return text

    return EnvSetting(name, default, rule)


def env_zone(name: str, default: str) -> EnvSetting[str]:
    """An IANA time zone name."""

    def rule(value: Any) -> str:
        if not _is_zone(value):
            raise _Invalid("expected an IANA time zone name such as UTC or America/New_York")
        return value

    return EnvSetting(name, default, rule)


def env_entries(name: str, default: str, parse: Callable[[str], object], shape: str) -> EnvSetting[str]:
    """Comma-separated entries, kept as text; `parse` reads them, raising `_Invalid` that names the bad entry."""

    def rule(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(shape)
        parse(value)
        return value

    return EnvSetting(name, default, rule)


def env_choice(name: str, default: str, choices: Iterable[str]) -> EnvSetting[str]:
    allowed = tuple(choices)

    def rule(value: Any) -> str:
        if value not in allowed:
            raise _Invalid(f"expected one of {', '.join(allowed)}")
        return value

    return EnvSetting(name, default, rule)


_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")


def env_flag(name: str, default: bool = False) -> EnvSetting[bool]:
    """On or off: 1/true/yes or 0/false/no (or empty), in any case."""

    def rule(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = value.lower() if isinstance(value, str) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _Invalid("expected 1, true or yes to turn it on; 0, false, no or empty to turn it off")

    return EnvSetting(name, default, rule)


def env_http_url(name: str, default: str = "") -> EnvSetting[str]:
    """An http(s) URL with a host, or empty. Never echoed: a proxy URL may carry credentials."""

    def rule(value: Any) -> str:
        if value == "":
            return value
        try:
            parts = urlsplit(value) if isinstance(value, str) else None
            valid = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
            if parts is not None:
                parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError:
            valid = False
        if not valid:
            raise _Invalid("expected an http(s) URL with a host, e.g. https://track.customer.io")
        return value

    return EnvSetting(name, default, rule, secret=True)


DATABASE_BACKENDS = ("mysql", "mariadb", "sqlite")
_URL_EXAMPLE = "e.g. mysql+mysqldb://user:password@host/shop or sqlite:////path/to/shop.sqlite"


def env_database_url(name: str, default: str, optional: bool = False) -> EnvSetting[str]:
    """A SQLAlchemy URL of a MySQL/MariaDB database (with a database name) or a SQLite file. Never echoed:
    SQLAlchemy's own parse errors quote the URL, password included, so they are replaced here."""

    def rule(value: Any) -> str:
        if optional and value == "":
            return value
        try:
            url = make_url(value)
            backend = url.get_backend_name()
        except Exception:  # ArgumentError, ValueError (a port that is not a number), TypeError
            raise _Invalid(f"it does not parse as a SQLAlchemy URL ({_URL_EXAMPLE})") from None
        if backend not in DATABASE_BACKENDS:
            raise _Invalid(
                f"its backend {backend!r} is not supported; expected mysql/mariadb or sqlite ({_URL_EXAMPLE})"
            )
        if backend != "sqlite" and not url.database:
            raise _Invalid(f"it names no database; expected the database after the host ({_URL_EXAMPLE})")
        return value

    return EnvSetting(name, default, rule, secret=True)


def check_credentials(site_id_set: bool, api_key_set: bool, dry_run: bool) -> None:
    """Both credentials or neither (a dry run). One without the other is a mistake, unless CIO_DRY_RUN says so."""
    if site_id_set != api_key_set and not dry_run:
        given, missing = ("CIO_SITE_ID", "CIO_API_KEY") if site_id_set else ("CIO_API_KEY", "CIO_SITE_ID")
        raise SettingsError(
            f"{given} is set but {missing} is not: set both to deliver to Customer.io, "
            "neither for a dry run, or CIO_DRY_RUN=1 to keep this a dry run"
        )


# ---------------------------------------------------------------------------------------------------------
# Every environment variable, once.
# ---------------------------------------------------------------------------------------------------------

# Partitions (read when the definitions load: they shape the asset definitions).
START_DATE = env_date("CIO_START_DATE", "2026-10-01")
BUSINESS_TZ = env_zone("CIO_BUSINESS_TZ", "UTC")

# Pipeline behaviour (the `settings` resource).
SOURCE_TZ = env_zone("CIO_SOURCE_TZ", "UTC")
SOURCE_TZ_OVERRIDES = env_entries(
    "CIO_SOURCE_TZ_OVERRIDES",
    "",
    lambda raw: parse_zone_overrides(raw),
    "expected 'table=Zone/Name' entries separated by commas",
)
CANONICAL_ID = env_choice("CIO_CANONICAL_ID", "customer_id", CANONICAL_ID_POLICIES)
TIMESTAMP_FLOOR = env_date("CIO_TIMESTAMP_FLOOR", "2000-01-01")
CART_IDLE_MINUTES = env_int("CIO_CART_IDLE_MINUTES", 60, minimum=1)
VIP_TIERS = env_entries(
    "CIO_VIP_TIERS",
    "silver:250,gold:500,platinum:1000",
    lambda raw: parse_vip_tiers(raw),
    "expected 'name:minimum' entries such as 'silver:250,gold:500'",
)
LIVE_WINDOW_HOURS = env_int("CIO_LIVE_WINDOW_HOURS", 24, minimum=0)
HISTORY_EVENTS = env_choice("CIO_HISTORY_EVENTS", "send", HISTORY_MODES)
UNSUBSCRIBE = env_choice("CIO_UNSUBSCRIBE", "one_way", UNSUBSCRIBE_MODES)
ERASURE = env_choice("CIO_ERASURE", "suppress", ERASURE_ACTIONS)
VANISHED = env_choice("CIO_VANISHED", "keep", VANISHED_ACTIONS)
MERGE_DUPLICATES = env_choice("CIO_MERGE_DUPLICATES", "apply", MERGE_MODES)
CHUNK_SIZE = env_int("CIO_CHUNK_SIZE", 5000, minimum=1)
CHUNK_DAYS = env_int("CIO_CHUNK_DAYS", 0, minimum=0)  # 0: by the executor (events/assets.py)
QUARANTINE_MAX_SHARE = env_float("CIO_QUARANTINE_MAX_SHARE", 0.05, at_least=0.0, at_most=1.0)
QUARANTINE_MIN_ROWS = env_int("CIO_QUARANTINE_MIN_ROWS", 20, minimum=0)

# Data-quality and delivery check thresholds (the `settings` resource too; see cio_assets/checks/).
CHECK_TRAILING_DAYS = env_int("CIO_CHECK_TRAILING_DAYS", 14, minimum=1)
CHECK_MIN_TRAILING_DAYS = env_int("CIO_CHECK_MIN_TRAILING_DAYS", 7, minimum=1)
CHECK_DEVIATION_SIGMAS = env_float("CIO_CHECK_DEVIATION_SIGMAS", 4.0, above=0.0)
CHECK_MAX_NULL_RATES = env_entries(
    "CIO_CHECK_MAX_NULL_RATES",
    "email:0.05,first_name:0.2,last_product_category:0.05",
    lambda raw: parse_null_rates(raw),
    "expected 'attribute:share' entries such as 'email:0.05,first_name:0.2'",
)
CHECK_MAX_CONFLICT_SHARE = env_float("CIO_CHECK_MAX_CONFLICT_SHARE", 0.01, at_least=0.0, at_most=1.0)
CHECK_MAX_UNRESOLVED_GUEST_SHARE = env_float("CIO_CHECK_MAX_UNRESOLVED_GUEST_SHARE", 0.1, at_least=0.0, at_most=1.0)
CHECK_MAX_UNRESOLVED_CART_SHARE = env_float("CIO_CHECK_MAX_UNRESOLVED_CART_SHARE", 0.5, at_least=0.0, at_most=1.0)
CHECK_MAX_REJECTED_SHARE = env_float("CIO_CHECK_MAX_REJECTED_SHARE", 0.01, at_least=0.0, at_most=1.0)
CHECK_MAX_REFUSAL_RATE = env_float("CIO_CHECK_MAX_REFUSAL_RATE", 0.01, at_least=0.0, at_most=1.0)
CHECK_MAX_THROTTLED_RATE = env_float("CIO_CHECK_MAX_THROTTLED_RATE", 0.1, at_least=0.0, at_most=1.0)
CHECK_MAX_SERVER_ERROR_RATE = env_float("CIO_CHECK_MAX_SERVER_ERROR_RATE", 0.05, at_least=0.0, at_most=1.0)
CHECK_STALE_REFUSAL_DAYS = env_int("CIO_CHECK_STALE_REFUSAL_DAYS", 3, minimum=1)

# Freshness of the source (the `settings` resource too; see cio_assets/automation.py).
SOURCE_MAX_LAG_MINUTES = env_int("CIO_SOURCE_MAX_LAG_MINUTES", 1440, minimum=1)

# Automation (read when the definitions load: they shape the schedule and the freshness policies).
FINALIZE_HOUR = env_int("CIO_FINALIZE_HOUR", 2, minimum=0, maximum=23)
# on: the sensor and the schedule start running as soon as a daemon loads the definitions (unattended);
# off: they wait to be turned on in the UI (`make dev` on the demo, so it never launches runs by itself).
AUTOMATION_STATUS = env_choice("CIO_AUTOMATION", "on", ("on", "off"))
# Seconds between the source sensor's ticks; the daemon evaluates sensors every 5 s at most.
SENSOR_INTERVAL_SECONDS = env_int("CIO_SENSOR_INTERVAL_SECONDS", 15, minimum=5)
# Where a run's steps execute (read when the definitions load: it picks the code location's executor).
# in_process: one process per run (steps are short and database-bound); multiprocess: a process per step on
# the run's machine; celery: Celery workers fed through a broker (needs the scale-out extra; deploy/README.md).
EXECUTORS = ("in_process", "multiprocess", "celery")
EXECUTOR = env_choice("CIO_EXECUTOR", "in_process", EXECUTORS)
# The Celery broker of CIO_EXECUTOR=celery, e.g. pyamqp://user:password@rabbitmq:5672// (read when a run starts,
# never shown). Empty: dagster-celery's default, RabbitMQ as guest on $DAGSTER_CELERY_BROKER_HOST or localhost.
CELERY_BROKER = env_text("CIO_CELERY_BROKER", secret=True)
SYNC_WARN_LAG_MINUTES = env_int("CIO_SYNC_WARN_LAG_MINUTES", 1500, minimum=0)  # 0: no warning window
SYNC_MAX_LAG_MINUTES = env_int("CIO_SYNC_MAX_LAG_MINUTES", 2880, minimum=1)

# Databases (the `source` and `state` resources).
MYSQL_URL = env_database_url("CIO_MYSQL_URL", DEMO_SOURCE_URL)
STATE_URL = env_database_url("CIO_STATE_URL", "", optional=True)  # empty: derived from CIO_MYSQL_URL

# Customer.io (the `customerio` resource).
SITE_ID = env_text("CIO_SITE_ID")
API_KEY = env_text("CIO_API_KEY", secret=True)
REGION = env_choice("CIO_REGION", "us", REGION_URLS)
TRACK_URL = env_http_url("CIO_TRACK_URL")
RATE_LIMIT = env_float("CIO_RATE_LIMIT", 100.0, above=0.0)
MAX_IN_FLIGHT = env_int("CIO_MAX_IN_FLIGHT", 4, minimum=1)
DRY_RUN = env_flag("CIO_DRY_RUN")
OUTBOX_DIR = env_text("CIO_OUTBOX_DIR", str(DATA_DIR / "outbox"))
RETRY_BUDGET_SECONDS = env_float("CIO_RETRY_BUDGET_SECONDS", 120.0, above=0.0)
ACCEPT_NEW_LEDGER = env_flag("CIO_ACCEPT_NEW_LEDGER")
# Read-back reconciliation through the App API (the `customerio` resource too).
APP_API_KEY = env_text("CIO_APP_API_KEY", secret=True)  # unset: the reconciliation check is skipped
APP_URL = env_http_url("CIO_APP_URL")  # empty: https://api.customer.io, or api-eu for CIO_REGION=eu
RECONCILE_SAMPLE = env_int("CIO_RECONCILE_SAMPLE", 20, minimum=1)
RECONCILE_SETTLE_SECONDS = env_float("CIO_RECONCILE_SETTLE_SECONDS", 30.0, at_least=0.0)


# Which event families this pipeline sends, and under which names (the parse functions are defined below).
EVENT_FAMILIES = env_entries(
    "CIO_EVENT_FAMILIES",
    ",".join(EVENT_NAMES),
    lambda raw: parse_event_families(raw),
    f"expected event families separated by commas, among {', '.join(EVENT_NAMES)}",
)
EVENT_NAMES_SENT = env_entries(
    "CIO_EVENT_NAMES",
    "",
    lambda raw: parse_event_names(raw),
    "expected 'family=Name' entries such as 'order_placed=Order Completed'",
)

# The `settings` resource's fields and the variable each one comes from.
SETTINGS_ENV: dict[str, EnvSetting] = {
    "source_tz": SOURCE_TZ,
    "source_tz_overrides": SOURCE_TZ_OVERRIDES,
    "canonical_id": CANONICAL_ID,
    "timestamp_floor": TIMESTAMP_FLOOR,
    "cart_idle_minutes": CART_IDLE_MINUTES,
    "vip_tiers": VIP_TIERS,
    "live_window_hours": LIVE_WINDOW_HOURS,
    "history_events": HISTORY_EVENTS,
    "chunk_size": CHUNK_SIZE,
    "chunk_days": CHUNK_DAYS,
    "event_families": EVENT_FAMILIES,
    "unsubscribe": UNSUBSCRIBE,
    "merge_duplicates": MERGE_DUPLICATES,
    "erasure": ERASURE,
    "vanished": VANISHED,
    "event_names": EVENT_NAMES_SENT,
    "quarantine_max_share": QUARANTINE_MAX_SHARE,
    "quarantine_min_rows": QUARANTINE_MIN_ROWS,
    "source_max_lag_minutes": SOURCE_MAX_LAG_MINUTES,
    "check_trailing_days": CHECK_TRAILING_DAYS,
    "check_min_trailing_days": CHECK_MIN_TRAILING_DAYS,
    "check_deviation_sigmas": CHECK_DEVIATION_SIGMAS,
    "check_max_null_rates": CHECK_MAX_NULL_RATES,
    "check_max_conflict_share": CHECK_MAX_CONFLICT_SHARE,
    "check_max_unresolved_guest_share": CHECK_MAX_UNRESOLVED_GUEST_SHARE,
    "check_max_unresolved_cart_share": CHECK_MAX_UNRESOLVED_CART_SHARE,
    "check_max_rejected_share": CHECK_MAX_REJECTED_SHARE,
    "check_max_refusal_rate": CHECK_MAX_REFUSAL_RATE,
    "check_max_throttled_rate": CHECK_MAX_THROTTLED_RATE,
    "check_max_server_error_rate": CHECK_MAX_SERVER_ERROR_RATE,
    "check_stale_refusal_days": CHECK_STALE_REFUSAL_DAYS,
}


class Settings(dg.ConfigurableResource):
    """Behaviour of the pipeline. Each field's environment variable is named in its description."""

    source_tz: str = Field(
        default=SOURCE_TZ.default,
        description="CIO_SOURCE_TZ: time zone of the naive DATETIME columns in the source.",
    )
    source_tz_overrides: str = Field(
        default=SOURCE_TZ_OVERRIDES.default,
        description=(
            "CIO_SOURCE_TZ_OVERRIDES: per-table time zones, e.g. 'orders=America/New_York,carts=UTC', "
            "for shops whose tables mix UTC and store-local columns."
        ),
    )
    canonical_id: str = Field(
        default=CANONICAL_ID.default,
        description="CIO_CANONICAL_ID: 'customer_id' (sent as Customer.io `id`) or 'email'.",
    )
    timestamp_floor: str = Field(
        default=TIMESTAMP_FLOOR.default,
        description="CIO_TIMESTAMP_FLOOR: timestamps before this UTC date are rejected (the 1970 bug).",
    )
    cart_idle_minutes: int = Field(
        default=CART_IDLE_MINUTES.default,
        description="CIO_CART_IDLE_MINUTES: a cart idle this long without an order is abandoned (>= 1).",
    )
    vip_tiers: str = Field(
        default=VIP_TIERS.default,
        description=(
            "CIO_VIP_TIERS: tier:minimum net lifetime value, ascending; below the first is 'none'. "
            f"Tier names are 1 to {MAX_TIER_NAME} characters."
        ),
    )
    live_window_hours: int = Field(
        default=LIVE_WINDOW_HOURS.default,
        description=(
            "CIO_LIVE_WINDOW_HOURS: events older than this are history: sent with `backfill: true` "
            "(Customer.io never triggers campaigns from events older than 72 h)."
        ),
    )
    history_events: str = Field(
        default=HISTORY_EVENTS.default,
        description="CIO_HISTORY_EVENTS: 'send' history events marked backfill, or 'skip' them (attributes only).",
    )
    chunk_size: int = Field(
        default=CHUNK_SIZE.default,
        description="CIO_CHUNK_SIZE: people per aggregation query and rows per bulk write (>= 1).",
    )
    chunk_days: int = Field(
        default=CHUNK_DAYS.default,
        description=(
            "CIO_CHUNK_DAYS: the event log's range is cut into one piece per this many days, each holding about as "
            "many paid orders; each piece is a step of its own, which the run's executor may run at the same time "
            "as the others (>= 1); or 0, the default: 92 days on an executor that runs steps at once (multiprocess, "
            "Celery), the whole range as one piece on one that runs them one after the other (in process)."
        ),
    )
    event_families: str = Field(
        default=EVENT_FAMILIES.default,
        description=(
            "CIO_EVENT_FAMILIES: the event families this pipeline sends to Customer.io, separated by commas (default: "
            "all five). Leave out a family that another path (the web snippet, mParticle) already sends: one "
            "ingestion path per family, or journeys trigger twice."
        ),
    )
    event_names: str = Field(
        default=EVENT_NAMES_SENT.default,
        description=(
            "CIO_EVENT_NAMES: 'family=Name' pairs, separated by commas, giving the exact event name existing journeys "
            "listen for (e.g. 'order_placed=Order Completed'); a family not named is sent under its own name. Event "
            "ids stay derived from the family, so a rename never re-sends history."
        ),
    )
    unsubscribe: str = Field(
        default=UNSUBSCRIBE.default,
        description=(
            "CIO_UNSUBSCRIBE: 'one_way' sends Customer.io's unsubscribed: true when the shop records an e-mail "
            "opt-out, and never false; 'mirror' also sends false to undo a true it sent itself when the shop records "
            "a new opt-in (never for someone who unsubscribed in Customer.io); 'off' never sends it."
        ),
    )
    merge_duplicates: str = Field(
        default=MERGE_DUPLICATES.default,
        description=(
            "CIO_MERGE_DUPLICATES: 'apply' merges a duplicate's own Customer.io profile into its survivor's once the "
            "survivor is there (a merge cannot be undone); 'plan' sends no merge and lists the pending ones in "
            "customerio_people_pending_merges."
        ),
    )
    erasure: str = Field(
        default=ERASURE.default,
        description=(
            "CIO_ERASURE: what Customer.io is told about a person an erasure request names: 'suppress' (delete the "
            "profile and block its identifier) or 'delete'."
        ),
    )
    vanished: str = Field(
        default=VANISHED.default,
        description=(
            "CIO_VANISHED: a person Customer.io holds who disappeared from the shop's customers without an erasure "
            "request is listed ('keep') or also deleted in Customer.io ('delete')."
        ),
    )
    quarantine_max_share: float = Field(
        default=QUARANTINE_MAX_SHARE.default,
        description=(
            "CIO_QUARANTINE_MAX_SHARE: the share of a run's rows (0 to 1) that may be quarantined before "
            "the blocking contract check fails."
        ),
    )
    quarantine_min_rows: int = Field(
        default=QUARANTINE_MIN_ROWS.default,
        description=(
            "CIO_QUARANTINE_MIN_ROWS: the contract check fails only when at least this many rows are "
            "quarantined, so one bad row in a small day never stops the feed."
        ),
    )
    source_max_lag_minutes: int = Field(
        default=SOURCE_MAX_LAG_MINUTES.default,
        description=(
            "CIO_SOURCE_MAX_LAG_MINUTES: the source freshness check warns when the newest paid order is older "
            "than this (>= 1)."
        ),
    )
    check_trailing_days: int = Field(
        default=CHECK_TRAILING_DAYS.default,
        description="CIO_CHECK_TRAILING_DAYS: days before a day whose counts form its baseline in the volume checks.",
    )
    check_min_trailing_days: int = Field(
        default=CHECK_MIN_TRAILING_DAYS.default,
        description="CIO_CHECK_MIN_TRAILING_DAYS: a day is judged only with this many earlier days.",
    )
    check_deviation_sigmas: float = Field(
        default=CHECK_DEVIATION_SIGMAS.default,
        description=(
            "CIO_CHECK_DEVIATION_SIGMAS: a day's count warns when it is more than this many standard deviations "
            "(at least the count's Poisson noise, the root of the mean) from the trailing mean."
        ),
    )
    check_max_null_rates: str = Field(
        default=CHECK_MAX_NULL_RATES.default,
        description=(
            "CIO_CHECK_MAX_NULL_RATES: 'attribute:share' entries; the snapshot's null rate of each attribute among "
            "people with paid orders warns above its share."
        ),
    )
    check_max_conflict_share: float = Field(
        default=CHECK_MAX_CONFLICT_SHARE.default,
        description="CIO_CHECK_MAX_CONFLICT_SHARE: share of people in an identity conflict (warns above).",
    )
    check_max_unresolved_guest_share: float = Field(
        default=CHECK_MAX_UNRESOLVED_GUEST_SHARE.default,
        description="CIO_CHECK_MAX_UNRESOLVED_GUEST_SHARE: share of paid orders whose person cannot be resolved.",
    )
    check_max_unresolved_cart_share: float = Field(
        default=CHECK_MAX_UNRESOLVED_CART_SHARE.default,
        description="CIO_CHECK_MAX_UNRESOLVED_CART_SHARE: share of carts whose person cannot be resolved.",
    )
    check_max_rejected_share: float = Field(
        default=CHECK_MAX_REJECTED_SHARE.default,
        description="CIO_CHECK_MAX_REJECTED_SHARE: share of a source table's rows set aside (warns above).",
    )
    check_max_refusal_rate: float = Field(
        default=CHECK_MAX_REFUSAL_RATE.default,
        description="CIO_CHECK_MAX_REFUSAL_RATE: share of a sync's items refused (locally or by Customer.io).",
    )
    check_max_throttled_rate: float = Field(
        default=CHECK_MAX_THROTTLED_RATE.default,
        description="CIO_CHECK_MAX_THROTTLED_RATE: share of a sync's requests answered 429.",
    )
    check_max_server_error_rate: float = Field(
        default=CHECK_MAX_SERVER_ERROR_RATE.default,
        description="CIO_CHECK_MAX_SERVER_ERROR_RATE: share of a sync's requests answered 5xx.",
    )
    check_stale_refusal_days: int = Field(
        default=CHECK_STALE_REFUSAL_DAYS.default,
        description="CIO_CHECK_STALE_REFUSAL_DAYS: a refusal still pending after this many days is an error.",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _valid(cls, value: Any, info: ValidationInfo) -> Any:
        return check_field(SETTINGS_ENV, value, info)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(**read_all(SETTINGS_ENV))

    def zone_of(self, table: str) -> ZoneInfo:
        """The time zone in which `table` stores its naive DATETIMEs."""
        return ZoneInfo(parse_zone_overrides(self.source_tz_overrides).get(table, self.source_tz))

    @property
    def floor_utc(self) -> datetime:
        return datetime.combine(date.fromisoformat(self.timestamp_floor), datetime.min.time(), ZoneInfo("UTC"))

    @property
    def cart_idle(self) -> timedelta:
        return timedelta(minutes=self.cart_idle_minutes)

    @property
    def tiers(self) -> list[tuple[str, float]]:
        return parse_vip_tiers(self.vip_tiers)

    @property
    def max_null_rates(self) -> dict[str, float]:
        return parse_null_rates(self.check_max_null_rates)

    @property
    def families(self) -> tuple[str, ...]:
        """The event families sent to Customer.io, in the log's order."""
        return parse_event_families(self.event_families)

    @property
    def sent_names(self) -> dict[str, str]:
        """Every family -> the name Customer.io receives it under."""
        return {family: family for family in EVENT_NAMES} | parse_event_names(self.event_names)


class PartitionSettings:
    """Settings that shape the partitions. They fix asset definitions, so they are read at load time."""

    def __init__(self, start_date: str, business_tz: str) -> None:
        self.start_date = START_DATE.check(start_date)
        self.business_tz = BUSINESS_TZ.check(business_tz)

    @classmethod
    def from_env(cls) -> PartitionSettings:
        # CIO_START_DATE: first daily partition; it also covers all history before it.
        # CIO_BUSINESS_TZ: the time zone whose midnights cut the daily partitions.
        values = read_all({"start_date": START_DATE, "business_tz": BUSINESS_TZ})
        return cls(**values)


class AutomationSettings:
    """Settings that shape the schedule and the sync assets' freshness policies, read at load time."""

    def __init__(
        self,
        finalize_hour: int,
        sync_warn_lag_minutes: int,
        sync_max_lag_minutes: int,
        automation: str = "on",
        sensor_interval_seconds: int = SENSOR_INTERVAL_SECONDS.default,
    ) -> None:
        self.running = AUTOMATION_STATUS.check(automation) == "on"
        self.sensor_interval_seconds = SENSOR_INTERVAL_SECONDS.check(sensor_interval_seconds)
        self.finalize_hour = FINALIZE_HOUR.check(finalize_hour)
        self.sync_warn_lag_minutes = SYNC_WARN_LAG_MINUTES.check(sync_warn_lag_minutes)
        self.sync_max_lag_minutes = SYNC_MAX_LAG_MINUTES.check(sync_max_lag_minutes)
        if self.sync_warn_lag_minutes >= self.sync_max_lag_minutes:
            raise SettingsError(
                f"{SYNC_WARN_LAG_MINUTES.name}={self.sync_warn_lag_minutes} is invalid: expected fewer minutes than "
                f"{SYNC_MAX_LAG_MINUTES.name}={self.sync_max_lag_minutes} (a sync warns before it fails), or 0 for "
                "no warning"
            )

    @classmethod
    def from_env(cls) -> AutomationSettings:
        # CIO_FINALIZE_HOUR: the hour (0-23, business time zone) the daily schedule finalises yesterday.
        # CIO_SYNC_WARN_LAG_MINUTES / CIO_SYNC_MAX_LAG_MINUTES: the sync assets' freshness windows.
        # CIO_AUTOMATION: whether the sensor and the schedule run by default.
        # CIO_SENSOR_INTERVAL_SECONDS: seconds between the source sensor's ticks.
        values = read_all(
            {
                "automation": AUTOMATION_STATUS,
                "sensor_interval_seconds": SENSOR_INTERVAL_SECONDS,
                "finalize_hour": FINALIZE_HOUR,
                "sync_warn_lag_minutes": SYNC_WARN_LAG_MINUTES,
                "sync_max_lag_minutes": SYNC_MAX_LAG_MINUTES,
            }
        )
        return cls(**values)


def _is_zone(name: Any) -> bool:
    if not isinstance(name, str) or not name:
        return False
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found (a KeyError), a malformed key, a directory
        return False
    return True


_SOURCE_TABLE_NAMES = tuple(table.name for table in SOURCE_TABLES)


def parse_zone_overrides(raw: str) -> dict[str, str]:
    """'orders=America/New_York,carts=UTC' -> {table: zone}; raises `_Invalid` naming the bad entry."""
    overrides: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        table, sep, zone = (part.strip() for part in item.partition("="))
        if not sep or not table or not zone:
            raise _Invalid(f"expected 'table=Zone/Name' entries separated by commas; {item!r} is not one")
        if table not in _SOURCE_TABLE_NAMES:
            raise _Invalid(f"expected tables among {', '.join(_SOURCE_TABLE_NAMES)}; {table!r} is not one")
        if not _is_zone(zone):
            raise _Invalid(f"expected IANA time zone names such as America/New_York; {zone!r} is not one")
        overrides[table] = zone
    return overrides


def parse_null_rates(raw: str) -> dict[str, float]:
    """'email:0.05,first_name:0.2' -> {attribute: share}; raises `_Invalid` naming the bad entry."""
    rates: dict[str, float] = {}
    shape = "expected 'attribute:share' entries such as 'email:0.05,first_name:0.2'"
    for item in filter(None, (part.strip() for part in raw.split(","))):
        attribute, sep, share = (part.strip() for part in item.partition(":"))
        if not sep:
            raise _Invalid(f"{shape}; {item!r} has no ':'")
        if attribute not in ATTRIBUTE_COLUMNS:
            raise _Invalid(f"{shape}, with snapshot attributes such as email or first_name; {attribute!r} is not one")
        try:
            value = float(share)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise _Invalid(f"{shape}, with shares from 0 to 1; {item!r} breaks that")
        rates[attribute] = value
    return rates


def parse_vip_tiers(raw: str) -> list[tuple[str, float]]:
    """'silver:250,gold:500' -> [(name, minimum)]; raises `_Invalid` naming the bad entry."""
    tiers: list[tuple[str, float]] = []
    shape = "expected 'name:minimum' entries such as 'silver:250,gold:500'"
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, minimum = (part.strip() for part in item.partition(":"))
        if not sep:
            raise _Invalid(f"{shape}; {item!r} has no ':'")
        if not 1 <= len(name) <= MAX_TIER_NAME:
            raise _Invalid(f"{shape}, with names of 1 to {MAX_TIER_NAME} characters; {item!r} breaks that")
        try:
            value = float(minimum)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise _Invalid(f"{shape}, with numeric minimums; {item!r} breaks that")
        tiers.append((name, value))
    minimums = [m for _, m in tiers]
    if minimums != sorted(minimums):
        raise _Invalid(f"{shape}, in ascending order of minimum")
    return tiers


def parse_event_families(raw: str) -> tuple[str, ...]:
    """'order_placed,refund_issued' -> those families in the log's order; raises `_Invalid` naming the bad entry."""
    chosen = [part.strip() for part in raw.split(",") if part.strip()]
    for family in chosen:
        if family not in EVENT_NAMES:
            raise _Invalid(f"expected event families among {', '.join(EVENT_NAMES)}; {family!r} is not one")
    if not chosen:
        raise _Invalid(f"expected at least one event family among {', '.join(EVENT_NAMES)}")
    return tuple(family for family in EVENT_NAMES if family in chosen)


def parse_event_names(raw: str) -> dict[str, str]:
    """'order_placed=Order Completed' -> {family: name}; raises `_Invalid` naming the bad entry.

    A name must fit Customer.io's limit, and no two families may share one: a journey could not tell them apart."""
    names: dict[str, str] = {}
    shape = "expected 'family=Name' entries such as 'order_placed=Order Completed'"
    for item in filter(None, (part.strip() for part in raw.split(","))):
        family, sep, name = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise _Invalid(f"{shape}; {item!r} is not one")
        if family not in EVENT_NAMES:
            raise _Invalid(f"{shape}, with families among {', '.join(EVENT_NAMES)}; {family!r} is not one")
        if family in names:
            raise _Invalid(f"{shape}, each family once; {family!r} is named twice")
        if len(name.encode()) > MAX_EVENT_NAME_BYTES:
            raise _Invalid(
                f"{shape}, with names of at most {MAX_EVENT_NAME_BYTES} bytes (Customer.io's limit); "
                f"{name!r} is {len(name.encode())}"
            )
        names[family] = name
    sent = {family: family for family in EVENT_NAMES} | names
    for name in set(sent.values()):
        sharing = [family for family, sent_as in sent.items() if sent_as == name]
        if len(sharing) > 1:
            raise _Invalid(f"{shape}, one name per family; {' and '.join(sharing)} would both be sent as {name!r}")
    return names
