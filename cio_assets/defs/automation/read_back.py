"""Read each people sync back from Customer.io in a run of its own, once that sync's run has delivered.

The read-back (`customerio_people_reconciled`, `defs/checks/reconcile.py`) reads people back through the App API
and, when some differ, waits `CIO_RECONCILE_SETTLE_SECONDS` (30 s by default) for Customer.io to apply identifies
before it reads them again. Inside a `refresh` run that wait would hold up `customerio_events`, which Dagster
starts only after the checks on `customerio_people`; so the check is not in `refresh` but in `read_back`
(`job.py`), which the `read_back_after_sync` sensor launches.

Each tick (every `INTERVAL_SECONDS`) looks up the latest `customerio_people` materialization. When the run that
made it is no longer queued or running (its event sync has delivered too, or the run has ended without it), and
it is not the sync the cursor names, the tick requests one `read_back` run keyed by that sync's run id and moves
the cursor to it: a sync is read back once, and a run key makes sure of it even when a cursor is lost. The check
then reads back the latest people sync, as it always did. A tick skips, saying why, when:
- there is nothing to read back: a dry run, no App API key, no people sync yet, a sync that was a dry run
  (`skip_reason` in `defs/checks/reconcile.py`, the check's own reasons);
- the latest sync's run is still queued or running;
- that sync was read back already;
- a `read_back` run is still queued or running: one read-back at a time (the App API allows 10 requests/s per
  key), and the first tick after it reads back the latest sync, not every sync that finished meanwhile.
In all these the cursor stays where it was.

What the read-back finds never changes when, or whether, a sync runs: the sensor only watches the syncs.
"""

from __future__ import annotations

import dagster as dg

from cio_assets.config import AutomationSettings
from cio_assets.defs.automation.job import read_back
from cio_assets.defs.automation.sensor import IN_FLIGHT
from cio_assets.defs.checks.reconcile import latest_people_sync, skip_reason
from cio_assets.defs.resources import CustomerIO

# Seconds between ticks. A read-back is no hurry: Customer.io applies identifies asynchronously, so reading a
# sync back up to half a minute after its run finished is, if anything, kinder to the comparison; and a tick
# costs two look-ups in the run storage.
INTERVAL_SECONDS = 30

# The tag on each `read_back` run naming the people sync it was launched for (also its run key).
SYNC_RUN_TAG = "cio/people_sync_run"


def _in_flight(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.status in IN_FLIGHT else None


def _reading_back(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """A queued or running `read_back` run, if any."""
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=read_back.name, statuses=IN_FLIGHT), limit=1)
    return records[0].dagster_run if records else None


def read_back_sensor(automation: AutomationSettings) -> dg.SensorDefinition:
    @dg.sensor(
        job=read_back,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING if automation.running else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Every {INTERVAL_SECONDS} seconds: once the run of the latest people sync has finished (both syncs "
            "delivered), launch read_back for it, once per sync, so the read-back and its settle wait "
            "(CIO_RECONCILE_SETTLE_SECONDS) never hold up delivery. One read-back at a time. Skips, saying why, "
            "in a dry run, without CIO_APP_API_KEY, before the first delivering people sync and while that sync's "
            "run is going. Runs by default; CIO_AUTOMATION=off (as in `make dev`) leaves it for the UI to turn on."
        ),
    )
    def read_back_after_sync(context: dg.SensorEvaluationContext, customerio: CustomerIO) -> dg.SensorResult:
        sync = latest_people_sync(context.instance)
        reason = skip_reason(customerio, sync)
        if sync is None or reason is not None:
            return dg.SensorResult(skip_reason=f"Nothing to read back: {reason}")
        if sync.run_id == context.cursor:
            return dg.SensorResult(
                skip_reason=f"The latest people sync (run {sync.run_id}) was read back already: waiting for the next"
            )
        if running := _in_flight(context.instance, sync.run_id):
            return dg.SensorResult(
                skip_reason=(
                    f"The latest people sync's run {sync.run_id} is {running.status.value.lower()}: it is read back "
                    "once that run has finished delivering, so the read-back never holds up its events"
                )
            )
        if busy := _reading_back(context.instance):
            return dg.SensorResult(
                skip_reason=(
                    f"Read-back run {busy.run_id} is {busy.status.value.lower()}: one read-back at a time; the first "
                    f"tick after it reads back the latest people sync (now run {sync.run_id})"
                )
            )
        request = dg.RunRequest(run_key=sync.run_id, tags={SYNC_RUN_TAG: sync.run_id})
        return dg.SensorResult(run_requests=[request], cursor=sync.run_id)

    return read_back_after_sync
