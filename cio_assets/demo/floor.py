"""The benchmark's floors: what Dagster costs with the pipeline's imports and no work.

- `floor`: `make bench` materialises it from this code location and subtracts its time from the pipeline's
  own runs, so the figures it reports as "over the floor" are the pipeline's work, not process start-up,
  imports or Dagster's run machinery. It runs on the pipeline's own executor (in-process by default):
  Dagster's default multiprocess executor would add a child process the pipeline does not start, and
  flatter the comparison.
- `bookkeeping_job`: four assets that do nothing, partitioned and backfilled in one run like the pipeline's
  four daily assets (snapshot, event log and the two syncs). Over a range, Dagster records a planned event
  and a materialization per partition of each, whatever the assets do: `make bench` times it over the
  initial sync's range and over its last days, the part of a backfill's cost that follows the number of days.
"""

import dagster as dg

import cio_assets.definitions  # the same imports as the pipeline's code location
from cio_assets.partitions import daily_partitions


@dg.asset(description="Nothing: a materialisation that does no work, to time everything around it.")
def floor() -> None:
    return None


def _nothing(name: str, deps: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        deps=deps,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description="Nothing, for every partition of a range: Dagster's own cost per partition.",
    )
    def nothing() -> None:
        return None

    return nothing


BOOKKEEPING = [
    _nothing("nothing_snapshot", []),
    _nothing("nothing_log", []),
    _nothing("nothing_people", ["nothing_snapshot"]),
    _nothing("nothing_events", ["nothing_log", "nothing_people"]),
]
bookkeeping_job = dg.define_asset_job("bookkeeping", selection=[asset.key for asset in BOOKKEEPING])

defs = dg.Definitions(
    assets=[floor, *BOOKKEEPING], jobs=[bookkeeping_job], executor=cio_assets.definitions.defs.executor
)
