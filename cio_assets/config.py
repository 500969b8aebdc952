"""Every setting of the pipeline, declared once.

A setting is one field of one of the models below: its name (the environment variable is `CIO_` and the
name in capitals, unless its rule names another), its type and rule (`Annotated[type, rule]`: how text from
the environment is read and what is expected), its default, and its description. From that one declaration
come
- the environment parsing: `Model.from_env()` reads every field's variable and raises one `SettingsError`
  listing every bad one;
- the Dagster resources (`defs/resources.py` subclasses these models), so the launchpad shows each field with
  its variable and description, and a value edited there is checked by the same rule before any step runs;
- `docs/configuration.md` (`configuration_page`, written by `make reference`; a test keeps the committed page
  equal to what this module generates).

An unset or empty variable takes its default. A bad value stops the definitions from loading (or a run whose
launchpad config holds it) with a message that names the variable, the value (never for URLs or keys, which
may hold secrets) and what is expected:

    CIO_CHUNK_SIZE='-1' is invalid: expected a whole number >= 1

Nothing here reads the environment when it is imported: `from_env()` is called when the Dagster definitions
are built (`definitions.py`) or when a command starts (`make demo`, the benchmarks).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, get_type_hints
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from sqlalchemy import make_url

from cio_assets.customerio.app_api import APP_REGION_URLS, AppClient
from cio_assets.customerio.client import REGION_URLS, TrackClient
from cio_assets.customerio.limits import MAX_EVENT_NAME_BYTES
from cio_assets.lib.frames import markdown
from cio_assets.lib.timestamps import Clock, SourceZones
from cio_assets.mapping.spec import PRESETS, SOURCE_ZONE, MappingError, MappingSpec, load
from cio_assets.schema.events import EVENT_NAMES
from cio_assets.schema.shop import CONCEPTS, SOURCE_TABLES
from cio_assets.schema.state import ATTRIBUTE_COLUMNS, VIP_TIER_WIDTH

PREFIX = "CIO_"
CONFIGURATION_PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


class SettingsError(ValueError):
    """A setting holds a value the pipeline cannot use. The message names the variable and what is expected."""


class _Invalid(Exception):
    """Raised by a rule: why the value is unusable ('expected ...'); `Rule.check` adds the name and value."""


# ---------------------------------------------------------------------------------------------------------
# Rules: how a setting's value is read and checked, one per kind of value
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How one setting is read from text (or checked when given in code or the launchpad), and what the
    configuration page says it takes."""

    takes: str  # what the configuration page shows, e.g. 'whole number >= 1'
    parse: Callable[[Any], Any]  # the checked value, or `_Invalid` saying what was expected
    secret: bool = False  # never echo the value (URLs may carry passwords; keys are keys)
    env: str | None = None  # the variable, when it is not CIO_ and the field's name in capitals

    def check(self, variable: str, value: Any) -> Any:
        try:
            return self.parse(value.strip() if isinstance(value, str) else value)
        except _Invalid as invalid:
            shown = variable if self.secret else f"{variable}={str(value)!r}"
            raise SettingsError(f"{shown} is invalid: {invalid}") from None


def text(secret: bool = False) -> Rule:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid("expected text")
        return value

    return Rule("secret text" if secret else "text", parse, secret)


def whole(minimum: int, maximum: int | None = None) -> Rule:
    expected = (
        f"expected a whole number from {minimum} to {maximum}"
        if maximum is not None
        else f"expected a whole number >= {minimum}"
    )

    def parse(value: Any) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value)
        ):
            number = int(value)
        if number is None or number < minimum or (maximum is not None and number > maximum):
            raise _Invalid(expected)
        return number

    return Rule(expected.removeprefix("expected a "), parse)


def number(above: float | None = None, at_least: float | None = None, at_most: float | None = None) -> Rule:
    if at_least is not None and at_most is not None:
        expected = f"expected a number from {at_least:g} to {at_most:g}"
    elif above is not None:
        expected = f"expected a number > {above:g}"
    else:
        expected = f"expected a number >= {at_least:g}" if at_least is not None else "expected a number"

    def parse(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            result = float(value)
        except (TypeError, ValueError):
            raise _Invalid(expected) from None
        if (
            not math.isfinite(result)
            or (above is not None and result <= above)
            or (at_least is not None and result < at_least)
            or (at_most is not None and result > at_most)
        ):
            raise _Invalid(expected)
        return result

    return Rule(expected.removeprefix("expected a "), parse)


def calendar_date() -> Rule:
    """A calendar date, kept as its ISO text (YYYY-MM-DD)."""

    def parse(value: Any) -> str:
        iso = value.isoformat() if isinstance(value, date) and not isinstance(value, datetime) else value
        if not isinstance(iso, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso):
            raise _Invalid("expected a date as YYYY-MM-DD")
        try:
            date.fromisoformat(iso)
        except ValueError as error:
            raise _Invalid(f"expected a date as YYYY-MM-DD ({error})") from None
        return iso

    return Rule("date, YYYY-MM-DD", parse)


def time_zone() -> Rule:
    """An IANA time zone name."""

    def parse(value: Any) -> str:
        if not is_zone(value):
            raise _Invalid("expected an IANA time zone name such as UTC or America/New_York")
        return value

    return Rule("IANA time zone", parse)


def choice(*allowed: str) -> Rule:
    def parse(value: Any) -> str:
        if value not in allowed:
            raise _Invalid(f"expected one of {', '.join(allowed)}")
        return value

    return Rule("one of " + ", ".join(f"`{option}`" for option in allowed), parse)


_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")


def flag() -> Rule:
    """On or off: 1/true/yes or 0/false/no (or empty), in any case."""

    def parse(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        lowered = value.lower() if isinstance(value, str) else None
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _Invalid("expected 1, true or yes to turn it on; 0, false, no or empty to turn it off")

    return Rule("flag: 1, true or yes; 0, false or no", parse)


def entries(parse_entries: Callable[[str], object], shape: str) -> Rule:
    """Comma-separated entries, kept as text; `parse_entries` reads them, raising `_Invalid` naming the bad one."""

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(shape)
        parse_entries(value)
        return value

    return Rule(shape.removeprefix("expected "), parse)


def http_url() -> Rule:
    """An http(s) URL with a host, or empty. Never echoed: a proxy URL may carry credentials."""

    def parse(value: Any) -> str:
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

    return Rule("http(s) URL", parse, secret=True)


def source_mapping(env: str) -> Rule:
    """A preset's name or a mapping file's path, whose file reads and checks."""

    def parse(value: Any) -> str:
        try:
            load(value)
        except MappingError as error:
            raise _Invalid(str(error)) from None
        return value

    return Rule(f"a preset ({', '.join(PRESETS)}) or a mapping file's path", parse, env=env)


def name_prefix(env: str) -> Rule:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_]*", value):
            raise _Invalid("expected letters, digits and underscores, e.g. wp_")
        return value

    return Rule("table name prefix", parse, env=env)


DATABASE_BACKENDS = ("mysql", "mariadb", "sqlite")
_URL_EXAMPLE = "e.g. mysql+mysqldb://user:password@host/shop or sqlite:////path/to/shop.sqlite"


def database_url(env: str) -> Rule:
    """A SQLAlchemy URL of a MySQL/MariaDB database (with a database name) or a SQLite file, or empty (the field's
    default applies). Never echoed: SQLAlchemy's own parse errors quote the URL, password included, so they are
    replaced here."""

    def parse(value: Any) -> str:
        if value == "":
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

    return Rule("SQLAlchemy URL: MySQL/MariaDB or SQLite", parse, secret=True, env=env)


def is_zone(name: Any) -> bool:
    if not isinstance(name, str) or not name:
        return False
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found (a KeyError), a malformed key, a directory
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Entries: settings that hold a small list
# ---------------------------------------------------------------------------------------------------------

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
        if not is_zone(zone):
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
        if not 1 <= len(name) <= VIP_TIER_WIDTH:
            raise _Invalid(f"{shape}, with names of 1 to {VIP_TIER_WIDTH} characters; {item!r} breaks that")
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


# ---------------------------------------------------------------------------------------------------------
# The models: each field one setting
# ---------------------------------------------------------------------------------------------------------


class SettingsModel(BaseModel):
    """A group of settings. Each field's rule is the `Rule` in its annotation; its variable is `variable(name)`.

    Every field's description, as the launchpad and the configuration page show it, starts with its variable."""

    title: ClassVar[str]  # the group's heading on the configuration page
    about: ClassVar[str]  # a sentence under it: when the group is read and what it shapes

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, info in cls.model_fields.items():
            prefix = f"{cls.variable(name)}: "
            if info.description and not info.description.startswith(prefix):
                info.description = prefix + info.description

    @classmethod
    def rule(cls, field: str) -> Rule:
        return next(meta for meta in cls.model_fields[field].metadata if isinstance(meta, Rule))

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of a field: its rule's, or CIO_ and the field's name in capitals."""
        return cls.rule(field).env or PREFIX + field.upper()

    @classmethod
    def settings(cls) -> Iterator[tuple[str, FieldInfo, Rule]]:
        for name, info in cls.model_fields.items():
            yield name, info, cls.rule(name)

    @classmethod
    def check_value(cls, field: str, value: Any) -> Any:
        """A value given in code or the launchpad, checked by the field's rule."""
        return cls.rule(field).check(cls.variable(field), value)

    @field_validator("*", mode="before")
    @classmethod
    def _checked(cls, value: Any, info: ValidationInfo) -> Any:
        field = info.field_name or ""
        return cls.check_value(field, value) if field in cls.model_fields else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = self.problems()
        if problems:
            raise SettingsError("; ".join(problems))
        return self

    def problems(self) -> list[str]:
        """What is wrong with the settings taken together (each field was checked on its own already)."""
        return []

    @classmethod
    def read_env(cls) -> dict[str, Any]:
        """Every field's value from the environment, checked: its default when its variable is unset or empty.
        One `SettingsError` lists every bad variable."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, _, rule in cls.settings():
            raw = os.environ.get(cls.variable(name))
            if raw is None or not raw.strip():
                continue
            try:
                values[name] = rule.check(cls.variable(name), raw)
            except SettingsError as error:
                problems.append(str(error))
        if problems:
            raise SettingsError("; ".join(problems))
        return values

    @classmethod
    def from_env(cls) -> Self:
        values = cls.read_env()
        problems = cls.model_construct(**values).problems()
        if problems:
            raise SettingsError("; ".join(problems))
        return cls(**values)

    @classmethod
    def is_set(cls, field: str) -> bool:
        return bool(os.environ.get(cls.variable(field), "").strip())


def setting(default: Any, description: str) -> Any:
    """A field's default and description (the variable is prefixed to it by `SettingsModel`)."""
    return Field(default=default, description=description)


class PartitionSettings(SettingsModel):
    title = "Partitions"
    about = "Read when the definitions are built: they shape the daily partitions of every partitioned asset."

    start_date: Annotated[str, calendar_date()] = setting(
        "2026-10-01", "The first daily partition; it also covers all history before it."
    )
    business_tz: Annotated[str, time_zone()] = setting("UTC", "The time zone whose midnights cut the daily partitions.")


class AutomationSettings(SettingsModel):
    title = "Automation"
    about = (
        "Read when the definitions are built: they shape the source sensor, the daily schedule, the sync assets' "
        "freshness policies and the executor."
    )

    automation: Annotated[str, choice("on", "off")] = setting(
        "on",
        "'on': the source sensor and the daily schedule run as soon as a daemon loads the definitions (unattended); "
        "'off': they wait to be turned on in the UI (`make dev` sets it, so the demo never launches runs by itself).",
    )
    sensor_interval_seconds: Annotated[int, whole(5)] = setting(
        5,
        "Seconds between the source sensor's ticks (the daemon evaluates sensors every 5 s at most). A tick with "
        "nothing written reads only the server's notes on the shop's tables, and ticks while a run is going read "
        "nothing; a longer interval saves the reads of the ticks that follow writes.",
    )
    change_capture: Annotated[str, choice("poll", "binlog")] = setting(
        "poll",
        "How the source sensor sees the shop change. 'poll': each concept's marks (largest id, latest change time, "
        "row count, and the rows changed within CIO_CHANGE_LOOKBACK_SECONDS). 'binlog': also the server's binary "
        "log, from the position the sensor saved: every committed insert, update and delete, in tables without a "
        "change time too, and a deleted row's person (needs binlog_format=ROW, binlog_row_image=FULL and a user "
        "with REPLICATION SLAVE and REPLICATION CLIENT; `make doctor` says whether the server allows it).",
    )
    finalize_hour: Annotated[int, whole(0, 23)] = setting(
        2, "The hour (business time zone) at which the daily schedule rebuilds and delivers yesterday once more."
    )
    sync_warn_lag_minutes: Annotated[int, whole(0)] = setting(
        1500,
        "The sync assets' freshness policy warns when the last successful sync is older than this; 0: no warning.",
    )
    sync_max_lag_minutes: Annotated[int, whole(1)] = setting(
        2880, "The sync assets' freshness policy fails when the last successful sync is older than this."
    )
    executor: Annotated[str, choice("in_process", "multiprocess", "celery")] = setting(
        "in_process",
        "Where a run's steps execute. 'in_process': one process per run (steps are short and database-bound); "
        "'multiprocess': a process per step on the run's machine; 'celery': Celery workers fed through a broker "
        "(needs the scale-out extra; see the deployment page).",
    )
    celery_broker: Annotated[str, text(secret=True)] = setting(
        "",
        "The Celery broker of CIO_EXECUTOR=celery, e.g. pyamqp://user:password@rabbitmq:5672// (read when a run "
        "starts, never shown). Empty: dagster-celery's default, RabbitMQ as guest on $DAGSTER_CELERY_BROKER_HOST "
        "or localhost.",
    )

    @property
    def running(self) -> bool:
        return self.automation == "on"

    def problems(self) -> list[str]:
        warn, fail = self.sync_warn_lag_minutes, self.sync_max_lag_minutes
        if warn >= fail:
            return [
                f"{self.variable('sync_warn_lag_minutes')}={warn} is invalid: expected fewer minutes than "
                f"{self.variable('sync_max_lag_minutes')}={fail} (a sync warns before it fails), or 0 for no warning"
            ]
        return []


CANONICAL_ID_POLICIES = ("customer_id", "email")
HISTORY_MODES = ("send", "skip")
# How the shop's e-mail opt-out reaches Customer.io's global `unsubscribed` (delivery/consent.py).
UNSUBSCRIBE_MODES = ("mirror", "one_way", "off")
# What Customer.io is told about a person an erasure request names, and about one who vanished from the shop.
ERASURE_ACTIONS = ("suppress", "delete")
VANISHED_ACTIONS = ("keep", "delete")
# Whether duplicates' own Customer.io profiles are merged into their survivor's (delivery/profiles.py).
MERGE_MODES = ("apply", "plan")


class PipelineSettings(SettingsModel):
    """How the pipeline reads the shop, derives attributes and events, delivers them, and judges its checks."""

    title = "Pipeline"
    about = (
        "The `settings` resource: read when the definitions are built, shown in the launchpad and editable per run "
        "there."
    )

    source_tz: Annotated[str, time_zone()] = setting("UTC", "Time zone of the naive DATETIME columns in the source.")
    source_tz_overrides: Annotated[
        str, entries(parse_zone_overrides, "expected 'table=Zone/Name' entries separated by commas")
    ] = setting(
        "",
        "Per-table time zones, e.g. 'orders=America/New_York,carts=UTC', for shops whose tables mix UTC and "
        "store-local columns.",
    )
    canonical_id: Annotated[str, choice(*CANONICAL_ID_POLICIES)] = setting(
        "customer_id", "'customer_id' (sent as Customer.io `id`) or 'email'."
    )
    timestamp_floor: Annotated[str, calendar_date()] = setting(
        "2000-01-01", "Timestamps before this UTC date are rejected (the 1970 bug)."
    )
    cart_idle_minutes: Annotated[int, whole(1)] = setting(
        60, "A cart idle this long without an order is abandoned (>= 1)."
    )
    change_lookback_seconds: Annotated[int, whole(1)] = setting(
        600,
        "How long a shop's transaction may stay open between stamping a change time and committing (>= 1). Rows "
        "changed within this window before the newest change seen are read again and compared by content, so an "
        "edit in the same second as the last one seen, or a late commit, is never missed; the cost follows the rows "
        "changed within it.",
    )
    vip_tiers: Annotated[
        str, entries(parse_vip_tiers, "expected 'name:minimum' entries such as 'silver:250,gold:500'")
    ] = setting(
        "silver:250,gold:500,platinum:1000",
        "tier:minimum net lifetime value, ascending; below the first is 'none'. "
        f"Tier names are 1 to {VIP_TIER_WIDTH} characters.",
    )
    live_window_hours: Annotated[int, whole(0)] = setting(
        24,
        "Events older than this are history: sent with `backfill: true` (Customer.io never triggers campaigns from "
        "events older than 72 h).",
    )
    history_events: Annotated[str, choice(*HISTORY_MODES)] = setting(
        "send", "'send' history events marked backfill, or 'skip' them (attributes only)."
    )
    chunk_size: Annotated[int, whole(1)] = setting(5000, "People per aggregation query and rows per bulk write (>= 1).")
    chunk_days: Annotated[int, whole(0)] = setting(
        0,
        "The event log's range is cut into one piece per this many days, each holding about as many paid orders; "
        "each piece is a step of its own, which the run's executor may run at the same time as the others; or 0, "
        "the default: 92 days on an executor that runs steps at once (multiprocess, Celery), the whole range as one "
        "piece on one that runs them one after the other (in process).",
    )
    event_families: Annotated[
        str,
        entries(parse_event_families, f"expected event families separated by commas, among {', '.join(EVENT_NAMES)}"),
    ] = setting(
        ",".join(EVENT_NAMES),
        "The event families this pipeline sends to Customer.io, separated by commas (default: all five). Leave out "
        "a family that another path (the web snippet, mParticle) already sends: one ingestion path per family, or "
        "journeys trigger twice.",
    )
    unsubscribe: Annotated[str, choice(*UNSUBSCRIBE_MODES)] = setting(
        "mirror",
        "'mirror' sends Customer.io's unsubscribed: true when the shop records an e-mail opt-out (0), and false to "
        "undo a true it sent itself once the shop no longer records one (an opt-in, or consent now unknown), never "
        "for someone who unsubscribed in Customer.io; 'one_way' sends true on an opt-out and never false; 'off' "
        "never sends it. Unknown consent (NULL) never sends true.",
    )
    unknown_consent_eligible: Annotated[bool, flag()] = setting(
        False,
        "Whether a person whose marketing consent is unknown (NULL: never asked) counts as eligible: email_eligible "
        "and sms_eligible are then true with a valid e-mail or phone, as for an opt-in. False: only an opt-in makes "
        "a person eligible. Either way unknown consent never sends unsubscribed, and email_opt_in stays null.",
    )
    merge_duplicates: Annotated[str, choice(*MERGE_MODES)] = setting(
        "apply",
        "'apply' merges a duplicate's own Customer.io profile into its survivor's once the survivor is there (a "
        "merge cannot be undone); 'plan' sends no merge and lists the pending ones in "
        "customerio_people_pending_merges.",
    )
    erasure: Annotated[str, choice(*ERASURE_ACTIONS)] = setting(
        "suppress",
        "What Customer.io is told about a person an erasure request names: 'suppress' (delete the profile and block "
        "its identifier) or 'delete'.",
    )
    vanished: Annotated[str, choice(*VANISHED_ACTIONS)] = setting(
        "keep",
        "A person Customer.io holds who disappeared from the shop's customers without an erasure request is listed "
        "('keep') or also deleted in Customer.io ('delete').",
    )
    event_names: Annotated[
        str, entries(parse_event_names, "expected 'family=Name' entries such as 'order_placed=Order Completed'")
    ] = setting(
        "",
        "'family=Name' pairs, separated by commas, giving the exact event name existing journeys listen for (e.g. "
        "'order_placed=Order Completed'); a family not named is sent under its own name. Event ids stay derived "
        "from the family, so a rename never re-sends history.",
    )
    quarantine_max_share: Annotated[float, number(at_least=0.0, at_most=1.0)] = setting(
        0.05,
        "The share of a run's rows (0 to 1) that may be quarantined before the blocking contract check fails.",
    )
    quarantine_min_rows: Annotated[int, whole(0)] = setting(
        20,
        "The contract check fails only when at least this many rows are quarantined, so one bad row in a small day "
        "never stops the feed.",
    )
    source_max_lag_minutes: Annotated[int, whole(1)] = setting(
        1440, "The source freshness check warns when the newest paid order is older than this (>= 1)."
    )
    check_trailing_days: Annotated[int, whole(1)] = setting(
        14, "Days before a day whose counts form its baseline in the volume checks."
    )
    check_min_trailing_days: Annotated[int, whole(1)] = setting(7, "A day is judged only with this many earlier days.")
    check_deviation_sigmas: Annotated[float, number(above=0.0)] = setting(
        4.0,
        "A day's count warns when it is more than this many standard deviations (at least the count's Poisson "
        "noise, the root of the mean) from the trailing mean.",
    )
    check_max_null_rates: Annotated[
        str,
        entries(parse_null_rates, "expected 'attribute:share' entries such as 'email:0.05,first_name:0.2'"),
    ] = setting(
        "email:0.05,first_name:0.2,last_product_category:0.05",
        "'attribute:share' entries; the snapshot's null rate of each attribute among people with paid orders warns "
        "above its share.",
    )
    check_max_conflict_share: Annotated[float, number(at_least=0.0, at_most=1.0)] = setting(
        0.01, "Share of people in an identity conflict (warns above)."
    )
    check_max_unresolved_guest_share: Annotated[float, number(at_least=0.0, at_most=1.0)] = setting(
        0.1, "Share of paid orders whose person cannot be resolved."
    )
    check_max_unresolved_cart_share: Annotated[float, number(at_least=0.0, at_most=1.0)] = setting(
        0.5, "Share of carts whose person cannot be resolved."
    )
    check_max_rejected_share: Annotated[float, number(at_least=0.0, at_most=1.0)] = setting(
        0.01, "Share of a source table's rows set aside (warns above)."
    )
    check_max_refusal_rate: Annotated[float, number(at_least=0.0, at_most=1.0)] = setting(
        0.01, "Share of a sync's items refused (locally or by Customer.io)."
    )
    check_max_throttled_rate: Annotated[float, number(at_least=0.0, at_most=1.0)] = setting(
        0.1, "Share of a sync's requests answered 429."
    )
    check_max_server_error_rate: Annotated[float, number(at_least=0.0, at_most=1.0)] = setting(
        0.05, "Share of a sync's requests answered 5xx."
    )
    check_stale_refusal_days: Annotated[int, whole(1)] = setting(
        3, "A refusal still pending after this many days is an error."
    )

    def fingerprint(self, mapping: MappingSpec) -> str:
        """A digest of every setting and of the source mapping: a computation made under others is not kept."""
        text_ = orjson.dumps(self.model_dump(), option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.sha256(text_ + mapping.text.encode() + mapping.prefix.encode()).hexdigest()

    def clock(self, now: datetime, mapping: MappingSpec) -> Clock:
        """How a run that started at `now` reads the shop's times."""
        return Clock(self.zones(mapping), self.floor_utc, now, self.change_lookback)

    def zones(self, mapping: MappingSpec) -> SourceZones:
        """The time zone each concept's naive timestamps are in: the mapping's (WooCommerce's *_gmt columns are
        UTC whatever CIO_SOURCE_TZ says), CIO_SOURCE_TZ where the mapping says "source", and above both the
        per-table CIO_SOURCE_TZ_OVERRIDES."""
        fixed = {name: mapping.zone_of(name) for name in CONCEPTS if mapping.zone_of(name) != SOURCE_ZONE}
        return SourceZones(self.source_tz, {**fixed, **parse_zone_overrides(self.source_tz_overrides)})

    @property
    def floor_utc(self) -> datetime:
        return datetime.combine(date.fromisoformat(self.timestamp_floor), datetime.min.time(), ZoneInfo("UTC"))

    @property
    def cart_idle(self) -> timedelta:
        return timedelta(minutes=self.cart_idle_minutes)

    @property
    def change_lookback(self) -> timedelta:
        return timedelta(seconds=self.change_lookback_seconds)

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


class DemoSettings(SettingsModel):
    title = "Local files"
    about = "Where the embedded demo keeps its SQLite databases, and the dry runs their outbox, by default."

    data_dir: Annotated[str, text()] = setting(
        ".cio", "The folder of the demo's SQLite files (shop.sqlite, state.sqlite) and of the dry-run outbox."
    )
    demo_mysql_url: Annotated[str, database_url(env="CIO_DEMO_MYSQL_URL")] = setting(
        "mysql+mysqldb://root@127.0.0.1:3306/cio_demo_shop",
        "The MariaDB/MySQL database `make demo` (re)creates for a platform preset's sample shop "
        "(CIO_SOURCE_MAPPING=woocommerce or magento2: their tables are MySQL's); never CIO_MYSQL_URL's.",
    )

    @property
    def path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def shop_url(self) -> str:
        return f"sqlite:///{self.path / 'shop.sqlite'}"

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.path / 'state.sqlite'}"

    @property
    def outbox(self) -> str:
        return str(self.path / "outbox")


class SourceSettings(SettingsModel):
    title = "The shop's database"
    about = "The `source` resource. Read only; its URL reaches Dagster as an EnvVar, so its password is never shown."

    url: Annotated[str, database_url(env="CIO_MYSQL_URL")] = setting(
        "",
        "The shop's database, a SQLAlchemy URL (read only), e.g. mysql+mysqldb://reader:password@host/shop; "
        "empty: the demo's sample shop (shop.sqlite under CIO_DATA_DIR).",
    )
    mapping: Annotated[str, source_mapping(env="CIO_SOURCE_MAPPING")] = setting(
        "reference",
        f"How the shop's own tables make the customers, orders, carts… the pipeline reads: a preset "
        f"({', '.join(PRESETS)}) or the path of a mapping file (TOML, see the source mapping page of the docs).",
    )
    table_prefix: Annotated[str, name_prefix(env="CIO_SOURCE_TABLE_PREFIX")] = setting(
        "",
        "The prefix of the shop's table names, e.g. wp_ or shop1_ (the mapping's {prefix}); empty: the mapping's "
        "own (wp_ for woocommerce, none for the others).",
    )

    def spec(self) -> MappingSpec:
        """The source mapping, read and checked."""
        return load(self.mapping, self.table_prefix or None)


STATE_DATABASE_NAME = "cio_sync"


def default_state_url(source_url: str, demo: DemoSettings) -> str:
    """The source server with database `cio_sync`; for SQLite, the demo's state file beside the demo's shop, or a
    sibling file `<name>.state.sqlite`."""
    url = make_url(source_url)
    if url.get_backend_name() == "sqlite":
        if source_url == demo.shop_url:
            return demo.state_url
        path = url.database or ""
        stem = path[: -len(".sqlite")] if path.endswith(".sqlite") else path
        return f"sqlite:///{stem}.state.sqlite"
    return url.set(database=STATE_DATABASE_NAME).render_as_string(hide_password=False)


class StateSettings(SettingsModel):
    title = "The pipeline's own database"
    about = "The `state` resource: identity, listings, the attribute snapshot, the event log and the sync ledger."

    url: Annotated[str, database_url(env="CIO_STATE_URL")] = setting(
        "",
        "Where the pipeline writes its own tables, a SQLAlchemy URL; empty means the source server with database "
        f"{STATE_DATABASE_NAME} (a sibling file for a SQLite source).",
    )


class CustomerIOSettings(SettingsModel):
    """Customer.io Track API credentials and sending behaviour, and the App API for the read-back."""

    title = "Customer.io"
    about = (
        "The `customerio` resource. The keys reach Dagster as EnvVars, so they are never shown. With neither "
        "CIO_SITE_ID nor CIO_API_KEY (or with CIO_DRY_RUN), nothing is sent: the syncs write the exact request "
        "bodies to the outbox. One credential without the other is an error."
    )

    site_id: Annotated[str, text()] = setting("", "Track API site id.")
    api_key: Annotated[str, text(secret=True)] = setting("", "Track API key (a secret).")
    region: Annotated[str, choice(*REGION_URLS)] = setting("us", "us (track.customer.io) or eu (track-eu.customer.io).")
    track_url: Annotated[str, http_url()] = setting(
        "", "Overrides the regional host (a proxy, or the tests' local fake)."
    )
    rate_limit: Annotated[float, number(above=0.0)] = setting(
        100.0, "Requests per second, > 0 (Customer.io's soft limit is 1000)."
    )
    max_in_flight: Annotated[int, whole(1)] = setting(4, "Batches sent concurrently (>= 1).")
    dry_run: Annotated[bool, flag()] = setting(
        False,
        "Send nothing; write the exact request bodies to the outbox and report the plan. Loaded as true when "
        "CIO_SITE_ID and CIO_API_KEY are not both set, because without credentials nothing can be sent: the "
        "launchpad shows the mode a run will actually be in.",
    )
    outbox_dir: Annotated[str, text()] = setting(
        "", "Where dry runs write <asset>-<run id>.jsonl; empty: outbox/ under CIO_DATA_DIR."
    )
    retry_budget_seconds: Annotated[float, number(above=0.0)] = setting(
        120.0,
        "How long a batch may be retried (429, 5xx, transport errors) before the run stops with an error naming the "
        "Track URL (> 0).",
    )
    accept_new_ledger: Annotated[bool, flag()] = setting(
        False,
        "Allow delivery from a sync ledger that is new or was recreated (otherwise a lost ledger stops delivery "
        "before it re-sends history).",
    )
    app_api_key: Annotated[str, text(secret=True)] = setting(
        "",
        "App API key (a secret), used only to read people back for the customerio_people_reconciled check; unset "
        "skips that check.",
    )
    app_url: Annotated[str, http_url()] = setting(
        "",
        "Overrides the App API host (default by CIO_REGION: "
        + " or ".join(url.removeprefix("https://") for url in APP_REGION_URLS.values())
        + ").",
    )
    reconcile_sample: Annotated[int, whole(1)] = setting(
        20,
        "People read back after each people sync (>= 1): those the latest sync delivered first, then a seeded "
        "random sample of everyone delivered.",
    )
    reconcile_settle_seconds: Annotated[float, number(at_least=0.0)] = setting(
        30.0,
        "Customer.io applies updates asynchronously, so people that differ are read once more after this many "
        "seconds before they count as mismatches (>= 0).",
    )

    def problems(self) -> list[str]:
        return credential_problems(bool(self.site_id), bool(self.api_key), self.dry_run)

    @property
    def sends(self) -> bool:
        return bool(self.site_id and self.api_key) and not self.dry_run

    @property
    def base_url(self) -> str:
        return self.track_url or REGION_URLS[self.region]

    @property
    def workspace(self) -> str:
        """A short, stable name for the Track workspace these credentials send to (no secret in it): syncs
        of every run and worker that send to the same workspace take turns under a lock of this name."""
        return hashlib.sha256(f"{self.base_url}|{self.site_id}".encode()).hexdigest()[:16]

    def client(self) -> TrackClient:
        return TrackClient(
            site_id=self.site_id,
            api_key=self.api_key,
            base_url=self.base_url,
            rate_limit=self.rate_limit,
            max_in_flight=self.max_in_flight,
            retry_budget_seconds=self.retry_budget_seconds,
        )

    @property
    def reads_back(self) -> bool:
        """Whether people can be read back through the App API (an App API key is set)."""
        return bool(self.app_api_key)

    @property
    def app_base_url(self) -> str:
        return self.app_url or APP_REGION_URLS[self.region]

    def app_client(self) -> AppClient:
        return AppClient(
            api_key=self.app_api_key, base_url=self.app_base_url, retry_budget_seconds=self.retry_budget_seconds
        )

    @classmethod
    def from_env(cls) -> Self:
        """From the environment; without both credentials nothing can be sent, so `dry_run` says so (the
        launchpad shows the mode a run will actually be in, and the assets report the same)."""
        values = cls.read_env()
        problems = credential_problems(cls.is_set("site_id"), cls.is_set("api_key"), values.get("dry_run", False))
        if problems:
            raise SettingsError("; ".join(problems))
        values["dry_run"] = values.get("dry_run", False) or not (cls.is_set("site_id") and cls.is_set("api_key"))
        return cls(**values)


def credential_problems(site_id_set: bool, api_key_set: bool, dry_run: bool) -> list[str]:
    """Both credentials or neither (a dry run). One without the other is a mistake, unless CIO_DRY_RUN says so."""
    if site_id_set == api_key_set or dry_run:
        return []
    given, missing = ("CIO_SITE_ID", "CIO_API_KEY") if site_id_set else ("CIO_API_KEY", "CIO_SITE_ID")
    return [
        f"{given} is set but {missing} is not: set both to deliver to Customer.io, neither for a dry run, or "
        "CIO_DRY_RUN=1 to keep this a dry run"
    ]


# Every group, in the order the configuration page lists them.
GROUPS: tuple[type[SettingsModel], ...] = (
    SourceSettings,
    StateSettings,
    CustomerIOSettings,
    PartitionSettings,
    PipelineSettings,
    AutomationSettings,
    DemoSettings,
)


@dataclass(frozen=True)
class Environment:
    """Every setting, read from the environment at once (when the definitions are built, or a command starts)."""

    partitions: PartitionSettings
    automation: AutomationSettings
    pipeline: PipelineSettings
    source: SourceSettings
    state: StateSettings
    customerio: CustomerIOSettings
    demo: DemoSettings

    @classmethod
    def read(cls) -> Environment:
        """Every group from the environment; one `SettingsError` lists the bad variables of every group."""
        read: dict[str, SettingsModel] = {}
        problems: list[str] = []
        for name, model in get_type_hints(cls).items():  # each field's type is its group
            try:
                read[name] = model.from_env()
            except SettingsError as error:
                problems.append(str(error))
        if problems:
            raise SettingsError("; ".join(problems))
        return cls(**read)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# The configuration page
# ---------------------------------------------------------------------------------------------------------


def configuration_page() -> str:
    """docs/configuration.md: every setting of every group, generated from the declarations above."""
    lines = [
        "# Configuration",
        "",
        "Generated by `make reference` from the declarations in "
        "`cio_assets/config.py`; do not edit by hand. Every setting is an environment variable; an unset or empty "
        "one takes its default. A bad value stops the definitions from loading with a message that names the "
        "variable and what it expects (never the value of a secret). The run-time groups are also the Dagster "
        "resources' config, so the launchpad shows them and checks an edited value by the same rule.",
        "",
    ]
    for group in GROUPS:
        rows = [
            {
                "variable": f"`{group.variable(name)}`",
                "takes": rule.takes,
                "default": "" if info.default in ("", None) else f"`{info.default}`",
                "description": (info.description or "").removeprefix(f"{group.variable(name)}: "),
            }
            for name, info, rule in group.settings()
        ]
        table = markdown(pd.DataFrame(rows), limit=len(rows), cell_chars=None)
        lines += [f"## {group.title}", "", group.about, "", table, ""]
    return "\n".join(lines)
