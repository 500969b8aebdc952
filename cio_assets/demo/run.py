"""`make demo`: generate the sample shop, materialise every partition in one run, print a summary.

The demo uses the embedded SQLite databases under `.cio/` (`CIO_DATA_DIR`; it never writes to the database
named by `CIO_MYSQL_URL`), and runs against the Dagster instance in `$DAGSTER_HOME`, so `make dev` afterwards
shows the same materialisations in the UI. With a platform preset (`make demo CIO_SOURCE_MAPPING=magento2`), the
sample shop is that platform's, in its own tables, in the MariaDB database `CIO_DEMO_MYSQL_URL` names (the
platform's tables are MySQL's), read through the preset.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Mapping
from datetime import date, timedelta
from itertools import groupby
from pathlib import Path

import dagster as dg
from sqlalchemy import Connection, Row, Select, Table, and_, create_engine, func, inspect, make_url, or_, select

from cio_assets.config import Environment
from cio_assets.defs import build_definitions
from cio_assets.defs.automation.job import refresh
from cio_assets.defs.partitions import daily_partitions
from cio_assets.defs.resources import SourceDatabase, StateDatabase
from cio_assets.demo.platforms import magento2, woocommerce
from cio_assets.demo.shop import (
    MESSY_CASES,
    NEGATIVE_TOTAL,
    UNKNOWN_STATUS,
    WHOLESALE_LINES,
    ShopSize,
    generate_shop,
)
from cio_assets.lib.engines import Origin, create_database_if_missing, shown_url
from cio_assets.schema.state import (
    attribute_snapshot,
    event_log,
    identity_conflicts,
    identity_map,
    invalid_values,
    quarantine,
    rejected_rows,
    unresolved_identifiers,
)

SYNC_ASSETS = ("customerio_people", "customerio_events")

# The sample shop's rows that must not stop the feed, named in the summary: case -> (source table, label).
BAD_ROWS = {
    "wholesale_order_400_lines": ("orders", f"order {{}} ({WHOLESALE_LINES} lines)"),
    "orphan_order": ("orders", "order {} (deleted customer)"),
    "overlong_first_name": ("customers", "customer {} (1,020-byte first name)"),
    "negative_total_order": ("orders", f"order {{}} (total {NEGATIVE_TOTAL})"),
    "unknown_status_order": ("orders", f"order {{}} (status {UNKNOWN_STATUS})"),
    "paid_before_created": ("orders", "order {} (paid before created)"),
}
OUTCOMES = {"held": "held back", "clipped": "clipped to fit", "truncated": "truncated to fit"}


def main() -> None:
    started = time.monotonic()
    env = Environment.read()
    state_url = env.demo.state_url
    defs = build_definitions(env)
    partitions = daily_partitions(env.partitions)
    _fresh_sqlite(state_url)
    # History ends yesterday (business time), so every partition up to today holds the shop's usual
    # traffic and the volume and freshness checks judge a live-looking shop, not a stale sample.
    yesterday = date.fromisoformat(partitions.get_last_partition_key()) - timedelta(days=1)
    platform = PLATFORMS.get(env.source.mapping)
    if platform is None:
        shop_url = env.demo.shop_url
        _fresh_sqlite(shop_url)
        source = create_engine(shop_url)
        counts = generate_shop(source, ShopSize(end=yesterday, steady_rates=True))
        source.dispose()
        print(f"Generated the sample shop in {_path(shop_url)}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    else:
        shop_url = env.demo.demo_mysql_url
        create_database_if_missing(shop_url, Origin("demo shop", "CIO_DEMO_MYSQL_URL", shown_url(shop_url)))
        prefix = env.source.table_prefix or None
        truth = platform.generate(shop_url, customers=PLATFORM_CUSTOMERS, end=yesterday, **_prefix(prefix))
        print(f"Generated a sample {env.source.mapping} shop in {shown_url(shop_url)}:\n{truth.summary()}")

    first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    print(f"Materialising every partition {first}...{last} in one run (single-run backfill)…")
    source_resource = SourceDatabase(url=shop_url, mapping=env.source.mapping, table_prefix=env.source.table_prefix)
    resources = {"source": source_resource, "state": StateDatabase(url=state_url)}
    result = _materialize_everything(defs, first, last, resources)
    if not result.success:
        raise SystemExit("The demo run failed; see the log above.")
    print(summary(state_url, time.monotonic() - started, sample_cast=platform is None))
    print(delivery_report(_sync_metadata(result)))
    if platform is None:
        print("Open the Dagster UI on the same data with: make dev")
    else:
        shop = f"CIO_SOURCE_MAPPING={env.source.mapping} CIO_MYSQL_URL={shown_url(shop_url)}"
        print(f"Check the shop with: make doctor {shop}")
        print(f"Open the Dagster UI on the same data with: make dev {shop} CIO_STATE_URL={state_url}")


# The platform presets' sample shops: their generators write the platform's own tables (demo/platforms/).
PLATFORMS = {"woocommerce": woocommerce, "magento2": magento2}
PLATFORM_CUSTOMERS = 500


def _prefix(prefix: str | None) -> dict[str, str]:
    return {} if prefix is None else {"prefix": prefix}


def _materialize_everything(
    defs: dg.Definitions, first: str, last: str, resources: Mapping[str, object]
) -> dg.ExecuteInProcessResult:
    home = os.environ.get("DAGSTER_HOME")
    if home:
        Path(home).mkdir(parents=True, exist_ok=True)  # Dagster insists the directory exists
    with dg.DagsterInstance.get() if home else dg.DagsterInstance.ephemeral() as instance:
        return run_refresh(defs, instance, first, last, resources)


def run_refresh(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: str, last: str, resources: Mapping[str, object]
) -> dg.ExecuteInProcessResult:
    """The job the sensor and the schedule launch, over the partitions `first`...`last` in one run.

    The run names its assets (every asset the job materialises, with their checks), so the UI shows its
    Target and puts it on the Overview timeline. The source's freshness check is left out: it judges a live
    shop against the clock, and a generated sample is not live.

    `resources` replace the definitions' own of the same name. They are bound through a copy of the
    definitions: a selection rebuilds the job from its assets, which keep the resources they were bound to.
    A selection of assets also brings back every check on them, so the copy holds only the checks the job runs,
    and its job names them: the read-back (`customerio_people_reconciled`) is not one of them, it runs in a run
    of its own (`read_back`) so that it never holds up the events."""
    job = defs.resolve_job_def(refresh.name)
    checks = job.asset_layer.asset_graph.asset_check_keys
    run_defs = dg.Definitions(
        assets=defs.assets,
        asset_checks=[c for c in defs.asset_checks or [] if set(c.check_keys) <= checks],
        jobs=[
            dg.define_asset_job(
                refresh.name,
                selection=dg.AssetSelection.assets(*job.asset_layer.executable_asset_keys).without_checks()
                | dg.AssetSelection.checks(*checks),
                description=refresh.description,
            )
        ],
        resources={**(defs.resources or {}), **resources},
        executor=defs.executor,
    )
    job = run_defs.resolve_job_def(refresh.name)
    return job.execute_in_process(
        instance=instance,
        asset_selection=sorted(job.asset_layer.executable_asset_keys),
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )


def summary(state_url: str, elapsed: float, sample_cast: bool = True) -> str:
    """What the run wrote, read back from the state tables; a missing or empty table shows as "none".
    `sample_cast`: the reference sample shop's bad rows, each with what became of it."""
    state = create_engine(state_url)
    with state.connect() as conn:
        [(people,)] = _query(conn, select(func.count(func.distinct(identity_map.c.person_id)))) or [(0,)]
        [(snapshot_rows,)] = _query(conn, select(func.count()).select_from(attribute_snapshot)) or [(0,)]
        [(with_rows,)] = _query(conn, select(func.count(func.distinct(attribute_snapshot.c.person_id)))) or [(0,)]
        lines = [
            "",
            "Summary",
            "=======",
            f"People: {people} in identity_map; {with_rows} with attribute snapshot rows ({snapshot_rows} rows)",
            *(
                [f"  ({people - with_rows} whose every change is set aside or held back: see below)"]
                if people > with_rows
                else []
            ),
            *_consent_lines(conn),
            "Events by name:",
            *_or_none(f"  {name:<22} {n:>6}" for name, n in _query(conn, _counted(event_log.c.name))),
            "",
            "What happened to bad input",
            "--------------------------",
            *_bad_input(conn, sample_cast),
            f"Done in {elapsed:.1f} s. Tables are in {_path(state_url)}.",
        ]
    state.dispose()
    return "\n".join(lines)


def _bad_input(conn: Connection, sample_cast: bool) -> list[str]:
    set_aside = _counted(rejected_rows.c.reason, rejected_rows.c.source_table).where(
        rejected_rows.c.released_at.is_(None)
    )
    # Reasons carry details ('negative_amount: total', 'first_name is 1020 bytes, clipped to 1000'): group them
    # by their first word, the code.
    adjusted: Counter[tuple[str, str, str]] = Counter()
    for asset, outcome, reason, n in _query(
        conn, _counted(quarantine.c.asset, quarantine.c.outcome, quarantine.c.reason)
    ):
        adjusted[asset, outcome, (re.findall(r"[A-Za-z_]+", reason) or ["?"])[0]] += n
    c = identity_conflicts.c
    conflicts = select(identity_conflicts).order_by(c.kind, c.identifier, c.member)
    return [
        "Source rows set aside by the hygiene rules (cio_rejected_rows, not released):",
        *_or_none(f"  {reason:<24} {table:<14} {n:>6}" for reason, table, n in _query(conn, set_aside)),
        "Derived rows held back or changed to fit Customer.io (cio_quarantine):",
        *_or_none(
            f"  {asset:<20} {outcome:<10} {code:<24} {n:>6}" for (asset, outcome, code), n in adjusted.most_common()
        ),
        "Invalid values (nulled, with a reason):",
        *_or_none(f"  {column:<22} {n:>6}" for column, n in _query(conn, _counted(invalid_values.c.column_name))),
        "Unresolved identifiers (listed, left out of Customer.io):",
        *_or_none(f"  {reason:<40} {n:>5}" for reason, n in _query(conn, _counted(unresolved_identifiers.c.reason))),
        "Identity conflicts:",
        *_or_none(_conflict_lines(_query(conn, conflicts))),
        *(["The sample shop's bad rows:"] if sample_cast else []),
        *(
            _bad_row_line(conn, case, source_id)
            for case in (BAD_ROWS if sample_cast else ())
            for source_id in MESSY_CASES[case][BAD_ROWS[case][0]]
        ),
    ]


def _bad_row_line(conn: Connection, case: str, source_id: int) -> str:
    """What became of one of the cast's bad rows, from every listing that names it."""
    table, label = BAD_ROWS[case]
    key = str(source_id)
    r, q, u = rejected_rows.c, quarantine.c, unresolved_identifiers.c
    # A derived row names its source row, or only itself: the order's event, the customer's person.
    if table == "orders":
        items = [f"order_placed:{key}"]
    else:
        person = select(identity_map.c.person_id).where(
            identity_map.c.identifier_type == "customer_id", identity_map.c.identifier == key
        )
        items = [row.person_id for row in _query(conn, person)]
    set_aside = (
        select(r.reason, r.column_name)
        .where(r.source_table == table, r.source_key == key, r.released_at.is_(None))
        .order_by(r.reason, r.column_name)
    )
    listed = or_(and_(q.source_table == table, q.source_key == key), q.item_key.in_(items))
    adjusted = select(q.outcome, q.asset, q.reason).where(listed).order_by(q.asset, q.day)
    unresolved = select(u.reason).where(u.source_table == table, u.source_key == key)
    outcomes = [
        *(
            f"set aside, {reason} ({', '.join(row.column_name for row in rows)})"
            for reason, rows in groupby(_query(conn, set_aside), key=lambda row: row.reason)
        ),
        *(f"{OUTCOMES.get(row.outcome, row.outcome)} in {row.asset} ({row.reason})" for row in _query(conn, adjusted)),
        *(f"unresolved ({row.reason})" for row in _query(conn, unresolved)),
    ]
    return f"  {label.format(source_id):<36} " + ("; ".join(dict.fromkeys(outcomes)) or "not listed anywhere")


def _sync_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    """The metadata of each sync asset's materialisation (a range run records the run's own on each)."""
    found = {}
    for node in SYNC_ASSETS:
        materializations = result.asset_materializations_for_node(node)
        if materializations:
            found[node] = {key: value.value for key, value in materializations[0].metadata.items()}
    return found


def delivery_report(metadata: dict[str, dict[str, object]]) -> str:
    """What each sync asset sent or, in a dry run (the demo has no credentials), planned to send."""
    lines = []
    for node in SYNC_ASSETS:
        m = metadata.get(node)
        if m is None:
            lines.append(f"  {node:<18} not materialised")
            continue
        dry_run = m.get("dry_run", True)
        items = m.get("items_planned" if dry_run else "items_sent", 0)
        outbox = f" → {m['outbox']}" if dry_run and m.get("outbox") else ""
        lines.append(
            f"  {node:<18} {items:>6} items {'planned' if dry_run else 'sent'} in {m.get('batches', 0)} batches,"
            f" {m.get('rejected', 0)} refused{outbox}"
        )
    people = metadata.get("customerio_people", {})
    if "unsubscribe_mode" in people:  # CIO_UNSUBSCRIBE, as the run applied it
        lines.append(
            f"  consent (CIO_UNSUBSCRIBE={people['unsubscribe_mode']}): unsubscribed: true for "
            f"{people['people_unsubscribed']} people (an e-mail opt-out; never for unknown consent), false for "
            f"{people['people_resubscribed']} (undoing the pipeline's own true), "
            f"{people['people_resubscribe_withheld']} kept unsubscribed without an opt-out on record"
        )
    if "people_erased_in_customerio" in people:  # erasure, merges and anonymous ids (delivery/profiles.py)
        lines.append(
            f"  profiles: {people['people_erased_in_customerio']} erased ({people['erasure_action']}, "
            f"CIO_ERASURE), {people['vanished_deleted_in_customerio']} vanished deleted (CIO_VANISHED="
            f"{people['vanished_mode']}), {people['merges']} merges ({people['merges_pending']} pending, "
            f"CIO_MERGE_DUPLICATES={people['merge_mode']}), {people['anonymous_ids']} anonymous ids joined"
        )
    events = metadata.get("customerio_events", {})
    if "event_names" in events:  # CIO_EVENT_FAMILIES and CIO_EVENT_NAMES, as the run applied them
        names = events["event_names"]
        sent = ", ".join(family if name == family else f"{family} as {name!r}" for family, name in names.items())
        left_out = events.get("events_family_off", 0)
        lines.append(f"  event families sent: {sent}; {left_out} events of families left out (CIO_EVENT_FAMILIES)")
        for family, why in (events.get("event_families_off") or {}).items():  # the shop has no such concept
            lines.append(f"  event family off: {family}: {why}")
    dry_run = any(m.get("dry_run", True) for m in metadata.values())
    note = " (dry run: nothing left this machine; the exact request bodies are in the outbox)" if dry_run else ""
    return "\n".join([f"Customer.io delivery{note}:", *lines])


def _consent_lines(conn: Connection) -> list[str]:
    """Each channel's consent in every person's latest snapshot row: opted in, opted out, never asked, eligible."""
    t = attribute_snapshot
    if not inspect(conn).has_table(t.name):
        return []
    latest = select(t.c.person_id, func.max(t.c.day).label("day")).group_by(t.c.person_id).subquery()
    joined = t.join(latest, and_(t.c.person_id == latest.c.person_id, t.c.day == latest.c.day))
    lines = ["Marketing consent (each person's latest snapshot row):"]
    for label, opt_in, eligible in (
        ("e-mail", t.c.email_opt_in, t.c.email_eligible),
        ("SMS", t.c.sms_opt_in, t.c.sms_eligible),
    ):
        states = dict(conn.execute(select(opt_in, func.count()).select_from(joined).group_by(opt_in)).all())
        [(eligible_people,)] = conn.execute(select(func.count()).select_from(joined).where(eligible))
        lines.append(
            f"  {label:<7} {states.get(True, 0):>6} opted in, {states.get(False, 0)} opted out, "
            f"{states.get(None, 0)} never asked (unknown); {eligible_people} eligible"
        )
    return lines


def _conflict_lines(rows: list[Row]) -> list[str]:
    lines = []
    for (kind, identifier), group in groupby(rows, key=lambda row: (row.kind, row.identifier)):
        members = ", ".join(f"{row.member}{' (survivor)' if row.is_survivor else ''}" for row in group)
        lines.append(f"  {kind}: {identifier} → {members}")
    return lines


def _counted(*columns) -> Select:
    """Rows per value of `columns`, most first."""
    return select(*columns, func.count()).group_by(*columns).order_by(func.count().desc(), *columns)


def _query(conn: Connection, statement: Select) -> list[Row]:
    """The statement's rows; none when a table it reads does not exist (yet)."""
    tables = [table for table in statement.get_final_froms() if isinstance(table, Table)]
    if not all(inspect(conn).has_table(table.name) for table in tables):
        return []
    return list(conn.execute(statement))


def _or_none(lines) -> list[str]:
    return list(lines) or ["  none"]


def _path(url: str) -> str:
    return os.path.relpath(make_url(url).database or "")


def _fresh_sqlite(url: str) -> None:
    """The demo starts from nothing: remove the file, make sure its directory exists."""
    path = Path(make_url(url).database or "")
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main()
