"""The daily partitions, and the days a run covers, as Dagster sees them.

`daily_partitions` is built from CIO_START_DATE and CIO_BUSINESS_TZ when the definitions are built. A run
names its partitions in its tags: one partition (`dagster/partition`), or a range of them
(`dagster/asset_partition_range_start` / `_end`, a single-run backfill); `run_partitions` is the one reader of
those tags. `partition_range` turns partition keys into a `lib.days.PartitionRange`, the plain value the stages
take.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC

import dagster as dg

from cio_assets.config import PartitionSettings
from cio_assets.lib.days import Day, PartitionRange

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def daily_partitions(settings: PartitionSettings) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today is a partition too (in progress), so new orders can reach Customer.io the same
    # day; re-running it later only adds what happened since.
    return dg.DailyPartitionsDefinition(start_date=settings.start_date, timezone=settings.business_tz, end_offset=1)


def partition_range(partitions: dg.TimeWindowPartitionsDefinition, keys: list[str]) -> PartitionRange:
    """The days of these partition keys, with the bounds Dagster gives each window."""
    days = []
    for key in sorted(keys):
        window = partitions.time_window_for_partition_key(key)
        days.append(Day(key, window.start.astimezone(UTC), window.end.astimezone(UTC)))
    first_key = partitions.get_first_partition_key()
    return PartitionRange(tuple(days), includes_history=days[0].key == first_key, business_tz=partitions.timezone)


def context_range(context: dg.AssetExecutionContext) -> PartitionRange:
    """The days an asset's run covers."""
    partitions = context.assets_def.partitions_def
    assert isinstance(partitions, dg.TimeWindowPartitionsDefinition)
    return partition_range(partitions, list(context.partition_keys))


def history(partitions: dg.TimeWindowPartitionsDefinition) -> PartitionRange:
    """The first partition alone, owning every earlier moment: a range whose `key_of` places any instant."""
    return partition_range(partitions, [partitions.get_first_partition_key()])


def whole_range(partitions: dg.TimeWindowPartitionsDefinition) -> PartitionRange:
    """Every partition so far."""
    return partition_range(partitions, list(partitions.get_partition_keys()))


def run_partitions(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """(first, last) partition key a run covers according to its tags; None for an unpartitioned run."""
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return tags[RANGE_START_TAG], tags[RANGE_END_TAG]
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG], tags[PARTITION_TAG]
    return None


def run_partition_keys(tags: Mapping[str, str], partitions: dg.PartitionsDefinition) -> list[str]:
    """Every partition key a run covers according to its tags (none for an unpartitioned run)."""
    covered = run_partitions(tags)
    if covered is None:
        return []
    return list(partitions.get_partition_keys_in_range(dg.PartitionKeyRange(*covered)))


def run_covers(tags: Mapping[str, str], key: str) -> bool:
    """Whether a run computes the partition `key`: a run of that partition, or of a range that holds it."""
    covered = run_partitions(tags)
    # Daily keys (YYYY-MM-DD) sort as the days they name.
    return covered is not None and covered[0] <= key <= covered[1]
