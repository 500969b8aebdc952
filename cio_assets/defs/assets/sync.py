"""What the two sync assets share: the sender from the `customerio` resource, the ledger's continuity, and the
sync's metadata (`delivery/stream.py` does the syncing)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from cio_assets.defs.metadata import add_partition_metadata, json_counts, markdown_table
from cio_assets.defs.resources import CustomerIO, StateDatabase
from cio_assets.delivery import ledger
from cio_assets.delivery.deliver import (
    DRY_RUN,
    ITEMS_PLANNED,
    ITEMS_SENT,
    REFUSAL_RATE,
    REFUSED,
    REQUESTS,
    SERVER_ERRORS,
    THROTTLED,
    DeliveryReport,
    Sender,
    delivery_rates,
)
from cio_assets.delivery.stream import RETRIED, SyncStream, ledger_problem, sync
from cio_assets.lib.timestamps import unix, utc_now

LEDGER_ID = "ledger_id"
WAITED_FOR_TURN = "waited_for_turn_s"
# How far back the instance is searched for the ledger that delivered last.
_LEDGER_SEARCH_LIMIT = 1000


def sender(customerio: CustomerIO, context: dg.AssetExecutionContext) -> Sender:
    """Customer.io, or (a dry run) one outbox file per asset and run, so a dry run's plan can be read on its own."""
    asset = context.assets_def.key.to_python_identifier()
    outbox = Path(customerio.outbox_dir) / f"{asset}-{context.run.run_id}.jsonl"
    return Sender(customerio.sends, outbox, customerio.workspace, customerio.client)


def run_sync(
    context: dg.AssetExecutionContext, stream: SyncStream, state: StateDatabase, customerio: CustomerIO
) -> dg.MaterializeResult:
    """Check the ledger, sync the stream, and describe the run: its figures per day and for the whole run."""
    ledger_metadata = check_ledger(context, state, customerio)
    outcome = sync(stream, state.database, sender(customerio, context), context.log.info)
    add_partition_metadata(context, stream.day_figures())
    return dg.MaterializeResult(
        metadata={
            **stream.metadata(),
            RETRIED: stream.counts[RETRIED],
            **delivery_metadata(outcome.report),
            **ledger_metadata,
            **({WAITED_FOR_TURN: outcome.waited} if customerio.sends else {}),
            "duration_s": outcome.seconds,
        }
    )


def check_ledger(context: dg.AssetExecutionContext, state: StateDatabase, customerio: CustomerIO) -> dict[str, object]:
    """Refuse to deliver from a ledger other than the one that delivered before (lost or recreated)."""
    if not customerio.sends:
        return {}
    with state.begin() as conn:
        ledger_id, created_at = ledger.identity(conn, unix(utc_now()))
    before = _last_delivering_ledger(context.instance, context.asset_key)
    asset = context.asset_key.to_user_string()
    problem = ledger_problem(ledger_id, created_at, before, asset, customerio.accept_new_ledger)
    if problem is not None and before is not None:
        raise dg.Failure(description=problem, metadata={"ledger_id": ledger_id, "previous_ledger_id": before[0]})
    if before is not None and before[0] != ledger_id:
        context.log.warning(f"Delivering from a new ledger {ledger_id} (was {before[0]}): CIO_ACCEPT_NEW_LEDGER=1")
    return {LEDGER_ID: ledger_id}


def _last_delivering_ledger(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> tuple[str, str] | None:
    """(ledger id, run id) recorded by the newest materialization that delivered, if any."""
    cursor = None
    for _ in range(0, _LEDGER_SEARCH_LIMIT, 100):
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key), limit=100, cursor=cursor)
        for record in page.records:
            materialization = record.asset_materialization
            if materialization is not None and LEDGER_ID in materialization.metadata:
                return str(materialization.metadata[LEDGER_ID].value), record.run_id
        if not page.has_more:
            return None
        cursor = page.cursor
    return None


def delivery_metadata(report: DeliveryReport) -> dict[str, object]:
    """What a delivery did, as the UI shows it and the delivery checks read it: a dry run's counts say "planned"
    and carry no HTTP counters; a real run's carry them, and the rates the checks judge."""
    rejections = markdown_table(pd.DataFrame(report.rejection_sample, columns=["key", "reason"]))
    refused = sum(report.rejected.values())
    common: dict[str, object] = {
        DRY_RUN: report.dry_run,
        **({"outbox": dg.MetadataValue.path(report.outbox)} if report.outbox else {}),
        REFUSED: refused,
        "rejected_by_reason": json_counts(report.rejected),
        "rejection_sample": rejections,
    }
    if report.dry_run:  # nothing was sent: no HTTP counters, and every count says "planned"
        return {
            **common,
            ITEMS_PLANNED: report.sent,
            "batches": report.batches,
            REFUSAL_RATE: delivery_rates(report.sent, refused, 0, 0, 0)[REFUSAL_RATE],
            "planning_s": report.seconds,
        }
    http = {
        REQUESTS: report.http.get("requests", 0),
        "bytes_sent": report.http.get("bytes_sent", 0),
        "retries": report.http.get("retries", 0),
        THROTTLED: report.http.get("throttled", 0),
        SERVER_ERRORS: report.http.get("server_errors", 0),
        "transport_errors": report.http.get("transport_errors", 0),
    }
    return {
        **common,
        ITEMS_SENT: report.sent,
        "batches": report.batches,
        **http,
        **delivery_rates(report.sent, refused, http[REQUESTS], http[THROTTLED], http[SERVER_ERRORS]),
        "delivery_s": report.seconds,
    }
