"""Database engines for the shop and the state database, and their errors told without secrets.

Both databases are SQLAlchemy URLs (MySQL/MariaDB through mysqlclient, or SQLite files). Nothing a database
says reaches a log with a password or a row's values in it: engines hide bound parameters, and any driver
error inside `Database.connect()` or `begin()` (the caller's `with` block included) becomes one
`DatabaseError` that names the database, its URL without the password, the driver's code and message with
quoted values redacted, and the statement's verb and table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

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


def shown_url(url: str | URL) -> str:
    """The URL as it may be shown: no password, no secret-looking query values."""
    parsed = make_url(url)
    query = {k: ("***" if _SECRET_QUERY.search(k) else v) for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------------------------
# Errors a database raises, described without secrets or personal data
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Which database an engine talks to, as error messages name it."""

    database: str  # "source database" | "state database"
    variable: str  # the environment variable its URL comes from
    url: str  # shown_url(...)

    @property
    def where(self) -> str:
        """'source database (CIO_MYSQL_URL at mysql+mysqldb://reader:***@host/shop)'."""
        return f"{self.database} ({self.variable} at {self.url})"

    def error(self, error: DBAPIError) -> DatabaseError:
        code, message = driver_message(error)
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


def _tag_origin(origin: Origin):
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


def driver_message(error: DBAPIError) -> tuple[int | str | None, str]:
    """The driver's error code and its message, redacted."""
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


def engine_for(url: str, origin: Origin) -> Engine:
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
        event.listen(engine, "connect", _utc_session)
    event.listen(engine, "handle_error", _tag_origin(origin))
    return engine


def _utc_session(dbapi_connection: Any, connection_record: Any) -> None:
    """Every MySQL/MariaDB session reads and writes TIMESTAMP columns in UTC, whatever the server's default: a
    TIMESTAMP is stored in UTC and shown in the session's zone, so a session in another zone shifts it (Magento's
    created_at). Naive DATETIMEs are not affected; their zone is the mapping's."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET time_zone = '+00:00'")
    finally:
        cursor.close()


def create_database_if_missing(url: str, origin: Origin) -> None:
    """CREATE DATABASE for a MySQL/MariaDB URL whose database does not exist yet (utf8mb4)."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("mysql", "mariadb") or not parsed.database:
        return
    server = engine_for(parsed.set(database="").render_as_string(hide_password=False), origin)
    try:
        with origin.errors_named(), server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{parsed.database}` CHARACTER SET utf8mb4"))
    finally:
        server.dispose()


class Database:
    """One database: its engine, and connections whose errors name it.

    `prepare(engine)` runs once, before the engine is first handed out (the source's schema check; creating the
    state database and its tables), inside the same error naming; if it fails, the next use tries again."""

    def __init__(self, url: str, origin: Origin, prepare: Callable[[Engine], None] | None = None) -> None:
        self.url = url
        self.origin = origin
        self._prepare = prepare
        self._engine: Engine | None = None
        self._prepared = False

    @property
    def engine(self) -> Engine:
        """The engine, prepared."""
        with self.origin.errors_named():
            if self._engine is None:
                self._engine = engine_for(self.url, self.origin)
            if not self._prepared:
                if self._prepare is not None:
                    self._prepare(self._engine)
                self._prepared = True
        return self._engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.origin.errors_named(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: everything written in the block commits together, or not at all."""
        with self.origin.errors_named(), self.engine.begin() as conn:
            yield conn
