"""The source sensor observes every table and refreshes today's partition only when the shop moved."""

import dagster as dg

from cio_assets.partitions import daily_partitions
from cio_assets.resources import SourceDatabase
from cio_assets.sources.sensors import source_changes


def _tick(pipeline, cursor=None):
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"source": SourceDatabase(url=pipeline.source_url)}
        )
        return source_changes(context)


def test_observations_carry_row_counts_and_high_water_marks(shop, pipeline):
    shop.customer(1)
    shop.order(1, id=41, paid_at="2026-10-02 10:00")

    result = _tick(pipeline)

    observed = {e.asset_key.to_user_string(): e.metadata for e in result.asset_events}
    assert observed["source/orders"]["dagster/row_count"].value == 1
    assert observed["source/orders"]["max_id"].value == 41
    assert observed["source/orders"]["max_updated_at"].value == "2026-10-02T10:00:00"
    assert observed["source/refunds"]["dagster/row_count"].value == 0
    assert len(result.run_requests) == 1
    assert result.run_requests[0].partition_key == daily_partitions.get_last_partition_key()


def test_an_unchanged_shop_requests_nothing_and_a_new_order_requests_a_refresh(shop, pipeline):
    shop.customer(1)
    first = _tick(pipeline)

    unchanged = _tick(pipeline, cursor=first.cursor)
    shop.order(1, id=42, paid_at="2026-10-02 10:00")
    changed = _tick(pipeline, cursor=first.cursor)

    assert unchanged.run_requests == [] and unchanged.skip_reason is not None
    assert len(changed.run_requests) == 1
    assert changed.cursor != first.cursor
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key
