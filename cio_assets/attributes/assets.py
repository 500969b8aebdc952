"""The `attribute_snapshot` asset: each changed person's state as of the end of each day.

For every person whose inputs (profile, paid orders, refunds, subscriptions) changed during a day,
one row with their state as of the end of that day, computed from full history. A re-run of a day
writes the same rows, so backfills are safe; the first partition also covers all earlier history.
"""

import time
from collections import Counter

import dagster as dg
import pandas as pd

from cio_assets.attributes.compute import compute_attributes
from cio_assets.attributes.queries import as_of_instants, changed_people, read_history
from cio_assets.attributes.schema import attribute_snapshot_schema
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
from cio_assets.state.writes import insert_frame, replace_days
from cio_assets.timestamps import unix, utc_now
from cio_assets.validation import failed_check, failure, passed_check, validate

SCHEMA_CHECK = "attribute_snapshot_schema"
COLUMNS = [c.name for c in state_tables.attribute_snapshot.columns]


@dg.asset(
    key="attribute_snapshot",
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
            asset="attribute_snapshot",
            blocking=True,
            description="Pandera contract: types, one row per person and day, sane timestamps, eligibility.",
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

    written, without_profile = 0, 0
    rows_by_day: Counter[str] = Counter()
    nulls: Counter[str] = Counter()
    eligible: Counter[str] = Counter()
    with source.connect() as src, state.begin() as dst:
        changed, unresolved = changed_people(src, resolver, prange, settings)
        require_identity(resolver, unresolved)
        changed["as_of"] = changed["day"].map(as_of).astype("int64")
        people = sorted(changed["person_id"].unique())
        context.log.info(
            f"{len(changed)} (person, day) changes for {len(people)} people over {len(prange.days)} day(s); "
            f"{unresolved} changed source rows resolve to nobody"
        )
        replace_days(dst, state_tables.attribute_snapshot, prange.keys, pd.DataFrame(), settings.chunk_size)
        spellings = guest_emails(src, settings, bounds)
        for number, chunk in enumerate(chunk_people(people, resolver, spellings, settings.chunk_size), start=1):
            requests = changed[changed["person_id"].isin(chunk.person_ids)]
            history = read_history(src, chunk, resolver, settings, bounds)
            rows, skipped = compute_attributes(requests, history, settings.tiers, settings.canonical_id == EMAIL)
            rows, errors = validate(rows[COLUMNS], schema)
            if errors is not None:
                yield failed_check(SCHEMA_CHECK, errors)
                raise failure("attribute_snapshot", errors)
            written += insert_frame(dst, state_tables.attribute_snapshot, rows, settings.chunk_size)
            without_profile += skipped
            rows_by_day.update(rows["day"])
            nulls.update({c: int(n) for c, n in rows.isna().sum().items() if n})
            eligible.update({"email": int(rows["email_eligible"].sum()), "sms": int(rows["sms_eligible"].sum())})
            context.log.info(f"chunk {number}: {len(rows)} rows ({written} so far)")

    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "people": len(people),
            "days": len(prange.days),
            "rows_by_day": json_counts(dict(sorted(rows_by_day.items()))),
            "unresolved_change_rows": unresolved,
            "without_customer_record": without_profile,
            "eligible": json_counts(eligible),
            "null_rate": json_counts({c: round(n / written, 4) for c, n in sorted(nulls.items())} if written else {}),
            "includes_history_before_start": prange.includes_history,
            "duration_s": round(time.monotonic() - started, 2),
        },
        check_results=[passed_check(SCHEMA_CHECK, written)],
    )
