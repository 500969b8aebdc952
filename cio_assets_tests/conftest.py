"""Shared fixtures: a real MariaDB/MySQL per test session, a shop builder, and an asset runner.

Every test session creates its own throwaway source and state databases on the server named by
`CIO_TEST_MYSQL_URL` (default: the local MariaDB as root) and drops them at the end. Each test
starts from empty tables. Nothing here mocks the database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import Engine, MetaData, create_engine, make_url, select, text

from cio_assets.defs.assets.shared import REFRESHING
from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import source_metadata
from cio_assets_tests.binlog_server import MISSING as MISSING_BINLOG_SERVER
from cio_assets_tests.binlog_server import binlog_server
from cio_assets_tests.definitions import (
    TEST_PARTITIONS,
    attribute_snapshot,
    customerio_events,
    customerio_people,
    event_log,
    identity_map,
    rejected_rows,
)
from cio_assets_tests.fake_customerio import FakeCustomerIO, serve
from cio_assets_tests.shop import ShopBuilder

# The partitions of the code locations the tests start in processes of their own (`dagster asset materialize`,
# `dagster dev`, Celery workers), which inherit this environment: the same as the in-process definitions'.
os.environ["CIO_START_DATE"] = TEST_PARTITIONS.start_date
os.environ["CIO_BUSINESS_TZ"] = TEST_PARTITIONS.business_tz

SERVER_URL = os.environ.get("CIO_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/")
PIPELINE = [rejected_rows, identity_map, attribute_snapshot, event_log]
SYNC = [*PIPELINE, customerio_people, customerio_events]


@pytest.fixture(scope="session")
def database_urls() -> Iterator[tuple[str, str]]:
    server = create_engine(SERVER_URL)
    name = f"cio_test_{uuid.uuid4().hex[:10]}"
    names = (f"{name}_shop", f"{name}_state")
    with server.begin() as conn:
        for db in names:
            conn.execute(text(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4"))
    base = make_url(SERVER_URL)
    try:
        yield tuple(base.set(database=db).render_as_string(hide_password=False) for db in names)  # type: ignore[misc]
    finally:
        with server.begin() as conn:
            for db in names:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{db}`"))
        server.dispose()


@contextmanager
def own_database(name: str, server_url: str = SERVER_URL) -> Iterator[str]:
    """A database of this name on the test server (or `server_url`'s; one left over is dropped first); its URL.
    Dropped at the end."""
    server = create_engine(server_url)
    with server.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


@pytest.fixture(scope="session")
def binlog_server_url() -> Iterator[str]:
    """A MariaDB of the session's own that logs rows (`binlog_server.py`): its URL, without a database."""
    if MISSING_BINLOG_SERVER:
        pytest.skip(MISSING_BINLOG_SERVER)
    with binlog_server() as url:
        yield url


@pytest.fixture
def throwaway_database() -> Iterator[str]:
    """The URL of an empty database of its own on the test server (a platform's shop), dropped at the end."""
    with own_database(f"cio_test_{uuid.uuid4().hex[:10]}_own") as url:
        yield url


@pytest.fixture
def second_state_url(database_urls: tuple[str, str]) -> Iterator[str]:
    """Another empty state database on the same server, for a second pipeline over the same shop."""
    with own_database(f"{make_url(database_urls[1]).database}_2") as url:
        yield url


@pytest.fixture
def source_engine(database_urls: tuple[str, str]) -> Iterator[Engine]:
    engine = create_engine(database_urls[0])
    source_metadata.drop_all(engine)
    source_metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def state_engine(database_urls: tuple[str, str]) -> Iterator[Engine]:
    engine = create_engine(database_urls[1])
    everything = MetaData()  # the pipeline's tables and those it made at run time (runs' staging tables)
    everything.reflect(engine)
    everything.drop_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def shop(source_engine: Engine) -> ShopBuilder:
    return ShopBuilder(source_engine)


class Pipeline:
    """Runs the assets in-process against the test databases and reads back what they wrote."""

    def __init__(
        self, source_url: str, state_url: str, state_engine: Engine, outbox_dir, mapping: str = "reference"
    ) -> None:
        self.source_url = source_url
        self.mapping = mapping  # CIO_SOURCE_MAPPING: how the shop's tables are read
        self.state_url = state_url
        self.state_engine = state_engine
        self.outbox_dir = outbox_dir

    def run(
        self,
        partition: str | None = None,
        partition_range: tuple[str, str] | None = None,
        settings: Settings | None = None,
        assets: list | None = None,
        raise_on_error: bool = True,
        customerio: CustomerIO | None = None,
        instance: dg.DagsterInstance | None = None,  # to read the run's records back; a throwaway one if None
        full_refresh: bool = False,  # rebuild every asset from the whole shop (the `full_refresh` run config)
    ) -> dg.ExecuteInProcessResult:
        tags = {}
        if partition_range:
            tags = {
                "dagster/asset_partition_range_start": partition_range[0],
                "dagster/asset_partition_range_end": partition_range[1],
            }
        with nullcontext(instance) if instance else dg.instance_for_test() as instance:
            selected = assets or PIPELINE
            names = {key.to_user_string() for a in selected if isinstance(a, dg.AssetsDefinition) for key in a.keys}
            run_config = {"ops": {op: {"config": {"full_refresh": True}} for op in set(REFRESHING) & names}}
            return dg.materialize(
                selected,
                run_config=run_config if full_refresh else None,
                partition_key=partition,
                tags=tags,
                instance=instance,
                raise_on_error=raise_on_error,
                resources={
                    "settings": settings or Settings(),
                    "source": SourceDatabase(url=self.source_url, mapping=self.mapping),
                    "state": StateDatabase(url=self.state_url),
                    "customerio": customerio or CustomerIO(dry_run=True, outbox_dir=str(self.outbox_dir)),
                },
            )

    def table(self, table, order_by: list[str] | None = None) -> pd.DataFrame:
        with self.state_engine.connect() as conn:
            statement = select(table)
            if order_by:
                statement = statement.order_by(*(table.c[c] for c in order_by))
            result = conn.execute(statement)
            # object dtype: integers stay integers and NULL stays None (no NaN that never equals itself)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()), dtype=object)

    def snapshot(self, day: str | None = None) -> pd.DataFrame:
        frame = self.table(state_tables.attribute_snapshot, ["day", "person_id"])
        return frame[frame["day"] == day].reset_index(drop=True) if day else frame

    def person(self, person_id: str, day: str) -> dict:
        rows = self.snapshot(day)
        rows = rows[rows["person_id"] == person_id]
        assert len(rows) == 1, f"expected one snapshot row for {person_id} on {day}, found {len(rows)}"
        return rows.iloc[0].to_dict()

    def events(self, name: str | None = None) -> pd.DataFrame:
        frame = self.table(state_tables.event_log, ["event_id"])
        return frame[frame["name"] == name].reset_index(drop=True) if name else frame


@pytest.fixture
def pipeline(database_urls: tuple[str, str], state_engine: Engine, source_engine: Engine, tmp_path) -> Pipeline:
    return Pipeline(database_urls[0], database_urls[1], state_engine, tmp_path / "outbox")


class LocalCustomerIO:
    """The fake Customer.io over real HTTP, and a resource pointed at it."""

    def __init__(self, fake: FakeCustomerIO, url: str) -> None:
        self.fake = fake
        self.url = url

    def resource(self, api_key: str | None = None, **overrides) -> CustomerIO:
        return CustomerIO(
            site_id=self.fake.site_id,
            api_key=api_key or self.fake.api_key,
            track_url=self.url,
            rate_limit=overrides.pop("rate_limit", 1000.0),
            **overrides,
        )


@pytest.fixture(scope="session")
def _served_customerio() -> Iterator[tuple[FakeCustomerIO, str]]:
    fake = FakeCustomerIO()
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def customerio(_served_customerio: tuple[FakeCustomerIO, str]) -> LocalCustomerIO:
    fake, url = _served_customerio
    fake.reset()
    return LocalCustomerIO(fake, url)


def ts(value: str) -> datetime:
    """A naive source DATETIME from 'YYYY-MM-DD HH:MM[:SS]'."""
    return datetime.fromisoformat(value)


def unix(value: str) -> int:
    """Unix seconds of a UTC 'YYYY-MM-DD HH:MM[:SS]'."""
    return int(datetime.fromisoformat(value + "+00:00").timestamp())


def logged_event(event_id: str, day: str, timestamp: int) -> dict:
    """A row of the event log, as a test writes it straight into the table."""
    return {
        "event_id": event_id,
        "day": day,
        "person_id": "1",
        "name": "order_placed",
        "timestamp": timestamp,
        "properties": "{}",
    }
