"""One run of the attribute snapshot: who changed in a range of days, and their state at the end of each day.

For every person whose inputs (profile, paid orders, refunds, subscriptions) changed during a day, one row
with their state as of the end of that day, computed from full history, a chunk of people at a time. A re-run
of a day writes the same rows, so backfills are safe; the first partition also covers all earlier history. A
person's day whose inputs include a source row set aside by the hygiene rules is held back, and a row that
breaks the contract is held back alone; both are noted in the run's `ContractTally` for `cio_quarantine`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Connection, and_, case, func, select

from cio_assets.attributes.compute import clip_text_attributes, compute_attributes
from cio_assets.attributes.queries import CHANGE_TABLES, as_of_instants, changed_people, read_history
from cio_assets.attributes.schema import attribute_snapshot_schema
from cio_assets.contract import ContractTally, split_by_contract
from cio_assets.hygiene.rejections import released_rows
from cio_assets.identity.captured import captured_people
from cio_assets.identity.erasure import erased_set
from cio_assets.identity.lookup import load_resolver, require_identity
from cio_assets.identity.membership import chunk_people, guest_spellings
from cio_assets.identity.resolve import EMAIL
from cio_assets.lib.days import PartitionRange, on_days
from cio_assets.lib.failures import StopRun
from cio_assets.lib.frames import DayFigures
from cio_assets.lib.timestamps import Clock, unix
from cio_assets.lib.writes import insert_frame, replace_days
from cio_assets.schema.shop import customers, order_items, orders, refunds, subscriptions
from cio_assets.schema.state import attribute_snapshot as SNAPSHOT
from cio_assets.schema.state import identity_map, still_not_null
from cio_assets.tracking.binlog import captured_since, read_through, release, save_through
from cio_assets.tracking.computed import last_computed
from cio_assets.tracking.cursors import deleted_since

ASSET = "attribute_snapshot"
# The tables whose rows carry a person's figures: a row deleted from one changes them (identity handles a deleted
# customer itself).
HOLD_FIGURES = (orders, refunds, subscriptions)
SCHEMA_CHECK = "attribute_snapshot_schema"
# The shop's tables the snapshot reads: any row added, deleted or edited in one of them recomputes.
SOURCES = (customers, orders, order_items, refunds, subscriptions)
COLUMNS = [c.name for c in SNAPSHOT.columns]
# Attributes that may be null, each with its null rate per day.
NULLABLE = [c for c in SNAPSHOT.columns if c.nullable]
RUN_FIGURES = ("run_rows", "run_people", "run_people_email_eligible", "run_people_sms_eligible")


@dataclass
class SnapshotRun:
    """What one run computed, wrote and held back."""

    tally: ContractTally
    totals: Counter[str] = field(default_factory=lambda: Counter({key: 0 for key in RUN_FIGURES}))
    without_profile: int = 0  # requests of people with no valid customer record yet
    erased_left_out: int = 0
    unresolved: int = 0  # changed source rows that resolve to nobody
    released: int = 0  # source rows released from quarantine during the range
    # Everyone's state on the range's last day computed again: identity found rows deleted from the shop since the
    # latest day was computed. A deleted row (an order, a refund) leaves no change time to find its person by; the
    # people sync sends only what differs from what Customer.io holds.
    everyone_again: bool = False
    captured_people: int = 0  # people whose rows binlog capture saw change, computed again on the last day


def compute_snapshot(
    src: Connection,
    dst: Connection,
    prange: PartitionRange,
    clock: Clock,
    tiers: list[tuple[str, float]],
    canonical_id: str,
    unknown_consent_eligible: bool,
    chunk_size: int,
    log: Callable[[str], None],
) -> SnapshotRun:
    """Replace the range's days in the snapshot with the rows of the people who changed (in `dst`'s transaction);
    the caller decides, from the returned tally, whether so many rows broke the contract that nothing may stay."""
    _require_nullable_consent(dst)
    schema = attribute_snapshot_schema(unix(clock.floor), unknown_consent_eligible)
    as_of = {key: unix(instant) for key, instant in as_of_instants(prange, clock.now).items()}
    run = SnapshotRun(ContractTally(ASSET, SCHEMA_CHECK))
    tally = run.tally
    resolver = load_resolver(dst)
    released = {table.name: released_rows(dst, table, prange) for table in CHANGE_TABLES}
    run.released = int(sum(len(rows) for rows in released.values()))
    changes = changed_people(src, resolver, prange, clock, chunk_size, released)
    latest = last_computed(dst, ASSET)
    last_day = prange.keys[-1]
    # What leaves no change time to find its person by counts on the latest day only: older days keep their rows.
    reaches = latest is None or last_day >= latest[0]
    run.everyone_again = reaches and latest is not None and deleted_since(dst, HOLD_FIGURES, latest[1])
    if run.everyone_again:
        everyone = dst.execute(select(identity_map.c.person_id).distinct()).scalars().all()
        changes.pairs = _on_day(changes.pairs, everyone, last_day)
        log(f"rows were deleted from the shop since the latest day was computed: everyone's {last_day} again")
    captured, through = captured_since(dst, read_through(dst, ASSET)) if reaches else ({}, None)
    if captured:
        found = captured_people(src, resolver, captured)
        run.captured_people = len(found)
        changes.pairs = _on_day(changes.pairs, sorted(found), last_day)
        log(f"{len(found)} people whose rows binlog capture saw change: their {last_day} again")
    run.unresolved = changes.unresolved
    require_identity(resolver, changes.unresolved)
    tally.note(changes.held)
    requests = changes.pairs.assign(as_of=changes.pairs["day"].map(as_of).astype("int64"))
    erased = erased_set(dst, requests["person_id"].unique())  # an erasure request keeps them out for good
    run.erased_left_out = len(erased)
    requests = requests[~requests["person_id"].isin(erased)]
    people = sorted(requests["person_id"].unique())
    log(
        f"{len(requests)} (person, day) changes for {len(people)} people over {len(prange.days)} day(s); "
        f"{tally.held_items} held back; {changes.unresolved} changed source rows resolve to nobody"
    )
    replace_days(dst, SNAPSHOT, prange.keys, pd.DataFrame(), chunk_size)
    spellings = guest_spellings(dst)
    for number, chunk in enumerate(chunk_people(people, resolver, spellings, chunk_size), start=1):
        history = read_history(src, chunk, resolver, clock)
        chunk_requests = requests[requests["person_id"].isin(chunk.person_ids)]
        rows, without_profile = compute_attributes(
            chunk_requests, history, tiers, canonical_id == EMAIL, unknown_consent_eligible
        )
        rows, clipped = clip_text_attributes(rows[COLUMNS])
        rows, broken = split_by_contract(rows, schema, key_column="person_id")
        tally.note(clipped)
        tally.note(broken)
        tally.written += insert_frame(dst, SNAPSHOT, rows, chunk_size)
        run.totals.update(run_figures(rows))  # update keeps zeros, where + drops them
        run.without_profile += without_profile
        log(f"chunk {number}: {len(rows)} rows ({tally.written} so far)")
    if through is not None:
        save_through(dst, ASSET, through, unix(clock.now))
        release(dst)
    return run


def _on_day(pairs: pd.DataFrame, people: list[str], day: str) -> pd.DataFrame:
    """The (person, day) pairs with each of `people` on `day` too."""
    more = pd.DataFrame({"person_id": pd.Series(people, dtype="object"), "day": day})
    return pd.concat([pairs, more], ignore_index=True).drop_duplicates(ignore_index=True)


def _require_nullable_consent(dst: Connection) -> None:
    """Unknown consent is written as NULL. A snapshot table created before consent had three states holds its opt-in
    columns NOT NULL, where MySQL outside strict mode would store an unknown as 0, an opt-out: stop and say how to
    fix it instead."""
    columns = still_not_null(dst, SNAPSHOT)
    if columns:
        modify = ", ".join(f"MODIFY {column} BOOLEAN NULL" for column in columns)
        raise StopRun(
            f"{SNAPSHOT.name}.{', '.join(columns)} is NOT NULL in the state database: it was created before consent "
            "had three states (NULL: unknown), and the pipeline never alters a table. Run "
            f"`ALTER TABLE {SNAPSHOT.name} {modify};` on the state database (CHANGELOG.md, upgrade notes)."
        )


def written_per_day(conn: Connection, days: list[str]) -> DayFigures:
    """Each day's rows as the table holds them: rows, people, people eligible per channel, and the null
    rate of every nullable attribute."""
    t = SNAPSHOT
    statement = (
        select(
            t.c.day,
            func.count().label("rows"),
            func.count(func.distinct(t.c.person_id)).label("people"),
            func.count(func.distinct(case((t.c.email_eligible, t.c.person_id)))).label("email"),
            func.count(func.distinct(case((t.c.sms_eligible, t.c.person_id)))).label("sms"),
            *(func.sum(case((c.is_(None), 1), else_=0)).label(f"null_{c.name}") for c in NULLABLE),
        )
        .where(on_days(t.c.day, days))
        .group_by(t.c.day)
    )
    with_rows = {row.day: row._mapping for row in conn.execute(statement)}
    figures: DayFigures = {}
    for day in days:
        row = with_rows.get(day)
        rows = int(row["rows"]) if row else 0
        figures[day] = {
            "dagster/row_count": rows,
            "people": int(row["people"]) if row else 0,
            "eligible/email": int(row["email"]) if row else 0,
            "eligible/sms": int(row["sms"]) if row else 0,
            # No rows, no rate: a zero would read as "every value present".
            **({f"null_rate/{c.name}": round(int(row[f"null_{c.name}"]) / rows, 4) for c in NULLABLE} if row else {}),
        }
    return figures


def written_in_run(conn: Connection, days: list[str]) -> dict[str, int]:
    """The whole run: rows, distinct people, and people eligible in their latest row of the range."""
    t = SNAPSHOT
    in_range = on_days(t.c.day, days)
    totals = conn.execute(select(func.count(), func.count(func.distinct(t.c.person_id))).where(in_range)).one()
    latest = select(t.c.person_id, func.max(t.c.day).label("day")).where(in_range).group_by(t.c.person_id)
    latest = latest.subquery()
    joined = t.join(latest, and_(t.c.person_id == latest.c.person_id, t.c.day == latest.c.day))
    eligible = conn.execute(
        select(
            func.coalesce(func.sum(case((t.c.email_eligible, 1), else_=0)), 0),
            func.coalesce(func.sum(case((t.c.sms_eligible, 1), else_=0)), 0),
        ).select_from(joined)
    ).one()
    return {
        "run_rows": int(totals[0]),
        "run_people": int(totals[1]),
        "run_people_email_eligible": int(eligible[0]),
        "run_people_sms_eligible": int(eligible[1]),
    }


def run_figures(rows: pd.DataFrame) -> Counter[str]:
    """`written_in_run`'s figures for rows written by this run, all of their people's rows of the range (a chunk
    holds every row of its people, and the range held nothing else once its days were replaced): counted from
    the rows in hand instead of reading a year of snapshot back (about 10 s at 100,000 customers)."""
    latest = rows.sort_values("day", kind="stable").drop_duplicates("person_id", keep="last")
    return Counter(
        {
            "run_rows": len(rows),
            "run_people": len(latest),
            "run_people_email_eligible": int(latest["email_eligible"].sum()),
            "run_people_sms_eligible": int(latest["sms_eligible"].sum()),
        }
    )
