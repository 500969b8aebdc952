"""What the Dagster UI shows tells the truth: each partition's own figures, column schemas, agreeing counts,
and the mode a run is really in."""

from __future__ import annotations

import os

import dagster as dg
import pandas as pd
import pytest

from cio_assets.attributes.snapshot import written_in_run
from cio_assets.defs.assets.sources import source_tables
from cio_assets.delivery.deliver import DeliveryReport
from cio_assets.delivery.stream import delivery_summary
from cio_assets.lib.frames import counts_per_day
from cio_assets.mapping.spec import load
from cio_assets.schema import state as state_tables
from cio_assets.schema.events import EVENT_NAMES
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.definitions import (
    attribute_snapshot,
    customerio_resource,
    event_log,
    identity_map,
    rejected_rows,
)

DAY_1, DAY_2 = "2026-10-01", "2026-10-02"
PII_COLUMNS = {"email", "phone", "first_name", "last_name"}


def _two_different_days(shop) -> None:
    """Day 1: two new customers (one without an e-mail) and one order. Day 2: a third customer, two orders,
    and an order of -5 that the hygiene rules set aside (so customer 3's day 2 is held back)."""
    shop.customer(1, created_at=f"{DAY_1} 09:00")
    shop.customer(2, email=None, created_at=f"{DAY_1} 10:00")
    shop.order(1, total=20.0, paid_at=f"{DAY_1} 12:00")
    shop.customer(3, created_at=f"{DAY_2} 09:00")
    shop.order(1, total=30.0, paid_at=f"{DAY_2} 11:00")
    shop.order(3, total=40.0, paid_at=f"{DAY_2} 12:00")
    shop.order(3, total=-5.0, paid_at=f"{DAY_2} 13:00")


def _latest_per_partition(instance: dg.DagsterInstance, asset: str, day: str) -> list[dict]:
    """Every materialization the instance holds for the partition (newest first), as plain metadata."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=10
    ).records
    return [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in records]


@pytest.fixture
def range_run(shop, pipeline):
    """The two days in one single-run backfill, on an instance the test can read back."""
    _two_different_days(shop)
    with dg.instance_for_test() as instance:
        result = pipeline.run(partition_range=(DAY_1, DAY_2), instance=instance)
        assert result.success
        yield instance


def test_each_snapshot_partition_carries_its_own_days_figures(range_run, pipeline):
    snapshot = pipeline.snapshot()
    held = pipeline.table(state_tables.quarantine)
    held = held[(held["asset"] == "attribute_snapshot") & (held["outcome"] == "held")]

    for day, rows, people, email_eligible, null_email in (
        # customers 1 and 2; customer 2 has no e-mail, so one of two is eligible and half the e-mails are null
        (DAY_1, 2, 2, 1, 0.5),
        # customer 1 only: customer 3's day is held back by the order of -5
        (DAY_2, 1, 1, 1, 0.0),
    ):
        [metadata] = _latest_per_partition(range_run, "attribute_snapshot", day)  # one per day, not one per run
        truth = snapshot[snapshot["day"] == day]
        assert (
            (metadata["dagster/row_count"], metadata["people"])
            == (rows, people)
            == (
                len(truth),
                truth["person_id"].nunique(),
            )
        )
        assert metadata["eligible/email"] == email_eligible == int(truth["email_eligible"].sum())
        assert metadata["null_rate/email"] == null_email == round(truth["email"].isna().mean(), 4)
        assert metadata["rows_held"] == held[held["day"] == day]["item_key"].nunique()
        assert metadata["run_rows"] == len(snapshot) == 3  # the range's total, under its own name
        assert metadata["dagster/column_schema"].columns[0].name == "day"  # the schema-change check reads it

    day_2 = _latest_per_partition(range_run, "attribute_snapshot", DAY_2)[0]
    assert (day_2["rows_held"], day_2["held/negative_amount"]) == (1, 1)
    assert _latest_per_partition(range_run, "attribute_snapshot", DAY_1)[0]["held/negative_amount"] == 0


def test_each_event_log_partition_counts_its_own_events_per_name(range_run, pipeline):
    events = pipeline.events()

    for day, placed in ((DAY_1, 1), (DAY_2, 2)):  # the order of -5 is set aside, not an event
        [metadata] = _latest_per_partition(range_run, "event_log", day)
        truth = events[events["day"] == day]
        assert metadata["events/order_placed"] == placed == int((truth["name"] == "order_placed").sum())
        assert {name: metadata[f"events/{name}"] for name in EVENT_NAMES} == {
            name: int((truth["name"] == name).sum())
            for name in EVENT_NAMES  # every name, zeros included
        }
        assert metadata["dagster/row_count"] == len(truth)
        assert metadata["people"] == truth["person_id"].nunique()
        assert metadata["run_events/order_placed"] == 3


def test_plotted_numbers_are_separate_numbers_not_json(range_run):
    metadata = _latest_per_partition(range_run, "attribute_snapshot", DAY_1)[0]

    plotted = {key: value for key, value in metadata.items() if key.split("/")[0] in ("null_rate", "eligible", "held")}
    assert plotted and all(isinstance(value, int | float) for value in plotted.values())
    assert "rows_by_day" not in metadata and "null_rate" not in metadata


def test_people_counts_agree_with_the_written_rows(shop, pipeline):
    shop.customer(1, created_at=f"{DAY_1} 09:00")
    shop.customer(2, email="customer1@shop.com", created_at=f"{DAY_1} 10:00")  # the same human as customer 1
    shop.customer(3, created_at=f"{DAY_1} 11:00")
    shop.order(3, total=10.0, paid_at=f"{DAY_2} 10:00")  # customer 3 has a row on each day

    with dg.instance_for_test() as instance:
        pipeline.run(partition_range=(DAY_1, DAY_2), instance=instance)
        snapshot_day_2 = _latest_per_partition(instance, "attribute_snapshot", DAY_2)[0]
        [identity] = [
            {k: v.value for k, v in r.asset_materialization.metadata.items()}
            for r in instance.fetch_materializations(dg.AssetKey("identity_map"), limit=1).records
        ]

    rows = pipeline.snapshot()
    assert len(rows) == 3  # people 1 and 3 on day 1, person 3 on day 2
    people = rows["person_id"].nunique()
    assert snapshot_day_2["run_people"] == people == identity["people"] == 2
    # eligible counts people (in their latest row of the range), not rows: person 3's two rows count once
    assert snapshot_day_2["run_people_email_eligible"] == 2
    # Counted from the rows the run wrote, they are what the table holds for the range.
    with pipeline.state_engine.connect() as conn:
        read_back = written_in_run(conn, [DAY_1, DAY_2])
    assert {key: snapshot_day_2[key] for key in read_back} == read_back


def test_column_schemas_describe_every_owned_table_with_pii_tags():
    schema = attribute_snapshot.specs_by_key[dg.AssetKey("attribute_snapshot")].metadata["dagster/column_schema"]

    assert [c.name for c in schema.columns] == [c.name for c in state_tables.attribute_snapshot.columns]
    assert {c.name for c in schema.columns if "pii" in c.tags} == PII_COLUMNS
    assert all(c.description for c in schema.columns)
    email = next(c for c in schema.columns if c.name == "email")
    assert (email.type, email.constraints.nullable) == ("VARCHAR(320)", True)
    for asset, table in (
        (attribute_snapshot, "cio_attribute_snapshot"),
        (event_log, "cio_event_log"),
        (identity_map, "cio_identity_map"),
        (rejected_rows, "cio_rejected_rows"),
    ):
        metadata = next(iter(asset.specs)).metadata
        assert metadata["dagster/table_name"] == table
        assert all(c.description for c in metadata["dagster/column_schema"].columns)
    listings = next(iter(identity_map.specs)).metadata
    assert {
        "listing/cio_identity_conflicts",
        "listing/cio_unresolved_identifiers",
        "listing/cio_invalid_values",
    } <= set(listings)


def test_source_columns_have_descriptions_and_pii_tags():
    customers = next(
        spec for spec in source_tables(load("reference")) if spec.key == dg.AssetKey(["source", "customers"])
    )
    columns = customers.metadata["dagster/column_schema"].columns

    assert all(
        c.description
        for spec in source_tables(load("reference"))
        for c in spec.metadata["dagster/column_schema"].columns
    )
    assert {c.name for c in columns if "pii" in c.tags} == PII_COLUMNS


def test_the_column_schema_change_check_passes_on_an_unchanged_table_and_fails_on_a_changed_one(shop, pipeline):
    [check] = dg.build_column_schema_change_checks(assets=[identity_map])
    shop.customer(1)

    with dg.instance_for_test() as instance:
        pipeline.run(assets=[identity_map, check], instance=instance)
        unchanged = pipeline.run(assets=[identity_map, check], instance=instance)
        # A previous deploy whose table had no `source` column, then today's run:
        schema = next(iter(identity_map.specs)).metadata["dagster/column_schema"]
        older = dg.TableSchema(columns=[c for c in schema.columns if c.name != "source"])
        instance.report_runless_asset_event(
            dg.AssetMaterialization("identity_map", metadata={"dagster/column_schema": older})
        )
        changed = pipeline.run(assets=[identity_map, check], instance=instance)

    assert unchanged.get_asset_check_evaluations()[0].passed
    [evaluation] = changed.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "Added columns: source" in (evaluation.description or "")


@pytest.mark.parametrize(
    ("dry_run", "words", "never"),
    [
        # a dry run plans: nothing is sent, whatever the count
        (True, "dry run: 8479 items planned in 8 batches, none sent", " sent in "),
        # a live run sends
        (False, "8479 items sent in 8 batches", "planned"),
    ],
)
def test_a_dry_run_says_planned_and_a_live_run_says_sent(dry_run, words, never):
    report = DeliveryReport(sent=8479, batches=8, dry_run=dry_run, outbox="/tmp/outbox.jsonl" if dry_run else None)

    summary = delivery_summary(report, held=0)

    assert words in summary
    assert never not in summary


@pytest.mark.parametrize(
    ("variables", "dry_run"),
    [
        # no credentials: nothing can be sent, and the launchpad says so
        ({}, True),
        # both credentials: a live run
        ({"CIO_SITE_ID": "site-1", "CIO_API_KEY": "key-1"}, False),
        # both, but an explicit dry run
        ({"CIO_SITE_ID": "site-1", "CIO_API_KEY": "key-1", "CIO_DRY_RUN": "1"}, True),
    ],
)
def test_the_configured_dry_run_is_the_effective_mode(monkeypatch, variables, dry_run):
    for name in [n for n in os.environ if n.startswith("CIO_") and n != "CIO_TEST_MYSQL_URL"]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    resource = customerio_resource()

    assert resource.dry_run is dry_run
    assert resource.sends is (not dry_run)


def test_per_day_counts_give_every_day_every_name_zeros_included():
    frame = pd.DataFrame({"day": [DAY_2, DAY_2], "name": ["order_placed", "refund_issued"]})

    figures = counts_per_day(frame, "name", [DAY_1, DAY_2], "events", known=["cart_abandoned"])

    assert figures == {
        DAY_1: {"events/cart_abandoned": 0, "events/order_placed": 0, "events/refund_issued": 0},
        DAY_2: {"events/cart_abandoned": 0, "events/order_placed": 1, "events/refund_issued": 1},
    }


def test_each_sync_partition_counts_the_outcomes_of_its_own_day(shop, pipeline):
    _two_different_days(shop)

    with dg.instance_for_test() as instance:
        pipeline.run(partition_range=(DAY_1, DAY_2), assets=SYNC, instance=instance)  # a dry run
        people = {day: _latest_per_partition(instance, "customerio_people", day) for day in (DAY_1, DAY_2)}
        events = {day: _latest_per_partition(instance, "customerio_events", day) for day in (DAY_1, DAY_2)}

    # A person counts on the day of their latest row in the range: customer 2 on day 1, customer 1 on day 2
    # (customer 3's only day is held back).
    assert [people[day][0]["people/created"] for day in (DAY_1, DAY_2)] == [1, 1]
    assert all(len(people[day]) == 1 and people[day][0]["people_created"] == 2 for day in (DAY_1, DAY_2))
    # Events of October are history by now; customer 3's order waits for an identify that is held back.
    figures = [(m["events/history"], m["events/waiting_for_identify"]) for m in (events[DAY_1][0], events[DAY_2][0])]
    assert figures == [(1, 0), (1, 1)]


def test_unpartitioned_listings_count_each_reason_as_its_own_number(range_run):
    def latest(asset: str) -> dict:
        [record] = range_run.fetch_materializations(dg.AssetKey(asset), limit=1).records
        return {k: v.value for k, v in record.asset_materialization.metadata.items()}

    rejected, identity = latest("rejected_rows"), latest("identity_map")

    # the order of -5: one row of `orders`, judged on its amounts
    assert rejected["rejected/negative_amount"] == rejected["rejected_in/orders"] == 1
    assert rejected["rejected_in/customers"] == 0
    # three customers, two with an e-mail
    assert (identity["people"], identity["identifiers/customer_id"], identity["identifiers/email"]) == (3, 3, 2)
    assert identity["dagster/table_name"] == "cio_identity_map"
