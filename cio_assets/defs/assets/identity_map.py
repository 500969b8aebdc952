"""`identity_map`: normalised identifiers (customer id, e-mail, phone, anonymous id) mapped to canonical person ids.

Also lists identity conflicts, unresolved identifiers and invalid values. Not partitioned: identity
is a property of the whole history (it carries a single-run backfill policy so that it joins a
partition-range run once). Each run resolves only what changed since the last one, from a cursor kept in
the state database; `full_refresh: true` in the run config rebuilds it from the whole shop
(`identity/refresh.py`).
"""

import dagster as dg
from sqlalchemy import Connection, Table, func, select

from cio_assets.defs.assets.shared import RefreshConfig
from cio_assets.defs.catalog import pii_tags, source_key, table_metadata
from cio_assets.defs.metadata import markdown_table
from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets.identity.erasure import apply_erasures
from cio_assets.identity.refresh import IDENTITY_CHANGED_AT, RefreshSummary, refresh_identity
from cio_assets.lib.frames import named
from cio_assets.lib.reads import read_frame
from cio_assets.lib.timestamps import utc_now
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import carts, customers, identity_links, orders, subscriptions

# The listings written beside the map, described in the catalog with it.
IDENTITY_LISTINGS = [
    state_tables.erasures,
    state_tables.vanished_people,
    state_tables.identity_conflicts,
    state_tables.unresolved_identifiers,
    state_tables.invalid_values,
    state_tables.identity_inputs,
]
SAMPLE_ROWS = 20
# Figures the run's log line repeats.
_LOGGED = ("people", "dagster/row_count", "conflicts", "unresolved", "invalid_values")


@dg.asset(
    key="identity_map",
    group_name="identity",
    kinds={"python", "sql"},
    deps=[source_key(t) for t in (customers, orders, carts, identity_links, subscriptions)],
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=__doc__,
    tags=pii_tags(state_tables.identity_map),
    metadata=table_metadata(state_tables.identity_map, listings=IDENTITY_LISTINGS),
)
def identity_map(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    source: SourceDatabase,
    state: StateDatabase,
    settings: Settings,
) -> dg.MaterializeResult:
    clock = settings.clock(utc_now(), source.mapping_spec)
    with source.connect() as src, state.begin() as dst:
        summary = refresh_identity(
            src,
            dst,
            clock,
            settings.canonical_id,
            settings.chunk_size,
            full_refresh=config.full_refresh,
            run_id=context.run.run_id,
        )
        customers_deleted = summary.mode == "full" or summary.deleted_customers > 0
        erased = apply_erasures(src, dst, clock, settings.canonical_id, customers_deleted)
        metadata = unchanged_metadata(context, summary) or identity_metadata(dst, settings.canonical_id)
    n = {key: int(getattr(value, "value", value)) for key, value in metadata.items() if key in _LOGGED}  # type: ignore[arg-type]
    context.log.info(
        f"{summary.describe()}; {n['people']:,} people from {n['dagster/row_count']:,} identifiers, "
        f"{n['conflicts']:,} conflicts, {n['unresolved']:,} unresolved, {n['invalid_values']:,} invalid values"
    )
    if erased["run_people_erased"]:
        context.log.info(f"{erased['run_people_erased']} people newly erased: purged from every table and ledger")
    return dg.MaterializeResult(metadata={**metadata, **summary.metadata(), **erased})


def identity_metadata(conn: Connection, canonical_id: str) -> dict[str, object]:
    """The four tables as they now stand (whatever part of them this run rewrote)."""
    t = state_tables.identity_map
    conflicts = state_tables.identity_conflicts
    distinct_conflicts = select(conflicts.c.kind, conflicts.c.identifier).distinct().subquery()
    unresolved, invalid = state_tables.unresolved_identifiers, state_tables.invalid_values
    by_type = _counts(conn, t, t.c.identifier_type)
    by_table_reason = _counts(conn, unresolved, unresolved.c.source_table, unresolved.c.reason)
    by_table: dict[str, int] = {}
    for table_reason, n in by_table_reason.items():
        table = table_reason.split(" / ")[0]
        by_table[table] = by_table.get(table, 0) + n
    by_table = dict(sorted(by_table.items(), key=lambda item: -item[1]))
    invalid_by_column = _counts(conn, invalid, invalid.c.column_name)
    return {
        **table_metadata(t),
        "dagster/row_count": sum(by_type.values()),
        "people": conn.execute(select(func.count(func.distinct(t.c.person_id)))).scalar_one(),
        "canonical_id": canonical_id,
        **named("identifiers", by_type),
        "conflicts": conn.execute(select(func.count()).select_from(distinct_conflicts)).scalar_one(),
        **named("conflicts", _counts(conn, distinct_conflicts, distinct_conflicts.c.kind)),
        "unresolved": sum(by_table.values()),
        **named("unresolved", by_table),
        "unresolved_by_reason": dg.MetadataValue.json(by_table_reason),
        "unresolved_sample": _sample(conn, unresolved, sum(by_table.values())),
        "invalid_values": sum(invalid_by_column.values()),
        **named("invalid_values", invalid_by_column),
        "invalid_values_sample": _sample(conn, invalid, sum(invalid_by_column.values())),
    }


def unchanged_metadata(context: dg.AssetExecutionContext, summary: RefreshSummary) -> dict[str, object] | None:
    """The tables' figures from the previous materialization, when this run changed nothing in them and that
    materialization measured them as they still are (same `identity_changed_at`, same number of kept inputs):
    counting the map and its listings again costs a no-change run a few tenths of a second. None otherwise."""
    if not summary.changed_nothing:
        return None
    previous = context.instance.get_latest_materialization_event(context.asset_key)
    materialization = previous.asset_materialization if previous is not None else None
    if materialization is None:
        return None
    before = materialization.metadata
    same = {IDENTITY_CHANGED_AT: summary.changed_at, "input_rows": summary.kept_rows}
    if any(key not in before or before[key].value != value for key, value in same.items()) or "people" not in before:
        return None
    return {key: value for key, value in before.items() if key not in summary.metadata()}


def _counts(conn: Connection, table, *columns) -> dict[str, int]:
    """{"a / b": n} per distinct value of `columns`, largest first."""
    rows = conn.execute(select(*columns, func.count().label("n")).select_from(table).group_by(*columns)).all()
    rows = sorted(rows, key=lambda row: -row[-1])
    return {" / ".join(str(v) for v in row[:-1]): int(row[-1]) for row in rows}


def _sample(conn: Connection, table: Table, total: int) -> dg.MetadataValue:
    keys = [c for c in table.primary_key.columns]
    frame = read_frame(conn, select(table).order_by(*keys).limit(SAMPLE_ROWS))
    return markdown_table(frame, total=total)
