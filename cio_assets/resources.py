"""Connections: the shop's source database (read only) and the state database the pipeline owns.

Both are SQLAlchemy URLs. `CIO_MYSQL_URL` names the source (any SQLAlchemy URL, e.g.
`mysql+mysqldb://user:pass@host/shop`); `CIO_STATE_URL` names where the pipeline writes its
own tables (default: the source server, database `cio_sync`; for a SQLite source, a sibling file).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.engine import URL

from cio_assets.customerio.client import REGION_URLS, TrackClient
from cio_assets.settings import DATA_DIR, DEMO_SOURCE_URL, DEMO_STATE_URL
from cio_assets.state.tables import state_metadata

STATE_DATABASE_NAME = "cio_sync"


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


def _engine_for(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(url)
    # utf8mb4 so that any e-mail or product name survives; pre-ping because runs are long-lived.
    query = dict(parsed.query)
    query.setdefault("charset", "utf8mb4")
    return create_engine(parsed.set(query=query), pool_pre_ping=True)


class SourceDatabase(dg.ConfigurableResource):
    """The shop's database. The pipeline only ever reads it."""

    url: str

    _engine: Engine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = _engine_for(self.url)
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn


class StateDatabase(dg.ConfigurableResource):
    """Tables the pipeline owns: identity, rejections, attribute snapshots, the event log.

    An empty `url` means "derive it from the source URL at run time", so that a source password
    never appears in the resource's configuration.
    """

    url: str = ""

    _engine: Engine | None = PrivateAttr(default=None)

    @property
    def resolved_url(self) -> str:
        return self.url or default_state_url(os.environ.get("CIO_MYSQL_URL") or DEMO_SOURCE_URL)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            _create_database_if_missing(self.resolved_url)
            self._engine = _engine_for(self.resolved_url)
            state_metadata.create_all(self._engine)
        return self._engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: a partition is replaced entirely or not at all."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn


def _create_database_if_missing(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "mysql" or not parsed.database:
        return
    server = _engine_for(parsed.set(database="").render_as_string(hide_password=False))
    try:
        with server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{parsed.database}` CHARACTER SET utf8mb4"))
    finally:
        server.dispose()


def database_resources() -> dict[str, dg.ConfigurableResource]:
    """Source and state databases from the environment, falling back to the embedded demo.

    When a URL is set in the environment it is passed as an `EnvVar`, so the password in it is
    resolved at launch and never shown in the Dagster UI.
    """
    source_url = os.environ.get("CIO_MYSQL_URL")
    state_url = os.environ.get("CIO_STATE_URL")
    source = SourceDatabase(url=dg.EnvVar("CIO_MYSQL_URL") if source_url else DEMO_SOURCE_URL)
    state = StateDatabase(url=dg.EnvVar("CIO_STATE_URL") if state_url else "")
    return {"source": source, "state": state}


class CustomerIO(dg.ConfigurableResource):
    """Customer.io Track API credentials and sending behaviour.

    With no credentials, or `dry_run`, nothing is sent: sync assets write the exact request bodies
    to a JSONL outbox and report the plan instead.
    """

    site_id: str = ""
    api_key: str = ""
    region: str = "us"  # CIO_REGION: us | eu
    track_url: str = ""  # CIO_TRACK_URL: overrides the regional host (tests, proxies)
    rate_limit: float = 100.0  # CIO_RATE_LIMIT: requests per second (Customer.io's soft limit is 1000)
    max_in_flight: int = 4  # CIO_MAX_IN_FLIGHT: concurrent requests
    dry_run: bool = False  # CIO_DRY_RUN=1
    outbox_dir: str = str(DATA_DIR / "outbox")  # CIO_OUTBOX_DIR

    @property
    def sends(self) -> bool:
        return bool(self.site_id and self.api_key) and not self.dry_run

    @property
    def base_url(self) -> str:
        if self.track_url:
            return self.track_url
        if self.region not in REGION_URLS:
            raise dg.Failure(description=f"CIO_REGION must be one of {sorted(REGION_URLS)}, got {self.region!r}")
        return REGION_URLS[self.region]

    def client(self) -> TrackClient:
        return TrackClient(
            site_id=self.site_id,
            api_key=self.api_key,
            base_url=self.base_url,
            rate_limit=self.rate_limit,
            max_in_flight=self.max_in_flight,
        )


def customerio_resource() -> CustomerIO:
    env = os.environ
    return CustomerIO(
        site_id=dg.EnvVar("CIO_SITE_ID") if env.get("CIO_SITE_ID") else "",
        api_key=dg.EnvVar("CIO_API_KEY") if env.get("CIO_API_KEY") else "",
        region=env.get("CIO_REGION", "us"),
        track_url=env.get("CIO_TRACK_URL", ""),
        rate_limit=float(env.get("CIO_RATE_LIMIT", "100")),
        max_in_flight=int(env.get("CIO_MAX_IN_FLIGHT", "4")),
        dry_run=env.get("CIO_DRY_RUN", "") in ("1", "true", "yes"),
        outbox_dir=env.get("CIO_OUTBOX_DIR", str(DATA_DIR / "outbox")),
    )
