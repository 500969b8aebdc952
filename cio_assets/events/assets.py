"""The `event_log` asset: every retention event, once, in the day it happened.

Daily partitioned by event time (business time zone). Each family reads the whole range in a few
streamed queries; a re-run replaces the days it covers. An event whose source time moved to
another day (an edited paid_at) leaves its old day, so an `event_id` is never in the log twice.
"""

import time
from collections import Counter

import dagster as dg
import orjson
import pandas as pd

from cio_assets.events.families import FAMILIES, Extraction
from cio_assets.events.schema import event_log_schema
from cio_assets.hygiene.rules import Bounds
from cio_assets.identity.lookup import load_resolver, require_identity
from cio_assets.metadata import json_counts
from cio_assets.partitions import PartitionRange, daily_partitions
from cio_assets.resources import SourceDatabase, StateDatabase
from cio_assets.settings import Settings
from cio_assets.sources.assets import source_key
from cio_assets.sources.tables import cart_items, carts, order_items, orders, refunds, subscriptions
from cio_assets.state import tables as state_tables
from cio_assets.state.writes import delete_keys, insert_frame, replace_days
from cio_assets.timestamps import unix, utc_now
from cio_assets.validation import failed_check, failure, passed_check, validate

SCHEMA_CHECK = "event_log_schema"
COLUMNS = [c.name for c in state_tables.event_log.columns]
SOURCES = (orders, order_items, carts, cart_items, refunds, subscriptions)


@dg.asset(
    key="event_log",
    group_name="contract",
    kinds={"sql", "pandas"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["identity_map", "rejected_rows", *(source_key(t) for t in SOURCES)],
    check_specs=[
        dg.AssetCheckSpec(
            SCHEMA_CHECK,
            asset="event_log",
            blocking=True,
            description="Pandera contract: unique stable ids, known names, sane timestamps, JSON properties.",
        )
    ],
    description=__doc__,
)
def event_log(context: dg.AssetExecutionContext, source: SourceDatabase, state: StateDatabase, settings: Settings):
    started = time.monotonic()
    prange = PartitionRange.from_context(context)
    bounds = Bounds.for_run(settings, utc_now())
    schema = event_log_schema(unix(bounds.floor), unix(bounds.now))
    resolver = load_resolver(state)

    by_name: Counter[str] = Counter()
    by_day: Counter[str] = Counter()
    unresolved: Counter[str] = Counter()
    moved = 0
    with source.connect() as src, state.begin() as dst:
        replace_days(dst, state_tables.event_log, prange.keys, pd.DataFrame(), settings.chunk_size)
        extraction = Extraction(src, resolver, prange, settings, bounds)
        for name, family in FAMILIES.items():
            for result in family(extraction):
                unresolved[name] += result.unresolved
                require_identity(resolver, result.unresolved)
                events = _as_rows(result.events, prange)
                events, errors = validate(events, schema)
                if errors is not None:
                    yield failed_check(SCHEMA_CHECK, errors)
                    raise failure("event_log", errors)
                moved += delete_keys(dst, state_tables.event_log.c.event_id, list(events["event_id"]))
                insert_frame(dst, state_tables.event_log, events, settings.chunk_size)
                by_name[name] += len(events)
                by_day.update(events["day"])
            context.log.info(f"{name}: {by_name[name]} events, {unresolved[name]} without a person")

    written = sum(by_name.values())
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "events_by_name": json_counts(by_name),
            "events_by_day": json_counts(dict(sorted(by_day.items()))),
            "unresolved_by_name": json_counts(+unresolved),
            "moved_from_other_days": moved,
            "days": len(prange.days),
            "includes_history_before_start": prange.includes_history,
            "duration_s": round(time.monotonic() - started, 2),
        },
        check_results=[passed_check(SCHEMA_CHECK, written)],
    )


def _as_rows(events: pd.DataFrame, prange: PartitionRange) -> pd.DataFrame:
    rows = events.assign(
        day=prange.day_of(events["timestamp"]) if len(events) else pd.Series(dtype=str),
        properties=[orjson.dumps(p, option=orjson.OPT_SORT_KEYS).decode() for p in events["properties"]],
    )
    return rows[COLUMNS]
