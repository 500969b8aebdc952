"""The `customerio_people` asset: identify only the people whose attributes changed, only those keys.

For each person in the partition range, the latest snapshot row is compared with the ledger (what
Customer.io already holds):
- no ledger entry: created, every non-null attribute is sent;
- some values differ: updated, only the changed keys are sent (a value that became null is sent as
  an empty string, which clears it in Customer.io);
- nothing differs: unchanged, nothing is sent;
- the ledger holds a newer snapshot: skipped, so an old partition re-run or a backfill never rolls
  newer state (say `last_order_at`) back.
Each identify carries `timestamp` = the snapshot's as_of, so Customer.io orders updates too.
People refused earlier are retried on every run, until they succeed or a newer snapshot replaces them.
"""

import math
import time
from collections import Counter
from dataclasses import dataclass

import dagster as dg
import pandas as pd
from sqlalchemy import select

from cio_assets.customerio.batching import Item
from cio_assets.partitions import PartitionRange, daily_partitions
from cio_assets.resources import CustomerIO, StateDatabase
from cio_assets.settings import Settings
from cio_assets.state.tables import ATTRIBUTE_COLUMNS, attribute_snapshot
from cio_assets.sync import ledger
from cio_assets.sync.deliver import deliver, delivery_metadata, outbox_path
from cio_assets.timestamps import unix, utc_now

CREATED, UPDATED, UNCHANGED, OLDER = "created", "updated", "unchanged", "skipped_older"


@dataclass(frozen=True)
class Change:
    person_id: str
    kind: str
    as_of: int
    attributes: dict  # full state after this change
    send: dict  # the keys to send


def identify(change: Change) -> Item:
    return Item(
        key=change.person_id,
        payload={
            "type": "person",
            "identifiers": {"id": change.person_id},
            "action": "identify",
            "timestamp": change.as_of,
            "attributes": change.send,
        },
    )


def plan_change(person_id: str, as_of: int, attributes: dict, delivered: tuple[dict, int] | None) -> Change:
    if delivered is None:
        present = {k: v for k, v in attributes.items() if v is not None}
        return Change(person_id, CREATED, as_of, attributes, present)
    held, held_as_of = delivered
    if as_of < held_as_of:
        return Change(person_id, OLDER, as_of, held, {})
    changed = {k: ("" if v is None else v) for k, v in attributes.items() if held.get(k) != v}
    return Change(person_id, UPDATED if changed else UNCHANGED, as_of, attributes, changed)


def latest_rows(state: StateDatabase, days: list[str]) -> pd.DataFrame:
    """Each person's latest snapshot row within the days (older ones would be superseded anyway)."""
    with state.connect() as conn:
        result = conn.execute(select(attribute_snapshot).where(attribute_snapshot.c.day.in_(days)))
        # object dtype: a nullable integer column must not turn into floats (Customer.io wants Unix seconds).
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()), dtype=object)
    return frame.sort_values(["as_of", "day"]).drop_duplicates("person_id", keep="last").reset_index(drop=True)


def _plain(value: object) -> object:
    """Database values as JSON-ready Python values (no numpy scalars, no NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


@dg.asset(
    key="customerio_people",
    group_name="customerio",
    kinds={"customerio"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["attribute_snapshot"],
    pool="customerio_api",
    description=__doc__,
)
def customerio_people(
    context: dg.AssetExecutionContext, state: StateDatabase, customerio: CustomerIO, settings: Settings
) -> dg.MaterializeResult:
    started = time.monotonic()
    prange = PartitionRange.from_context(context)
    rows = latest_rows(state, prange.keys)
    with state.connect() as conn:
        retries = ledger.pending_rejections(conn, ledger.PERSON)
        held = ledger.delivered_people(conn, [*rows["person_id"], *(key for key, _, _ in retries)])

    changes = [
        plan_change(
            row.person_id,
            int(row.as_of),
            {c: _plain(getattr(row, c)) for c in ATTRIBUTE_COLUMNS},
            held.get(row.person_id),
        )
        for row in rows.itertuples(index=False)
    ]
    kinds = Counter(change.kind for change in changes)
    to_send = {c.person_id: c for c in changes if c.kind in (CREATED, UPDATED)}
    # A newer snapshot in this run, or a newer state already delivered, replaces an earlier refusal.
    superseded = [key for key, _, as_of in retries if key in to_send or (key in held and held[key][1] > as_of)]
    retry_items = [Item(key, payload) for key, payload, _ in retries if key not in set(superseded)]
    if superseded:
        with state.begin() as conn:
            ledger.clear_rejections(conn, ledger.PERSON, superseded)
    full_state = {pid: (c.attributes, c.as_of) for pid, c in to_send.items()}
    context.log.info(f"people: {dict(kinds)}; retrying {len(retry_items)} earlier refusals")

    def on_delivered(items: list[Item]) -> None:
        now = unix(utc_now())
        rows_to_record = [_ledger_row(item, full_state, held) for item in items]
        with state.begin() as conn:
            ledger.record_people(conn, rows_to_record, now)
            ledger.clear_rejections(conn, ledger.PERSON, [item.key for item in items])

    def on_rejected(refused: list[tuple[Item, str]]) -> None:
        now = unix(utc_now())
        with state.begin() as conn:
            ledger.record_rejections(
                conn, ledger.PERSON, [(i.key, i.payload, int(i.payload["timestamp"]), r) for i, r in refused], now
            )

    items = [identify(change) for change in to_send.values()] + retry_items
    report = deliver(items, customerio, outbox_path(customerio, context), on_delivered, on_rejected, context.log.info)
    return dg.MaterializeResult(
        metadata={
            "people_created": kinds[CREATED],
            "people_updated": kinds[UPDATED],
            "people_unchanged": kinds[UNCHANGED],
            "people_skipped_older": kinds[OLDER],
            "retried_refusals": len(retry_items),
            **delivery_metadata(report),
            "duration_s": round(time.monotonic() - started, 2),
        }
    )


def _ledger_row(
    item: Item, full_state: dict[str, tuple[dict, int]], held: dict[str, tuple[dict, int]]
) -> tuple[str, dict, int]:
    """What Customer.io holds for the person once this item landed."""
    if item.key in full_state:
        attributes, as_of = full_state[item.key]
        return item.key, attributes, as_of
    previous = held.get(item.key, ({}, 0))[0]
    sent = {k: (None if v == "" else v) for k, v in item.payload["attributes"].items()}
    return item.key, {**previous, **sent}, int(item.payload["timestamp"])
