"""Marks and figures kept while the server shows no write touched the shop's tables (`tracking/table_times.py`):
nothing is read again until a write, any write, touches one of a concept's tables; a transaction still open at the
reading, which could commit under the same note, keeps anything from being kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, event, text

from cio_assets.defs.assets.rejected_rows import rejected_rows
from cio_assets.hygiene.refresh import may_have_changed
from cio_assets.hygiene.rules import IN_FUTURE, NEGATIVE_AMOUNT, UNKNOWN_STATUS
from cio_assets.lib.timestamps import Clock, SourceZones
from cio_assets.mapping.compile import compile_mapping
from cio_assets.mapping.spec import load
from cio_assets.schema.shop import customers, orders
from cio_assets.schema.state import create_state_tables
from cio_assets.schema.state import rejected_rows as rejected_rows_table
from cio_assets.tracking.cursors import AHEAD, Cursor, come_due
from cio_assets.tracking.marks import observe_all, paid_times
from cio_assets.tracking.table_times import SETTLE, _settled, read_table_times
from cio_assets_tests.shop import ShopBuilder

UTC_ZONE = ZoneInfo("UTC")
LOOKBACK = timedelta(minutes=10)


def _clock() -> Clock:
    """A run's clock now, on a shop that stores UTC."""
    return Clock(SourceZones(), datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC), LOOKBACK)


@contextmanager
def statements_on(engine: Engine) -> Iterator[list[str]]:
    """The SQL `engine` runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def reads_of(statements: list[str], table: str) -> list[str]:
    """The statements that read the shop's `table` (not the server's notes on it)."""
    return [s for s in statements if f"FROM {table}" in s and "information_schema" not in s]


def settle() -> None:
    """Past the second of the last write: a note vouches only once the server's clock has left it."""
    time.sleep(1.1)


@pytest.fixture
def kept(state_engine: Engine) -> Engine:
    create_state_tables(state_engine)
    return state_engine


def test_marks_are_kept_while_no_write_touches_the_table_and_read_again_after_any_write(
    shop: ShopBuilder, source_engine: Engine, kept: Engine
):
    shop.customer(1)
    settle()
    with source_engine.connect() as conn:
        first = observe_all(conn, _clock(), [customers], kept)
        with statements_on(source_engine) as statements:
            again = observe_all(conn, _clock(), [customers], kept)
    assert again == first
    assert reads_of(statements, "customers") == []  # the server's notes only

    # A write that moves no mark (the same row count, largest id and change time) still reads them again.
    with source_engine.begin() as conn:
        conn.execute(text("UPDATE customers SET first_name = 'Grace' WHERE id = 1"))
    with source_engine.connect() as conn, statements_on(source_engine) as statements:
        observe_all(conn, _clock(), [customers], kept)
    assert reads_of(statements, "customers")

    shop.customer(2)
    with source_engine.connect() as conn:
        assert observe_all(conn, _clock(), [customers], kept)["customers"]["row_count"] == 2


def test_a_transaction_open_since_the_note_keeps_the_marks_from_being_kept(
    shop: ShopBuilder, source_engine: Engine, kept: Engine
):
    """MariaDB notes the start of the last transaction that wrote a table: one that started in the same second
    and commits later leaves the note as it was. Had the marks been kept under it, its row would never count."""
    shop.customer(1)
    late = source_engine.connect()
    for _ in range(20):  # the late transaction starts, and another commits, within one second
        second = int(time.time())
        late.execute(
            text("INSERT INTO customers (id, email, created_at, updated_at) VALUES (3, 'c@x.io', NOW(), NOW())")
        )
        shop.customer(2)
        if int(time.time()) == second:
            break
        late.rollback()
        with source_engine.begin() as conn:
            conn.execute(text("DELETE FROM customers WHERE id = 2"))
        time.sleep(0.2)
    else:
        pytest.skip("no two writes fell within one second on this machine")
    settle()
    with source_engine.connect() as conn:
        assert observe_all(conn, _clock(), [customers], kept)["customers"]["row_count"] == 2
    late.commit()
    late.close()
    with source_engine.connect() as conn:
        assert observe_all(conn, _clock(), [customers], kept)["customers"]["row_count"] == 3


@pytest.mark.parametrize(
    ("note", "now", "oldest_open", "open_count", "settled"),
    [
        (100, 105, None, 0, True),  # nothing open: no write can still come under the note
        (100, 100, None, 0, False),  # the clock is still in the note's second: a write now would repeat it
        (100, 105, 100, 1, False),  # a transaction open since that second may commit under it
        (100, 105, 103, 1, True),  # every open transaction started after it
        (100, 105 + int(SETTLE.total_seconds()), None, None, True),  # open ones unseen: only once older than SETTLE
        (100, 105, None, None, False),  # open ones unseen and the note recent
    ],
)
def test_a_note_vouches_only_when_no_write_can_still_commit_under_it(note, now, oldest_open, open_count, settled):
    assert _settled(note, now, oldest_open, open_count) is settled


def test_the_paid_times_are_kept_and_an_order_dated_ahead_comes_due_without_a_read(
    shop: ShopBuilder, source_engine: Engine, kept: Engine
):
    now = datetime.now(UTC).replace(microsecond=0)
    shop.customer(1)
    shop.order(1, paid_at=(now - timedelta(hours=1)).replace(tzinfo=None))
    shop.order(1, paid_at=(now + timedelta(hours=2)).replace(tzinfo=None))  # dated ahead
    settle()
    with source_engine.connect() as conn:
        first = paid_times(conn, UTC_ZONE, now, kept)
        with statements_on(source_engine) as statements:
            later = paid_times(conn, UTC_ZONE, now + timedelta(hours=3), kept)
    assert reads_of(statements, "orders") == []
    assert first.newest_by(now) == now - timedelta(hours=1)
    assert first.ahead_of(now, timedelta(hours=26)) == (1, now + timedelta(hours=2))
    assert later.newest_by(now + timedelta(hours=3)) == now + timedelta(hours=2)

    shop.order(1, paid_at=(now + timedelta(minutes=1)).replace(tzinfo=None))
    with source_engine.connect() as conn:
        assert paid_times(conn, UTC_ZONE, now, kept).ahead_of(now, timedelta(hours=26))[0] == 2


@pytest.mark.parametrize(
    ("quiet", "read"),
    [
        (frozenset({"orders"}), False),  # untouched since the cursor: the rows it kept dated ahead
        (frozenset(), True),  # written since: read again
    ],
)
def test_an_order_dated_ahead_comes_due_from_the_cursor_while_no_write_touches_the_orders(
    shop: ShopBuilder, source_engine: Engine, quiet, read
):
    now = datetime.now(UTC).replace(microsecond=0)
    shop.customer(1)
    order_id = shop.order(1, paid_at=(now + timedelta(minutes=5)).replace(tzinfo=None))
    kept_ahead = {"orders.paid_at": [[order_id, (now + timedelta(minutes=5)).replace(tzinfo=None).isoformat()]]}
    cursor = Cursor(
        "identity_map",
        {"orders": {"updated_at": now.isoformat(), "id": order_id}},
        int(now.timestamp()),
        0,
        {AHEAD: kept_ahead},
        quiet=quiet,
    )
    clock = Clock(SourceZones(), datetime(2000, 1, 1, tzinfo=UTC), now + timedelta(minutes=10), LOOKBACK)
    ahead: dict = {}
    with source_engine.connect() as conn, statements_on(source_engine) as statements:
        due = come_due(conn, orders, cursor, clock, ahead)
    assert due == {order_id}
    assert bool(reads_of(statements, "orders")) is read
    assert ahead == {"orders.paid_at": []}  # nothing left ahead of the clock


def test_a_listed_row_stays_listed_while_no_write_touches_its_table(shop: ShopBuilder, pipeline):
    shop.customer(1)
    shop.order(1, status="on_the_way")  # an unknown status: set aside
    settle()
    pipeline.run(assets=[rejected_rows])
    again = pipeline.run(assets=[rejected_rows])  # nothing written: the row is not judged again, and stays listed

    listing = pipeline.table(rejected_rows_table)
    assert again.asset_materializations_for_node("rejected_rows")[0].metadata["run_mode"].value == "unchanged"
    assert listing["reason"].tolist() == [UNKNOWN_STATUS]
    assert listing["released_at"].isna().all()


@pytest.mark.parametrize(
    ("quiet", "judged_again"),
    [
        (frozenset({"orders", "order_items"}), {2, 4}),  # untouched: only the rows the clock may clear, whole
        (frozenset({"orders"}), {1, 2, 3, 4}),  # an order's lines were written: every listed order
        (frozenset(), {1, 2, 3, 4}),  # the orders were written
    ],
)
def test_listed_rows_of_an_untouched_table_are_judged_again_only_for_a_time_ahead(quiet, judged_again):
    listed = pd.DataFrame(
        {
            "source_table": ["orders"] * 5,
            "source_key": ["1", "2", "3", "4", "4"],
            "reason": [UNKNOWN_STATUS, IN_FUTURE, NEGATIVE_AMOUNT, IN_FUTURE, NEGATIVE_AMOUNT],
        }
    )
    assert set(may_have_changed(listed, quiet)["source_key"].astype(int)) == judged_again


@pytest.mark.parametrize(
    ("preset", "concept", "tables"),
    [
        ("woocommerce", "customers", {"wp_users", "wp_usermeta", "wp_mailpoet_subscribers"}),  # role, meta, consent
        ("magento2", "carts", {"quote", "quote_address", "sales_order"}),  # the guest's e-mail, the order it became
        ("magento2", "orders", {"sales_order", "sales_invoice"}),  # paid at the first invoice
        ("woocommerce", "carts", set()),  # no carts in WooCommerce: nothing to watch
    ],
)
def test_a_concept_is_watched_through_every_table_its_mapping_reads(preset, concept, tables):
    assert compile_mapping(load(preset)).tables_of(concept) == frozenset(tables)


def test_without_the_process_privilege_a_recent_note_vouches_for_nothing(shop: ShopBuilder, source_engine: Engine):
    """The open transactions cannot be seen: a note is trusted only once older than SETTLE."""
    shop.customer(1)
    settle()
    database = source_engine.url.database
    with source_engine.begin() as conn:
        conn.execute(text("DROP USER IF EXISTS 'cio_no_process'@'%'"))
        conn.execute(text("CREATE USER 'cio_no_process'@'%' IDENTIFIED BY 'pw'"))
        conn.execute(text(f"GRANT SELECT ON `{database}`.* TO 'cio_no_process'@'%'"))
    reader = create_engine(source_engine.url.set(username="cio_no_process", password="pw"))
    try:
        with reader.connect() as conn:
            reading = read_table_times(conn, ["customers"])
        assert not reading.sees_open
        assert reading.of(["customers"]) is not None  # the note itself is there
        assert not reading.vouches_for(["customers"])  # but a second old, not SETTLE
    finally:
        reader.dispose()
        with source_engine.begin() as conn:
            conn.execute(text("DROP USER IF EXISTS 'cio_no_process'@'%'"))
