"""The read-back runs in a run of its own, after the sync's run has delivered: the `refresh` job leaves the
reconciliation check out, the `read_back` job runs it alone, and the `read_back_after_sync` sensor launches it once
per finished people sync. Its settle wait never holds up an event (real MariaDB, the fake Customer.io over HTTP)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

from cio_assets.defs.automation.job import read_back, refresh
from cio_assets.defs.automation.read_back import INTERVAL_SECONDS, SYNC_RUN_TAG
from cio_assets.defs.checks.reconcile import CHECK_NAME, PEOPLE_ASSET, SYNCING_RUN, customerio_people_reconciled
from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.definitions import defs, read_back_after_sync

CHECK_KEY = dg.AssetCheckKey(PEOPLE_ASSET, CHECK_NAME)
EVENTS_ASSET = dg.AssetKey("customerio_events")
SETTLE_SECONDS = 3.0  # the read-back's wait before it reads again the people that differ


# --- the jobs ----------------------------------------------------------------------------------------------


def test_refresh_leaves_the_read_back_out_and_read_back_runs_it_alone():
    delivering = defs.resolve_job_def(refresh.name)
    reading = defs.resolve_job_def(read_back.name)

    assert CHECK_KEY not in delivering.asset_layer.asset_graph.asset_check_keys
    assert CHECK_NAME not in delivering.graph.node_names()  # no step of a refresh run reads back
    assert {"customerio_people", "customerio_events"} <= {
        key.to_user_string() for key in delivering.asset_layer.executable_asset_keys
    }
    assert reading.asset_layer.asset_graph.asset_check_keys == {CHECK_KEY}
    assert reading.asset_layer.executable_asset_keys == set()  # it materialises nothing
    assert reading.graph.node_names() == [CHECK_NAME]


def test_the_read_back_sensor_launches_read_back_every_half_minute_and_runs_by_default():
    # The suite runs without CIO_AUTOMATION, as a deployment would.
    assert read_back_after_sync.name == "read_back_after_sync"
    assert read_back_after_sync.job_name == read_back.name
    assert read_back_after_sync.minimum_interval_seconds == INTERVAL_SECONDS == 30
    assert read_back_after_sync.default_status == dg.DefaultSensorStatus.RUNNING
    assert "read_back_after_sync" in {sensor.name for sensor in defs.sensors}


# --- the sensor, on syncs recorded in a throwaway instance -------------------------------------------------


@dataclass(frozen=True)
class Sync:
    """A refresh run that materialised customerio_people, as the instance records it."""

    status: dg.DagsterRunStatus
    dry_run: bool = False  # the sync's own materialization says it delivered nothing
    read_back: bool = False  # the cursor names it: its read-back was launched already
    reading_back: bool = False  # a read_back run (of an earlier sync) is still going


def _record(instance: dg.DagsterInstance, sync: Sync) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name=refresh.name, run_id=run_id, status=sync.status))
    materialization = dg.AssetMaterialization(PEOPLE_ASSET, metadata={"dry_run": sync.dry_run})
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=refresh.name,
        event_specific_data=StepMaterializationData(materialization),
    )
    instance.report_dagster_event(event, run_id=run_id)
    if sync.reading_back:
        instance.add_run(
            dg.DagsterRun(job_name=read_back.name, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED)
        )
    return run_id


def _tick(instance: dg.DagsterInstance, customerio: CustomerIO, cursor: str | None) -> dg.SensorExecutionData:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"customerio": customerio}, repository_def=defs.get_repository_def()
    ) as context:
        return read_back_after_sync.evaluate_tick(context)


LIVE = {"site_id": "site", "api_key": "track-key", "app_api_key": "app-key"}


@pytest.mark.parametrize(
    ("sync", "options", "skipped_because"),
    [
        # nothing was synced yet: nothing to read back
        pytest.param(None, {}, "customerio_people has never been materialized", id="no_sync_yet"),
        # the sync's run is still going (its events may not have gone yet): the read-back waits for it
        pytest.param(
            Sync(dg.DagsterRunStatus.STARTED),
            {},
            "is started: it is read back once that run has finished",
            id="started",
        ),
        # created and not started yet counts as going too
        pytest.param(Sync(dg.DagsterRunStatus.NOT_STARTED), {}, "is not_started", id="not_started"),
        # a finished sync: exactly one read_back run, keyed by the sync's run id
        pytest.param(Sync(dg.DagsterRunStatus.SUCCESS), {}, None, id="finished"),
        # a run that failed after the people sync delivered (the event sync failed) is read back too
        pytest.param(Sync(dg.DagsterRunStatus.FAILURE), {}, None, id="failed_after_the_people_sync"),
        # the same sync once more: it was read back already
        pytest.param(Sync(dg.DagsterRunStatus.SUCCESS, read_back=True), {}, "was read back already", id="read_back"),
        # an earlier read-back still going: one at a time, the next tick reads back the latest sync
        pytest.param(
            Sync(dg.DagsterRunStatus.SUCCESS, reading_back=True), {}, "one read-back at a time", id="one_at_a_time"
        ),
        # a dry run delivers nothing, so there is nothing to read back
        pytest.param(
            Sync(dg.DagsterRunStatus.SUCCESS), {"dry_run": True}, "dry run: nothing is delivered", id="dry_run"
        ),
        # live delivery, but no App API key to read with
        pytest.param(
            Sync(dg.DagsterRunStatus.SUCCESS), {"app_api_key": ""}, "CIO_APP_API_KEY is not set", id="no_app_api_key"
        ),
        # the latest sync was made in a dry run: it delivered nothing
        pytest.param(Sync(dg.DagsterRunStatus.SUCCESS, dry_run=True), {}, "was a dry run", id="sync_was_a_dry_run"),
    ],
)
def test_the_sensor_reads_back_each_finished_people_sync_once(sync, options, skipped_because):
    with dg.instance_for_test() as instance:
        run_id = _record(instance, sync) if sync else None
        cursor = run_id if sync and sync.read_back else None
        tick = _tick(instance, CustomerIO(**{**LIVE, **options}), cursor)

    if skipped_because is None:
        [request] = tick.run_requests
        assert request.run_key == run_id and request.tags[SYNC_RUN_TAG] == run_id
        assert request.job_name in (None, read_back.name)
        assert tick.cursor == run_id
    else:
        assert tick.run_requests == [] and tick.cursor == cursor  # the cursor stays where it was
        assert skipped_because in (tick.skip_message or ""), tick.skip_message


# --- a run that selects the sync by hand -------------------------------------------------------------------


def test_a_run_that_syncs_people_by_asset_selection_leaves_the_read_back_to_read_back(shop, pipeline, customerio):
    """`dagster asset materialize --select '*'` or the UI's Materialize bring in every check on the assets they
    select, the read-back too: there it skips at once, naming the job that reads back, so the events do not wait."""
    shop.customer(1, email="ada@shop.com", first_name="Ada", created_at="2026-10-01 09:00")
    shop.order(1, total=49.99, paid_at="2026-10-02 10:00")
    live = customerio.resource(
        app_api_key=customerio.fake.app_api_key, app_url=customerio.url, reconcile_settle_seconds=SETTLE_SECONDS
    )

    with dg.instance_for_test() as instance:
        result = pipeline.run(
            partition_range=("2026-10-01", "2026-10-02"),
            assets=[*SYNC, customerio_people_reconciled],
            customerio=live,
            instance=instance,
        )
        messages = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]

    assert result.success and customerio.fake.events  # delivered
    assert [e for e in result.get_asset_check_evaluations() if e.asset_check_key == CHECK_KEY] == []
    assert f"{CHECK_NAME} skipped: {SYNCING_RUN}" in messages
    assert customerio.fake.app_requests == []  # nothing read back, nothing waited for


# --- the settle wait never holds up an event ---------------------------------------------------------------


def test_the_event_sync_has_delivered_before_the_read_back_and_its_settle_wait_begin(shop, pipeline, customerio):
    """Ada's profile is edited in Customer.io behind the pipeline's back, so the read-back finds her different and
    waits SETTLE_SECONDS before reading her again. The sync that precedes it delivers an order of Bob's: that event
    has reached Customer.io, and its materialization is recorded, before the read-back's first read, so before its
    settle wait ends. (When the check ran inside `refresh`, the event sync waited for it.)"""
    shop.customer(1, email="ada@shop.com", first_name="Ada", created_at="2026-10-01 09:00")
    shop.customer(2, email="bob@shop.com", first_name="Bob", created_at="2026-10-01 10:00")
    shop.order(1, total=49.99, paid_at="2026-10-02 10:00")
    live = customerio.resource(
        app_api_key=customerio.fake.app_api_key, app_url=customerio.url, reconcile_settle_seconds=SETTLE_SECONDS
    )
    resources = {
        "settings": Settings(),
        "source": SourceDatabase(url=pipeline.source_url),
        "state": StateDatabase(url=pipeline.state_url),
        "customerio": live,
    }
    delivering = defs.resolve_job_def(refresh.name)
    with dg.instance_for_test() as instance:
        first = delivering.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2026-10-01",
                "dagster/asset_partition_range_end": "2026-10-02",
            },
            resources=resources,
        )
        customerio.fake.corrupt_person("1", first_name="Mallory")
        shop.order(2, total=12.5, paid_at="2026-10-03 10:00")
        sync = delivering.execute_in_process(instance=instance, partition_key="2026-10-03", resources=resources)
        events = instance.get_latest_materialization_event(EVENTS_ASSET)
        bobs_order = [e for e in customerio.fake.events if e["identifiers"]["id"] == "2"]

        tick = _tick(instance, live, cursor=None)
        [request] = tick.run_requests
        reading = defs.resolve_job_def(read_back.name).execute_in_process(
            instance=instance,
            tags=request.tags,
            resources={"state": resources["state"], "customerio": live},
            raise_on_error=False,
        )
        again = _tick(instance, live, cursor=tick.cursor)

    assert first.success and sync.success and reading.success
    assert events is not None and events.run_id == sync.run_id
    assert [e["name"] for e in bobs_order] == ["order_placed"]  # the second sync delivered an event
    # Launched for the sync that delivered it, once.
    assert request.run_key == sync.run_id
    assert again.run_requests == [] and "was read back already" in (again.skip_message or "")
    # The events were delivered, and recorded, before the read-back read anyone, so before its settle wait ended.
    reads = customerio.fake.app_requests
    assert reads and all(events.timestamp < read.received_at for read in reads)
    # The read-back read everyone, found Ada different, waited, and read her again.
    [first_read, second_read] = reads
    assert second_read.received_at - first_read.received_at >= SETTLE_SECONDS - 0.05
    [evaluation] = reading.get_asset_check_evaluations()
    assert evaluation.asset_check_key == CHECK_KEY and not evaluation.passed
    table = evaluation.metadata["mismatch_table"].value
    assert "| 1 | first_name | Ada | Mallory |" in table and "| 2 |" not in table
    assert evaluation.metadata["people_sync_run"].value == sync.run_id
