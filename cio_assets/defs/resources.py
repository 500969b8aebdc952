"""The resources: the settings, the shop's database (read only), the state database the pipeline owns, Customer.io.

Each resource is a group of settings declared in `cio_assets/config.py`, made configurable by Dagster: the
launchpad shows every field with its variable and description, and checks an edited value by the same rule
before any step runs. `resources(env)` builds them from the environment when the definitions are built. A URL
or key set in the environment is passed as a `dagster.EnvVar`, so Dagster resolves it at launch and never shows
it; an EnvVar's value is checked when the run resolves it.

The databases are `lib.engines.Database`s: errors name the database and never a password or a row's values.
The source is read through its mapping (`CIO_SOURCE_MAPPING`): once per resource, on its first connection, the
shop is checked for everything the mapping reads and the mapping is installed on its engine (`cio_assets/mapping/`).
The state database and its tables are created when missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import ConfigDict, PrivateAttr
from sqlalchemy import Connection, Engine

from cio_assets.config import (
    CustomerIOSettings,
    DemoSettings,
    Environment,
    PipelineSettings,
    SourceSettings,
    StateSettings,
    default_state_url,
)
from cio_assets.lib.engines import Database, Origin, create_database_if_missing, shown_url
from cio_assets.mapping.check import check_source
from cio_assets.mapping.compile import Relations
from cio_assets.mapping.spec import MappingSpec
from cio_assets.schema.state import create_state_tables


class _Configurable:
    """Settings made Dagster-configurable: an EnvVar (its value is the variable's name until Dagster resolves it at
    launch) passes the rule now and is checked when the run resolves it."""

    @classmethod
    def check_value(cls, field: str, value: Any) -> Any:
        if isinstance(value, dg.EnvVar):
            return value
        return super().check_value(field, value)  # type: ignore[misc]


class Settings(_Configurable, PipelineSettings, dg.ConfigurableResource):
    """Behaviour of the pipeline. Each field's environment variable is named in its description."""


class SourceDatabase(_Configurable, SourceSettings, dg.ConfigurableResource):
    """The shop's database. The pipeline only ever reads it."""

    # Validation errors never show the input: it is a URL that may carry a password.
    model_config = ConfigDict(hide_input_in_errors=True)

    _database: Database | None = PrivateAttr(default=None)
    _mapping: MappingSpec | None = PrivateAttr(default=None)
    _relations: Relations | None = PrivateAttr(default=None)

    @property
    def origin(self) -> Origin:
        return self.database.origin

    @property
    def mapping_spec(self) -> MappingSpec:
        """The source mapping, read once per resource."""
        if self._mapping is None:
            self._mapping = self.spec()
        return self._mapping

    @property
    def relations(self) -> Relations:
        """The mapping compiled for this shop (which optional concepts it has), after the check."""
        self.database.engine  # noqa: B018 (checks the shop and compiles the mapping, once)
        assert self._relations is not None
        return self._relations

    @property
    def database(self) -> Database:
        if self._database is None:
            origin = Origin("source database", self.variable("url"), shown_url(self.url))

            def read_through_mapping(engine: Engine) -> None:
                """Does the shop hold what the mapping reads? Then every query reads through it (once per resource)."""
                relations = check_source(engine, self.mapping_spec, origin.where)
                relations.install(engine)
                self._relations = relations

            self._database = Database(self.url, origin, prepare=read_through_mapping)
        return self._database

    @property
    def engine(self) -> Engine:
        return self.database.engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.database.connect() as conn:
            yield conn


class StateDatabase(_Configurable, StateSettings, dg.ConfigurableResource):
    """Tables the pipeline owns: identity, rejections, attribute snapshots, the event log, the sync ledger.

    An empty `url` means "derive it from the source URL at run time", so that a source password never appears
    in the resource's configuration."""

    model_config = ConfigDict(hide_input_in_errors=True)

    _database: Database | None = PrivateAttr(default=None)

    @property
    def origin(self) -> Origin:
        return self.database.origin

    @property
    def database(self) -> Database:
        if self._database is None:
            url = self.url or _derived_state_url()
            variable = self.variable("url")
            shown = variable if self.url else f"{variable} unset: {SourceSettings.variable('url')}'s server"
            origin = Origin("state database", shown, shown_url(url))

            def create(engine: Engine) -> None:
                create_database_if_missing(url, origin)
                create_state_tables(engine)

            self._database = Database(url, origin, prepare=create)
        return self._database

    @property
    def engine(self) -> Engine:
        return self.database.engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: a partition is replaced entirely or not at all."""
        with self.database.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.database.connect() as conn:
            yield conn


class CustomerIO(_Configurable, CustomerIOSettings, dg.ConfigurableResource):
    """Customer.io Track API credentials and sending behaviour, and the App API key of the read-back.

    With no credentials, or `dry_run`, nothing is sent: sync assets write the exact request bodies to a JSONL
    outbox and report the plan instead. One credential without the other is an error."""

    # Validation errors never show the input: it holds the API key.
    model_config = ConfigDict(hide_input_in_errors=True)


def _derived_state_url() -> str:
    """The state database when CIO_STATE_URL is unset: beside the source CIO_MYSQL_URL names (read when the run
    starts: that URL reaches Dagster as an EnvVar, and may hold a password)."""
    demo = DemoSettings.from_env()
    return default_state_url(SourceSettings.from_env().url or demo.shop_url, demo)


def _secret(model: type, field: str, value: str) -> str | dg.EnvVar:
    """A value set in the environment as an EnvVar (resolved at launch, never shown), else the value."""
    return dg.EnvVar(model.variable(field)) if model.is_set(field) else value  # type: ignore[attr-defined]


def resources(env: Environment) -> dict[str, dg.ConfigurableResource]:
    """Every resource from the environment, as read by `Environment.read()` (which checked every value)."""
    customerio = env.customerio.model_dump()
    customerio.update(
        site_id=_secret(CustomerIOSettings, "site_id", ""),
        api_key=_secret(CustomerIOSettings, "api_key", ""),
        app_api_key=_secret(CustomerIOSettings, "app_api_key", ""),
        outbox_dir=env.customerio.outbox_dir or env.demo.outbox,
    )
    return {
        "settings": Settings(**env.pipeline.model_dump()),
        "source": SourceDatabase(
            url=_secret(SourceSettings, "url", env.demo.shop_url),
            mapping=env.source.mapping,
            table_prefix=env.source.table_prefix,
        ),
        "state": StateDatabase(url=_secret(StateSettings, "url", "")),
        "customerio": CustomerIO(**customerio),
    }
