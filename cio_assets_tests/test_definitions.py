"""The Definitions load and are shaped for safe backfills: one executor, single-run policies everywhere."""

import dagster as dg

from cio_assets.definitions import defs
from cio_assets.partitions import daily_partitions


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)


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


def test_source_tables_are_external_mysql_assets():
    specs = [s for s in defs.assets if isinstance(s, dg.AssetSpec)]
    assert {s.key.to_user_string() for s in specs} == {
        f"source/{name}"
        for name in (
            "customers",
            "orders",
            "order_items",
            "carts",
            "cart_items",
            "refunds",
            "subscriptions",
            "identity_links",
        )
    }
    assert all(s.kinds == {"mysql"} for s in specs)
