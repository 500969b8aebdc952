"""`identity_map_health` (WARN): identity conflicts and unresolved guests and carts against thresholds.

A few conflicts are normal (two accounts sharing an e-mail are merged into the oldest, and the
conflict is listed): the check warns only when their share of people passes
`CIO_CHECK_MAX_CONFLICT_SHARE`. Likewise for paid orders whose person cannot be resolved
(`CIO_CHECK_MAX_UNRESOLVED_GUEST_SHARE`) and carts (`CIO_CHECK_MAX_UNRESOLVED_CART_SHARE`; most
anonymous carts never meet a customer, so that share is naturally high). identity_map is not
partitioned: the check judges the whole listing the last run wrote.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg
import orjson
import pandas as pd
from sqlalchemy import Connection, func, select

from cio_assets.defs.checks.delivery import latest_materialization
from cio_assets.defs.metadata import markdown_table
from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets.lib.reads import read_frame
from cio_assets.lib.timestamps import Clock, utc_now
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import carts, is_paid, orders
from cio_assets.tracking.marks import observe_tables

ASSET = "identity_map"
HEALTH = "identity_map_health"
SAMPLE_ROWS = 20  # unresolved rows shown in the metadata
PAID, ORDERS_MARKS, COUNTED_AT = "paid_orders", "orders_marks", "paid_orders_counted_at"
PAID_COUNT_MAX_AGE = 3600  # seconds a paid-orders count is reused while orders does not move


@dataclass(frozen=True)
class IdentityCounts:
    people: int
    paid_orders: int
    carts: int
    conflicts: pd.DataFrame  # cio_identity_conflicts
    unresolved_guests: int  # paid orders in cio_unresolved_identifiers
    unresolved_carts: int  # carts in cio_unresolved_identifiers
    unresolved_sample: pd.DataFrame  # some of those rows, for the metadata
    orders_marks: str = ""  # the shop's orders as observed when paid_orders was counted
    paid_counted_at: int = 0  # Unix seconds: when paid_orders was counted


def read_identity_counts(
    state: Connection,
    source: Connection,
    clock: Clock,
    run_id: str | None = None,
    previous: Mapping[str, object] | None = None,
    people: int | None = None,
) -> IdentityCounts:
    """What the check judges. The listing of unresolved identifiers is counted in the database and only a sample
    of it is read; the carts are counted as the run observed them (`observe_tables`). Paid orders are counted
    again only when `orders` moved since the `previous` evaluation (its metadata): counting them reads the whole
    table (no index on status), which was most of a no-change run's check. `people` is the map's own count of
    people, when its latest materialization gave one (the map changes only by materializing)."""
    if people is None:
        people = state.execute(select(func.count(func.distinct(state_tables.identity_map.c.person_id)))).scalar_one()
    c = state_tables.identity_conflicts.c
    conflicts = read_frame(state, select(state_tables.identity_conflicts).order_by(c.kind, c.identifier, c.member))
    u = state_tables.unresolved_identifiers.c
    judged = u.source_table.in_([orders.name, carts.name])
    unresolved = dict(state.execute(select(u.source_table, func.count()).where(judged).group_by(u.source_table)).all())
    sample = read_frame(
        state,
        select(state_tables.unresolved_identifiers)
        .where(judged)
        .order_by(u.source_table, u.source_key)
        .limit(SAMPLE_ROWS),
    )
    observed = observe_tables(source, clock, [carts, orders], run_id, kept=state.engine)
    marks = orjson.dumps(observed[orders.name], option=orjson.OPT_SORT_KEYS).decode()
    now = int(time.time())
    if _still_counts(previous, marks, now):
        paid, counted_at = previous[PAID], previous[COUNTED_AT]  # type: ignore[index]
    else:
        paid = source.execute(select(func.count()).select_from(orders).where(is_paid(orders))).scalar_one()
        counted_at = now
    cart_rows = observed[carts.name]["row_count"]
    return IdentityCounts(
        people=int(people),
        paid_orders=int(paid),
        carts=int(cart_rows or 0),  # type: ignore[call-overload]
        conflicts=conflicts,
        unresolved_guests=int(unresolved.get(orders.name, 0)),
        unresolved_carts=int(unresolved.get(carts.name, 0)),
        unresolved_sample=sample,
        orders_marks=marks,
        paid_counted_at=int(counted_at),  # type: ignore[call-overload]
    )


def _still_counts(previous: Mapping[str, object] | None, marks: str, now: int) -> bool:
    """Whether the previous evaluation's paid-orders count still holds: `orders` has not moved since, and it is
    recent (an order edited without moving its change time is counted again within the hour)."""
    if previous is None or previous.get(ORDERS_MARKS) != marks:
        return False
    counted_at, paid = previous.get(COUNTED_AT), previous.get(PAID)
    return isinstance(paid, int) and isinstance(counted_at, int) and now - counted_at < PAID_COUNT_MAX_AGE


def health_result(
    counts: IdentityCounts, max_conflict_share: float, max_guest_share: float, max_cart_share: float
) -> dg.AssetCheckResult:
    """WARN when conflicts, unresolved guest orders or unresolved carts pass their share."""
    conflicts = counts.conflicts
    groups = int(conflicts.drop_duplicates(["kind", "identifier"]).shape[0]) if not conflicts.empty else 0
    people_in_conflict = int(conflicts["survivor"].nunique()) if not conflicts.empty else 0
    guests, unresolved_carts = counts.unresolved_guests, counts.unresolved_carts
    shares = {
        "conflict_share": (_share(people_in_conflict, counts.people), max_conflict_share, "people in a conflict"),
        "unresolved_guest_share": (_share(guests, counts.paid_orders), max_guest_share, "unresolved paid orders"),
        "unresolved_cart_share": (_share(unresolved_carts, counts.carts), max_cart_share, "unresolved carts"),
    }
    over = [f"{what} {share:.2%} > {limit:.2%}" for share, limit, what in shares.values() if share > limit]
    return dg.AssetCheckResult(
        check_name=HEALTH,
        asset_key=ASSET,
        passed=not over,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "Conflicts and unresolved guests and carts are within their thresholds; each is listed in its table"
            if not over
            else "Above threshold: " + "; ".join(over)
        ),
        metadata={
            "people": counts.people,
            "conflicts": groups,
            "people_in_conflict": people_in_conflict,
            "unresolved_guest_orders": guests,
            PAID: counts.paid_orders,
            ORDERS_MARKS: counts.orders_marks,
            COUNTED_AT: counts.paid_counted_at,
            "unresolved_carts": unresolved_carts,
            "carts": counts.carts,
            **{name: round(share, 4) for name, (share, _, _) in shares.items()},
            **{f"max_{name}": float(limit) for name, (_, limit, _) in shares.items()},
            "conflicts_sample": markdown_table(conflicts, limit=50),
            "unresolved_sample": markdown_table(counts.unresolved_sample, total=guests + unresolved_carts),
        },
    )


def _mapped_people(context: dg.AssetCheckExecutionContext) -> int | None:
    """The people the identity map's latest materialization counted (this run's, when it materialized it)."""
    latest = latest_materialization(context.instance, ASSET)
    people = latest[1].get("people") if latest is not None else None
    return people if isinstance(people, int) else None


def previous_metadata(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> dict[str, object] | None:
    """The metadata values of the check's latest evaluation, if any (the current run's is only planned yet)."""
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=3):
        evaluation = (
            record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
        )
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            return {name: value.value for name, value in evaluation.metadata.items()}
    return None


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dg.asset_check(
    asset=ASSET,
    name=HEALTH,
    description=(
        "Warns when the share of people in an identity conflict, of paid orders whose person is unresolved, or of "
        "unresolved carts passes CIO_CHECK_MAX_CONFLICT_SHARE, CIO_CHECK_MAX_UNRESOLVED_GUEST_SHARE or "
        "CIO_CHECK_MAX_UNRESOLVED_CART_SHARE. One shared e-mail in a shop is not a failure."
    ),
)
def identity_map_health(
    context: dg.AssetCheckExecutionContext, source: SourceDatabase, state: StateDatabase, settings: Settings
) -> dg.AssetCheckResult:
    previous = previous_metadata(context.instance, dg.AssetCheckKey(dg.AssetKey(ASSET), HEALTH))
    with state.connect() as state_conn, source.connect() as source_conn:
        clock = settings.clock(utc_now(), source.mapping_spec)
        counts = read_identity_counts(
            state_conn, source_conn, clock, context.run.run_id, previous, _mapped_people(context)
        )
    return health_result(
        counts,
        settings.check_max_conflict_share,
        settings.check_max_unresolved_guest_share,
        settings.check_max_unresolved_cart_share,
    )
