"""Connections: the shop's source database (read only), the state database the pipeline owns, Customer.io.

Both databases are SQLAlchemy URLs. `CIO_MYSQL_URL` names the source (e.g.
`mysql+mysqldb://user:pass@host/shop`, or a SQLite file); `CIO_STATE_URL` names where the pipeline
writes its own tables (default: the source server, database `cio_sync`; for a SQLite source, a
sibling file).

Nothing a database says reaches a log with a password or a row's values in it: engines hide bound
parameters, and any driver error inside `connect()` or `begin()` (the caller's `with` block included)
becomes one `DatabaseError` that names the database, its URL without the password, the driver's
code and message with quoted values redacted, and the statement's verb and table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from cio_assets.customerio.app_api import APP_REGION_URLS, AppClient
from cio_assets.customerio.client import REGION_URLS, TrackClient
from cio_assets.lib.locks import named_lock
from cio_assets.schema.check import SourceSchemaError, schema_problem
from cio_assets.schema.state import state_metadata
from cio_assets.settings import (
    ACCEPT_NEW_LEDGER,
    API_KEY,
    APP_API_KEY,
    APP_URL,
    DEMO_SOURCE_URL,
    DEMO_STATE_URL,
    DRY_RUN,
    MAX_IN_FLIGHT,
    MYSQL_URL,
    OUTBOX_DIR,
    RATE_LIMIT,
    RECONCILE_SAMPLE,
    RECONCILE_SETTLE_SECONDS,
    REGION,
    RETRY_BUDGET_SECONDS,
    SITE_ID,
    STATE_URL,
    TRACK_URL,
    EnvSetting,
    check_credentials,
    check_field,
    read_all,
)

STATE_DATABASE_NAME = "cio_sync"
# Seconds a MySQL connection attempt may take before an unreachable server is reported.
CONNECT_TIMEOUT_SECONDS = 10
# Drivers that take `connect_timeout` (seconds) as a connect argument.
_CONNECT_TIMEOUT_DRIVERS = ("mysqldb", "pymysql", "mariadbconnector")
# Query parameters of a URL whose values are not shown (e.g. `?password=...`, `?ssl_key=...`).
_SECRET_QUERY = re.compile(r"pass|secret|token|key|auth", re.IGNORECASE)


class DatabaseError(RuntimeError):
    """A database refused a connection or a statement. The message names the database, never a password
    or a row's values."""

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


def default_state_url(source_url: str) -> str:
    """The source server with database `cio_sync`, or the demo's state file for SQLite."""
    url = make_url(source_url)
    if url.get_backend_name() == "sqlite":
        return DEMO_STATE_URL if source_url == DEMO_SOURCE_URL else _sibling_sqlite(url)
    return url.set(database=STATE_DATABASE_NAME).render_as_string(hide_password=False)


def _sibling_sqlite(url: URL) -> str:
    path = url.database or ""
    stem = path[: -len(".sqlite")] if path.endswith(".sqlite") else path
    return f"sqlite:///{stem}.state.sqlite"


def shown_url(url: str | URL) -> str:
    """The URL as it may be shown: no password, no secret-looking query values."""
    parsed = make_url(url)
    query = {k: ("***" if _SECRET_QUERY.search(k) else v) for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------------------------
# Errors a database raises, described without secrets or personal data
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    """Which database an engine talks to, as error messages name it."""

    database: str  # "source database" | "state database"
    variable: str  # the environment variable its URL comes from
    url: str  # shown_url(...)

    @property
    def where(self) -> str:
        """'source database (CIO_MYSQL_URL at mysql+mysqldb://reader:***@host/shop)'."""
        return f"{self.database} ({self.variable} at {self.url})"

    def error(self, error: DBAPIError) -> DatabaseError:
        code, message = _driver_message(error)
        said = f"({code}) {message}" if code is not None else message
        if error.statement is None:
            return DatabaseError(f"Cannot connect to the {self.database} ({self.variable}) at {self.url}: {said}", code)
        return DatabaseError(
            f"The {self.database} ({self.variable}) at {self.url} failed on {_statement_summary(error.statement)}: "
            f"{said}",
            code,
        )

    @contextmanager
    def errors_named(self) -> Iterator[None]:
        """Turn a driver error raised inside (by this database, or another one) into a `DatabaseError`."""
        try:
            yield
        except DBAPIError as error:
            origin = getattr(error, "cio_origin", None) or self
            raise origin.error(error) from None


def _tag_origin(origin: _Origin):
    def handle_error(context: Any) -> None:
        if context.sqlalchemy_exception is not None:
            # Errors pass through nested `with` blocks of several databases: the first to catch it
            # must still name the database that raised it.
            context.sqlalchemy_exception.cio_origin = origin

    return handle_error


# A quoted literal after these words is a value from a row or a statement (MySQL/MariaDB wording):
# "Duplicate entry 'ada@shop.com' for key 'PRIMARY'", "Incorrect string value: '\xF0\x9F' for column ...",
# "Truncated incorrect DOUBLE value: 'x'", "... near 'ada@shop.com' at line 1", "set to the value of 'x'".
_VALUE_WORDS = r"entry|value:|value of|values?|near|text:"
_QUOTED_VALUE = re.compile(rf"\b({_VALUE_WORDS})\s*(['\"]).*?\2(?=\s+(?:for|at|in)\b|[\s.,;)]*$)", re.I | re.S)
# A quoted value whose end cannot be told (clipped by the server): everything after it goes.
_QUOTED_TAIL = re.compile(rf"\b({_VALUE_WORDS})\s*(['\"])(?!\*\*\*\2(?:\s|$)).*", re.I | re.S)
MAX_MESSAGE = 500


def redact_driver_message(message: str) -> str:
    """The driver's message with quoted values (row data) replaced by '***'; table, column and key names stay."""
    redacted = _QUOTED_VALUE.sub(lambda m: f"{m.group(1)} {m.group(2)}***{m.group(2)}", message)
    redacted = _QUOTED_TAIL.sub(lambda m: f"{m.group(1)} {m.group(2)}***{m.group(2)}", redacted)
    return redacted if len(redacted) <= MAX_MESSAGE else redacted[: MAX_MESSAGE - 3] + "..."


def _driver_message(error: DBAPIError) -> tuple[int | str | None, str]:
    orig = error.orig
    args = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):  # MySQLdb, PyMySQL: (code, message)
        return args[0], redact_driver_message(str(args[1]))
    code = getattr(orig, "sqlite_errorname", None)  # sqlite3 (Python 3.11+)
    message = str(orig) if orig is not None else type(error).__name__
    return code, redact_driver_message(message or type(orig).__name__)


_TARGET = re.compile(
    r"\b(INTO|FROM|UPDATE|JOIN|TABLE(?:\s+IF\s+(?:NOT\s+)?EXISTS)?|DATABASE(?:\s+IF\s+(?:NOT\s+)?EXISTS)?)\s+"
    r"([`\"\[]?[\w$.]+[`\"\]]?)",
    re.I,
)


def _statement_summary(statement: str) -> str:
    """'INSERT INTO cio_identity_map', 'SELECT FROM customers': the verb and the table, never literals."""
    verb_match = re.match(r"\s*(\w+)", statement)
    verb = verb_match.group(1).upper() if verb_match else "a statement"
    target = _TARGET.search(statement)
    if not target:
        return verb
    keyword = " ".join(target.group(1).upper().split())
    return f"{verb} {target.group(2)}" if keyword == "UPDATE" else f"{verb} {keyword} {target.group(2)}"


def _engine_for(url: str, origin: _Origin) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, hide_parameters=True)
    else:
        # utf8mb4 so that any e-mail or product name survives; pre-ping because runs are long-lived;
        # a connect timeout so that an unreachable server is reported in seconds, not minutes.
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        if parsed.get_driver_name() in _CONNECT_TIMEOUT_DRIVERS:
            query.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
        engine = create_engine(parsed.set(query=query), pool_pre_ping=True, hide_parameters=True)
    event.listen(engine, "handle_error", _tag_origin(origin))
    return engine


# ---------------------------------------------------------------------------------------------------------
# The databases
# ---------------------------------------------------------------------------------------------------------


class SourceDatabase(dg.ConfigurableResource):
    """The shop's database. The pipeline only ever reads it."""

    # Validation errors never show the input: it is a URL that may carry a password.
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(description="CIO_MYSQL_URL: the shop's database, a SQLAlchemy URL (read only).")

    _engine: Engine | None = PrivateAttr(default=None)
    _schema_checked: bool = PrivateAttr(default=False)

    @field_validator("url", mode="before")
    @classmethod
    def _valid_url(cls, value: Any) -> Any:
        return MYSQL_URL.check(value)

    @property
    def origin(self) -> _Origin:
        return _Origin("source database", MYSQL_URL.name, shown_url(self.url))

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = _engine_for(self.url, self.origin)
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.origin.errors_named():
            self._check_schema()
            with self.engine.connect() as conn:
                yield conn

    def _check_schema(self) -> None:
        """Once per resource: does the source hold every table and column the pipeline reads?

        The inspector gets its own connection: one it inspected no longer reports errors to the
        engine's `handle_error` listeners, which name the database in nested `with` blocks."""
        if self._schema_checked:
            return
        problem = schema_problem(self.engine, self.origin.where)
        if problem:
            raise SourceSchemaError(problem)
        self._schema_checked = True


class StateDatabase(dg.ConfigurableResource):
    """Tables the pipeline owns: identity, rejections, attribute snapshots, the event log.

    An empty `url` means "derive it from the source URL at run time", so that a source password
    never appears in the resource's configuration.
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(
        default="",
        description=(
            "CIO_STATE_URL: where the pipeline writes its own tables, a SQLAlchemy URL; empty means the "
            "source server with database cio_sync (a sibling file for a SQLite source)."
        ),
    )

    _engine: Engine | None = PrivateAttr(default=None)

    @field_validator("url", mode="before")
    @classmethod
    def _valid_url(cls, value: Any) -> Any:
        return STATE_URL.check(value)

    @property
    def resolved_url(self) -> str:
        return self.url or default_state_url(MYSQL_URL.read())

    @property
    def origin(self) -> _Origin:
        variable = STATE_URL.name if self.url else f"{STATE_URL.name} unset: {MYSQL_URL.name}'s server"
        return _Origin("state database", variable, shown_url(self.resolved_url))

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            origin = self.origin
            with origin.errors_named():
                _create_database_if_missing(self.resolved_url, origin)
                engine = _engine_for(self.resolved_url, origin)
                try:
                    _create_state_tables(engine)
                except BaseException:
                    engine.dispose()
                    raise
            self._engine = engine
        return self._engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: a partition is replaced entirely or not at all."""
        with self.origin.errors_named(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.origin.errors_named(), self.engine.connect() as conn:
            yield conn


def _create_database_if_missing(url: str, origin: _Origin) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("mysql", "mariadb") or not parsed.database:
        return
    server = _engine_for(parsed.set(database="").render_as_string(hide_password=False), origin)
    try:
        with origin.errors_named(), server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{parsed.database}` CHARACTER SET utf8mb4"))
    finally:
        server.dispose()


def database_resources() -> dict[str, dg.ConfigurableResource]:
    """Source and state databases from the environment, falling back to the embedded demo.

    Both URLs are checked here, so a malformed one stops the definitions from loading. When a URL is
    set in the environment it is passed as an `EnvVar`, so the password in it is resolved at launch
    and never shown in the Dagster UI.
    """
    read_all({"source": MYSQL_URL, "state": STATE_URL})
    source = SourceDatabase(url=dg.EnvVar(MYSQL_URL.name) if MYSQL_URL.is_set() else DEMO_SOURCE_URL)
    state = StateDatabase(url=dg.EnvVar(STATE_URL.name) if STATE_URL.is_set() else "")
    return {"source": source, "state": state}


# ---------------------------------------------------------------------------------------------------------
# Customer.io
# ---------------------------------------------------------------------------------------------------------

# The `customerio` resource's fields (other than the credentials) and the variable each comes from.
CUSTOMERIO_ENV: dict[str, EnvSetting] = {
    "region": REGION,
    "track_url": TRACK_URL,
    "rate_limit": RATE_LIMIT,
    "max_in_flight": MAX_IN_FLIGHT,
    "dry_run": DRY_RUN,
    "outbox_dir": OUTBOX_DIR,
    "retry_budget_seconds": RETRY_BUDGET_SECONDS,
    "accept_new_ledger": ACCEPT_NEW_LEDGER,
    "app_url": APP_URL,
    "reconcile_sample": RECONCILE_SAMPLE,
    "reconcile_settle_seconds": RECONCILE_SETTLE_SECONDS,
}


class CustomerIO(dg.ConfigurableResource):
    """Customer.io Track API credentials and sending behaviour.

    With no credentials, or `dry_run`, nothing is sent: sync assets write the exact request bodies
    to a JSONL outbox and report the plan instead. One credential without the other is an error.
    """

    # Validation errors never show the input: it holds the API key.
    model_config = ConfigDict(hide_input_in_errors=True)

    site_id: str = Field(default=SITE_ID.default, description="CIO_SITE_ID: Track API site id.")
    api_key: str = Field(default=API_KEY.default, description="CIO_API_KEY: Track API key (a secret).")
    region: str = Field(
        default=REGION.default, description="CIO_REGION: us (track.customer.io) or eu (track-eu.customer.io)."
    )
    track_url: str = Field(
        default=TRACK_URL.default,
        description="CIO_TRACK_URL: overrides the regional host (a proxy, or the tests' local fake).",
    )
    rate_limit: float = Field(
        default=RATE_LIMIT.default,
        description="CIO_RATE_LIMIT: requests per second, > 0 (Customer.io's soft limit is 1000).",
    )
    max_in_flight: int = Field(
        default=MAX_IN_FLIGHT.default, description="CIO_MAX_IN_FLIGHT: batches sent concurrently (>= 1)."
    )
    dry_run: bool = Field(
        default=DRY_RUN.default,
        description=(
            "CIO_DRY_RUN: send nothing; write the exact request bodies to the outbox and report the plan. "
            "Loaded as true when CIO_SITE_ID and CIO_API_KEY are not both set, because without credentials "
            "nothing can be sent: the launchpad shows the mode a run will actually be in."
        ),
    )
    outbox_dir: str = Field(
        default=OUTBOX_DIR.default, description="CIO_OUTBOX_DIR: where dry runs write <asset>-<run id>.jsonl."
    )
    retry_budget_seconds: float = Field(
        default=RETRY_BUDGET_SECONDS.default,
        description=(
            "CIO_RETRY_BUDGET_SECONDS: how long a batch may be retried (429, 5xx, transport errors) before "
            "the run stops with an error naming the Track URL (> 0)."
        ),
    )
    accept_new_ledger: bool = Field(
        default=ACCEPT_NEW_LEDGER.default,
        description=(
            "CIO_ACCEPT_NEW_LEDGER: allow delivery from a sync ledger that is new or was recreated "
            "(otherwise a lost ledger stops delivery before it re-sends history)."
        ),
    )

    app_api_key: str = Field(
        default=APP_API_KEY.default,
        description=(
            "CIO_APP_API_KEY: App API key (a secret), used only to read people back for the "
            "customerio_people_reconciled check; unset skips that check."
        ),
    )
    app_url: str = Field(
        default=APP_URL.default,
        description=(
            "CIO_APP_URL: overrides the App API host (default by CIO_REGION: api.customer.io or api-eu.customer.io)."
        ),
    )
    reconcile_sample: int = Field(
        default=RECONCILE_SAMPLE.default,
        description=(
            "CIO_RECONCILE_SAMPLE: people read back after each people sync (>= 1): those the latest sync "
            "delivered first, then a seeded random sample of everyone delivered."
        ),
    )
    reconcile_settle_seconds: float = Field(
        default=RECONCILE_SETTLE_SECONDS.default,
        description=(
            "CIO_RECONCILE_SETTLE_SECONDS: Customer.io applies updates asynchronously, so people that differ "
            "are read once more after this many seconds before they count as mismatches (>= 0)."
        ),
    )

    @field_validator("*", mode="before")
    @classmethod
    def _valid(cls, value: Any, info: ValidationInfo) -> Any:
        return check_field(CUSTOMERIO_ENV, value, info)

    @model_validator(mode="after")
    def _both_credentials_or_neither(self) -> CustomerIO:
        check_credentials(bool(self.site_id), bool(self.api_key), self.dry_run)
        return self

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


def customerio_resource() -> CustomerIO:
    """The `customerio` resource from the environment; every value is checked here, credentials included."""
    values = read_all(CUSTOMERIO_ENV)
    check_credentials(SITE_ID.is_set(), API_KEY.is_set(), values["dry_run"])
    # Without both credentials nothing can be sent: the configured value says so, so that the launchpad
    # shows the mode a run will actually be in (the assets report the same `dry_run`).
    values["dry_run"] = values["dry_run"] or not (SITE_ID.is_set() and API_KEY.is_set())
    return CustomerIO(
        site_id=dg.EnvVar(SITE_ID.name) if SITE_ID.is_set() else "",
        api_key=dg.EnvVar(API_KEY.name) if API_KEY.is_set() else "",
        app_api_key=dg.EnvVar(APP_API_KEY.name) if APP_API_KEY.is_set() else "",
        **values,
    )


def _create_state_tables(engine: Engine) -> None:
    """Create the pipeline's tables that are missing. Steps starting at once on an empty database (two
    Celery workers, the multiprocess executor) would race in `create_all` (one fails with "table already
    exists"), so on MySQL/MariaDB they take turns under a named lock."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        state_metadata.create_all(engine)
        return
    with named_lock(engine, "cio_assets_create_state_tables", timeout_seconds=60), engine.begin() as conn:
        state_metadata.create_all(conn)
