"""Checks on the two sync assets, `customerio_people` and `customerio_events`.

- `<asset>_delivery_rates` (WARN): in the asset's latest sync (the one in this run when the run
  materialised it), the share of items refused (locally, or by Customer.io's 207/400) against
  `CIO_CHECK_MAX_REFUSAL_RATE`, and the shares of requests answered 429 and 5xx against
  `CIO_CHECK_MAX_THROTTLED_RATE` and `CIO_CHECK_MAX_SERVER_ERROR_RATE`. A dry run has no HTTP
  answers: only its (local) refusals are judged.
- `<asset>_stale_refusals` (ERROR, not blocking): refused or waiting items in the ledger
  (`cio_delivery_rejections`) first refused more than `CIO_CHECK_STALE_REFUSAL_DAYS` days ago.
  They are retried on every run, so one still there after days will not fix itself: Customer.io
  does not hold that person's or event's data. Not blocking, since stopping the sync would hold
  back everyone else too.
"""

from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, func, select

from cio_assets.defs.metadata import markdown_table
from cio_assets.defs.resources import Settings, StateDatabase
from cio_assets.delivery.deliver import (
    DRY_RUN,
    ITEMS_PLANNED,
    ITEMS_SENT,
    REFUSAL_RATE,
    REFUSED,
    REQUESTS,
    SERVER_ERROR_RATE,
    SERVER_ERRORS,
    THROTTLED,
    THROTTLED_RATE,
    delivery_rates,
)
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.schema.state import delivery_rejections
from cio_assets.tracking.refusals import EVENT, PERSON

SYNC_KINDS = {"customerio_people": PERSON, "customerio_events": EVENT}
SAMPLE_ROWS = 20
DAY_SECONDS = 86_400


def rates_check_name(asset: str) -> str:
    return f"{asset}_delivery_rates"


def stale_check_name(asset: str) -> str:
    return f"{asset}_stale_refusals"


def latest_materialization(instance: dg.DagsterInstance, asset: str) -> tuple[str, dict[str, object]] | None:
    """(run id, metadata values) of the asset's latest materialisation, if any."""
    page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1)
    if not page.records or page.records[0].asset_materialization is None:
        return None
    record = page.records[0]
    return record.run_id, {k: v.value for k, v in record.asset_materialization.metadata.items()}


def rates_result(asset: str, sync: tuple[str, Mapping[str, object]] | None, settings: Settings) -> dg.AssetCheckResult:
    """WARN when the latest sync's refusal, 429 or 5xx share passes its maximum."""
    name = rates_check_name(asset)
    if sync is None:
        return dg.AssetCheckResult(
            check_name=name,
            asset_key=asset,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{asset} has not synced yet: nothing to judge",
        )
    run_id, metadata = sync
    dry_run = bool(metadata.get(DRY_RUN, False))
    items = int(metadata.get(ITEMS_PLANNED if dry_run else ITEMS_SENT, 0) or 0)  # type: ignore[arg-type]
    refused = int(metadata.get(REFUSED, 0) or 0)  # type: ignore[arg-type]
    requests = int(metadata.get(REQUESTS, 0) or 0)  # type: ignore[arg-type]
    throttled = int(metadata.get(THROTTLED, 0) or 0)  # type: ignore[arg-type]
    server_errors = int(metadata.get(SERVER_ERRORS, 0) or 0)  # type: ignore[arg-type]
    rates = delivery_rates(items, refused, requests, throttled, server_errors)
    limits = {
        REFUSAL_RATE: settings.check_max_refusal_rate,
        THROTTLED_RATE: settings.check_max_throttled_rate,
        SERVER_ERROR_RATE: settings.check_max_server_error_rate,
    }
    judged = [REFUSAL_RATE] if dry_run else list(limits)
    over = [f"{key} {rates[key]:.2%} > {limits[key]:.2%}" for key in judged if rates[key] > limits[key]]
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=asset,
        passed=not over,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            ("Refusals" if dry_run else "Refusals, 429s and 5xx") + " within their thresholds"
            if not over
            else "Above threshold: " + "; ".join(over)
        ),
        metadata={
            "sync_run_id": run_id,
            "dry_run": dry_run,
            "items_planned" if dry_run else "items_delivered": items,
            "refused": refused,
            **({} if dry_run else {REQUESTS: requests, THROTTLED: throttled, SERVER_ERRORS: server_errors}),
            **{key: rates[key] for key in judged},
            **{f"max_{key}": float(limits[key]) for key in judged},
        },
    )


def read_stale_refusals(conn: Connection, kind: str, before: int) -> tuple[int, int, pd.DataFrame]:
    """(pending refusals, of which first refused before `before`, a sample of those, oldest first)."""
    d = delivery_rejections.c
    counted = select(func.count()).select_from(delivery_rejections).where(d.kind == kind)
    stale = d.first_rejected_at < before
    pending = conn.execute(counted).scalar_one()
    count = conn.execute(counted.where(stale)).scalar_one()
    result = conn.execute(
        select(d.item_key, d.reason, d.attempts, d.first_rejected_at, d.last_rejected_at)
        .where(d.kind == kind, stale)
        .order_by(d.first_rejected_at, d.item_key)
        .limit(SAMPLE_ROWS)
    )
    sample = pd.DataFrame(
        result.fetchall(), columns=["item_key", "reason", "attempts", "first_rejected_at", "last_rejected_at"]
    )
    return int(pending), int(count), sample


def stale_result(
    asset: str, pending: int, stale: int, sample: pd.DataFrame, max_age_days: int, now: int
) -> dg.AssetCheckResult:
    """ERROR when any refusal has been pending longer than `max_age_days`."""
    shown = sample.assign(
        first_rejected=[_iso(t) for t in sample["first_rejected_at"]],
        days_pending=[round((now - int(t)) / DAY_SECONDS, 1) for t in sample["first_rejected_at"]],
    ).drop(columns=["first_rejected_at", "last_rejected_at"])
    oldest = float(shown["days_pending"].max()) if not shown.empty else 0.0
    return dg.AssetCheckResult(
        check_name=stale_check_name(asset),
        asset_key=asset,
        passed=stale == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"No refusal pending longer than {max_age_days} days"
            if stale == 0
            else f"{stale} items refused more than {max_age_days} days ago are still not in Customer.io"
        ),
        metadata={
            "pending_refusals": pending,
            "stale_refusals": stale,
            "oldest_days_pending": oldest,
            "max_age_days": max_age_days,
            "stale_sample": markdown_table(shown),
        },
    )


def _iso(unix_seconds: object) -> str:
    return datetime.fromtimestamp(int(unix_seconds), UTC).isoformat(timespec="seconds")  # type: ignore[arg-type]


def _delivery_checks(asset: str) -> dg.AssetChecksDefinition:
    kind = SYNC_KINDS[asset]

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                rates_check_name(asset),
                asset=asset,
                description=(
                    "Warns when the latest sync refused more than CIO_CHECK_MAX_REFUSAL_RATE of its items, or "
                    "when more than CIO_CHECK_MAX_THROTTLED_RATE / CIO_CHECK_MAX_SERVER_ERROR_RATE of its "
                    "requests were answered 429 / 5xx."
                ),
            ),
            dg.AssetCheckSpec(
                stale_check_name(asset),
                asset=asset,
                description=(
                    f"Error when an item ({kind}) refused or waiting in cio_delivery_rejections was first refused "
                    "more than CIO_CHECK_STALE_REFUSAL_DAYS days ago: retries have not fixed it."
                ),
            ),
        ],
        name=f"{asset}_delivery_checks",
    )
    def checks(context: dg.AssetCheckExecutionContext, state: StateDatabase, settings: Settings):
        now = unix(utc_now())
        yield rates_result(asset, latest_materialization(context.instance, asset), settings)
        with state.connect() as conn:
            pending, stale, sample = read_stale_refusals(
                conn, kind, now - settings.check_stale_refusal_days * DAY_SECONDS
            )
        yield stale_result(asset, pending, stale, sample, settings.check_stale_refusal_days, now)

    return checks


customerio_people_checks = _delivery_checks("customerio_people")
customerio_events_checks = _delivery_checks("customerio_events")
