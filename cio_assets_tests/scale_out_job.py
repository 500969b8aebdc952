"""The backfill job of the scale-out test (test_scale_out.py), rebuilt by every process that runs a step of it.

A Celery worker receives only a pointer to a job (this module and a function's name), imports it and calls the
function, so the job and its resources must come from code and environment variables, exactly as in
production: the resources are built by `defs.resources.resources` from the `CIO_*` variables the worker was
started with, and the executor is the one `CIO_EXECUTOR` would choose (`cio_assets.defs.executor.executor_named`).
The partitions are pinned like conftest's. Run as a module, it runs the Celery backfill in a process of its own
(see `main`).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("CIO_START_DATE", "2026-10-01")
os.environ.setdefault("CIO_BUSINESS_TZ", "UTC")

import dagster as dg

from cio_assets.config import Environment
from cio_assets.defs.executor import executor_named
from cio_assets.defs.resources import resources
from cio_assets_tests.definitions import (
    attribute_snapshot,
    customerio_events,
    customerio_people,
    event_log,
    identity_map,
    rejected_rows,
)

ASSETS = [rejected_rows, identity_map, attribute_snapshot, event_log, customerio_people, customerio_events]
JOB_NAME = "backfill"


def _backfill_job(executor: str) -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=ASSETS,
        jobs=[dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.assets(*ASSETS))],
        resources=resources(Environment.read()),
        executor=executor_named(executor),
    )
    return defs.resolve_job_def(JOB_NAME)


def celery_backfill() -> dg.JobDefinition:
    """The whole pipeline, its steps sent to Celery workers."""
    return _backfill_job("celery")


def in_process_backfill() -> dg.JobDefinition:
    """The same pipeline in the process that launches it (the code location's default)."""
    return _backfill_job("in_process")


def main(argv: list[str] | None = None) -> int:
    """Run the Celery backfill once on the instance in DAGSTER_HOME, as a separate process would launch it.

        python -m cio_assets_tests.scale_out_job RANGE_START RANGE_END EXECUTOR_CONFIG_JSON

    Imports everything, prints "ready" and waits for a line on stdin, so a caller can start several runs at
    the same moment. Then prints the run id; exits 0 when the run succeeded, 1 when it failed."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(main.__doc__, file=sys.stderr)
        return 2
    start, end, executor_config = args
    print("ready", flush=True)
    sys.stdin.readline()
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            dg.reconstructable(celery_backfill),
            instance=instance,
            run_config={"execution": {"config": json.loads(executor_config)}},
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
        )
    print(result.run_id, flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
