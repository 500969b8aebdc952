"""The benchmark's floors: what Dagster costs with the pipeline's imports and no work.

- `floor`: `make bench` materialises it from this code location and subtracts its time from the pipeline's
  own runs, so the figures it reports as "over the floor" are the pipeline's work, not process start-up,
  imports, building the definitions or Dagster's run machinery. It runs on the pipeline's own executor
  (in-process by default): Dagster's default multiprocess executor would add a child process the pipeline does
  not start, and flatter the comparison.
- the `bookkeeping` job: four assets that do nothing, partitioned and backfilled in one run like the pipeline's
  four daily assets (snapshot, event log and the two syncs). Over a range, Dagster records a planned event
  and a materialization per partition of each, whatever the assets do: `make bench` times it over the
  initial sync's range and over its last days, the part of a backfill's cost that follows the number of days.
"""

import dagster as dg

from cio_assets.config import Environment
from cio_assets.defs import build_definitions
from cio_assets.defs.partitions import daily_partitions

BOOKKEEPING_JOB = "bookkeeping"


@dg.asset(description="Nothing: a materialisation that does no work, to time everything around it.")
def floor() -> None:
    return None


def _nothing(name: str, deps: list[str], partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        deps=deps,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description="Nothing, for every partition of a range: Dagster's own cost per partition.",
    )
    def nothing() -> None:
        return None

    return nothing


@dg.definitions
def defs() -> dg.Definitions:
    env = Environment.read()
    pipeline = build_definitions(env)  # the same work as loading the pipeline's code location
    partitions = daily_partitions(env.partitions)
    bookkeeping = [
        _nothing("nothing_snapshot", [], partitions),
        _nothing("nothing_log", [], partitions),
        _nothing("nothing_people", ["nothing_snapshot"], partitions),
        _nothing("nothing_events", ["nothing_log", "nothing_people"], partitions),
    ]
    job = dg.define_asset_job(BOOKKEEPING_JOB, selection=[asset.key for asset in bookkeeping])
    return dg.Definitions(assets=[floor, *bookkeeping], jobs=[job], executor=pipeline.executor)
