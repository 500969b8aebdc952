"""The source sensor: it observes the shop, refreshes today's partition only when a high-water mark moved
forward, never moves its cursor backwards, reports the source's freshness, and keeps its place across a
database error (on a real MariaDB database that is dropped, or whose table is renamed, mid-test)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import orjson
import pytest
from sqlalchemy import Engine, create_engine, event, make_url, text

from cio_assets.config import AutomationSettings, SettingsError
from cio_assets.defs.automation.sensor import SourceCursor, advance
from cio_assets.defs.checks.source import SOURCE_FRESHNESS_CHECK
from cio_assets.defs.partitions import history
from cio_assets.defs.resources import Settings
from cio_assets.schema.shop import orders, source_metadata
from cio_assets_tests.conftest import SERVER_URL
from cio_assets_tests.definitions import daily_partitions, source_changes
from cio_assets_tests.shop import ShopBuilder
from cio_assets_tests.ticks import tick as _tick

# The partition an instant falls in (the first one for anything before it), as the sensor places a cart gone idle.
partition_of = history(daily_partitions).key_of


def _observed(tick: dg.SensorExecutionData) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): e.metadata for e in tick.asset_events if isinstance(e, dg.AssetObservation)}


def _freshness(tick: dg.SensorExecutionData) -> list[dg.AssetCheckEvaluation]:
    return [e for e in tick.asset_events if isinstance(e, dg.AssetCheckEvaluation)]


def _marks(tick: dg.SensorExecutionData) -> dict:
    return SourceCursor.parse(tick.cursor).marks


def _high_water(tick: dg.SensorExecutionData, table: str) -> dict:
    return {name: value for name, value in _marks(tick)[table].items() if name.startswith("max_")}


def _minutes_ago(minutes: int) -> datetime:
    """A naive UTC source DATETIME `minutes` before now."""
    return (datetime.now(UTC) - timedelta(minutes=minutes)).replace(tzinfo=None, microsecond=0)


def test_observations_carry_row_counts_and_high_water_marks(shop, pipeline):
    shop.customer(1)
    shop.order(1, id=41, paid_at="2026-10-02 10:00")

    tick = _tick(pipeline.source_url)

    observed = _observed(tick)
    assert observed["source/orders"]["dagster/row_count"].value == 1
    assert observed["source/orders"]["max_id"].value == 41
    assert observed["source/orders"]["max_updated_at"].value == "2026-10-02T10:00:00"
    # The first tick observes every table, empty ones too.
    assert observed["source/refunds"]["dagster/row_count"].value == 0
    assert len(tick.run_requests) == 1
    assert tick.run_requests[0].partition_key == daily_partitions.get_last_partition_key()
    assert tick.run_requests[0].job_name in (None, "refresh")
    assert tick.run_requests[0].tags["cio/changed_tables"] == "customers, order_items, orders"
    assert _high_water(tick, "source/orders") == {"max_id": 41, "max_updated_at": "2026-10-02T10:00:00"}
    assert _marks(tick)["source/orders"]["row_count"] == 1


def test_an_unchanged_shop_requests_nothing_and_a_new_order_requests_a_refresh(shop, pipeline):
    shop.customer(1)
    first = _tick(pipeline.source_url)

    unchanged = _tick(pipeline.source_url, cursor=first.cursor)
    shop.order(1, id=42, paid_at="2026-10-02 10:00")
    changed = _tick(pipeline.source_url, cursor=first.cursor)

    assert unchanged.run_requests == [] and "No mark moved" in (unchanged.skip_message or "")
    assert _observed(unchanged) == {}  # nothing moved: nothing observed
    assert _marks(unchanged) == _marks(first)
    assert len(changed.run_requests) == 1
    assert set(_observed(changed)) == {"source/orders", "source/order_items"}
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key


@pytest.mark.parametrize(
    ("kept", "seen", "marks", "moved"),
    [
        # the first sighting of a table's marks moves them forward
        pytest.param({}, {"t": {"max_id": 3}}, {"t": {"max_id": 3}}, ["t"], id="first_sighting"),
        # a higher id moves forward
        pytest.param({"t": {"max_id": 3}}, {"t": {"max_id": 4}}, {"t": {"max_id": 4}}, ["t"], id="higher_id"),
        # a lower id (rows deleted, an older backup restored) keeps the higher mark and moves nothing
        pytest.param({"t": {"max_id": 9}}, {"t": {"max_id": 4}}, {"t": {"max_id": 9}}, [], id="lower_id_kept"),
        # times compare as times: fractions of a second count, the text's length does not
        pytest.param(
            {"t": {"max_updated_at": "2026-10-02T10:00:00"}},
            {"t": {"max_updated_at": "2026-10-02T10:00:00.250000"}},
            {"t": {"max_updated_at": "2026-10-02T10:00:00.250000"}},
            ["t"],
            id="later_by_a_fraction",
        ),
        # an earlier time (a future timestamp corrected) keeps the later mark
        pytest.param(
            {"t": {"max_updated_at": "2099-01-01T00:00:00"}},
            {"t": {"max_updated_at": "2026-11-01T00:00:00"}},
            {"t": {"max_updated_at": "2099-01-01T00:00:00"}},
            [],
            id="earlier_time_kept",
        ),
        # a row count moves when it differs at all: rows deleted, or inserted late under a lower id
        pytest.param({"t": {"row_count": 9}}, {"t": {"row_count": 8}}, {"t": {"row_count": 8}}, ["t"], id="fewer_rows"),
        # the rows changed lately hold something else (a same-second edit, a late commit): moved
        pytest.param(
            {"t": {"max_id": 3, "changed_lately": "2:aa"}},
            {"t": {"max_id": 3, "changed_lately": "2:bb"}},
            {"t": {"max_id": 3, "changed_lately": "2:bb"}},
            ["t"],
            id="changed_lately_differs",
        ),
        # the same digest and count: nothing moved
        pytest.param(
            {"t": {"row_count": 2, "changed_lately": "2:aa"}},
            {"t": {"row_count": 2, "changed_lately": "2:aa"}},
            {"t": {"row_count": 2, "changed_lately": "2:aa"}},
            [],
            id="same_digest",
        ),
        # a table the source no longer reports keeps its marks; another table's move is reported alone
        pytest.param(
            {"a": {"max_id": 1}, "b": {"max_id": 1}},
            {"b": {"max_id": 2}},
            {"a": {"max_id": 1}, "b": {"max_id": 2}},
            ["b"],
            id="one_of_two",
        ),
    ],
)
def test_marks_only_move_forward(kept, seen, marks, moved):
    assert advance(kept, seen) == (marks, moved)


ORDER = {
    "customer_id": 1,
    "status": "paid",
    "currency": "USD",
    "subtotal": 5,
    "total": 5,
    "created_at": datetime(2026, 10, 2, 8),
}


def test_a_source_behind_the_cursor_keeps_its_high_water_marks_and_launches_each_change_once(
    shop, pipeline, source_engine: Engine
):
    shop.customer(1)
    shop.order(1, id=7, paid_at="2026-10-02 10:00")
    first = _tick(pipeline.source_url)
    # The newest order disappears (deleted, or a restore from an older backup): the maxima read lower than kept.
    with source_engine.begin() as conn:
        conn.execute(text("DELETE FROM order_items WHERE order_id = 7"))
        conn.execute(text("DELETE FROM orders WHERE id = 7"))
    behind = _tick(pipeline.source_url, cursor=first.cursor)
    unchanged = _tick(pipeline.source_url, cursor=behind.cursor)
    with source_engine.begin() as conn:  # an order inserted below the kept marks (a late commit's lower id)
        conn.execute(
            orders.insert(),
            [{**ORDER, "id": 5, "paid_at": datetime(2026, 10, 2, 9), "updated_at": datetime(2026, 10, 2, 9)}],
        )
    still_behind = _tick(pipeline.source_url, cursor=unchanged.cursor)
    shop.order(1, id=8, paid_at="2026-10-02 11:00")
    passed = _tick(pipeline.source_url, cursor=still_behind.cursor)

    # The delete and the insert below the marks each launch a refresh (the row count differs); the high-water
    # marks stay where they were until passed, so nothing already launched is launched again for them.
    assert len(behind.run_requests) == 1 and _high_water(behind, "source/orders") == _high_water(first, "source/orders")
    assert unchanged.run_requests == []
    assert len(still_behind.run_requests) == 1
    assert _high_water(still_behind, "source/orders") == _high_water(first, "source/orders")
    assert len(passed.run_requests) == 1
    assert _high_water(passed, "source/orders") == {"max_id": 8, "max_updated_at": "2026-10-02T11:00:00"}


def test_a_cursor_of_an_older_sensor_starts_afresh(shop, pipeline):
    shop.customer(1)

    tick = _tick(pipeline.source_url, cursor="3f2a9c0d1b2e4f5a")  # the previous sensor's hash cursor

    assert len(tick.run_requests) == 1
    assert orjson.loads(tick.cursor or "{}")["marks"]["source/customers"]["max_id"] == 1


def test_the_source_freshness_check_is_reported_when_its_outcome_changes(shop, pipeline):
    shop.customer(1)
    shop.order(1, id=1, paid_at=_minutes_ago(30))

    first = _tick(pipeline.source_url, settings=Settings(source_max_lag_minutes=60))
    same = _tick(pipeline.source_url, cursor=first.cursor, settings=Settings(source_max_lag_minutes=60))
    stale = _tick(pipeline.source_url, cursor=same.cursor, settings=Settings(source_max_lag_minutes=10))

    [reported] = _freshness(first)
    assert reported.check_name == SOURCE_FRESHNESS_CHECK and reported.passed
    assert reported.asset_key == dg.AssetKey(["source", "orders"])
    assert _freshness(same) == []  # unchanged outcome: not reported again
    [warning] = _freshness(stale)
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert warning.metadata["max_lag_minutes"].value == 10
    assert 29 <= warning.metadata["lag_minutes"].value <= 32
    assert stale.run_requests == []  # freshness alone launches nothing


# --- a database error during a tick -----------------------------------------------------------------------


@pytest.fixture
def own_source() -> Iterator[tuple[str, Engine]]:
    """A source database of this test's own, which the test may drop or damage."""
    server = create_engine(SERVER_URL)
    name = f"cio_sensor_{uuid.uuid4().hex[:10]}"
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    source_metadata.create_all(engine)
    try:
        yield url, engine
    finally:
        engine.dispose()
        with server.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


def _drop_database(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DROP DATABASE `{engine.url.database}`"))
    engine.dispose()


def _recreate_database(engine: Engine) -> None:
    server = create_engine(engine.url.set(database=""))
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{engine.url.database}` CHARACTER SET utf8mb4"))
    server.dispose()
    source_metadata.create_all(engine)


def _rename_orders(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("RENAME TABLE orders TO orders_moved_away"))


def _rename_orders_back(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("RENAME TABLE orders_moved_away TO orders"))


@pytest.mark.parametrize(
    ("break_source", "mend_source", "said"),
    [
        # the database is dropped between two ticks, then created again (empty, as after a failed restore)
        pytest.param(_drop_database, _recreate_database, "Unknown database", id="database_dropped"),
        # a table the pipeline reads is renamed away, then back
        pytest.param(
            _rename_orders,
            _rename_orders_back,
            "reads through the preset 'reference' (cio_assets/mapping/presets/reference.toml): table orders",
            id="renamed",
        ),
    ],
)
def test_a_database_error_skips_the_tick_and_keeps_the_cursor(own_source, break_source, mend_source, said):
    url, engine = own_source
    shop = ShopBuilder(engine)
    shop.customer(1)
    shop.order(1, id=3, paid_at="2026-10-02 10:00")
    first = _tick(url)

    break_source(engine)
    failed = _tick(url, cursor=first.cursor)
    mend_source(engine)
    shop.customer(2, created_at="2026-10-03 09:00")  # the shop moves on
    shop.order(2, id=4, paid_at="2026-10-03 10:00")
    resumed = _tick(url, cursor=failed.cursor)

    host = make_url(SERVER_URL).host or ""
    assert failed.run_requests == [] and failed.asset_events == []
    assert host and host in (failed.skip_message or "") and said in (failed.skip_message or "")
    assert failed.cursor == first.cursor  # kept: the daemon stores exactly this
    # Back on its feet, the sensor carries on from the kept marks: the new rows launch one refresh.
    assert len(resumed.run_requests) == 1
    assert _marks(resumed)["source/orders"]["max_id"] == 4
    assert _marks(resumed)["source/customers"]["max_id"] == 2


# --- carts crossing the idle window: launched by the clock ------------------------------------------------

IDLE = Settings(cart_idle_minutes=60)


def _cio_tags(request: dg.RunRequest) -> dict[str, str]:
    return {k: v for k, v in request.tags.items() if k.startswith("cio/")}


def _checked_minutes_ago(cursor: str | None, minutes: int) -> str:
    """`cursor` as if the previous tick had checked carts `minutes` ago."""
    kept = SourceCursor.parse(cursor)
    checked = (datetime.now(UTC) - timedelta(minutes=minutes)).replace(microsecond=0)
    return SourceCursor(kept.marks, kept.source_fresh, checked.isoformat()).dumps()


@pytest.mark.parametrize(
    ("cart", "launched"),
    [
        # went idle two minutes ago, after the previous check five minutes ago: launched
        pytest.param({"updated_at": 62}, True, id="crossed_since_last_tick"),
        # a line changed after the cart itself: the line's change is the last activity
        pytest.param({"updated_at": 90, "item_updated_at": 62}, True, id="line_is_last_activity"),
        # went idle ten minutes ago, before the previous check: that tick launched it already
        pytest.param({"updated_at": 70}, False, id="crossed_before_last_tick"),
        # idle for 30 minutes of 60: not abandoned yet
        pytest.param({"updated_at": 30}, False, id="not_idle_yet"),
        # the cart itself is old but a line changed 30 minutes ago: not idle yet
        pytest.param({"updated_at": 62, "item_updated_at": 30}, False, id="line_changed_since"),
        # converted into an order: never abandoned
        pytest.param({"updated_at": 62, "converted_order_id": 99}, False, id="converted"),
        # no line with a positive quantity: nothing to abandon
        pytest.param({"updated_at": 62, "items": [("SKU-1", "coffee", 0, 20.0)]}, False, id="empty_lines"),
        pytest.param({"updated_at": 62, "items": []}, False, id="no_lines"),
    ],
)
def test_a_cart_crossing_the_idle_window_launches_a_refresh_though_no_mark_moved(shop, pipeline, cart, launched):
    shop.customer(1)
    times = {k: _minutes_ago(v) for k, v in cart.items() if k in ("updated_at", "item_updated_at")}
    shop.cart(customer_id=1, **{**cart, **times})
    first = _tick(pipeline.source_url, settings=IDLE)  # every table is new: launches, and records its check

    tick = _tick(pipeline.source_url, cursor=_checked_minutes_ago(first.cursor, 5), settings=IDLE)
    again = _tick(pipeline.source_url, cursor=tick.cursor, settings=IDLE)

    assert _marks(tick) == _marks(first)  # no mark moved
    assert again.run_requests == []  # the next tick does not launch the same cart twice
    if not launched:
        assert tick.run_requests == [] and "no cart crossed the idle window" in (tick.skip_message or "")
        return
    [request] = tick.run_requests
    went_idle = datetime.now(UTC) - timedelta(minutes=2)
    assert request.partition_key in (partition_of(went_idle), partition_of(went_idle + timedelta(seconds=5)))
    assert _cio_tags(request) == {"cio/carts_gone_idle": "1"}
    assert request.run_key and request.run_key.startswith(f"{request.partition_key}:carts_idle_through:")


def test_a_cart_paid_through_an_order_is_not_launched(shop, pipeline):
    shop.customer(1)
    cart_id = shop.cart(customer_id=1, updated_at=_minutes_ago(62))
    shop.order(1, cart_id=cart_id, paid_at=_minutes_ago(61))
    first = _tick(pipeline.source_url, settings=IDLE)

    tick = _tick(pipeline.source_url, cursor=_checked_minutes_ago(first.cursor, 5), settings=IDLE)

    assert tick.run_requests == []


def test_the_first_tick_records_its_cart_check_and_launches_only_for_the_marks(shop, pipeline):
    shop.customer(1)
    shop.cart(customer_id=1, updated_at=_minutes_ago(62))
    before = datetime.now(UTC).replace(microsecond=0)

    tick = _tick(pipeline.source_url, settings=IDLE)

    [request] = tick.run_requests
    assert "cio/carts_gone_idle" not in request.tags and request.tags["cio/changed_tables"]
    checked = SourceCursor.parse(tick.cursor).carts_checked_at
    assert checked is not None and datetime.fromisoformat(checked) >= before


@pytest.mark.parametrize(
    ("deadline", "partition"),
    [
        # the last second of a day belongs to that day
        pytest.param(datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC), "2026-11-20", id="last_second"),
        pytest.param(datetime(2026, 11, 21, 0, 0, 0, tzinfo=UTC), "2026-11-21", id="midnight"),
        # before the first partition: the first partition, which also covers all history before it
        pytest.param(datetime(2025, 1, 1, tzinfo=UTC), "2026-10-01", id="before_first"),
    ],
)
def test_a_cart_is_launched_in_the_partition_its_idle_deadline_falls_in(deadline, partition):
    assert partition_of(deadline) == partition


def test_a_tick_that_cannot_read_the_source_keeps_its_cart_check(own_source):
    url, engine = own_source
    shop = ShopBuilder(engine)
    shop.customer(1)
    shop.cart(customer_id=1, updated_at=_minutes_ago(62))
    first = _tick(url, settings=IDLE)
    kept = _checked_minutes_ago(first.cursor, 5)

    _rename_orders(engine)
    failed = _tick(url, cursor=kept, settings=IDLE)
    _rename_orders_back(engine)
    resumed = _tick(url, cursor=failed.cursor, settings=IDLE)

    assert failed.run_requests == [] and failed.cursor == kept
    # The cart went idle before the outage's tick; the first tick that reads the source again launches it.
    [request] = resumed.run_requests
    assert _cio_tags(request) == {"cio/carts_gone_idle": "1"}


# --- one run at a time per partition ----------------------------------------------------------------------


def _run(status: dg.DagsterRunStatus, **tags: str) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="refresh", run_id=str(uuid.uuid4()), status=status, tags=tags)


TODAY = daily_partitions.get_last_partition_key()
YESTERDAY = daily_partitions.get_partition_keys()[-2]
FIRST = daily_partitions.get_first_partition_key()
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@pytest.mark.parametrize(
    ("run", "waits"),
    [
        # today's refresh is running, or created and not started yet: the tick waits for it
        pytest.param(_run(dg.DagsterRunStatus.STARTED, **{"dagster/partition": TODAY}), True, id="started"),
        pytest.param(_run(dg.DagsterRunStatus.NOT_STARTED, **{"dagster/partition": TODAY}), True, id="not_started"),
        # a backfill whose range holds today computes today too
        pytest.param(_run(dg.DagsterRunStatus.STARTED, **{RANGE_START: FIRST, RANGE_END: TODAY}), True, id="range"),
        # yesterday's finalise run does not hold up today
        pytest.param(_run(dg.DagsterRunStatus.STARTED, **{"dagster/partition": YESTERDAY}), False, id="yesterday"),
        # a finished run of today is no reason to wait
        pytest.param(_run(dg.DagsterRunStatus.SUCCESS, **{"dagster/partition": TODAY}), False, id="finished"),
    ],
)
def test_a_run_in_flight_for_the_partition_makes_the_tick_wait_keeping_its_place(shop, pipeline, run, waits):
    shop.customer(1)
    first = _tick(pipeline.source_url)
    shop.order(1, id=5, paid_at="2026-10-02 10:00")  # the shop moves while a run may be going

    with dg.instance_for_test() as instance:
        instance.add_run(run)
        tick = _tick(pipeline.source_url, cursor=first.cursor, instance=instance)
    after = _tick(pipeline.source_url, cursor=tick.cursor)  # that run has finished

    if waits:
        assert tick.run_requests == [] and tick.cursor == first.cursor
        assert run.run_id in (tick.skip_message or "") and "one run at a time" in (tick.skip_message or "")
        # The change made while the run was going is launched by the first tick after it.
        [request] = after.run_requests
        assert request.tags["cio/changed_tables"] == "order_items, orders"
    else:
        [request] = tick.run_requests
        assert request.partition_key == TODAY and after.run_requests == []


# --- the interval ------------------------------------------------------------------------------------------


def test_the_sensor_ticks_at_the_configured_interval():
    assert source_changes.minimum_interval_seconds == AutomationSettings.from_env().sensor_interval_seconds == 5


def test_a_tick_with_nothing_written_reads_only_the_servers_notes(shop, pipeline):
    """What makes a tick every 5 s cheap: with the marks kept in the state database, a tick after no write reads
    none of the shop's tables."""
    shop.customer(1)
    shop.order(1, paid_at="2026-10-02 10:00")
    time.sleep(1.1)  # past the second of the last write: the notes vouch
    first = _tick(pipeline.source_url, state_url=pipeline.state_url)
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        again = _tick(pipeline.source_url, cursor=first.cursor, state_url=pipeline.state_url)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert again.run_requests == []
    # The marks (counts, the newest id and change time) and the paid times of the tables written here (a table
    # never written since the server started has no note, and is read as before); not the check that the tables
    # are there, which reads no row (LIMIT 0 or 1 without an ORDER BY)
    marks = [s for s in statements if re.search(r"FROM (customers|orders)\b", s)]
    assert [s for s in marks if "count(" in s or "ORDER BY" in s] == []
    assert marks  # the tick did look at the shop (its tables are there)


@pytest.mark.parametrize("value", ["4", "0", "fast"])
def test_a_sensor_interval_below_five_seconds_or_not_a_number_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("CIO_SENSOR_INTERVAL_SECONDS", value)

    with pytest.raises(SettingsError, match=f"CIO_SENSOR_INTERVAL_SECONDS='{value}' is invalid: .* >= 5"):
        AutomationSettings.from_env()
