"""The benchmark's floor: what `dagster asset materialize` costs with the pipeline's imports and no work.

`make bench` materialises `floor` from this code location and subtracts its time from the pipeline's own
runs, so the figures it reports as "over the floor" are the pipeline's work, not process start-up, imports
or Dagster's run machinery. It runs on the pipeline's own executor (in-process by default): Dagster's default
multiprocess executor would add a child process the pipeline does not start, and flatter the comparison.
"""

import dagster as dg

import cio_assets.definitions  # the same imports as the pipeline's code location


@dg.asset(description="Nothing: a materialisation that does no work, to time everything around it.")
def floor() -> None:
    return None


defs = dg.Definitions(assets=[floor], executor=cio_assets.definitions.defs.executor)
