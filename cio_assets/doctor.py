"""`doctor`: what the pipeline will make of a shop, on one screen, before the first sync. It only reads.

    python -m cio_assets doctor        (make doctor)

With the source mapping (CIO_SOURCE_MAPPING, CIO_SOURCE_TABLE_PREFIX) and the shop (CIO_MYSQL_URL; empty: the
demo's sample shop) it reports
- each concept: its tables found or missing, its rows, or why the shop has none;
- the values no entry of the mapping names (order and subscription statuses), with their counts;
- keys carried by more than one row (set aside as duplicate_key by the pipeline);
- consent: opted in, opted out, never asked;
- time-zone sanity: each concept's newest time against now (a time in the future is the signature of a zone
  mistake);
- the event families that will be sent, and those that are off with why;
- the plans of the hot queries (change detection, a day's orders, a person's history, the lines of an order),
  with a warning and the CREATE INDEX statement for every full scan an index would avoid.

It exits 1 when the pipeline could not run on the shop (a table or column missing, the shop unreachable), else 0;
warnings do not fail it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Column, Connection, DateTime, Engine, Select, func, literal, make_url, select, text
from sqlalchemy.exc import DBAPIError

from cio_assets.config import Environment, PipelineSettings, SettingsError
from cio_assets.lib.engines import DatabaseError, Origin, driver_message, engine_for, shown_url
from cio_assets.lib.timestamps import to_source_naive, to_unix_seconds, utc_now
from cio_assets.mapping.check import SourceSchemaError, check_source
from cio_assets.mapping.compile import UNMAPPED, Relations
from cio_assets.mapping.spec import ColumnSpec, ConceptSpec, MappingError, MappingSpec
from cio_assets.schema.shop import (
    CONCEPTS,
    CONSENT,
    cart_items,
    carts,
    customers,
    is_paid,
    order_items,
    orders,
    refunds,
    subscriptions,
    vocabulary,
)
from cio_assets.tracking.binlog import key_rules
from cio_assets.tracking.binlog import readiness as binlog_readiness
from cio_assets.tracking.table_times import read_table_times

OK, WARN, ERROR = "ok", "warn", "error"
_MARK = {OK: "  ✓", WARN: "  !", ERROR: "  ✗"}
# A time this far past now is a zone mistake, not a clock skew.
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass
class Section:
    title: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # (level, text)

    def add(self, level: str, text_: str) -> None:
        self.lines.append((level, text_))


@dataclass
class Report:
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        self.sections.append(Section(title))
        return self.sections[-1]

    @property
    def failed(self) -> bool:
        return any(level == ERROR for section in self.sections for level, _ in section.lines)

    def advised_indexes(self) -> list[str]:
        """Every CREATE INDEX statement the report advises, once each, in order (`make bench BENCH_INDEXES=doctor`
        applies them, to measure the shop as doctor would have it)."""
        found = (re.findall(r"CREATE INDEX [^;]+;", line) for section in self.sections for _, line in section.lines)
        return list(dict.fromkeys(statement for statements in found for statement in statements))

    def render(self) -> str:
        out: list[str] = []
        for section in self.sections:
            out.append(section.title)
            out += [f"{_MARK[level]} {line}" for level, line in section.lines]
            out.append("")
        errors = sum(level == ERROR for s in self.sections for level, _ in s.lines)
        warnings = sum(level == WARN for s in self.sections for level, _ in s.lines)
        out.append(f"{errors} error(s), {warnings} warning(s).")
        return "\n".join(out)


# --- the diagnosis -----------------------------------------------------------------------------------------


def diagnose(engine: Engine, mapping: MappingSpec, settings: PipelineSettings, where: str) -> Report:
    """Everything `doctor` reports on a shop. Nothing is written."""
    report = Report()
    head = report.section(f"Source mapping: {mapping.shown}")
    head.add(OK, mapping.about or mapping.name)
    head.add(OK, f"table prefix {mapping.prefix!r}; shop: {where}")
    try:
        relations = check_source(engine, mapping, where)
    except SourceSchemaError as error:
        report.section("The shop against the mapping").add(ERROR, str(error))
        return report
    relations.install(engine)
    with engine.connect() as conn:
        _concepts(report, conn, mapping, relations)
        _unmapped(report, conn)
        _keys(report, conn, relations)
        _consent(report, conn)
        _times(report, conn, mapping, settings, relations)
        _families(report, mapping, settings)
        _plans(report, conn, mapping, relations)
        _notes(report, conn, relations, settings.change_lookback)
        _binlog(report, conn, relations)
    return report


def _concepts(report: Report, conn: Connection, mapping: MappingSpec, relations: Relations) -> None:
    section = report.section("Concepts")
    absent = mapping.absent()
    for name, table in CONCEPTS.items():
        spec = mapping.concepts.get(name)
        if name in relations.present and spec is not None:
            rows = conn.execute(select(func.count()).select_from(table)).scalar_one()
            tables = ", ".join(dict.fromkeys([spec.table, *(lookup.table for lookup in spec.lookups.values())]))
            section.add(OK, f"{name}: {rows:,} rows (from {tables})")
        elif spec is not None:  # optional, and its table is missing
            section.add(OK, f"{name}: none (the optional table {spec.table} is not in the shop)")
        else:
            section.add(OK, f"{name}: none: {absent[name]}")


def _unmapped(report: Report, conn: Connection) -> None:
    section = report.section("Statuses the pipeline has no word for (set aside, listed with their value)")
    found = False
    for table in (orders, subscriptions):
        statement = (
            select(table.c.status, func.count().label("rows"))
            .where(table.c.status.is_(None) | table.c.status.not_in(vocabulary(table.c.status) or ()))
            .group_by(table.c.status)
            .order_by(func.count().desc())
        )
        for status, rows in conn.execute(statement):
            found = True
            value = "NULL" if status is None else repr(status.removeprefix(UNMAPPED))
            section.add(WARN, f"{table.name}.status {value}: {rows:,} rows; map it in a copy of the mapping's values")
    if not found:
        section.add(OK, "every order and subscription status maps onto the pipeline's")


def _keys(report: Report, conn: Connection, relations: Relations) -> None:
    section = report.section("Keys")
    for name in _present(relations):
        table = CONCEPTS[name]
        if "id" not in table.c:
            continue
        statement = select(func.count(), func.count(table.c.id.distinct()), func.count(table.c.id))
        rows, distinct, with_key = conn.execute(statement).one()
        if rows - with_key:
            section.add(WARN, f"{name}: {rows - with_key:,} rows without an id (set aside)")
        if with_key - distinct:
            section.add(
                WARN, f"{name}: {with_key - distinct:,} rows share an id with another (set aside as duplicate_key)"
            )
    if not section.lines:
        section.add(OK, "every key is carried by one row")


def _consent(report: Report, conn: Connection) -> None:
    section = report.section("E-mail consent")
    column = customers.c.accepts_email_marketing
    # Keys come back as 1/0 (MariaDB) or True/False (SQLite): equal in Python, so one lookup each.
    counts = {
        None if key is None else bool(key): rows
        for key, rows in conn.execute(select(column, func.count()).group_by(column))
    }
    shown = {CONSENT[0]: counts.get(True, 0), CONSENT[1]: counts.get(False, 0), CONSENT[2]: counts.get(None, 0)}
    total = sum(shown.values())
    section.add(OK, ", ".join(f"{state.replace('_', ' ')} {count:,}" for state, count in shown.items()))
    if total and shown[CONSENT[2]] == total:
        section.add(WARN, "nobody's consent is known: nobody is unsubscribed, and nobody is e-mail eligible")


def _times(report: Report, conn: Connection, mapping: MappingSpec, settings: PipelineSettings, relations: Relations):
    section = report.section("Time zones (each concept's newest time, read in its zone, against now)")
    zones = settings.zones(mapping)
    now = utc_now()
    for name in _present(relations):
        table = CONCEPTS[name]
        zone = zones.of(name)
        for column in _time_columns(table):
            newest = conn.execute(
                select(func.max(column)).where(column <= to_source_naive(now + timedelta(days=365), zone))
            ).scalar_one_or_none()
            if newest is None:
                continue
            (seconds,) = to_unix_seconds(pd.Series([newest]), zone)
            ahead = timedelta(seconds=int(seconds) - int(now.timestamp()))
            if ahead > FUTURE_TOLERANCE:
                hours = round(ahead / timedelta(hours=1), 1)
                section.add(
                    WARN,
                    f"{name}.{column.name} (zone {zone.key}): the newest is {hours:g} h in the future; if the shop "
                    "has no such rows, its zone is wrong (the mapping's time_zone, CIO_SOURCE_TZ)",
                )
            else:
                section.add(OK, f"{name}.{column.name} (zone {zone.key}): newest {_ago(-ahead)} ago")


def _binlog(report: Report, conn: Connection, relations: Relations) -> None:
    """Whether the server and the user allow binlog capture (CIO_CHANGE_CAPTURE=binlog, `tracking/binlog.py`), and
    which of the mapping's tables it would see changed that polling cannot (no change time)."""
    section = report.section("Binlog capture (CIO_CHANGE_CAPTURE=binlog)")
    if conn.dialect.name != "mysql":
        section.add(WARN, f"{conn.dialect.name} keeps no binlog: polling only (CIO_CHANGE_CAPTURE=poll)")
        return
    try:
        problems = binlog_readiness(conn)
    except DBAPIError as error:
        conn.rollback()
        problems = [f"the server's settings could not be read: {error.orig}"]
    for problem in problems:
        section.add(WARN, f"{problem}; until then, keep CIO_CHANGE_CAPTURE=poll")
    if not problems:
        rules = key_rules(relations.mapping)
        tables = sorted(relations.all_tables())
        unmapped = [table for table in tables if table not in rules]
        section.add(OK, "the server logs rows and the user may read them: CIO_CHANGE_CAPTURE=binlog works here")
        if unmapped:
            section.add(
                OK,
                f"rows of {', '.join(unmapped)} are not traced to a key: a change there launches a run, and the "
                "run finds what changed by its marks",
            )


def _notes(report: Report, conn: Connection, relations: Relations, settle: timedelta) -> None:
    """Whether a run or a sensor tick with nothing new can leave the shop unread: the server's notes on when each
    table a concept reads was last written (`tracking/table_times.py`)."""
    section = report.section("With nothing written (the server's note of each table's last write)")
    concepts = {name: relations.tables_of(name) for name in _present(relations)}
    with conn.engine.connect() as own:
        reading = read_table_times(own, {table for tables in concepts.values() for table in tables}, settle)
    if reading.read_at is None:
        section.add(WARN, f"{conn.dialect.name} keeps no such notes: every run and sensor tick reads every mark")
        return
    for name, tables in concepts.items():
        missing = sorted(table for table in tables if reading.notes.get(table) is None)
        if missing:
            section.add(
                WARN,
                f"{name}: no note for {', '.join(missing)} (not written since the server started, or altered "
                "since): its marks are read in every run and tick until the next write",
            )
        elif tables:
            last = timedelta(seconds=reading.read_at - max(int(reading.notes[table] or 0) for table in tables))
            section.add(OK, f"{name}: {', '.join(sorted(tables))} last written {_ago(last)} ago")
    if reading.sees_open:
        section.add(OK, "open transactions are visible (PROCESS): a note is trusted once its second has passed")
    else:
        section.add(
            WARN,
            "open transactions are not visible (no PROCESS privilege): a note is trusted only once "
            f"{_ago(settle)} old (CIO_CHANGE_LOOKBACK_SECONDS); GRANT PROCESS ON *.* to the pipeline's user to trust "
            "it at once",
        )


def _present(relations: Relations) -> list[str]:
    """The concepts the shop has, in the pipeline's order."""
    return [name for name in CONCEPTS if name in relations.present]


def _time_columns(table) -> Iterator[Column]:
    for name in ("updated_at", "paid_at", "created_at", "linked_at", "requested_at"):
        if name in table.c and isinstance(table.c[name].type, DateTime):
            yield table.c[name]
            return


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h" if minutes < 48 * 60 else f"{minutes / 1440:.0f} days"


def _families(report: Report, mapping: MappingSpec, settings: PipelineSettings) -> None:
    section = report.section("Event families")
    off = mapping.families_off()
    sent = [family for family in settings.families if family not in off]
    section.add(OK, f"sent: {', '.join(sent) or 'none'}")
    for family, why in off.items():
        section.add(OK, f"off: {family}: {why}")


# --- query plans -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HotQuery:
    what: str
    statement: Select
    column: Column  # the canonical column its predicate is on: the one an index should cover
    after: datetime | None = None  # a change query's lower bound: where the mapping says changes show, asked there


def hot_queries(now: datetime) -> list[HotQuery]:
    """The queries whose cost must follow the change, not the shop: what the sensor and every run ask."""
    since = (now - timedelta(hours=1)).replace(tzinfo=None)
    day = (now - timedelta(days=1)).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    queries = [
        HotQuery(
            "a day's paid orders",
            select(orders.c.id).where(is_paid(orders), orders.c.paid_at >= day, orders.c.paid_at < day + timedelta(1)),
            orders.c.paid_at,
        ),
        HotQuery("a person's orders by id", select(orders.c.id).where(orders.c.customer_id == 1), orders.c.customer_id),
        HotQuery(
            "a person's orders by e-mail",
            select(orders.c.id).where(orders.c.email == literal("someone@example.com")),
            orders.c.email,
        ),
        HotQuery(
            "an order's lines", select(order_items.c.id).where(order_items.c.order_id == 1), order_items.c.order_id
        ),
        HotQuery("an order's refunds", select(refunds.c.id).where(refunds.c.order_id == 1), refunds.c.order_id),
        HotQuery("a cart's lines", select(cart_items.c.id).where(cart_items.c.cart_id == 1), cart_items.c.cart_id),
    ]
    for table in (customers, orders, carts, cart_items, subscriptions, refunds):
        column = next(_time_columns(table), None)
        if column is not None:
            queries.append(
                HotQuery(f"changes to {table.name}", select(table.c.id).where(column > since), column, since)
            )
    return queries


@dataclass(frozen=True)
class Scan:
    table: str  # the shop's table read whole
    detail: str


def full_scans(plan: list[dict[str, Any]], dialect: str, sizes: dict[str, int] | None = None) -> list[Scan]:
    """The tables a plan reads whole, or mostly, although an index could spare it (MariaDB/MySQL EXPLAIN: type
    ALL without a possible key, a whole index read in its order, or an index that still reads MOST_ROWS_SHARE of a
    table of MOST_ROWS_FLOOR rows or more, `sizes` by plan name; SQLite EXPLAIN QUERY PLAN: SCAN without an index)."""
    scans = []
    for row in plan:
        if dialect == "sqlite":
            detail = str(row.get("detail", ""))
            match = re.match(r"SCAN (?:TABLE )?(\w+)(?: AS \w+)?$", detail)
            if match:
                scans.append(Scan(match.group(1), detail))
            continue
        table, rows = str(row.get("table")), plan_rows(row)
        size = (sizes or {}).get(table, 0)
        if str(row.get("type", "")).upper() in ("ALL", "INDEX") and not row.get("possible_keys"):
            scans.append(Scan(table, f"{row.get('select_type')} scans about {rows:,} rows"))
        elif size >= MOST_ROWS_FLOOR and rows >= size * MOST_ROWS_SHARE and not _per_outer_row(row):
            by = f"by {row['key']}, " if row.get("key") else ""
            scans.append(Scan(table, f"{by}about {rows:,} of its {size:,} rows"))
    return scans


def plan_rows(row: dict[str, Any]) -> int:
    """The rows a MariaDB/MySQL plan row estimates it reads (MariaDB may add the share a rowid filter keeps:
    '5 (8%)')."""
    return int(re.match(r"\d*", str(row.get("rows") or "")).group() or 0)


def _per_outer_row(row: dict[str, Any]) -> bool:
    """A table read by a key taken from a table before it in the plan: its rows are per row of that table."""
    return any("." in part for part in str(row.get("ref") or "").split(","))


# A table smaller than this is read whole by any plan the optimizer likes: no warning. A hot query reads a day, a
# person or an order: an index that leaves a tenth of a table to read serves none of them.
MOST_ROWS_FLOOR = 1000
MOST_ROWS_SHARE = 0.1


def table_sizes(conn: Connection, mapping: MappingSpec) -> dict[str, int]:
    """Each name a plan may show (the mapping's aliases, and the tables themselves) → the table's estimated rows."""
    if conn.dialect.name == "sqlite":
        return {}
    estimates = {
        str(name).lower(): int(rows or 0)
        for name, rows in conn.execute(
            text("SELECT table_name, table_rows FROM information_schema.tables WHERE table_schema = DATABASE()")
        )
    }
    sizes = dict(estimates)
    for spec in mapping.concepts.values():
        for alias, table in aliases(spec).items():
            sizes[alias] = estimates.get(table.lower(), 0)
    for name in list(sizes):  # a lookup's joins show as its alias with a number (um_1, and um_1_x inside)
        sizes.update({f"{name}_{n}": sizes[name] for n in range(1, 10)})
    return sizes


def explain(conn: Connection, relations: Relations, statement: Select) -> list[dict[str, Any]]:
    translated = relations.translate(statement)
    sql = str(translated.compile(conn.engine, compile_kwargs={"literal_binds": True}))
    return explain_sql(conn, sql.replace("%%", "%"))


def explain_sql(conn: Connection, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The plan of a statement given as SQL text, in the dialect's words."""
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    return [dict(row) for row in conn.execute(text(prefix + sql), params or {}).mappings()]


def create_index(table: str, column: str) -> str:
    """The statement doctor advises for an index on one column."""
    return f"CREATE INDEX ix_{table}_{column} ON {table} ({column});"


def aliases(spec: ConceptSpec) -> dict[str, str]:
    """alias → table, of the concept's base table, its own joins and its lookups."""
    found = {spec.alias.lower(): spec.table}
    for join in spec.joins:
        for table, alias in re.findall(r"JOIN\s+(\w+)\s+(?:AS\s+)?(\w+)", join, re.IGNORECASE):
            found[alias.lower()] = table
    found.update({lookup.alias.lower(): lookup.table for lookup in spec.lookups.values()})
    return found


def table_of(mapping: MappingSpec, name: str) -> str:
    """The shop's table behind a name a plan shows: an alias of the mapping's (a lookup's join carries a number
    after it: um_1, um_1_x), or the table itself."""
    plain = re.sub(r"(_\d+)(_x)?$", "", name).lower()
    for spec in mapping.concepts.values():
        table = aliases(spec).get(name.lower()) or aliases(spec).get(plain)
        if table:
            return table
    return name


def index_advice(mapping: MappingSpec, column: Column, scanned: str) -> str:
    """The CREATE INDEX that lets the predicate on `column` reach the scanned table, when the mapping reads it as
    a plain column of the base table or of a joined one; else why none can."""
    spec = mapping.concepts.get(str(column.table.name))
    sql = spec.columns[column.name].sql if spec and column.name in spec.columns else None
    plain = re.fullmatch(r"(\w+)\.(\w+)", (sql or "").strip())
    table = aliases(spec).get(plain.group(1).lower()) if spec and plain else None
    if plain and table:
        advice = create_index(table, plain.group(2))
        if table.lower() != scanned.lower():  # the index starts the plan from the predicate's table
            advice += f" (on the predicate's table, from which {scanned} is then read by key)"
        return advice
    return f"{column.table.name}.{column.name} is read as {sql!r}: computed, so no index serves it"


def _plans(report: Report, conn: Connection, mapping: MappingSpec, relations: Relations) -> None:
    section = report.section("Hot queries (their plans on this shop)")
    sizes = table_sizes(conn, mapping)
    for query in hot_queries(utc_now()):
        if str(query.column.table.name) not in relations.present:
            continue
        spec = mapping.concepts[str(query.column.table.name)].columns.get(query.column.name)
        if query.after is not None and spec is not None and spec.seen_in:
            _places(section, conn, relations, query, spec, sizes)
            continue
        try:
            plan = explain(conn, relations, query.statement)
        except DBAPIError as error:
            conn.rollback()
            section.add(WARN, f"{query.what}: could not be explained ({driver_message(error)[1]})")
            continue
        scans = full_scans(plan, conn.dialect.name, sizes)
        if not scans:
            section.add(OK, f"{query.what}: by index")
        for scan in scans:
            scanned = table_of(mapping, scan.table)
            advice = index_advice(mapping, query.column, scanned)
            section.add(WARN, f"{query.what}: reads {scanned} ({scan.detail}). {advice}")


def _places(
    section: Section, conn: Connection, relations: Relations, query: HotQuery, column: ColumnSpec, sizes: dict[str, int]
) -> None:
    """A change time the mapping says where it shows (`seen_in`): each place's plan, as the pipeline asks it."""
    for seen in relations.places(column):
        what = f"{query.what}, seen in {seen.table}"
        try:
            plan = explain_sql(conn, seen.select(f"{seen.at} > :after"), {"after": query.after})
        except DBAPIError as error:
            conn.rollback()
            section.add(WARN, f"{what}: could not be explained ({driver_message(error)[1]})")
            continue
        scans = full_scans(plan, conn.dialect.name, {seen.alias.lower(): sizes.get(seen.table.lower(), 0), **sizes})
        plain = re.fullmatch(rf"{re.escape(seen.alias)}\.(\w+)", seen.at.strip())
        if plain is None:  # no index can serve a computed time, whatever the plan reads first
            read = max((plan_rows(row) for row in plan), default=0)
            detail = scans[0].detail if scans else f"about {read:,} rows"
            computed = f"its time is read as {seen.at!r}: computed, so no index serves it"
            section.add(WARN, f"{what}: reads {seen.table} ({detail}) each time. {computed}")
            continue
        if not scans:
            section.add(OK, f"{what}: by index")
        for scan in scans:
            section.add(WARN, f"{what}: reads {seen.table} ({scan.detail}). {create_index(seen.table, plain.group(1))}")


# --- the command -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    try:
        env = Environment.read()
        mapping = env.source.spec()
    except (SettingsError, MappingError) as error:
        print(f"doctor: {error}", file=sys.stderr)
        return 1
    url = env.source.url or env.demo.shop_url
    origin = Origin("source database", env.source.variable("url"), shown_url(url))
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite" and database and not Path(database).is_file():
        hint = " (the demo's sample shop: `make demo` makes it)" if url == env.demo.shop_url else ""
        print(f"doctor: {origin.where}: there is no such file{hint}", file=sys.stderr)
        return 1
    engine = engine_for(url, origin)
    try:
        with origin.errors_named():
            report = diagnose(engine, mapping, env.pipeline, origin.where)
    except DatabaseError as error:
        print(f"doctor: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(report.render())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
