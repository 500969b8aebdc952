"""Identity refreshed from what changed equals identity rebuilt from the whole shop, change after change.

Two state databases follow the same shop: one refreshed incrementally (the default), one rebuilt with
`full_refresh: true` after every change. After each change the four identity tables must be equal, row
for row, and the incremental run must have resolved only the rows connected to the change.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import Engine, create_engine, delete, select, update

from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets.identity.refresh import OUTPUTS, RefreshSummary, refresh_identity
from cio_assets.lib.timestamps import utc_now
from cio_assets.mapping.spec import load
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import customers, identity_links
from cio_assets_tests.definitions import identity_map
from cio_assets_tests.shop import ShopBuilder


def _refresh(source_url: str, state_url: str, settings: Settings, full: bool, tmp_path) -> dict:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [identity_map],
            instance=instance,
            run_config={"ops": {"identity_map": {"config": {"full_refresh": full}}}},
            resources={
                "settings": settings,
                "source": SourceDatabase(url=source_url),
                "state": StateDatabase(url=state_url),
                "customerio": CustomerIO(dry_run=True, outbox_dir=str(tmp_path)),
            },
        )
    (materialization,) = result.asset_materializations_for_node("identity_map")
    return {key: value.value for key, value in materialization.metadata.items()}


def _refresh_direct(source_url: str, state_url: str, settings: Settings, full: bool) -> RefreshSummary:
    """The same refresh as the asset runs, without a Dagster run around it (dozens of runs stay fast)."""
    source, state = create_engine(source_url), create_engine(state_url)
    state_tables.state_metadata.create_all(state)
    try:
        with source.connect() as src, state.begin() as dst:
            clock = settings.clock(utc_now(), load("reference"))
            return refresh_identity(src, dst, clock, settings.canonical_id, settings.chunk_size, full_refresh=full)
    finally:
        source.dispose()
        state.dispose()


def _tables(state_url: str) -> dict[str, list[tuple]]:
    engine = create_engine(state_url)
    try:
        with engine.connect() as conn:
            return {table.name: sorted(tuple(row) for row in conn.execute(select(table)).all()) for table in OUTPUTS}
    finally:
        engine.dispose()


def _now() -> datetime:
    """A naive source time (the tests' shop is in UTC) just before the next run starts."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(seconds=1)


def _set(shop: ShopBuilder, customer_id: int, **values) -> None:
    """Edit a customer the way a shop does: the change moves `updated_at`."""
    with shop.engine.begin() as conn:
        conn.execute(update(customers).where(customers.c.id == customer_id).values(**values, updated_at=_now()))


def _delete_customer(shop: ShopBuilder, customer_id: int) -> None:
    with shop.engine.begin() as conn:
        conn.execute(delete(customers).where(customers.c.id == customer_id))


def _unlink(shop: ShopBuilder, anonymous_id: str, customer_id: int) -> None:
    with shop.engine.begin() as conn:
        conn.execute(
            delete(identity_links).where(
                identity_links.c.anonymous_id == anonymous_id, identity_links.c.customer_id == customer_id
            )
        )


def _seed(shop: ShopBuilder) -> None:
    shop.customer(1, email="pair@shop.com", phone="(415) 555-2671", created_at="2026-10-01 08:00")
    shop.customer(2, email=" Pair@Shop.com", created_at="2026-10-01 09:00")
    shop.customer(3, email="three@shop.com")
    shop.customer(4, email="four@shop.com", phone="020 7946 0018", country="GB")
    shop.customer(5, email="five@shop.com")
    shop.customer(6, email="six@shop.com", phone="(415) 555-0199")
    shop.customer(7, email=None)
    shop.order(3, email="three@shop.com")
    shop.order(None, email="FIVE@shop.com")  # a guest order matching customer 5
    shop.order(None, email="stranger@elsewhere.com")  # a guest matching nobody
    shop.link("anon-0", 1)
    shop.cart(anonymous_id="anon-0")
    shop.cart(anonymous_id="anon-lost")


# Each change, applied in this order to the same shop; after each one both states must agree.
CHANGES: list[tuple[str, Callable[[ShopBuilder], None]]] = [
    # A new customer joins, with an e-mail of their own.
    ("new customer", lambda shop: shop.customer(20, email="new@shop.com")),
    # An older customer signs up with an existing (shared) e-mail and becomes the survivor of the group.
    ("older duplicate", lambda shop: shop.customer(21, email="PAIR@shop.com", created_at="2026-09-01 00:00")),
    # The survivor changes e-mail and leaves the group: the group's survivor changes back.
    ("e-mail changed", lambda shop: _set(shop, 21, email="solo@shop.com")),
    # A customer is deleted: their order becomes a guest's (listed, naming a missing customer).
    ("customer deleted", lambda shop: _delete_customer(shop, 3)),
    # A guest pays with an e-mail no customer has...
    ("guest order", lambda shop: shop.order(None, email="guest@shop.com")),
    # ...and then signs up with it.
    ("guest signs up", lambda shop: shop.customer(22, email="Guest@shop.com")),
    # An anonymous id is linked to a customer, with a link time older than the cursor.
    ("link with an old time", lambda shop: shop.link("anon-lost", 2, linked_at="2026-10-03 12:00")),
    # The same anonymous id is linked to a second person: a conflict, the earliest link wins.
    ("second link", lambda shop: shop.link("anon-lost", 4, linked_at="2026-10-04 12:00")),
    # An anonymous cart, then a cart with the same anonymous id and a customer's e-mail.
    ("anonymous cart", lambda shop: shop.cart(anonymous_id="anon-2", updated_at=_now())),
    ("cart with e-mail", lambda shop: shop.cart(anonymous_id="anon-2", email="six@shop.com", updated_at=_now())),
    # A customer takes a phone another customer has: a shared phone.
    ("shared phone", lambda shop: _set(shop, 5, phone="415-555-0199")),
    # A subscription names a customer who does not exist yet...
    ("orphan subscription", lambda shop: shop.subscription(30)),
    # ...who then appears.
    ("subscriber appears", lambda shop: shop.customer(30, email="thirty@shop.com")),
    # A customer's e-mail turns invalid (listed) and their group loses them.
    ("e-mail invalid", lambda shop: _set(shop, 2, email="not-an-email")),
    # A link is deleted: the anonymous id goes back to its other person.
    ("link deleted", lambda shop: _unlink(shop, "anon-lost", 2)),
    # The customer with no e-mail gets one that a guest order already used.
    ("e-mail added", lambda shop: _set(shop, 7, email="stranger@elsewhere.com")),
    # A customer's created_at becomes a legacy import's placeholder: listed as an invalid value, the person stays.
    ("created_at before the floor", lambda shop: _set(shop, 4, created_at=datetime(1970, 1, 1, 0, 0, 1))),
    # ...and is corrected: the listing goes.
    ("created_at corrected", lambda shop: _set(shop, 4, created_at=datetime(2026, 10, 1, 9))),
]


@pytest.mark.parametrize(
    "policy",
    [
        "customer_id",  # people are customer ids: guests matching nobody are listed
        "email",  # people are e-mails: a guest is a person of their own
    ],
)
def test_incremental_identity_equals_a_full_rebuild_after_every_change(
    policy: str,
    shop: ShopBuilder,
    database_urls: tuple[str, str],
    state_engine: Engine,
    second_state_url: str,
    tmp_path,
) -> None:
    source_url, state_url = database_urls
    settings = Settings(canonical_id=policy)
    _seed(shop)
    first = _refresh_direct(source_url, state_url, settings, full=False)
    _refresh_direct(source_url, second_state_url, settings, full=True)
    assert first.mode == "full"  # no cursor yet
    assert _tables(state_url) == _tables(second_state_url)

    for name, change in CHANGES:
        change(shop)
        summary = _refresh_direct(source_url, state_url, settings, full=False)
        _refresh_direct(source_url, second_state_url, settings, full=True)
        assert summary.mode == "incremental", name
        incremental, full = _tables(state_url), _tables(second_state_url)
        for table in incremental:
            assert incremental[table] == full[table], (name, table)
        # Only what the change touches is resolved again, never the whole shop.
        assert 0 < summary.component_rows < summary.kept_rows, name


def test_a_run_with_nothing_changed_resolves_nothing(
    shop: ShopBuilder, database_urls: tuple[str, str], state_engine: Engine, tmp_path
) -> None:
    source_url, state_url = database_urls
    _seed(shop)
    _refresh(source_url, state_url, Settings(), full=False, tmp_path=tmp_path)
    before = _tables(state_url)

    metadata = _refresh(source_url, state_url, Settings(), full=False, tmp_path=tmp_path)

    assert metadata["run_mode"] == "incremental"
    # The seed's rows are dated in the past: nothing is inside the cursor's look-back window.
    assert metadata["run_changed_source_rows"] == 0
    assert metadata["run_resolved_input_rows"] == 0
    assert _tables(state_url) == before
    assert metadata["people"] == 6  # customers 1 and 2 are one person


def test_changing_the_id_policy_rebuilds_in_full(
    shop: ShopBuilder, database_urls: tuple[str, str], state_engine: Engine, tmp_path
) -> None:
    source_url, state_url = database_urls
    _seed(shop)
    _refresh(source_url, state_url, Settings(canonical_id="customer_id"), full=False, tmp_path=tmp_path)

    metadata = _refresh(source_url, state_url, Settings(canonical_id="email"), full=False, tmp_path=tmp_path)

    assert metadata["run_mode"] == "full"
    assert "CIO_CANONICAL_ID" in metadata["run_mode_reason"]
    with state_engine.connect() as conn:
        people = set(conn.execute(select(state_tables.identity_map.c.person_id)).scalars())
    assert "pair@shop.com" in people


def test_a_run_that_changes_nothing_repeats_the_figures_measured_before_and_a_change_measures_again(
    shop: ShopBuilder, database_urls: tuple[str, str], state_engine: Engine, tmp_path
) -> None:
    source_url, state_url = database_urls
    _seed(shop)
    shop.customer(41, email="not-an-email")  # listed among the invalid values
    resources = {
        "settings": Settings(),
        "source": SourceDatabase(url=source_url),
        "state": StateDatabase(url=state_url),
        "customerio": CustomerIO(dry_run=True, outbox_dir=str(tmp_path)),
    }

    def run(instance: dg.DagsterInstance) -> dict:
        result = dg.materialize([identity_map], instance=instance, resources=resources)
        (materialization,) = result.asset_materializations_for_node("identity_map")
        return {key: value.value for key, value in materialization.metadata.items()}

    with dg.instance_for_test() as instance:
        first = run(instance)
        # A row only identity writes, removed behind its back: a run that counted again would see it gone.
        with state_engine.begin() as conn:
            conn.execute(delete(state_tables.invalid_values))
        unchanged = run(instance)
        shop.customer(40, email="forty@shop.com")
        changed = run(instance)

    assert first["invalid_values"] > 0
    assert unchanged["run_resolved_input_rows"] == 0
    # Nothing changed: the figures are the ones measured before (the tables hold what they held then)...
    figures = [key for key in first if not key.startswith("run_")]
    assert {key: unchanged[key] for key in figures} == {key: first[key] for key in figures}
    # ...and a change measures the tables again.
    assert changed["people"] == first["people"] + 1
    assert changed["invalid_values"] == 0
