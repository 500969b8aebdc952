"""Each changed person's attributes as of the end of each day: one authoritative row per person and day.

For every person whose inputs (profile, paid orders, refunds, subscriptions) changed during a day,
one row with their state as of the end of that day, computed from full history. A re-run of a day
writes the same rows, so backfills are safe; the first partition also covers all earlier history.
A person's day whose inputs include a source row set aside by the hygiene rules is held back, and a
row that breaks the contract is held back alone; both are listed in `cio_quarantine`.
"""

import time
from collections import Counter
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from cio_assets.attributes.compute import clip_text_attributes, compute_attributes
from cio_assets.attributes.queries import CHANGE_TABLES, as_of_instants, changed_people, read_history
from cio_assets.attributes.schema import attribute_snapshot_schema
from cio_assets.contract import ContractTally, split_by_contract
from cio_assets.hygiene.rejections import released_rows
from cio_assets.hygiene.rules import Bounds
from cio_assets.identity.lookup import load_resolver, require_identity
from cio_assets.identity.membership import chunk_people, guest_emails
from cio_assets.identity.resolve import EMAIL
from cio_assets.metadata import json_counts
from cio_assets.partitions import PartitionRange, daily_partitions
from cio_assets.resources import SourceDatabase, StateDatabase
from cio_assets.settings import Settings
from cio_assets.sources.assets import source_key
from cio_assets.sources.tables import customers, order_items, orders, refunds, subscriptions
from cio_assets.state import tables as state_tables
from cio_assets.state.writes import insert_frame, replace_days, replace_quarantine
from cio_assets.timestamps import unix, utc_now

ASSET = "attribute_snapshot"
SCHEMA_CHECK = "attribute_snapshot_schema"
COLUMNS = [c.name for c in state_tables.attribute_snapshot.columns]


@dataclass
class SnapshotStats:
    """What the written rows hold, for the UI."""

    people: set[str] = field(default_factory=set)
    rows_by_day: Counter[str] = field(default_factory=Counter)
    nulls: Counter[str] = field(default_factory=Counter)
    eligible: Counter[str] = field(default_factory=Counter)
    without_profile: int = 0

    def add(self, rows: pd.DataFrame) -> None:
        self.people.update(rows["person_id"])
        self.rows_by_day.update(rows["day"])
        self.nulls.update({c: int(n) for c, n in rows.isna().sum().items() if n})
        self.eligible.update({"email": int(rows["email_eligible"].sum()), "sms": int(rows["sms_eligible"].sum())})

    def metadata(self, written: int) -> dict[str, object]:
        return {
            "people": len(self.people),
            "rows_by_day": json_counts(dict(sorted(self.rows_by_day.items()))),
            "without_customer_record": self.without_profile,
            "eligible": json_counts(self.eligible),
            "null_rate": json_counts(
                {c: round(n / written, 4) for c, n in sorted(self.nulls.items())} if written else {}
            ),
        }


@dg.asset(
    key=ASSET,
    group_name="contract",
    kinds={"sql", "pandas"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[
        "identity_map",
        "rejected_rows",
        *(source_key(t) for t in (customers, orders, order_items, refunds, subscriptions)),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            SCHEMA_CHECK,
            asset=ASSET,
            blocking=True,
            description=(
                "Pandera contract, row by row: types, one row per person and day, sane timestamps, eligibility, "
                "values that fit Customer.io. Fails when the held share passes CIO_QUARANTINE_MAX_SHARE."
            ),
        )
    ],
    description=__doc__,
)
def attribute_snapshot(
    context: dg.AssetExecutionContext, source: SourceDatabase, state: StateDatabase, settings: Settings
):
    started = time.monotonic()
    prange = PartitionRange.from_context(context)
    bounds = Bounds.for_run(settings, utc_now())
    schema = attribute_snapshot_schema(unix(bounds.floor))
    resolver = load_resolver(state)
    as_of = {key: unix(instant) for key, instant in as_of_instants(prange, bounds).items()}
    tally = ContractTally(ASSET, SCHEMA_CHECK)
    stats = SnapshotStats()

    with source.connect() as src, state.begin() as dst:
        released = {table.name: released_rows(dst, table, prange) for table in CHANGE_TABLES}
        changes = changed_people(src, resolver, prange, settings, bounds, released)
        require_identity(resolver, changes.unresolved)
        tally.note(changes.held)
        requests = changes.pairs.assign(as_of=changes.pairs["day"].map(as_of).astype("int64"))
        people = sorted(requests["person_id"].unique())
        context.log.info(
            f"{len(requests)} (person, day) changes for {len(people)} people over {len(prange.days)} day(s); "
            f"{tally.held_items} held back; {changes.unresolved} changed source rows resolve to nobody"
        )
        replace_days(dst, state_tables.attribute_snapshot, prange.keys, pd.DataFrame(), settings.chunk_size)
        spellings = guest_emails(src, settings, bounds)
        for number, chunk in enumerate(chunk_people(people, resolver, spellings, settings.chunk_size), start=1):
            history = read_history(src, chunk, resolver, settings, bounds)
            chunk_requests = requests[requests["person_id"].isin(chunk.person_ids)]
            rows, without_profile = compute_attributes(
                chunk_requests, history, settings.tiers, settings.canonical_id == EMAIL
            )
            rows, clipped = clip_text_attributes(rows[COLUMNS])
            rows, broken = split_by_contract(rows, schema, key_column="person_id")
            tally.note(clipped)
            tally.note(broken)
            tally.written += insert_frame(dst, state_tables.attribute_snapshot, rows, settings.chunk_size)
            stats.without_profile += without_profile
            stats.add(rows)
            context.log.info(f"chunk {number}: {len(rows)} rows ({tally.written} so far)")
        if tally.exceeded(settings):
            yield tally.check_result(settings)
            raise tally.failure(settings)  # rolls the whole range back: the days keep their previous rows
        replace_quarantine(dst, ASSET, prange.keys, tally.quarantine)

    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": tally.written,
            **stats.metadata(tally.written),
            **tally.metadata(),
            "days": len(prange.days),
            "unresolved_change_rows": changes.unresolved,
            "released_from_quarantine": int(sum(len(rows) for rows in released.values())),
            "includes_history_before_start": prange.includes_history,
            "duration_s": round(time.monotonic() - started, 2),
        },
        check_results=[tally.check_result(settings)],
    )
