"""The code location's shape, as the README's diagram draws it: the shop's tables (external, read only) →
hygiene and identity → the daily attribute snapshot and event log, guarded by blocking checks → the two syncs,
which take turns on Customer.io and are watched for freshness; every asset backfills a range in one run, and
every trigger of delivery launches the one `refresh` job (the read-back of a sync runs apart, as `read_back`); and
`dg`, Dagster's project tooling, sees the same project."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import orjson
import pytest

from cio_assets.defs.assets.sources import source_tables
from cio_assets.mapping.spec import load
from cio_assets_tests.definitions import daily_partitions, defs

PROJECT = Path(__file__).resolve().parent.parent
SHOP_TABLES = (
    *("customers", "orders", "order_items", "carts"),
    *("cart_items", "refunds", "subscriptions", "identity_links"),
)


def _sources(*tables: str) -> set[str]:
    return {f"source/{table}" for table in tables}


@pytest.mark.parametrize(
    ("asset", "reads"),
    [
        # hygiene judges the tables its rules look at, line items too (a bad line sets its order or cart aside)
        (
            "rejected_rows",
            _sources("customers", "orders", "order_items", "carts", "cart_items", "refunds", "subscriptions"),
        ),
        # identity resolves people from every table that names one
        ("identity_map", _sources("customers", "orders", "carts", "identity_links", "subscriptions")),
        # the snapshot: identity, what hygiene set aside, and the tables attributes come from
        (
            "attribute_snapshot",
            {"identity_map", "rejected_rows"}
            | _sources("customers", "orders", "order_items", "refunds", "subscriptions"),
        ),
        # the event log: identity, what hygiene set aside, and the tables events come from
        (
            "event_log",
            {"identity_map", "rejected_rows"}
            | _sources("orders", "order_items", "carts", "cart_items", "refunds", "subscriptions"),
        ),
        # the people sync delivers the snapshot
        ("customerio_people", {"attribute_snapshot"}),
        # the event sync delivers the log, after the people sync: a person's identify lands before their events
        ("customerio_events", {"event_log", "customerio_people"}),
    ],
)
def test_each_asset_reads_what_the_pipeline_diagram_says(asset, reads):
    graph = defs.resolve_asset_graph()

    parents = {key.to_user_string() for key in graph.get(dg.AssetKey(asset)).parent_keys}

    assert parents == reads


def test_every_materializable_asset_backfills_in_one_run():
    graph = defs.resolve_asset_graph()
    materializable = [key for key in graph.materializable_asset_keys]
    assert {key.to_user_string() for key in materializable} == {
        "identity_map",
        "rejected_rows",
        "attribute_snapshot",
        "event_log",
        "customerio_people",
        "customerio_events",
    }
    for key in materializable:
        policy = graph.get(key).backfill_policy
        assert policy == dg.BackfillPolicy.single_run(), key


def test_snapshot_and_event_log_are_daily_and_guarded_by_blocking_checks():
    graph = defs.resolve_asset_graph()
    for name, check in (("attribute_snapshot", "attribute_snapshot_schema"), ("event_log", "event_log_schema")):
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == daily_partitions
        spec = next(s for s in node.assets_def.check_specs if s.name == check)
        assert spec.blocking


def test_the_syncs_are_daily_take_turns_on_customerio_and_are_watched_for_freshness():
    graph = defs.resolve_asset_graph()
    for name in ("customerio_people", "customerio_events"):
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == daily_partitions, name
        assert node.pools == {"customerio_api"}, name
        assert node.freshness_policy is not None, name


def test_source_tables_are_external_mysql_assets():
    specs = [s for s in defs.assets if isinstance(s, dg.AssetSpec)]
    assert {s.key.to_user_string() for s in specs} == _sources(*SHOP_TABLES)
    assert all(s.kinds == {"mysql"} for s in specs)


@pytest.mark.parametrize(
    ("preset", "concept", "said"),
    [
        # a concept the preset reads, and the platform's tables it reads it from
        ("woocommerce", "orders", "through the preset 'woocommerce' (cio_assets/mapping/presets/woocommerce.toml)"),
        ("woocommerce", "orders", "from `wp_wc_orders`"),
        # a concept the platform does not have: why, in the asset's description
        ("woocommerce", "carts", "none in this shop (WooCommerce keeps no carts"),
        ("magento2", "carts", "from `quote`, `quote_address`, `sales_order`"),
    ],
)
def test_each_source_asset_says_where_the_mapping_reads_it_from(preset, concept, said):
    spec = next(s for s in source_tables(load(preset)) if s.key == dg.AssetKey(["source", concept]))

    assert said in (spec.description or "")


def test_every_trigger_of_delivery_launches_the_refresh_job_which_leaves_the_shop_alone():
    job = defs.resolve_job_def("refresh")

    # The read-back of each sync runs apart, in the `read_back` job its own sensor launches.
    assert {sensor.name: sensor.job_name for sensor in defs.sensors} == {
        "source_changes": "refresh",
        "read_back_after_sync": "read_back",
    }
    assert {schedule.job_name for schedule in defs.schedules} == {"refresh"}
    selected = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert not selected & _sources(*SHOP_TABLES)  # the shop is read, never materialised


def test_dg_lists_the_project_as_dagster_s_own_tooling_sees_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "list", "defs", "--json"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert listed.returncode == 0, listed.stderr[-3000:]
    found = orjson.loads(listed.stdout)
    graph = defs.resolve_asset_graph()
    assert {asset["asset_key"] for asset in found["assets"]} == {
        key.to_user_string() for key in graph.get_all_asset_keys()
    }
    assert sorted(job["name"] for job in found["jobs"]) == ["read_back", "refresh"]
    assert [(s["name"], s["cron_schedule"]) for s in found["schedules"]] == [("finalize_yesterday", "0 2 * * *")]
    assert sorted(sensor["name"] for sensor in found["sensors"]) == ["read_back_after_sync", "source_changes"]
    assert {resource["name"] for resource in found["resources"]} >= {"settings", "source", "state", "customerio"}
