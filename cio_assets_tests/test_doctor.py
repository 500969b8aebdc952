"""`doctor`: a new user's first command. It reports what the pipeline will make of a shop, on one screen, exits
non-zero when the pipeline could not run on it, and never writes to the shop."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from cio_assets.demo.platforms import magento2, woocommerce
from cio_assets.doctor import OK, WARN, Report, Scan, full_scans


def _doctor(url: str, mapping: str, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CIO_")}
    environment.update(CIO_MYSQL_URL=url, CIO_SOURCE_MAPPING=mapping, **env)
    return subprocess.run(
        [sys.executable, "-m", "cio_assets", "doctor"], env=environment, capture_output=True, text=True, timeout=300
    )


def _checksums(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = [row[0] for row in conn.execute(text("SHOW TABLES"))]
        sums = {row[0]: row[1] for row in conn.execute(text(f"CHECKSUM TABLE {', '.join(tables)}"))}
    engine.dispose()
    return sums


def test_doctor_reports_a_woocommerce_shop_and_changes_nothing(throwaway_database):
    truth = woocommerce.generate(throwaway_database, customers=1500)
    before = _checksums(throwaway_database)

    done = _doctor(throwaway_database, "woocommerce")

    assert done.returncode == 0, done.stderr
    out = done.stdout
    customers = [person for person in truth.people.values() if not person.is_guest]
    consent = {state: sum(p.consent == state for p in customers) for state in ("opted_in", "opted_out", "unknown")}
    assert f"customers: {len(customers):,} rows" in out
    assert f"opted in {consent['opted_in']}, opted out {consent['opted_out']}, unknown {consent['unknown']}" in out
    custom = truth.set_aside["custom_status_orders"]
    assert f"orders.status '{woocommerce.CUSTOM_STATUS}': {custom:,} rows; map it" in out
    assert "sent: order_placed, refund_issued" in out
    assert "off: cart_abandoned: WooCommerce keeps no carts" in out
    # WooCommerce keeps no index on the paid time: a day's paid orders read every order's operational data
    assert "a day's paid orders: reads wp_wc_order_operational_data" in out
    assert "CREATE INDEX ix_wp_wc_order_operational_data_date_paid_gmt ON wp_wc_order_operational_data" in out
    assert "a person's orders by id: by index" in out  # the guest id 0 does not hide customer_id's index
    # A customer's change is looked up where it shows: MailPoet by its index; usermeta last_update by no index
    assert "changes to customers, seen in wp_mailpoet_subscribers: by index" in out
    assert "changes to customers, seen in wp_usermeta: reads wp_usermeta" in out
    assert "computed, so no index serves it" in out
    # The tables a run with nothing new leaves unread, and whether a note is trusted at once
    assert "customers: wp_mailpoet_subscribers, wp_usermeta, wp_users last written" in out
    assert "open transactions are visible (PROCESS)" in out
    assert _checksums(throwaway_database) == before  # it only reads


def test_doctor_names_the_index_a_magento_shop_lacks(throwaway_database):
    magento2.generate(throwaway_database, customers=300)

    done = _doctor(throwaway_database, "magento2")

    assert done.returncode == 0, done.stderr
    # Magento declares no index on quote.updated_at: every poll for changed carts reads every quote.
    assert "changes to carts: reads quote" in done.stdout
    assert "CREATE INDEX ix_quote_updated_at ON quote (updated_at);" in done.stdout
    assert "a day's paid orders: by index" in done.stdout  # from the invoices' created_at index
    # A customer's change shows in three tables, none with an index on its time: one statement each
    for table, column in (
        ("customer_entity", "updated_at"),
        ("customer_address_entity", "updated_at"),
        ("newsletter_subscriber", "change_status_at"),
    ):
        assert f"changes to customers, seen in {table}: reads {table}" in done.stdout
        assert f"CREATE INDEX ix_{table}_{column} ON {table} ({column});" in done.stdout


def test_doctor_fails_naming_what_the_shop_lacks(throwaway_database):
    woocommerce.generate(throwaway_database)
    engine = create_engine(throwaway_database)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE wp_wc_order_operational_data"))
    engine.dispose()

    done = _doctor(throwaway_database, "woocommerce")

    assert done.returncode == 1
    assert "through the preset 'woocommerce'" in done.stdout
    assert "orders: Table" in done.stdout and "wp_wc_order_operational_data' doesn't exist" in done.stdout


def test_doctor_warns_when_the_newest_times_sit_in_the_future(shop, database_urls):
    """A change written a minute ago in UTC, read as Honolulu's wall time: ten hours in the future, the signature
    of a zone mistake."""
    a_minute_ago = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=1)
    shop.customer(1, created_at=a_minute_ago, updated_at=a_minute_ago)

    done = _doctor(database_urls[0], "reference", CIO_SOURCE_TZ="Pacific/Honolulu")

    assert done.returncode == 0, done.stderr
    assert "customers.updated_at (zone Pacific/Honolulu): the newest is 10 h in the future" in done.stdout


@pytest.mark.parametrize(
    ("dialect", "plan", "scans"),
    [
        # MariaDB reads a table whole with no key it could use
        (
            "mysql",
            [{"table": "quote", "type": "ALL", "possible_keys": None, "select_type": "SIMPLE", "rows": 9}],
            [Scan("quote", "SIMPLE scans about 9 rows")],
        ),
        # a whole index read in its order, again with no usable key
        (
            "mysql",
            [{"table": "o", "type": "index", "possible_keys": None, "select_type": "PRIMARY", "rows": 5}],
            [Scan("o", "PRIMARY scans about 5 rows")],
        ),
        # a small table read whole although an index exists: the optimizer's choice, not a missing index
        (
            "mysql",
            [{"table": "o", "type": "ALL", "possible_keys": "ix_paid_at", "select_type": "SIMPLE", "rows": 5}],
            [],
        ),
        # a keyed lookup
        ("mysql", [{"table": "o", "type": "ref", "possible_keys": "ix", "select_type": "SIMPLE", "rows": 1}], []),
        # an index that still reads half of a table of 5,000 rows (WooCommerce's orders by type, for a day's)
        (
            "mysql",
            [{"table": "o", "type": "ref", "possible_keys": "ix", "key": "ix", "ref": "const", "rows": "2500 (8%)"}],
            [Scan("o", "by ix, about 2,500 of its 5,000 rows")],
        ),
        # the same estimate for a table read by a key from the table before it: per row of that one, not a scan
        ("mysql", [{"table": "o", "type": "ref", "possible_keys": "ix", "ref": "shop.li.order_id", "rows": 2500}], []),
        # SQLite: a scan, and a search by index
        ("sqlite", [{"detail": "SCAN c"}], [Scan("c", "SCAN c")]),
        ("sqlite", [{"detail": "SEARCH o USING INDEX ix_orders_paid_at (paid_at>? AND paid_at<?)"}], []),
    ],
)
def test_a_plan_reads_a_table_whole_only_without_a_usable_index(dialect, plan, scans):
    assert full_scans(plan, dialect, sizes={"o": 5000, "quote": 9}) == scans


def test_the_indexes_doctor_advises_are_listed_once_each_in_order():
    report = Report()
    plans = report.section("Hot queries (their plans on this shop)")
    plans.add(
        WARN, "changes to carts: reads quote (SIMPLE scans about 900 rows). CREATE INDEX ix_q ON quote (updated_at);"
    )
    plans.add(OK, "a person's orders by id: by index")
    plans.add(
        WARN, "a day's paid orders: reads o (…). CREATE INDEX ix_p ON od (date_paid_gmt); (on the predicate's table)"
    )
    plans.add(WARN, "changes to carts again: CREATE INDEX ix_q ON quote (updated_at);")

    assert report.advised_indexes() == [
        "CREATE INDEX ix_q ON quote (updated_at);",
        "CREATE INDEX ix_p ON od (date_paid_gmt);",
    ]
