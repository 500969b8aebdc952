"""A mapping, compiled: each concept becomes a SELECT over the shop's own tables whose columns carry the canonical
names and types, and every statement the pipeline runs on the source has the concept tables (`schema/shop.py`)
replaced by those SELECTs.

    SELECT orders.id, orders.paid_at FROM orders WHERE orders.paid_at >= ?
    -- on a WooCommerce shop runs as
    SELECT orders.id, orders.paid_at FROM (SELECT o.id AS id, od.date_paid_gmt AS paid_at, …
        FROM wp_wc_orders AS o LEFT JOIN wp_wc_order_operational_data AS od ON od.order_id = o.id
        WHERE o.type = 'shop_order') AS orders WHERE orders.paid_at >= ?

MariaDB and MySQL merge such a derived table into the outer query (as SQLite flattens it: it has joins and WHERE
conditions, never a subquery in its SELECT list, aggregates or LIMIT, which would stop MySQL merging it), so a
predicate on a column that is a base column reaches that column's index: a keyed lookup stays a keyed lookup.
`doctor` shows the plans. A concept the mapping leaves out (or an optional one whose table is missing) is a
SELECT of no rows.

A column computed from several tables (WooCommerce's customer change time: the user's usermeta last_update,
its MailPoet subscriber's updated_at) is read whole when a query asks for a range of it, unless the mapping says
where its changes are seen (`seen_in`): then a lower bound on it (`updated_at > :since`, alone or with an upper
bound) is answered in two steps. First each place it is seen gives the ids whose time falls in the range, each
through its own index, on a connection of its own; then the concept's rows are read by those ids, the range
itself still applied to them. Its latest value (the high-water mark) is the latest of its places'. So finding
what changed costs what changed, not the shop.

The stages never see any of this: `install` hooks the translation into the source engine, so they keep naming
the concepts, and read results by canonical names only.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from sqlalchemy import (
    Alias,
    BindParameter,
    ColumnElement,
    Connection,
    Engine,
    FromClause,
    Select,
    String,
    Subquery,
    Table,
    and_,
    case,
    event,
    false,
    literal,
    literal_column,
    null,
    select,
    text,
    type_coerce,
)
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList, ClauseElement

from cio_assets.mapping.spec import PLACEHOLDER, ColumnSpec, ConceptSpec, Lookup, MappingSpec, Seen
from cio_assets.schema.shop import CONCEPTS, vocabulary

# The status a source value no mapping entry names becomes: the hygiene rules set the row aside as an unknown
# status, and `rejected_rows` lists it with this value, e.g. 'unmapped:wc-shipped'.
UNMAPPED = "unmapped:"
# The suffix of a column that carries the shop's own value beside a canonical one computed from it.
RAW = "__raw"
MAX_LOOKUP_DEPTH = 3
# More ids than this from the places a change is seen, and the range is read as it is: a scan is then cheaper.
MOST_SEEN_IDS = 20_000
_SQL_OF = {operators.gt: ">", operators.ge: ">=", operators.lt: "<", operators.le: "<="}


class Relations:
    """Each concept's SELECT over the shop, and the translation of the pipeline's statements into them."""

    def __init__(self, mapping: MappingSpec, tables_found: set[str] | None = None) -> None:
        """`tables_found` (lower-case names in the shop) decides whether an optional concept is present; None:
        all are."""
        self.mapping = mapping
        self.tables_found = tables_found
        self.present = frozenset(
            name
            for name, spec in mapping.concepts.items()
            if not spec.optional or tables_found is None or spec.table.lower() in tables_found
        )
        # Each concept whole (the source check and doctor read these), and as each query reads it.
        self.selects = {name: self._select(name, None) for name in CONCEPTS}
        self._narrow: dict[tuple[str, frozenset[str]], Subquery] = {}
        self._tables: dict[str, frozenset[str]] = {}

    def _select(self, name: str, columns: frozenset[str] | None) -> Select:
        spec = self.mapping.concepts.get(name)
        if name not in self.present or spec is None:
            return empty_select(CONCEPTS[name])
        return concept_select(CONCEPTS[name], spec, self.tables_found, columns)

    def narrow(self, name: str, columns: frozenset[str]) -> Subquery:
        """The concept with only the columns a query reads, so that only their lookups are joined: a count or a
        list of ids costs no key/value lookup at all."""
        key = (name, columns)
        if key not in self._narrow:
            self._narrow[key] = self._select(name, columns).subquery(name)
        return self._narrow[key]

    def translate(self, statement: ClauseElement, conn: Connection | None = None) -> ClauseElement:
        """The statement with every concept table replaced by its SELECT over the shop, narrowed to the columns
        the statement reads from it; an alias of a concept (hygiene's key rule probes its own table under
        another name) gets its own, narrowed to what is read through the alias. With `conn`, a range of a column
        with `seen_in` is found through the places it is seen (each read on a connection of its own)."""
        used: dict[FromClause, set[str]] = {}
        for element in visitors.iterate(statement):
            if _concept_of(element) is not None:
                used.setdefault(element, set())
            # select(table) names the table, not its columns: they come from the selected columns
            columns = element.selected_columns if isinstance(element, Select) else [element]
            for column in columns:
                source = getattr(column, "table", None) if column.__visit_name__ == "column" else None
                if _concept_of(source) is not None:
                    used.setdefault(source, set()).add(column.key)
        by_from: dict[FromClause, FromClause] = {}
        for source, columns in used.items():
            table = _concept_of(source)
            narrowed = self.narrow(str(table.name), frozenset(columns))
            by_from[source] = narrowed if source is table else narrowed.alias(source.name)

        def concept_column(element: Any) -> Any:
            source = getattr(element, "table", None)
            if element.__visit_name__ == "column" and source in by_from:
                return by_from[source].c[element.key]
            return None

        def replace(element: Any) -> Any:
            found = None
            if conn is not None and isinstance(element, BooleanClauseList | BinaryExpression):
                found = seen_range(element)
            elif isinstance(element, Select):
                found = latest_seen(element)
            return found if found is not None else plain(element)

        def plain(element: Any) -> Any:
            """A concept table, one of its columns, or a comparison on a null_if column; None for the rest (also
            `replace` without the range rewrite, for the range itself, kept as the check on the rows read)."""
            if element in by_from:
                return by_from[element]
            if isinstance(element, BinaryExpression):
                return keyed(element)
            return concept_column(element)

        def seen_bounds(comparison: Any) -> tuple[Any, ColumnSpec, str, Any] | None:
            """(concept column, its mapping, SQL operator, bound) of `column > :bound` and the like, on a column with
            seen_in."""
            if not isinstance(comparison, BinaryExpression) or comparison.operator not in _SQL_OF:
                return None
            left = comparison.left
            concept = _concept_of(getattr(left, "table", None))
            if concept is None or getattr(left, "__visit_name__", None) != "column" or "id" not in concept.c:
                return None
            spec = self.mapping.concepts.get(str(concept.name))
            column_spec = spec.columns.get(left.key) if spec else None
            if column_spec is None or not column_spec.seen_in or not isinstance(comparison.right, BindParameter):
                return None
            value = comparison.right.effective_value
            return None if value is None else (left, column_spec, _SQL_OF[comparison.operator], value)

        def seen_range(clause: Any) -> Any:
            """A lower bound on a column with seen_in (with the upper bounds beside it in an AND): the concept's
            ids seen changing in that range AND the range itself; None to translate it as it is."""
            parts = list(clause.clauses) if isinstance(clause, BooleanClauseList) else [clause]
            if isinstance(clause, BooleanClauseList) and clause.operator is not operators.and_:
                return None
            bounds = [seen_bounds(part) for part in parts]
            lower = next((b for b in bounds if b is not None and b[2] in (">", ">=")), None)
            if lower is None:
                return None
            column, spec = lower[0], lower[1]
            on_column = [(b[2], b[3]) for b in bounds if b is not None and b[0] is column]
            ids = self._seen_ids(conn, spec, on_column)
            if ids is None:
                return None
            rest = [visitors.replacement_traverse(part, {}, plain) for part in parts]
            identity = by_from[column.table].c["id"]
            return and_(identity.in_(sorted(ids)) if ids else false(), *rest)

        def latest_seen(statement: Select) -> Any:
            """The latest value of a column with seen_in (`SELECT column … ORDER BY column DESC LIMIT 1`, as
            `tracking/marks.py` asks for it): the latest time its places hold, each read through its index."""
            columns = list(statement.selected_columns)
            orders = statement._order_by_clauses
            if len(columns) != 1 or len(orders) != 1 or statement._limit != 1 or statement._group_by_clauses:
                return None
            column = columns[0]
            if getattr(orders[0], "modifier", None) is not operators.desc_op or orders[0].element is not column:
                return None
            concept = _concept_of(getattr(column, "table", None))
            spec = self.mapping.concepts.get(str(concept.name)) if concept is not None else None
            column_spec = spec.columns.get(column.key) if spec else None
            if column_spec is None or not column_spec.seen_in:
                return None
            places = [seen.latest() for seen in self.places(column_spec)]
            if not places:
                return select(type_coerce(null(), column.type).label(column.key))
            latest = f"(SELECT MAX(latest) FROM ({' UNION ALL '.join(f'({p})' for p in places)}) AS seen)"
            return select(literal_column(latest, column.type).label(column.key))

        def keyed(comparison: BinaryExpression) -> Any:
            """`customer_id = ?` or `customer_id IN (…)` on a column whose mapping turns some values into NULL (a
            guest's 0): compared on the shop's own column, so that its index serves, minus the values that mean
            none. The same rows: a value that means none is NULL, which equals nothing."""
            if comparison.operator not in (operators.eq, operators.in_op):
                return None
            column = concept_column(comparison.left)
            raw = None if column is None else column.table.c.get(column.key + RAW)
            if raw is None:
                return None
            right = visitors.replacement_traverse(comparison.right, {}, replace)
            concept = _concept_of(comparison.left.table)
            spec = self.mapping.concepts[str(concept.name)].columns[column.key]  # type: ignore[union-attr]
            same = BinaryExpression(raw, right, comparison.operator, type_=comparison.type)
            return and_(same, raw.not_in(list(spec.null_if)))

        return visitors.replacement_traverse(statement, {}, replace)

    def places(self, column: ColumnSpec) -> list[Seen]:
        """The column's seen_in places whose tables the shop has (an optional one may be missing)."""
        return [
            seen
            for seen in column.seen_in
            if not seen.optional or self.tables_found is None or seen.table.lower() in self.tables_found
        ]

    def _seen_ids(self, conn: Connection, column: ColumnSpec, bounds: list[tuple[str, Any]]) -> set[int] | None:
        """The ids whose change time meets `bounds`, from each place the column is seen; None when there are
        more than MOST_SEEN_IDS (the range is then read as it is)."""
        params = {f"seen_{n}": value for n, (_, value) in enumerate(bounds)}
        ids: set[int] = set()
        with conn.engine.connect() as own:
            for seen in self.places(column):
                condition = " AND ".join(f"{seen.at} {op} :seen_{n}" for n, (op, _) in enumerate(bounds))
                found = own.execute(text(seen.select(condition)), params).scalars()
                ids.update(int(key) for key in found if key is not None)
                if len(ids) > MOST_SEEN_IDS:
                    return None
        return ids

    def tables_of(self, name: str) -> frozenset[str]:
        """The shop's tables (lower case) the concept reads: its base table, its joins and lookups, the tables its
        filters and expressions name, and the places its changes are seen. Whatever changes the concept changes one
        of these (`tracking/table_times.py` asks the server when each last changed). Found once per concept: every
        observation of the shop asks."""
        if name not in self._tables:
            self._tables[name] = self._tables_read(name)
        return self._tables[name]

    def all_tables(self) -> frozenset[str]:
        """The shop's tables (lower case) any present concept reads (`tables_of`)."""
        return frozenset(table for name in self.present for table in self.tables_of(name))

    def _tables_read(self, name: str) -> frozenset[str]:
        spec = self.mapping.concepts.get(name)
        if name not in self.present or spec is None:
            return frozenset()
        sql = " ".join(
            [
                str(self.selects[name]),
                *(seen.select("") for column in spec.columns.values() for seen in self.places(column)),
            ]
        )
        if self.tables_found is not None:
            return frozenset(t for t in self.tables_found if re.search(_name_pattern(t), sql, re.IGNORECASE))
        return frozenset(found.lower() for found in _TABLE_NAMED.findall(sql))

    def install(self, engine: Engine) -> None:
        """Translate every query the engine runs (stages name concepts; the shop has its own tables). Writes are
        left as they are: the pipeline never writes to the shop, and the demo and the tests write its tables."""
        _INSTALLED[engine] = self

        @event.listens_for(engine, "before_execute", retval=True)
        def _translate(conn, clauseelement, multiparams, params, execution_options):
            if isinstance(clauseelement, ClauseElement) and not isinstance(clauseelement, UpdateBase):
                clauseelement = self.translate(clauseelement, conn)
            return clauseelement, multiparams, params


# The mapping each source engine reads through (`install`), for the code that asks about the shop's own tables.
_INSTALLED: weakref.WeakKeyDictionary[Engine, Relations] = weakref.WeakKeyDictionary()
# A table named after FROM or JOIN, when the shop's tables are not known.
_TABLE_NAMED = re.compile(r"\b(?:FROM|JOIN)\s+`?(\w+)`?", re.IGNORECASE)


def _name_pattern(table: str) -> str:
    """A table's name as a whole word of SQL."""
    return rf"(?<![\w$]){re.escape(table)}(?![\w$])"


def relations_of(engine: Engine) -> Relations | None:
    """The mapping `engine` reads through (None: an engine without one, which names the shop's tables itself)."""
    return _INSTALLED.get(engine)


def _concept_of(source: Any) -> Table | None:
    """The concept table `source` is, or is an alias of (hygiene's key rule probes one under another name)."""
    table = source.element if isinstance(source, Alias) else source
    return table if isinstance(table, Table) and CONCEPTS.get(str(table.name)) is table else None


def compile_mapping(mapping: MappingSpec, tables_found: set[str] | None = None) -> Relations:
    """Every concept's SELECT. `tables_found` (lower-case names in the shop) decides whether an optional concept
    is present; None: all are."""
    return Relations(mapping, tables_found)


def concept_select(
    table: Table, spec: ConceptSpec, tables_found: set[str] | None = None, only: frozenset[str] | None = None
) -> Select:
    """The concept's rows, each canonical column under its own name and type (`only` those, when given: at least
    one); beside a column whose `null_if` makes it an expression, the shop's own value under the name + RAW, for
    comparisons to reach its index."""
    lookups = Lookups(spec, tables_found)
    names = [c.name for c in table.columns if only is None or c.name in only] or [next(iter(table.columns)).name]
    columns = [column_expression(table, spec, name, lookups).label(name) for name in names]
    columns += [
        literal_column(f"({lookups.resolve(spec.columns[name].sql)})", table.c[name].type).label(name + RAW)
        for name in names
        if name in spec.columns
        and spec.columns[name].null_if
        and spec.columns[name].sign == 1
        and spec.columns[name].values is None
    ]
    used = " ".join([*(str(column) for column in columns), spec.where or ""])
    statement = select(*columns).select_from(text(" ".join(from_clause(spec, lookups, used))))
    return statement.where(text(spec.where)) if spec.where else statement


_LEFT_JOIN = re.compile(r"\s*LEFT\s+(?:OUTER\s+)?JOIN\s+\w+\s+(?:AS\s+)?(\w+)", re.IGNORECASE)


def from_clause(spec: ConceptSpec, lookups: Lookups, used: str | None = None) -> list[str]:
    """The base table, the mapping's own joins, then one join per lookup the columns use. With `used` (the SQL of
    what is read), a LEFT JOIN of the mapping's whose alias nothing read names is left out: it adds no row and
    filters none (a concept's join matches at most one row), so a count or a list of ids skips it (Magento's
    paid invoice)."""
    joins = list(spec.joins)
    if used is not None:
        needed = " ".join([used, *lookups.joins])
        kept: list[str] = []
        for join in reversed(joins):  # a later join may name an earlier one's alias
            left = _LEFT_JOIN.match(join)
            if left is None or re.search(_alias_ref(left.group(1)), needed):
                kept.insert(0, join)
                needed += " " + join
        joins = kept
    return [f"{spec.table} AS {spec.alias}", *joins, *lookups.joins]


def empty_select(table: Table) -> Select:
    """No rows, with the concept's columns: what an absent concept reads as."""
    return select(*(type_coerce(null(), column.type).label(column.name) for column in table.columns)).where(false())


def column_expression(table: Table, spec: ConceptSpec, name: str, lookups: Lookups) -> ColumnElement:
    """SQL for one canonical column of the concept (NULL when the mapping leaves it out)."""
    column = table.c[name]
    column_spec = spec.columns.get(name)
    if column_spec is None:
        return type_coerce(null(), column.type)
    raw: ColumnElement = literal_column(f"({lookups.resolve(column_spec.sql)})")
    value = raw
    if column_spec.null_if:
        value = case(*((raw == literal(v), null()) for v in column_spec.null_if), else_=raw)
    if column_spec.sign == -1:
        value = -value
    if column_spec.values is not None:
        value = _mapped(value, column_spec.values, vocabulary(column))
    return type_coerce(value, column.type)


class Lookups:
    """A concept's lookups as LEFT JOINs, one per lookup and key its SQL uses, each joining at most one row: the
    first (or latest) by the lookup's order, the others excluded by NOT EXISTS.

    Joins rather than subqueries in the SELECT list, because MySQL will not merge a derived table with those
    (it materialises it, the whole shop, for every query); a join merges in MySQL, MariaDB and SQLite alike, so a
    predicate on the concept's base columns still reaches their index. A lookup's own SQL may use other lookups
    (a product's SKU by the line's _product_id): their joins come first."""

    def __init__(self, spec: ConceptSpec, tables_found: set[str] | None) -> None:
        self.spec = spec
        self.tables_found = tables_found
        self.joins: list[str] = []
        self._aliases: dict[tuple[str, str | None], str] = {}

    def resolve(self, sql: str, depth: int = 0) -> str:
        """The SQL with each {lookup} or {lookup:key} replaced by the joined row's value (NULL for an optional
        lookup whose table the shop lacks)."""
        if depth > MAX_LOOKUP_DEPTH:
            raise ValueError(f"{self.spec.name}: lookups nest more than {MAX_LOOKUP_DEPTH} deep (one uses itself?)")
        return PLACEHOLDER.sub(lambda found: self._value(found.group(1), found.group(2), depth), sql)

    def _value(self, name: str, key: str | None, depth: int) -> str:
        lookup = self.spec.lookups[name]
        if lookup.optional and self.tables_found is not None and lookup.table.lower() not in self.tables_found:
            return "NULL"
        alias = self._aliases.get((name, key))
        if alias is None:
            alias = f"{lookup.alias}_{len(self._aliases) + 1}"
            self._aliases[(name, key)] = alias  # before the lookups it uses take their own
            own = self._row(lookup, key, alias, depth)
            other = self._row(lookup, key, f"{alias}_x", depth)
            order = self.resolve(lookup.order, depth + 1)
            before = "<" if not lookup.latest else ">"
            preferred = f"{_renamed(order, lookup.alias, alias + '_x')} {before} {_renamed(order, lookup.alias, alias)}"
            self.joins.append(
                f"LEFT JOIN {lookup.table} AS {alias} ON {own} AND NOT EXISTS "
                f"(SELECT 1 FROM {lookup.table} AS {alias}_x WHERE {other} AND {preferred})"
            )
        return _renamed(self.resolve(lookup.value, depth + 1), lookup.alias, alias)

    def _row(self, lookup: Lookup, key: str | None, alias: str, depth: int) -> str:
        """SQL: a row of the lookup's table, under `alias`, that belongs to the concept's row (and holds `key`)."""
        condition = f"({self.resolve(lookup.match, depth + 1)})"
        if lookup.key is not None:
            quoted = (key or "").replace("'", "''")
            condition += f" AND {lookup.key} = '{quoted}'"
        return _renamed(condition, lookup.alias, alias)


def _alias_ref(alias: str) -> str:
    """A pattern for the table alias `alias` as SQL names it (`um.meta_value`), not inside another name."""
    return rf"(?<![\w.]){re.escape(alias)}\."


def _renamed(sql: str, alias: str, to: str) -> str:
    """The SQL with the table alias `alias` (as in `um.meta_value`) renamed `to`."""
    return re.sub(_alias_ref(alias), f"{to}.", sql)


def _mapped(value: ColumnElement, values: dict[Any, Any], allowed: tuple[str, ...] | None) -> ColumnElement:
    """A value map as CASE. A status no entry names becomes UNMAPPED + the value (set aside, listed); consent no
    entry names is unknown."""
    whens = [
        (value == literal(key), literal(target) if target is not None else null()) for key, target in values.items()
    ]
    is_status = allowed is not None and "opted_in" not in allowed
    otherwise = literal(UNMAPPED, String) + type_coerce(value, String) if is_status else null()
    return case(*whens, else_=otherwise)
