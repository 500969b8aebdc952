"""No committed change is missed, by polling or by binlog capture. Each change below moves no high-water mark (the
largest id, the latest change time), yet the source sensor's next tick launches a refresh, and the run that follows
delivers the change to Customer.io, not the nightly full refresh (each test judges both: the tick, and a run of today
started anyway):
- an edit stamped in the same second as the newest change already seen;
- a late commit: a transaction that stamped its change before the newest change seen, and committed after it;
- a child table's edit: a WooCommerce usermeta row, as WooCommerce writes it (the value and last_update);
- a delete;
- under binlog capture only, what polling cannot see: an order line edited in place.
Each runs under polling (`CIO_CHANGE_CAPTURE=poll`, on the shared test server) and under binlog capture (on a MariaDB
of the session's own that logs rows, `binlog_server.py`). The sensor keeps its marks in the pipeline's MariaDB state
database, as it does live (`tracking/table_times.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from cio_assets.demo.platforms import woocommerce
from cio_assets.demo.platforms.truth import ShopTruth
from cio_assets_tests.conftest import SERVER_URL, SYNC, LocalCustomerIO, Pipeline, own_database
from cio_assets_tests.following import Live, execute, followed_shop, seconds_ago

# ---------------------------------------------------------------------------------------------------------
# The reference schema
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(params=["poll", "binlog"])
def server(request) -> tuple[str, str]:
    """(CIO_CHANGE_CAPTURE, the URL of a server it works on: the shared test server, or the session's own that
    logs rows)."""
    if request.param == "binlog":
        return request.param, request.getfixturevalue("binlog_server_url")
    return request.param, SERVER_URL


@pytest.fixture
def live(server: tuple[str, str], customerio: LocalCustomerIO, tmp_path) -> Iterator[Live]:
    """`followed_shop` under `server`'s capture, seen by a first tick and its whole history delivered."""
    capture, server_url = server
    with ExitStack() as stack:
        followed, _ = followed_shop(server_url, capture, customerio, tmp_path, stack)
        assert not followed.tick().run_requests  # nothing changed since
        yield followed


def _newest_change(live: Live, stamp: datetime) -> None:
    source = create_engine(live.pipeline.source_url)
    execute(source, "UPDATE customers SET first_name = 'Newest', updated_at = :at WHERE id = 1", at=stamp)
    source.dispose()
    assert live.follow(), "the newest change launches a run"
    assert live.person("customer1@shop.com")["first_name"] == "Newest"


def test_an_edit_in_the_same_second_as_the_newest_change_seen_is_delivered(live: Live):
    stamp = seconds_ago(20)
    _newest_change(live, stamp)

    source = create_engine(live.pipeline.source_url)
    # ON UPDATE CURRENT_TIMESTAMP stamps two writes within a second alike: no mark moves.
    execute(source, "UPDATE customers SET first_name = 'Grace', updated_at = :at WHERE id = 2", at=stamp)
    source.dispose()

    launched = live.follow()
    assert (launched, live.person("customer2@shop.com")["first_name"]) == (True, "Grace")


def test_a_late_commit_under_an_earlier_stamp_is_delivered(live: Live):
    stamp = seconds_ago(20)
    source = create_engine(live.pipeline.source_url)
    late = source.connect()
    # The late transaction stamps its change first (3 s before the newest change) and commits only after the
    # newest change was seen and delivered.
    late.execute(
        text("UPDATE customers SET first_name = 'Late', updated_at = :at WHERE id = 3"),
        {"at": stamp - timedelta(seconds=3)},
    )
    try:
        _newest_change(live, stamp)
    finally:
        late.commit()
        late.close()
    source.dispose()

    launched = live.follow()
    assert (launched, live.person("customer3@shop.com")["first_name"]) == (True, "Late")


def test_a_deleted_order_is_delivered(live: Live):
    assert live.person("customer2@shop.com")["total_orders"] == 2
    source = create_engine(live.pipeline.source_url)
    # The older of the two orders: neither the largest id nor the latest change time moves.
    execute(source, "DELETE FROM order_items WHERE order_id = (SELECT MIN(id) FROM orders)")
    execute(source, "DELETE FROM orders WHERE id = (SELECT id FROM (SELECT MIN(id) AS id FROM orders) AS o)")
    source.dispose()

    launched = live.follow()
    assert (launched, live.person("customer2@shop.com")["total_orders"]) == (True, 1)


# ---------------------------------------------------------------------------------------------------------
# A child table: WooCommerce's usermeta
# ---------------------------------------------------------------------------------------------------------


@dataclass
class WooCommerce:
    live: Live
    truth: ShopTruth


@pytest.fixture
def woocommerce_live(server: tuple[str, str], tmp_path, customerio: LocalCustomerIO) -> Iterator[WooCommerce]:
    capture, server_url = server
    name = f"cio_test_{uuid.uuid4().hex[:10]}_woocommerce"
    with own_database(name, server_url) as url, own_database(f"{name}_state", server_url) as state_url:
        truth = woocommerce.generate(url)
        state = create_engine(state_url)
        pipeline = Pipeline(url, state_url, state, tmp_path, mapping="woocommerce")
        followed = Live(pipeline, customerio, capture, "woocommerce")
        assert followed.tick().run_requests
        # The generated shop's history ends on 2026-11-20.
        pipeline.run(partition_range=("2026-10-01", "2026-11-20"), assets=SYNC, customerio=customerio.resource())
        yield WooCommerce(followed, truth)
        state.dispose()


def _set_first_name(url: str, user_id: int, name: str, last_update: datetime) -> None:
    """As WooCommerce saves a customer: the billing first name, and last_update (Unix seconds) stamped with it."""
    source = create_engine(url)
    unix = int(last_update.replace(tzinfo=UTC).timestamp())
    for key, value in (("billing_first_name", name), ("last_update", str(unix))):
        with source.begin() as conn:
            updated = conn.execute(
                text("UPDATE wp_usermeta SET meta_value = :value WHERE user_id = :user AND meta_key = :key"),
                {"value": value, "user": user_id, "key": key},
            ).rowcount
            if not updated:
                conn.execute(
                    text("INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES (:user, :key, :value)"),
                    {"value": value, "user": user_id, "key": key},
                )
    source.dispose()


def test_a_usermeta_edit_in_the_same_second_as_the_newest_change_seen_is_delivered(woocommerce_live: WooCommerce):
    live = woocommerce_live.live
    customers = sorted(
        (p.customer_ids[0], email) for email, p in woocommerce_live.truth.people.items() if not p.is_guest
    )
    (first, first_email), (second, second_email) = customers[:2]
    stamp = seconds_ago(20)
    _set_first_name(live.pipeline.source_url, first, "Ines", stamp)
    assert live.follow(), "the newest change launches a run"
    assert live.person(first_email)["first_name"] == "Ines"

    _set_first_name(live.pipeline.source_url, second, "Olu", stamp)

    launched = live.follow()
    assert (launched, live.person(second_email)["first_name"]) == (True, "Olu")


# ---------------------------------------------------------------------------------------------------------
# What only the binlog shows
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["binlog"], indirect=True)
def test_an_order_line_edited_in_place_is_delivered_under_binlog_capture(live: Live):
    """Order lines have no change time: polling sees such an edit only with the nightly full refresh."""
    assert live.person("customer2@shop.com")["last_product_category"] == "tea"
    source = create_engine(live.pipeline.source_url)
    execute(source, "UPDATE order_items SET category = 'coffee' WHERE order_id = (SELECT MAX(id) FROM orders)")
    source.dispose()

    launched = live.follow()
    assert (launched, live.person("customer2@shop.com")["last_product_category"]) == (True, "coffee")
