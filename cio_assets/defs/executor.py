"""Where a run's steps execute: the executor CIO_EXECUTOR names."""

from __future__ import annotations

import dagster as dg

from cio_assets.config import AutomationSettings


def executor_named(name: str) -> dg.ExecutorDefinition:
    """The executor `CIO_EXECUTOR` names (in_process, multiprocess or celery). Celery is imported only when chosen:
    it comes with the optional scale-out extra."""
    if name == "celery":
        from dagster_celery import celery_executor
        from dagster_celery.executor import CELERY_CONFIG

        def with_broker(config: dict) -> dict:
            # A broker named in the run's `execution: config:` wins; otherwise CIO_CELERY_BROKER, read in the
            # process that runs the run, so its password never becomes part of a run's stored config.
            return {**config, "broker": config.get("broker") or AutomationSettings.from_env().celery_broker or None}

        # The same config as dagster-celery's own (backend, queue through config_source, retries), so a run
        # (or a schedule's run request) can still set any of it; the deployment page shows the workers' side.
        return celery_executor.configured(with_broker, config_schema=CELERY_CONFIG)
    if name == "multiprocess":
        return dg.multiprocess_executor
    # Steps here are database-bound and short; the multiprocess executor's ~4 s start-up per step
    # would dominate a run, so by default everything runs in one process.
    return dg.in_process_executor
