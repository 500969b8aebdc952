"""A shop followed as the source sensor follows it, under polling or binlog capture: the ticks, and the runs that
follow them (`test_never_miss.py`, `test_binlog_capture.py`)."""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import Engine, create_engine, text

from cio_assets.defs.automation.sensor import source_changes_sensor
from cio_assets.schema.shop import source_metadata
from cio_assets_tests.conftest import SYNC, LocalCustomerIO, Pipeline, own_database
from cio_assets_tests.definitions import ENV, daily_partitions
from cio_assets_tests.shop import ShopBuilder
from cio_assets_tests.ticks import tick

TODAY = daily_partitions.get_last_partition_key()
# The days `followed_shop`'s rows fall in (a run over every day to today costs a test seconds for nothing).
HISTORY = (daily_partitions.get_first_partition_key(), "2026-10-03")
# The source sensor as CIO_CHANGE_CAPTURE builds it.
SENSORS = {
    capture: source_changes_sensor(daily_partitions, ENV.automation.model_copy(update={"change_capture": capture}))
    for capture in ("poll", "binlog")
}


def seconds_ago(seconds: int) -> datetime:
    """A naive UTC DATETIME, to the second, `seconds` before now."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).replace(tzinfo=None, microsecond=0)


@dataclass
class Live:
    """A shop followed as the sensor follows it: its ticks' cursor, and the runs they launch."""

    pipeline: Pipeline
    customerio: LocalCustomerIO
    capture: str  # CIO_CHANGE_CAPTURE
    mapping: str = "reference"
    cursor: str | None = None

    def tick(self) -> dg.SensorExecutionData:
        result = tick(
            self.pipeline.source_url,
            self.cursor,
            state_url=self.pipeline.state_url,
            mapping=self.mapping,
            sensor=SENSORS[self.capture],
        )
        self.cursor = result.cursor
        return result

    def follow(self) -> bool:
        """One tick, then a run of today's partition whether it launched one or not (as if started by hand), so
        that the tick and the run are each judged: whether the tick launched a run."""
        launched = bool(self.tick().run_requests)
        self.pipeline.run(partition=TODAY, assets=SYNC, customerio=self.customerio.resource())
        return launched

    def person(self, email: str) -> dict:
        return next(attributes for attributes in self.customerio.fake.people.values() if attributes["email"] == email)


def execute(engine: Engine, sql: str, **params: object) -> None:
    with engine.begin() as conn:
        assert conn.execute(text(sql), params).rowcount >= 1, sql


def followed_shop(
    server_url: str, capture: str, customerio: LocalCustomerIO, tmp_path, stack: ExitStack
) -> tuple[Live, ShopBuilder]:
    """Three customers, two paid orders of the second (one line each, category tea), on databases of their own on
    `server_url` (dropped when `stack` closes), seen by a first tick and their whole history delivered."""
    name = f"cio_test_{uuid.uuid4().hex[:10]}_{capture}"
    url = stack.enter_context(own_database(f"{name}_shop", server_url))
    state_url = stack.enter_context(own_database(f"{name}_state", server_url))
    source, state = create_engine(url), create_engine(state_url)
    stack.callback(source.dispose)
    stack.callback(state.dispose)
    source_metadata.create_all(source)
    shop = ShopBuilder(source)
    for customer in (1, 2, 3):
        shop.customer(customer, first_name="Ada", updated_at="2026-10-01 09:00")
    shop.order(2, paid_at="2026-10-02 10:00", items=[("SKU-1", "tea", 1, 50.0)])
    shop.order(2, paid_at="2026-10-03 10:00", items=[("SKU-2", "tea", 1, 50.0)])
    followed = Live(Pipeline(url, state_url, state, tmp_path / capture), customerio, capture)
    assert followed.tick().run_requests
    followed.pipeline.run(partition_range=HISTORY, assets=SYNC, customerio=customerio.resource())
    return followed, shop
