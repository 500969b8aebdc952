"""Normalised identifiers (customer id, e-mail, phone, anonymous id) mapped to canonical person ids.

Also lists identity conflicts, unresolved identifiers and invalid values. Not partitioned: identity
is a property of the whole history, recomputed in every run (it carries a single-run backfill
policy so that it joins a partition-range run once).
"""

import dagster as dg
import pandas as pd
from sqlalchemy import ColumnElement, Connection, Table, exists, or_, select

from cio_assets.catalog import pii_tags, table_metadata
from cio_assets.hygiene.rules import RULES, Bounds, rejection_reason, row_is_valid
from cio_assets.identity.resolve import IdentityResult, resolve_identity
from cio_assets.metadata import counts_by, json_counts, markdown_table, named
from cio_assets.resources import SourceDatabase, StateDatabase
from cio_assets.settings import Settings
from cio_assets.sources.assets import source_key
from cio_assets.sources.reads import read_frame
from cio_assets.sources.tables import carts, customers, identity_links, orders, subscriptions
from cio_assets.state import tables as state_tables
from cio_assets.state.writes import replace_all
from cio_assets.timestamps import to_unix_seconds, utc_now

# The listings written beside the map, described in the catalog with it.
IDENTITY_LISTINGS = [state_tables.identity_conflicts, state_tables.unresolved_identifiers, state_tables.invalid_values]


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
    context: dg.AssetExecutionContext, source: SourceDatabase, state: StateDatabase, settings: Settings
) -> dg.MaterializeResult:
    bounds = Bounds.for_run(settings, utc_now())
    with source.connect() as conn:
        result = resolve_identity(
            customers=_customers(conn, settings, bounds),
            guest_orders=read_frame(conn, _guest_orders(settings, bounds)),
            links=_links(conn, settings),
            carts=read_frame(conn, _carts_needing_identity(settings, bounds)),
            policy=settings.canonical_id,
            orphan_subscriptions=read_frame(conn, _orphan_subscriptions(settings, bounds)),
        )
    with state.begin() as conn:
        for table, frame in (
            (state_tables.identity_map, result.identity_map),
            (state_tables.identity_conflicts, result.conflicts),
            (state_tables.unresolved_identifiers, result.unresolved),
            (state_tables.invalid_values, result.invalid_values),
        ):
            replace_all(conn, table, frame, settings.chunk_size)
    context.log.info(
        f"{result.identity_map['person_id'].nunique()} people from {len(result.identity_map)} identifiers; "
        f"{len(result.conflicts)} conflict rows, {len(result.unresolved)} unresolved, "
        f"{len(result.invalid_values)} invalid values"
    )
    return dg.MaterializeResult(metadata=_metadata(result, settings))


def _customers(conn: Connection, settings: Settings, bounds: Bounds) -> pd.DataFrame:
    created_rule = next(r for r in RULES if r.table is customers and r.column == "created_at")
    frame = read_frame(
        conn,
        select(
            customers.c.id,
            customers.c.email,
            customers.c.phone,
            customers.c.country,
            customers.c.created_at,
            rejection_reason(created_rule, settings, bounds).label("created_at_rejection"),
        ),
    )
    created = to_unix_seconds(frame["created_at"], settings.zone_of(customers.name))
    frame["created_at"] = created.where(frame["created_at_rejection"].isna())
    return frame.drop(columns="created_at_rejection")


def _without_known_customer(table: Table) -> ColumnElement[bool]:
    """SQL: the row names no customer, or one that does not exist (deleted, or bad data)."""
    return or_(table.c.customer_id.is_(None), ~exists().where(customers.c.id == table.c.customer_id))


def _guest_orders(settings: Settings, bounds: Bounds):
    return select(orders.c.id, orders.c.customer_id, orders.c.email).where(
        _without_known_customer(orders), orders.c.status == "paid", row_is_valid(orders, settings, bounds)
    )


def _links(conn: Connection, settings: Settings) -> pd.DataFrame:
    frame = read_frame(
        conn, select(identity_links.c.anonymous_id, identity_links.c.customer_id, identity_links.c.linked_at)
    )
    frame["linked_at"] = to_unix_seconds(frame["linked_at"], settings.zone_of(identity_links.name))
    return frame


def _carts_needing_identity(settings: Settings, bounds: Bounds):
    return select(carts.c.id, carts.c.customer_id, carts.c.anonymous_id, carts.c.email).where(
        or_(_without_known_customer(carts), carts.c.anonymous_id.is_not(None)),
        row_is_valid(carts, settings, bounds),
    )


def _orphan_subscriptions(settings: Settings, bounds: Bounds):
    return select(subscriptions.c.id, subscriptions.c.customer_id).where(
        ~exists().where(customers.c.id == subscriptions.c.customer_id),
        row_is_valid(subscriptions, settings, bounds),
    )


def _metadata(result: IdentityResult, settings: Settings) -> dict[str, object]:
    conflicts = result.conflicts.drop_duplicates(["kind", "identifier"])
    return {
        **table_metadata(state_tables.identity_map),
        "dagster/row_count": len(result.identity_map),
        "people": int(result.identity_map["person_id"].nunique()),
        "canonical_id": settings.canonical_id,
        **named("identifiers", counts_by(result.identity_map, "identifier_type")),
        "conflicts": len(conflicts),
        **named("conflicts", counts_by(conflicts, "kind")),
        "unresolved": len(result.unresolved),
        **named("unresolved", counts_by(result.unresolved, "source_table")),
        "unresolved_by_reason": json_counts(counts_by(result.unresolved, "source_table", "reason")),
        "unresolved_sample": markdown_table(result.unresolved),
        "invalid_values": len(result.invalid_values),
        **named("invalid_values", counts_by(result.invalid_values, "column_name")),
        "invalid_values_sample": markdown_table(result.invalid_values),
    }
