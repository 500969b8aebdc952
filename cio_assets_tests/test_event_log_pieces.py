"""The event log in pieces: the range is cut into pieces of CIO_CHUNK_DAYS days (by default: 92 where the executor
runs steps at once, the whole range where it runs them in turn), each extracted by a step of its own (at once, on
the multiprocess or Celery executor) and staged, and the log changes for the whole range at once or not at all."""

from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import Engine, inspect, update

from cio_assets.defs.resources import Settings
from cio_assets.events import staging
from cio_assets.events.log import piece_count
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import orders
from cio_assets_tests.conftest import logged_event
from cio_assets_tests.definitions import event_log

RANGE = ("2026-10-01", "2026-10-04")
ONE_DAY_PIECES = Settings(chunk_days=1)


def _busy_days(shop) -> None:
    """Every family on several days, an event past the range's first day owning history, and a held row."""
    for customer_id in (1, 2, 3):
        shop.customer(customer_id)
    shop.order(1, id=1, total=20.0, paid_at="2026-09-20 10:00")  # history before the first partition
    shop.order(1, id=2, total=30.0, paid_at="2026-10-02 10:00")
    shop.order(2, id=3, total=-5.0, paid_at="2026-10-03 11:00")  # held: a negative amount
    shop.order(3, id=4, total=45.0, paid_at="2026-10-04 12:00")
    shop.refund(2, 10.0, created_at="2026-10-03 16:00", reason="late")
    shop.cart(3, updated_at="2026-10-02 10:00", checkout_started_at="2026-10-02 10:05")
    shop.subscription(1, status="canceled", started_at="2026-09-01 10:00", canceled_at="2026-10-04 09:00")


def _logged(pipeline) -> tuple[list, list]:
    events = pipeline.table(state_tables.event_log, order_by=["event_id"])
    listing = pipeline.table(state_tables.quarantine, order_by=["asset", "day", "item_key", "reason"])
    listing = listing[listing["asset"] == "event_log"].drop(columns="id")  # `id`: a surrogate key, new on each write
    return events.to_dict("records"), listing.to_dict("records")


def _started_steps(result) -> list[str]:
    return sorted(e.step_key for e in result.all_events if e.event_type_value == "STEP_START")


def test_the_log_cut_into_one_day_pieces_holds_exactly_what_one_piece_holds(shop, pipeline):
    _busy_days(shop)
    pipeline.run(partition_range=RANGE)
    whole = _logged(pipeline)

    result = pipeline.run(partition_range=RANGE, settings=ONE_DAY_PIECES, full_refresh=True)

    assert [step for step in _started_steps(result) if step.startswith("event_log.")] == [
        "event_log.event_log_piece[days_2026_10_01]",
        "event_log.event_log_piece[days_2026_10_02]",
        "event_log.event_log_piece[days_2026_10_03]",
        "event_log.event_log_piece[days_2026_10_04]",
        "event_log.event_log_plan",
        "event_log.event_log_publish",
    ]
    assert whole[0] and whole[1], "the comparison would be empty"
    assert _logged(pipeline) == whole
    assert pipeline.table(state_tables.event_log_staging).empty and _staging_tables(pipeline.state_engine) == []


@pytest.mark.parametrize(
    ("days", "chunk_days", "executor", "pieces"),
    [
        (380, 0, "in_process", 1),  # the default, in process: pieces would only repeat their scans, one after another
        (380, 0, "execute_in_process_executor", 1),  # the same, as `execute_in_process` names it
        (380, 0, "multiprocess", 5),  # the default where steps run at once: one per 92 days
        (380, 0, "celery", 5),  # ...on Celery workers too
        (4, 0, "multiprocess", 1),  # a short range is one piece anyway
        (4, 1, "in_process", 4),  # a length that was set is kept on every executor
        (4, 3, "multiprocess", 2),  # the last piece holds what is left
    ],
)
def test_the_range_is_cut_into_pieces_by_the_setting_or_else_by_the_executor(days, chunk_days, executor, pieces):
    assert piece_count(days, chunk_days, executor) == pieces


def test_pieces_are_cut_so_that_each_holds_about_as_many_paid_orders(shop, pipeline):
    shop.customer(1)
    shop.order(1, paid_at="2026-10-01 10:00")
    for minute in range(10, 30):  # the shop's busy day: the last of the range
        shop.order(1, paid_at=f"2026-10-04 10:{minute}")

    result = pipeline.run(partition_range=RANGE, settings=Settings(chunk_days=2))  # two pieces for four days

    assert [step for step in _started_steps(result) if "piece" in step] == [
        "event_log.event_log_piece[days_2026_10_01_to_2026_10_03]",
        "event_log.event_log_piece[days_2026_10_04]",
    ]
    assert len(pipeline.events("order_placed")) == 21


def test_a_mass_of_bad_events_across_pieces_publishes_none_of_them_and_leaves_nothing_staged(shop, pipeline):
    for customer_id in range(1, 31):
        shop.customer(customer_id)
        shop.order(customer_id, total=40.0, paid_at=f"2026-10-0{1 + customer_id % 4} 10:00")
    pipeline.run(partition_range=RANGE, settings=ONE_DAY_PIECES)
    before = _logged(pipeline)
    with shop.engine.begin() as conn:  # an upstream bug turns most amounts negative
        conn.execute(update(orders).where(orders.c.customer_id <= 25).values(total=-40.0))

    result = pipeline.run(
        partition_range=RANGE, settings=ONE_DAY_PIECES, assets=[event_log], full_refresh=True, raise_on_error=False
    )

    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "event_log.event_log_publish"
    assert "25 of 30 rows broke the data contract" in failure.event_specific_data.error.message
    assert _logged(pipeline) == before  # every piece's days keep their previous rows
    assert pipeline.table(state_tables.event_log_staging).empty and _staging_tables(pipeline.state_engine) == []


def _staging_tables(engine: Engine) -> list[str]:
    return sorted(name for name in inspect(engine).get_table_names() if name.startswith("cio_stage_"))


def test_a_run_whose_staged_rows_went_missing_publishes_nothing(state_engine: Engine):
    state_tables.state_metadata.create_all(state_engine)
    with state_engine.begin() as conn:
        conn.execute(state_tables.event_log.insert(), [logged_event("order_placed:1", "2026-10-02", 0)])
    tables = [staging.create(state_engine, "run-a", piece, at=0) for piece in ("days_2026_10_02", "days_2026_10_03")]
    with state_engine.begin() as conn:
        staging.stage(conn, tables[0], pd.DataFrame([logged_event("order_placed:2", "2026-10-02", 0)]), 100)
        staging.stage(conn, tables[1], pd.DataFrame([logged_event("order_placed:3", "2026-10-03", 0)]), 100)
    staging.create(state_engine, "run-a", "days_2026_10_03", at=0)  # emptied, as if by another attempt

    incomplete = "staged 2 events but their tables hold 1"
    with pytest.raises(staging.StagingIncomplete, match=incomplete), state_engine.begin() as conn:
        staging.publish(conn, tables, ["2026-10-02", "2026-10-03"], others=False, expected=2)

    with state_engine.connect() as conn:
        logged = conn.execute(state_tables.event_log.select()).mappings().all()
    assert [row["event_id"] for row in logged] == ["order_placed:1"]


def test_staging_tables_of_runs_that_never_published_are_dropped_by_a_run_a_week_later(shop, pipeline, state_engine):
    shop.customer(1)
    shop.order(1, id=1, paid_at="2026-10-02 10:00")
    pipeline.run(partition="2026-10-02")  # creates the state tables
    now = int(datetime.now(UTC).timestamp())
    dead = staging.create(state_engine, "dead-run", "days_2026_10_02", at=now - 8 * 86400)
    recent = staging.create(state_engine, "recent-run", "days_2026_10_02", at=now - 86400)

    pipeline.run(partition="2026-10-02", full_refresh=True)

    assert list(pipeline.table(state_tables.event_log_staging)["run_id"]) == ["recent-run"]
    assert _staging_tables(state_engine) == [recent.name] != [dead.name]
    assert list(pipeline.events()["event_id"]) == ["order_placed:1"]
