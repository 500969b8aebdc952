"""A re-run costs what changed: days nothing touched are kept, and what is kept equals a full rebuild.

Two state databases follow the same shop: one run as the sensor runs it (hygiene, the snapshot and the
event log keep what nothing changed; identity resolves only the change), the other rebuilt with
`full_refresh` every time. After each change their tables must be equal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, create_engine, select, update

from cio_assets.defs.resources import Settings
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import customers, orders
from cio_assets_tests.conftest import Pipeline
from cio_assets_tests.shop import ShopBuilder

RANGE = ("2026-10-01", "2026-10-06")
# What each table is compared on: everything but row numbers and the clock of the run that wrote it.
COMPARED = {
    state_tables.identity_map: None,
    state_tables.identity_conflicts: None,
    state_tables.unresolved_identifiers: None,
    state_tables.invalid_values: None,
    state_tables.rejected_rows: ["first_rejected_at", "released_at"],
    state_tables.attribute_snapshot: None,
    state_tables.event_log: None,
    state_tables.quarantine: ["id"],
}
REFRESHED = ("rejected_rows", "attribute_snapshot", "event_log")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(seconds=1)


def _tables(engine: Engine) -> dict[str, list[tuple]]:
    """Every compared table's rows, sorted, as text."""
    tables = {}
    with engine.connect() as conn:
        for table, ignored in COMPARED.items():
            columns = [c for c in table.columns if c.name not in (ignored or [])]
            tables[table.name] = sorted(tuple(str(v) for v in row) for row in conn.execute(select(*columns)).all())
    return tables


def _modes(result) -> dict[str, str]:
    modes = {}
    for name in REFRESHED:
        materializations = result.asset_materializations_for_node(name)
        modes[name] = {m.metadata["run_mode"].value for m in materializations if "run_mode" in m.metadata}.pop()
    return modes


def _seed(shop: ShopBuilder) -> None:
    shop.customer(1, email="one@shop.com", created_at="2026-09-20 09:00")
    shop.customer(2, email="two@shop.com", created_at="2026-09-21 09:00")
    shop.customer(3, email="three@shop.com", created_at="2026-09-22 09:00")
    first = shop.order(1, total=40.0, paid_at="2026-10-02 10:00")
    shop.refund(first, 10.0, "2026-10-03 12:00")
    shop.order(2, total=25.0, paid_at="2026-10-02 11:00")
    shop.cart(customer_id=3, updated_at="2026-10-03 09:00")  # abandoned on the 3rd
    shop.subscription(2, status="canceled", started_at="2026-10-01 08:00", canceled_at="2026-10-04 08:00")


def _fix_order(shop: ShopBuilder, order_id: int) -> None:
    with shop.engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.id == order_id).values(total=30.0, subtotal=30.0, updated_at=_now()))


def _cancel_order(shop: ShopBuilder, order_id: int) -> None:
    with shop.engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.id == order_id).values(status="cancelled", updated_at=_now()))


def _rename(shop: ShopBuilder, customer_id: int) -> None:
    with shop.engine.begin() as conn:
        conn.execute(
            update(customers).where(customers.c.id == customer_id).values(first_name="Grace", updated_at=_now())
        )


# Each change, in order, to the same shop.
CHANGES = [
    # A new paid order inside the range: its day is computed again, with the event and the new totals.
    ("new order", lambda shop: shop.order(3, total=60.0, paid_at="2026-10-04 15:00")),
    # A refund of it the day after.
    ("refund", lambda shop: shop.refund(3, 60.0, "2026-10-05 09:00")),
    # The order cancelled after all: its refund, unchanged itself, is now of an unpaid order (set aside).
    ("order cancelled", lambda shop: _cancel_order(shop, 3)),
    # An order with a negative total: set aside by hygiene, its person's day held.
    ("bad order", lambda shop: shop.order(1, total=-5.0, paid_at="2026-10-05 10:00", id=50)),
    # The order corrected: released from quarantine, its day flows through.
    ("order corrected", lambda shop: _fix_order(shop, 50)),
    # A profile edit dated today: outside the range, so the range's days are unchanged by it.
    ("profile edited today", lambda shop: _rename(shop, 2)),
]


def test_a_rerun_with_nothing_new_keeps_every_day_and_equals_a_full_rebuild(
    shop: ShopBuilder, pipeline: Pipeline, second_state_url: str
) -> None:
    rebuilt = Pipeline(pipeline.source_url, second_state_url, create_engine(second_state_url), pipeline.outbox_dir)
    _seed(shop)
    first = pipeline.run(partition_range=RANGE)
    rebuilt.run(partition_range=RANGE, full_refresh=True)
    assert _modes(first) == dict.fromkeys(REFRESHED, "computed")

    again = pipeline.run(partition_range=RANGE)

    assert _modes(again) == dict.fromkeys(REFRESHED, "unchanged")
    assert again.success  # the blocking contract checks report on the days kept, and pass
    assert _tables(pipeline.state_engine) == _tables(rebuilt.state_engine)

    for name, change in CHANGES:
        change(shop)
        result = pipeline.run(partition_range=RANGE)
        rebuilt.run(partition_range=RANGE, full_refresh=True)
        kept, full = _tables(pipeline.state_engine), _tables(rebuilt.state_engine)
        for table in kept:
            assert kept[table] == full[table], (name, table)
        # Every change here moves a mark: hygiene judges the changed rows and the listed ones, the snapshot
        # recomputes the range.
        assert _modes(result)["rejected_rows"] == "incremental", name
        assert _modes(result)["attribute_snapshot"] == "computed", name
    rebuilt.state_engine.dispose()


def test_full_refresh_recomputes_what_nothing_changed(shop: ShopBuilder, pipeline: Pipeline) -> None:
    _seed(shop)
    pipeline.run(partition_range=RANGE)

    result = pipeline.run(partition_range=RANGE, full_refresh=True)

    assert _modes(result) == dict.fromkeys(REFRESHED, "computed")


def test_a_day_is_computed_again_when_a_setting_changes(shop: ShopBuilder, pipeline: Pipeline) -> None:
    _seed(shop)
    pipeline.run(partition_range=RANGE)

    result = pipeline.run(partition_range=RANGE, settings=Settings(vip_tiers="gold:30"))

    assert _modes(result)["attribute_snapshot"] == "computed"
