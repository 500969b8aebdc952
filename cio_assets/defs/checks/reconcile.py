"""`customerio_people_reconciled` (ERROR): after a people sync, Customer.io's profiles hold what the ledger says.

`CIO_RECONCILE_SAMPLE` people are read back through the App API and compared attribute by attribute with the
people ledger (`delivery/reconcile.py` says whom, and how values compare). Skipped, not passed, when there is
nothing to read back: a dry run, no App API key, no people sync yet.

It runs in a run of its own, the `read_back` job, launched after each sync's run by the `read_back_after_sync`
sensor (`defs/automation/read_back.py`): Dagster starts `customerio_events` only after the checks on
`customerio_people` in the same run, and the read-back may wait `CIO_RECONCILE_SETTLE_SECONDS`. `refresh` leaves it
out; a run that selects `customerio_people` by hand (`dagster asset materialize --select '*'`, the UI's
Materialize) brings in every check on it, so there the check skips, naming `read_back`, rather than hold up that
run's events.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from cio_assets.defs.metadata import markdown_table
from cio_assets.defs.resources import CustomerIO, StateDatabase
from cio_assets.delivery import ledger
from cio_assets.delivery.reconcile import PROFILE, Reading, Sample, choose_people, read_back
from cio_assets.lib.timestamps import unix, utc_now

CHECK_NAME = "customerio_people_reconciled"
PEOPLE_ASSET = dg.AssetKey("customerio_people")


@dataclass(frozen=True)
class PeopleSync:
    run_id: str
    started_at: int  # Unix seconds: the run's start
    dry_run: bool


def latest_people_sync(instance: dg.DagsterInstance) -> PeopleSync | None:
    """The run of the latest `customerio_people` materialization, if any."""
    entry = instance.get_latest_materialization_event(PEOPLE_ASSET)
    if entry is None:
        return None
    record = instance.get_run_record_by_id(entry.run_id)
    if record is None:
        started = entry.timestamp  # the run was deleted: its materialization's time is the best bound left
    else:
        started = record.start_time if record.start_time is not None else record.create_timestamp.timestamp()
    materialization = entry.asset_materialization
    dry_run = materialization is not None and bool(getattr(materialization.metadata.get("dry_run"), "value", False))
    return PeopleSync(entry.run_id, int(started), dry_run)


def syncs_people(job: dg.JobDefinition) -> bool:
    """Whether a run of `job` materialises `customerio_people`, so that its `customerio_events` would wait for this
    check."""
    return PEOPLE_ASSET in set(job.asset_layer.executable_asset_keys)


SYNCING_RUN = (
    "this run syncs customerio_people, and its customerio_events would wait for the read-back: people are read "
    "back after the run, in a run of the read_back job (the read_back_after_sync sensor launches it)"
)


def skip_reason(customerio: CustomerIO, sync: PeopleSync | None) -> str | None:
    """Why there is nothing to read back, or None when the check can run."""
    if not customerio.sends:
        return "dry run: nothing is delivered to Customer.io (CIO_DRY_RUN, or no Track credentials)"
    if not customerio.reads_back:
        return "CIO_APP_API_KEY is not set: people cannot be read back from Customer.io's App API"
    if sync is None:
        return "customerio_people has never been materialized: nothing was delivered yet"
    if sync.dry_run:
        return f"the latest people sync (run {sync.run_id}) was a dry run: it delivered nothing"
    return None


def reconcile_metadata(sample: Sample, reading: Reading, sync: PeopleSync) -> dict[str, object]:
    table = pd.DataFrame(
        [(m.person_id, m.attribute, m.ours, m.theirs) for m in reading.mismatches],
        columns=["person", "attribute", "ours", "theirs"],
    )
    return {
        "people_checked": len(reading.ours),
        "people_checked_changed": len(sample.changed),
        "people_checked_random": len(sample.others),
        "people_changed_by_sync": sample.changed_total,
        "people_delivered": sample.delivered,
        "attributes_compared": sum(len(attributes) for attributes in reading.ours.values()),
        "mismatches": len(reading.mismatches),
        "people_mismatched": len({m.person_id for m in reading.mismatches}),
        "profiles_missing": sum(m.attribute == PROFILE for m in reading.mismatches),
        "people_rechecked": reading.rechecked,
        "mismatch_table": markdown_table(table, limit=max(len(table), 1)),
        "unsubscribed_in_customerio": len(reading.unsubscribed_themselves),
        "unsubscribed_in_customerio_people": markdown_table(
            pd.DataFrame({"person": reading.unsubscribed_themselves}),
            limit=max(len(reading.unsubscribed_themselves), 1),
        ),
        "app_api_requests": reading.requests,
        "app_api_throttled_429": reading.throttled,
        "people_sync_run": sync.run_id,
    }


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=PEOPLE_ASSET,
            description=(
                "Customer.io's profiles hold what the people ledger says was delivered: CIO_RECONCILE_SAMPLE people "
                "read back through the App API (the latest sync's first), every mismatch listed."
            ),
        )
    ],
    # A subsettable check may emit nothing: a run that skips it (a dry run, no App API key) shows it as
    # Skipped, not as passed.
    can_subset=True,
)
def customerio_people_reconciled(
    context: dg.AssetCheckExecutionContext, state: StateDatabase, customerio: CustomerIO
) -> Iterator[dg.AssetCheckResult]:
    if syncs_people(context.job_def):
        context.log.info(f"{CHECK_NAME} skipped: {SYNCING_RUN}")
        return
    sync = latest_people_sync(context.instance)
    reason = skip_reason(customerio, sync)
    if sync is None or reason is not None:
        context.log.info(f"{CHECK_NAME} skipped: {reason}")
        return
    with state.connect() as conn:
        sample = choose_people(conn, sync.started_at, customerio.reconcile_sample, seed=sync.run_id)
        held = ledger.delivered_people(conn, sample.people)
    if not held:
        context.log.info(f"{CHECK_NAME} skipped: the people ledger is empty, nothing was delivered yet")
        return
    ours = {person_id: attributes for person_id, (attributes, _) in held.items()}
    reading = read_back(customerio.app_client(), ours, customerio.reconcile_settle_seconds)
    if reading.unsubscribed_themselves:
        with state.begin() as conn:
            ledger.record_unsubscribed_themselves(conn, reading.unsubscribed_themselves, unix(utc_now()))
        context.log.warning(
            f"{len(reading.unsubscribed_themselves)} people unsubscribed in Customer.io without the shop's record "
            f"saying so (an unsubscribe link), e.g. {', '.join(reading.unsubscribed_themselves[:5])}: they are never "
            "re-subscribed; record their opt-out in the shop (listed in cio_unsubscribed_in_customerio)"
        )
    people = len({m.person_id for m in reading.mismatches})
    context.log.info(f"{CHECK_NAME}: {len(reading.mismatches)} mismatches in {people} of {len(held)} people read back")
    yield dg.AssetCheckResult(
        check_name=CHECK_NAME,
        asset_key=PEOPLE_ASSET,
        passed=not reading.mismatches,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(reading.mismatches)} attribute(s) of {people} of {len(held)} people read back differ from what "
            "the ledger says Customer.io holds"
            if reading.mismatches
            else f"all {len(held)} people read back hold what the ledger says was delivered"
        ),
        metadata=reconcile_metadata(sample, reading, sync),
    )
