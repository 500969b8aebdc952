"""Refreshing identity: from the whole shop, or from what changed since the last run.

A full refresh reads every input, resolves everyone and replaces the four identity tables and the inputs
kept in `cio_identity_inputs`. It runs when there is no cursor yet, when the canonical id policy or the
timestamp floor changed, and when asked (`full_refresh` in the run config; the daily schedule asks).

An incremental refresh reads only the source rows that changed since the cursor:
- customers, orders, carts and subscriptions whose `updated_at` is after the newest the cursor saw, or
  within the look-back window (CIO_CHANGE_LOOKBACK_SECONDS) of the last run (a transaction that commits late),
  or whose id is above the largest seen; rows whose timestamps have since stopped being in the future; and for
  customers found deleted (their count disagrees), the orders, carts and subscriptions that named them;
- identity links the same way by `linked_at` (and those without one), all of them when their count
  disagrees with what is kept.
Every identifier such a row carries, now or before the change, is a seed; the rows kept in
`cio_identity_inputs` that share an identifier with a seed, and the rows that share one with those,
form the affected component. Resolution depends only on rows connected this way, so resolving the
component alone gives exactly the rows a full refresh would, and only the component's rows are replaced.
The cursor is written in the same transaction as the tables: a run that fails moves nothing.

Not seen incrementally, until the next full refresh: rows changed without touching `updated_at`, order
and cart lines edited under an unchanged order or cart, and deleted guest orders, carts and
subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import ColumnElement, Connection, Table, and_, delete, false, func, or_, select, true, tuple_

from cio_assets.identity.captured import rows_to_read
from cio_assets.identity.inputs import (
    CARTS,
    CUSTOMERS,
    GUEST_ORDERS,
    LINKS,
    SUBSCRIPTIONS,
    IdentityInputs,
    bad_created_at,
    link_key,
)
from cio_assets.identity.resolve import (
    ANONYMOUS_ID,
    ANONYMOUS_ID_MANY_PEOPLE,
    CUSTOMER_ID,
    EMAIL,
    PHONE,
    SHARED_EMAIL,
    SHARED_PHONE,
    IdentityResult,
    resolve_identity,
)
from cio_assets.lib.chunking import chunks
from cio_assets.lib.reads import read_frame
from cio_assets.lib.timestamps import Clock, unix
from cio_assets.lib.writes import KEYS_PER_STATEMENT, insert_frame, replace_all
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import carts, customers, identity_links, orders, subscriptions
from cio_assets.tracking.binlog import DELETES, captured_since, read_through, save_through
from cio_assets.tracking.cursors import (
    AHEAD,
    DELETED,
    IDENTITY_CURSOR,
    MARKED,
    NOTES,
    Ahead,
    Cursor,
    changed,
    changed_links,
    cursor_marks,
    rows_deleted,
    vouching,
)
from cio_assets.tracking.marks import noted, observe_tables

INPUTS = state_tables.identity_inputs
OUTPUTS = (
    state_tables.identity_map,
    state_tables.identity_conflicts,
    state_tables.unresolved_identifiers,
    state_tables.invalid_values,
)


def why_full(cursor: Cursor | None, canonical_id: str, clock: Clock) -> str | None:
    """Why the kept inputs cannot be refreshed incrementally, or None when they can."""
    if cursor is None:
        return "no cursor yet: the first run"
    if "policy" not in cursor.details:
        return "the cursor was written by an older version"
    if cursor.details.get("policy") != canonical_id:
        return f"CIO_CANONICAL_ID changed from {cursor.details.get('policy')} to {canonical_id}"
    if cursor.floor != unix(clock.floor):
        return "CIO_TIMESTAMP_FLOOR changed"
    return None


# Metadata key: when the identity tables last changed, so a later run can tell that they did not since.
IDENTITY_CHANGED_AT = "identity_changed_at"


# ---------------------------------------------------------------------------------------------------------
# Keys: what connects input rows
# ---------------------------------------------------------------------------------------------------------

KEY_COLUMNS = ("customer_id", "email_key", "phone_key", "anonymous_key")


@dataclass
class Keys:
    """Identifiers, per kind of key column in `cio_identity_inputs`."""

    values: dict[str, set] = field(default_factory=lambda: {c: set() for c in KEY_COLUMNS})

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Keys:
        keys = cls()
        for column in KEY_COLUMNS:
            if column in rows.columns:
                cast = int if column == "customer_id" else str
                keys.values[column].update(cast(v) for v in rows[column].dropna())
        return keys

    def add(self, other: Keys) -> Keys:
        """Add `other`; returns the keys that were new."""
        new = Keys()
        for column, values in other.values.items():
            new.values[column] = values - self.values[column]
            self.values[column] |= values
        return new

    def __bool__(self) -> bool:
        return any(self.values.values())

    def __len__(self) -> int:
        return sum(len(v) for v in self.values.values())


def connected_rows(conn: Connection, seeds: Keys) -> tuple[pd.DataFrame, Keys]:
    """Every kept input row connected to `seeds` through shared keys, and all their keys."""
    seen = Keys()
    frontier = seen.add(seeds)
    found: list[pd.DataFrame] = []
    have: set[tuple[str, str]] = set()
    while frontier:
        matches = []
        for column, values in frontier.values.items():
            for chunk in chunks(sorted(values), KEYS_PER_STATEMENT):
                matches.append(_read_inputs(conn, INPUTS.c[column].in_(chunk)))
        rows = pd.concat(matches, ignore_index=True) if matches else _no_inputs()
        fresh = [(t, k) not in have for t, k in zip(rows["source_table"], rows["source_key"], strict=True)]
        # A mask, not a list: an empty list would select no columns (a seed matching no kept row, as a customer
        # set aside without orders leaves).
        rows = rows[pd.Series(fresh, index=rows.index, dtype=bool)].drop_duplicates(["source_table", "source_key"])
        have.update(zip(rows["source_table"], rows["source_key"], strict=True))
        found.append(rows)
        frontier = seen.add(Keys.of(rows))
    component = pd.concat(found, ignore_index=True) if found else _no_inputs()
    return component, seen


def _read_inputs(conn: Connection, where: ColumnElement[bool]) -> pd.DataFrame:
    return read_frame(conn, select(INPUTS).where(where), dtype=object)


def _no_inputs() -> pd.DataFrame:
    return pd.DataFrame(columns=[c.name for c in INPUTS.columns], dtype=object)


# ---------------------------------------------------------------------------------------------------------
# The refresh
# ---------------------------------------------------------------------------------------------------------


INPUT_ROWS = "input_rows"  # the cursor's count of kept input rows


@dataclass
class RefreshSummary:
    """What one run did, for the log and the run's metadata."""

    mode: str  # "full" or "incremental"
    reason: str  # why that mode
    changed_rows: int = 0  # source rows read as changed (every input row, in a full run)
    deleted_customers: int = 0
    component_rows: int = 0  # kept input rows resolved again
    kept_rows: int = 0  # input rows kept in total
    changed_at: int = 0  # Unix seconds: when the identity tables last changed (this run, or an earlier one)

    @property
    def changed_nothing(self) -> bool:
        """This run left the identity tables as they were."""
        return self.mode == "incremental" and not (self.changed_rows or self.component_rows or self.deleted_customers)

    def metadata(self) -> dict[str, object]:
        return {
            "run_mode": self.mode,
            "run_mode_reason": self.reason,
            "run_changed_source_rows": self.changed_rows,
            "run_deleted_customers": self.deleted_customers,
            "run_resolved_input_rows": self.component_rows,
            "input_rows": self.kept_rows,
            IDENTITY_CHANGED_AT: self.changed_at,
        }

    def describe(self) -> str:
        if self.mode == "full":
            return f"full refresh ({self.reason}): {self.component_rows:,} input rows resolved"
        return (
            f"incremental refresh: {self.changed_rows:,} changed source rows, {self.deleted_customers:,} deleted "
            f"customers; resolved {self.component_rows:,} connected input rows of {self.kept_rows:,}"
        )


def refresh_identity(
    src: Connection,
    dst: Connection,
    clock: Clock,
    canonical_id: str,
    chunk_size: int,
    full_refresh: bool,
    run_id: str | None = None,
) -> RefreshSummary:
    """Bring the identity tables up to date with the shop, fully or incrementally (see the module docstring).
    `run_id` lets the steps of one run share their observation of the shop's tables."""
    observed = observe_tables(
        src, clock, MARKED, run_id, kept=dst.engine
    )  # the customers' count below comes with the marks
    marks, now_noted = cursor_marks(observed), noted(run_id)
    cursor = Cursor.load(dst, IDENTITY_CURSOR, now_noted)
    # The rows binlog capture saw change (`tracking/binlog.py`), read again whatever their change times say.
    captured, through = captured_since(dst, read_through(dst, IDENTITY_CURSOR))
    reason = "asked for in the run config (full_refresh)" if full_refresh else why_full(cursor, canonical_id, clock)
    ahead: Ahead = {}  # the rows dated after now, for the cursor to keep (`come_due`)
    if reason is not None or cursor is None:
        summary = _full(src, dst, clock, canonical_id, chunk_size, reason or "")
    else:
        in_shop = int(observed[str(customers.name)]["row_count"])  # type: ignore[call-overload]
        also = rows_to_read(captured)
        summary = _incremental(src, dst, clock, canonical_id, chunk_size, cursor, in_shop, ahead, also)
    now = unix(clock.now)
    save_through(dst, IDENTITY_CURSOR, through, now)
    changed_at = (
        now if summary.mode == "full" or summary.component_rows or cursor is None else cursor.details["changed_at"]
    )
    # A run that changed no input keeps the count the cursor carries (counting them is a scan of the inputs).
    counted = cursor.details.get(INPUT_ROWS) if cursor is not None and summary.changed_nothing else None
    summary.kept_rows = (
        counted if counted is not None else dst.execute(select(func.count()).select_from(INPUTS)).scalar_one()
    )
    # When rows were last found deleted from each table: what derives from them is computed again (`deleted_since`).
    deleted: dict[str, int] = dict(cursor.details.get(DELETED, {})) if cursor is not None else {}  # type: ignore[call-overload]
    if cursor is not None:
        # Deletes binlog capture saw name their rows' people already (`identity/captured.py`).
        seen = {concept for concept, keys in captured.items() if DELETES in keys}
        deleted.update(dict.fromkeys((t for t in rows_deleted(src, cursor, marks) if t not in seen), now))
    details = {
        "policy": canonical_id,
        "changed_at": changed_at,
        INPUT_ROWS: int(summary.kept_rows),
        NOTES: vouching(now_noted),
        AHEAD: ahead,
        DELETED: deleted,
    }
    Cursor(IDENTITY_CURSOR, marks, now, unix(clock.floor), details).save(dst)
    summary.changed_at = int(changed_at)  # type: ignore[call-overload]
    return summary


def _full(
    src: Connection, dst: Connection, clock: Clock, canonical_id: str, chunk_size: int, reason: str
) -> RefreshSummary:
    inputs = IdentityInputs.read(src, clock)
    result = _resolve(inputs, canonical_id)
    result.invalid_values = _with_bad_created_at(result.invalid_values, bad_created_at(src, clock, true()))
    for table, frame in zip(OUTPUTS, _frames(result), strict=True):
        replace_all(dst, table, frame, chunk_size)
    replace_all(dst, INPUTS, inputs.rows(), chunk_size)
    return RefreshSummary("full", reason, changed_rows=len(inputs), component_rows=len(inputs))


def _incremental(
    src: Connection,
    dst: Connection,
    clock: Clock,
    canonical_id: str,
    chunk_size: int,
    cursor: Cursor,
    in_shop: int,
    ahead: Ahead,
    also: dict[str, list[int]],
) -> RefreshSummary:
    """`in_shop`: how many customers the shop held when the run observed it (before reading any row); `ahead`
    gathers the rows dated after now (`come_due`); `also`: per table, the ids of rows to read again whatever
    their change times say (binlog capture saw them change)."""
    changed_customers = _changed(customers, src, dst, clock, cursor, ahead, also)
    fresh = IdentityInputs.read(src, clock, only={customers.name: changed_customers})
    # Changed customers that are no input (now): set aside by the hygiene rules (a duplicated id), so whatever
    # is kept of them goes, as of a deleted customer.
    set_aside = sorted(
        set(src.execute(select(customers.c.id).where(changed_customers)).scalars()) - set(fresh.customers["id"])
    )
    deleted, missing = _customer_drift(src, dst, fresh, in_shop)
    if missing:
        more = IdentityInputs.read(src, clock, only={customers.name: customers.c.id.in_(missing)})
        fresh.customers = pd.concat([fresh.customers, more.customers], ignore_index=True)
    only = {
        table.name: or_(_changed(table, src, dst, clock, cursor, ahead, also), *_naming(table, deleted))
        for table in (orders, carts, subscriptions)
    }
    links_where, reload_links = _links_to_read(src, dst, clock, cursor)
    only[identity_links.name] = links_where
    changed = IdentityInputs.read(src, clock, only=only)
    changed.customers = fresh.customers
    # The kept rows of every source row read, whether or not it is still an input; a row read again (the
    # look-back window, links without a time) whose kept row says the same is no change.
    kept = _kept_rows_of(src, dst, only, changed, [*deleted, *set_aside], reload_links)
    removed, added = _differences(kept, changed.rows())
    summary = RefreshSummary(
        "incremental",
        "changes since the cursor",
        changed_rows=len(_row_keys(removed) | _row_keys(added)),
        deleted_customers=len(deleted),
    )
    if removed.empty and added.empty:
        return summary
    seeds = Keys.of(removed)
    seeds.add(Keys.of(added))
    _delete_kept(dst, removed)
    insert_frame(dst, INPUTS, added, chunk_size)

    component, keys = connected_rows(dst, seeds)
    existing = set(component.loc[component["source_table"] == CUSTOMERS, "customer_id"].astype(int))
    result = _resolve(IdentityInputs.from_rows(component, existing_customers=existing), canonical_id)
    result.invalid_values = _with_bad_created_at(result.invalid_values, _bad_created_at_of(src, clock, component))
    _replace_outputs(dst, keys, pd.concat([component, removed], ignore_index=True), result, chunk_size)
    summary.component_rows = len(component)
    return summary


# Integer columns of `cio_identity_inputs`: compared as integers, whatever type a frame gave them.
INTEGER_COLUMNS = ("customer_id", "created_at", "created_at_raw", "linked_at")


def _differences(kept: pd.DataFrame, read: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept rows that the source no longer says, rows read that are not kept as they are)."""
    kept_prints, read_prints = _fingerprints(kept), _fingerprints(read)
    kept_set, read_set = set(kept_prints), set(read_prints)
    removed = kept[[p not in read_set for p in kept_prints]] if len(kept) else kept
    added = read[[p not in kept_set for p in read_prints]] if len(read) else read
    return removed, added


def _fingerprints(frame: pd.DataFrame) -> list[tuple]:
    """Each row's values, integers as integers and missing as None, whatever types the frame holds."""
    columns = [c.name for c in INPUTS.columns]
    values = frame.reindex(columns=columns).astype(object)
    values = values.where(values.notna(), None)
    for column in INTEGER_COLUMNS:
        values[column] = [None if v is None else int(v) for v in values[column]]
    return [
        tuple(v if v is None or isinstance(v, int) else str(v) for v in row) for row in values.itertuples(index=False)
    ]


def _row_keys(rows: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(rows["source_table"], rows["source_key"], strict=True))


def _resolve(inputs: IdentityInputs, canonical_id: str) -> IdentityResult:
    return resolve_identity(
        customers=inputs.customers,
        guest_orders=inputs.guest_orders,
        links=inputs.links,
        carts=inputs.carts,
        policy=canonical_id,
        orphan_subscriptions=inputs.orphan_subscriptions,
    )


def _with_bad_created_at(invalid: pd.DataFrame, bad: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame for frame in (invalid, bad) if not frame.empty] or [invalid], ignore_index=True)


def _bad_created_at_of(src: Connection, clock: Clock, component: pd.DataFrame) -> pd.DataFrame:
    """The listing of the component's customers whose `created_at` is unknown (kept as NULL): only they can fail
    its value rule, looked up in the shop by id."""
    unknown = component[(component["source_table"] == CUSTOMERS) & component["created_at"].isna()]
    ids = sorted(int(i) for i in unknown["customer_id"])
    found = [bad_created_at(src, clock, customers.c.id.in_(chunk)) for chunk in chunks(ids, KEYS_PER_STATEMENT)]
    return pd.concat(found, ignore_index=True) if found else bad_created_at(src, clock, false())


def _frames(result: IdentityResult) -> tuple[pd.DataFrame, ...]:
    return result.identity_map, result.conflicts, result.unresolved, result.invalid_values


def _changed(
    table: Table,
    src: Connection,
    dst: Connection,
    clock: Clock,
    cursor: Cursor,
    ahead: Ahead,
    also: dict[str, list[int]] | None = None,
) -> ColumnElement[bool]:
    """SQL: the rows of `table` changed since the cursor (`tracking/cursors.py`), and those of `also`; for
    customers also those whose `created_at` stopped being in the future, found among the kept inputs (the shop
    does not index it)."""
    condition = changed(src, table, cursor, clock, ahead)
    captured = (also or {}).get(str(table.name), [])
    if captured:
        condition = or_(condition, *(table.c.id.in_(chunk) for chunk in chunks(captured, KEYS_PER_STATEMENT)))
    if table is not customers:
        return condition
    raw = INPUTS.c.created_at_raw
    crossed = dst.execute(
        select(INPUTS.c.customer_id).where(
            INPUTS.c.source_table == CUSTOMERS, raw > cursor.checked_at, raw <= unix(clock.now)
        )
    ).scalars()
    ids = [int(i) for i in crossed]
    return or_(condition, customers.c.id.in_(ids)) if ids else condition


def _naming(table: Table, customer_ids: list[int]) -> list[ColumnElement[bool]]:
    """SQL: the rows naming one of these (deleted) customers, which may now be guests' or orphans."""
    return [table.c.customer_id.in_(chunk) for chunk in chunks(customer_ids, KEYS_PER_STATEMENT)]


def _customer_drift(
    src: Connection, dst: Connection, fresh: IdentityInputs, in_shop: int
) -> tuple[list[int], list[int]]:
    """Customers deleted from the shop, and customers the kept inputs miss (added without an id or
    `updated_at` past the cursor). Compared by count first (`in_shop`, as the run observed the shop: a customer
    deleted since is then found by the next run): ids are read only when the counts disagree."""
    kept = dst.execute(select(func.count()).where(INPUTS.c.source_table == CUSTOMERS)).scalar_one()
    fresh_ids = [int(i) for i in fresh.customers["id"]]
    already = set()
    for chunk in chunks(fresh_ids, KEYS_PER_STATEMENT):
        already |= set(
            dst.execute(
                select(INPUTS.c.customer_id).where(INPUTS.c.source_table == CUSTOMERS, INPUTS.c.customer_id.in_(chunk))
            ).scalars()
        )
    if in_shop == kept + len(set(fresh_ids) - already):
        return [], []
    shop_ids = set(src.execute(select(customers.c.id)).scalars())
    kept_ids = set(dst.execute(select(INPUTS.c.customer_id).where(INPUTS.c.source_table == CUSTOMERS)).scalars())
    return sorted(kept_ids - shop_ids), sorted(shop_ids - kept_ids - set(fresh_ids))


def _links_to_read(src: Connection, dst: Connection, clock: Clock, cursor: Cursor) -> tuple[ColumnElement[bool], bool]:
    """SQL: the links to read again, and whether that is all of them (their distinct count disagrees with
    what is kept, so one was deleted or added with an old time)."""
    distinct = select(identity_links.c.anonymous_id, identity_links.c.customer_id, identity_links.c.linked_at)
    in_shop = src.execute(select(func.count()).select_from(distinct.distinct().subquery())).scalar_one()
    kept = dst.execute(select(func.count()).where(INPUTS.c.source_table == LINKS)).scalar_one()
    if in_shop != kept or cursor.marks.get(str(identity_links.name), {}).get("linked_at") is None:
        return true(), True
    return changed_links(cursor, clock), False


def _kept_rows_of(
    src: Connection,
    dst: Connection,
    only: dict[str, ColumnElement[bool]],
    changed: IdentityInputs,
    deleted: list[int],
    reload_links: bool,
) -> pd.DataFrame:
    """The kept input rows that the changed source rows replace (or remove)."""
    keys: dict[str, list[str]] = {CUSTOMERS: [str(i) for i in [*changed.customers["id"], *deleted]]}
    for table, name in ((orders, GUEST_ORDERS), (carts, CARTS), (subscriptions, SUBSCRIPTIONS)):
        # Every changed row, input or not: one that stopped being an input leaves the kept rows.
        keys[name] = [str(i) for i in src.execute(select(table.c.id).where(only[table.name])).scalars()]
    found = [
        _read_inputs(dst, and_(INPUTS.c.source_table == name, INPUTS.c.source_key.in_(chunk)))
        for name, values in keys.items()
        for chunk in chunks(values, KEYS_PER_STATEMENT)
    ]
    if reload_links:
        found.append(_read_inputs(dst, INPUTS.c.source_table == LINKS))
    else:
        link_keys = [
            link_key(c, a, t)
            for c, a, t in zip(
                changed.links["customer_id"], changed.links["anonymous_id"], changed.links["linked_at"], strict=True
            )
        ]
        found.extend(
            _read_inputs(dst, and_(INPUTS.c.source_table == LINKS, INPUTS.c.source_key.in_(chunk)))
            for chunk in chunks(link_keys, KEYS_PER_STATEMENT)
        )
    return pd.concat(found, ignore_index=True) if found else _no_inputs()


def _delete_kept(dst: Connection, rows: pd.DataFrame) -> None:
    pairs = list(zip(rows["source_table"], rows["source_key"], strict=True))
    for chunk in chunks(pairs, KEYS_PER_STATEMENT):
        dst.execute(delete(INPUTS).where(tuple_(INPUTS.c.source_table, INPUTS.c.source_key).in_(chunk)))


def _replace_outputs(dst: Connection, keys: Keys, rows: pd.DataFrame, result: IdentityResult, chunk_size: int) -> None:
    """Replace what the component owns in the four identity tables with `result`."""
    # (identifier type, the conflict kind it can be in, its values in the component)
    identifiers = (
        (CUSTOMER_ID, None, sorted(str(i) for i in keys.values["customer_id"])),
        (EMAIL, SHARED_EMAIL, sorted(keys.values["email_key"])),
        (PHONE, SHARED_PHONE, sorted(keys.values["phone_key"])),
        (ANONYMOUS_ID, ANONYMOUS_ID_MANY_PEOPLE, sorted(keys.values["anonymous_key"])),
    )
    identity_map, conflicts = state_tables.identity_map, state_tables.identity_conflicts
    for kind, conflict_kind, values in identifiers:
        for chunk in chunks(values, KEYS_PER_STATEMENT):
            dst.execute(
                delete(identity_map).where(identity_map.c.identifier_type == kind, identity_map.c.identifier.in_(chunk))
            )
            if conflict_kind is not None:
                dst.execute(
                    delete(conflicts).where(conflicts.c.kind == conflict_kind, conflicts.c.identifier.in_(chunk))
                )
    # Listings are per source row; a link's is listed under the customer it names.
    listed = list(zip(rows["source_table"], rows["source_key"], strict=True))
    listed += [(LINKS, str(int(c))) for c in rows.loc[rows["source_table"] == LINKS, "customer_id"].dropna()]
    for table in (state_tables.unresolved_identifiers, state_tables.invalid_values):
        for chunk in chunks(sorted(set(listed)), KEYS_PER_STATEMENT):
            dst.execute(delete(table).where(tuple_(table.c.source_table, table.c.source_key).in_(chunk)))
    for table, frame in zip(OUTPUTS, _frames(result), strict=True):
        insert_frame(dst, table, frame, chunk_size)
