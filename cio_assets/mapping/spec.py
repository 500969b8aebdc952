"""A source mapping file: how each concept the pipeline reads (customers, orders, …) is made from a shop's own
tables. Read from TOML and checked at load; every error names the file, the key and what is expected.

    [mapping]
    about = "WooCommerce with HPOS"
    time_zone = "UTC"                          # of every timestamp: UTC, an IANA zone, or "source" (CIO_SOURCE_TZ)

    [options]
    prefix = "wp_"                             # {prefix} in any text below; CIO_SOURCE_TABLE_PREFIX overrides it

    [orders]
    table = "{prefix}wc_orders"                # the base table, and its alias in the SQL below
    alias = "o"
    joins = ["LEFT JOIN {prefix}wc_order_operational_data AS od ON od.order_id = o.id"]
    where = "o.type = 'shop_order'"            # which rows are this concept's

    [orders.columns]                           # each canonical column: SQL over the aliases, or a table:
    id = "o.id"
    customer_id = { sql = "o.customer_id", null_if = [0] }             # a guest's id
    discount_total = { sql = "od.discount_total_amount", sign = -1 }   # stored negative
    status = { sql = "o.status", values = { "wc-completed" = "paid" } }  # unmapped: set aside with the value
    phone = { lookup = "meta", key = "billing_phone" }                 # a key/value table, latest row wins
    subtotal = "o.total_amount - {meta:_shipping}"                     # or inside SQL, as {lookup:key}
    updated_at = { sql = "GREATEST(o.date_updated_gmt, COALESCE({meta:_edited}, o.date_updated_gmt))", seen_in = [
        { table = "{prefix}wc_orders", alias = "so", key = "so.id", at = "so.date_updated_gmt" },   # where each
        { table = "{prefix}wc_orders_meta", alias = "sm", key = "sm.order_id", at = "sm.meta_value",   # change
          where = "sm.meta_key = '_edited'" },                                                         # shows
    ] }

    [orders.lookups.meta]                      # a correlated lookup into a child or key/value table
    table = "{prefix}wc_orders_meta"
    alias = "m"
    match = "m.order_id = o.id"
    key = "m.meta_key"                         # key/value tables: the key column (the column gives `key = …`)
    value = "m.meta_value"
    order = "m.id"                             # unique: of the rows that match, one wins
    pick = "latest"                            # or "first"
    optional = false                           # true: NULL when the table is missing (a plugin's)

A concept the file leaves out is absent from the shop: it reads as empty, and the event families that need it are
off (`[mapping] absent = { carts = "why" }` says why, in the run's metadata). A canonical column a concept leaves
out is NULL. `optional = true` makes a concept absent when its base table is. A concept's `joins` give at most
one row per base row (a LEFT JOIN that nothing read names is left out of a query).

`seen_in` says how a change shows when the column is computed from several tables (the latest of a row's and
its child rows' times): each entry names a table, the concept's id in it (`key`) and a time (`at`), ideally an
indexed column, optionally with `where` and `joins`. The column's value must be the latest of the times its
entries hold for that row (in the concept's zone), so that a range of the column is found through them: the rows
whose change falls in a range are looked up by id instead of computing the column for every row
(`compile.Relations`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, Table

from cio_assets.schema.events import DECLARED
from cio_assets.schema.shop import CONCEPTS, REQUIRED_CONCEPTS, vocabulary

PRESETS_DIR = Path(__file__).with_name("presets")
PRESETS = tuple(sorted(path.stem for path in PRESETS_DIR.glob("*.toml")))
SOURCE_ZONE = "source"  # a concept whose naive timestamps are in CIO_SOURCE_TZ (and its per-table overrides)
CONSENT_STATES = {"opted_in": True, "opted_out": False, "unknown": None}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]+))?\}")  # {lookup} or {lookup:key} in SQL
_COLUMN_FORMS = {"sql", "null_if", "sign", "values", "lookup", "key", "seen_in"}
_SEEN_KEYS = {"table", "alias", "key", "at", "where", "joins", "optional"}


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file, the key and what is expected."""


@dataclass(frozen=True)
class Lookup:
    """A lookup: one value from the rows of `table` that `match` the concept's row, the first or the latest by
    `order` (a unique column, so one row wins); for key/value tables, of the rows whose `key` column holds the key
    the column asks for. Compiled to a LEFT JOIN (`compile.Lookups`)."""

    table: str
    alias: str
    match: str
    value: str
    key: str | None
    order: str
    latest: bool
    optional: bool  # a missing table makes the lookup NULL (a plugin's table: MailPoet's subscribers)


@dataclass(frozen=True)
class Seen:
    """A place where a change to a computed column shows, through an index: rows of `table` (under `alias`, with
    `joins`, filtered by `where`) whose `key` is the concept row's id and whose `at` is when it changed."""

    table: str
    alias: str
    key: str
    at: str
    where: str | None = None
    joins: tuple[str, ...] = ()
    optional: bool = False  # a missing table (a plugin's) shows nothing

    def select(self, bounds: str) -> str:
        """SQL: the keys of its rows whose time meets `bounds` (SQL over `at`, with binds): not DISTINCT, which made
        MariaDB read a whole index in key order rather than the rows in the range."""
        where = " AND ".join(f"({part})" for part in (self.where, bounds) if part)
        return f"SELECT {self.key} FROM {self._from()} WHERE {where}"

    def latest(self) -> str:
        """SQL: the latest time it holds, as `latest`."""
        where = f" WHERE {self.where}" if self.where else ""
        return f"SELECT MAX({self.at}) AS latest FROM {self._from()}{where}"

    def _from(self) -> str:
        return " ".join([f"{self.table} AS {self.alias}", *self.joins])


@dataclass(frozen=True)
class ColumnSpec:
    """One canonical column: SQL, in which `{lookup}` or `{lookup:key}` stands for a lookup's value, then the
    conventions applied to its value, in this order: values in `null_if` become NULL, `sign` -1 flips it, `values`
    maps the source's vocabulary onto the pipeline's."""

    sql: str
    null_if: tuple[Any, ...] = ()
    sign: int = 1
    values: dict[Any, Any] | None = None
    seen_in: tuple[Seen, ...] = ()  # where a change to it shows, through an index (a computed change time)


@dataclass(frozen=True)
class ConceptSpec:
    name: str
    table: str
    alias: str
    joins: tuple[str, ...] = ()
    where: str | None = None
    time_zone: str | None = None  # None: the mapping's
    optional: bool = False
    columns: dict[str, ColumnSpec] = field(default_factory=dict)
    lookups: dict[str, Lookup] = field(default_factory=dict)


@dataclass(frozen=True)
class MappingSpec:
    """A whole mapping file, with its options applied ({prefix} substituted)."""

    name: str
    path: Path
    about: str
    time_zone: str
    concepts: dict[str, ConceptSpec]
    absent_because: dict[str, str]  # why the shop has no such concept, where the file says
    prefix: str  # the table prefix applied
    text: str  # the file as read: part of the computations' fingerprint

    @property
    def shown(self) -> str:
        """How messages name it: "the preset 'woocommerce' (cio_assets/mapping/presets/woocommerce.toml)"."""
        if self.path.parent == PRESETS_DIR:
            return f"the preset {self.name!r} (cio_assets/mapping/presets/{self.path.name})"
        return f"the mapping file {self.path}"

    def zone_of(self, concept: str) -> str:
        """The concept's zone: an IANA name, or SOURCE_ZONE."""
        spec = self.concepts.get(concept)
        return (spec.time_zone if spec and spec.time_zone else None) or self.time_zone

    def absent(self) -> dict[str, str]:
        """Concepts the file leaves out, in the pipeline's order, each with why."""
        return {
            name: self.absent_because.get(name, f"{self.shown} has no {name}")
            for name in CONCEPTS
            if name not in self.concepts
        }

    def maps(self, concept: str, column: str) -> bool:
        """Whether the mapping gives the concept's column a value (an absent concept, or a column it leaves out,
        is NULL for every row)."""
        spec = self.concepts.get(concept)
        return spec is not None and column in spec.columns

    def families_off(self) -> dict[str, str]:
        """Event families this shop cannot have, each with why: their concept is absent."""
        absent = self.absent()
        return {family.name: absent[family.source_table] for family in DECLARED if family.source_table in absent}


def resolve(choice: str) -> Path:
    """A preset's name or a file's path → the file. Raises MappingError naming what exists."""
    if choice in PRESETS:
        return PRESETS_DIR / f"{choice}.toml"
    path = Path(choice).expanduser()
    if path.suffix == ".toml" and path.is_file():
        return path
    raise MappingError(
        f"{choice!r} is neither a preset ({', '.join(PRESETS)}) nor a readable .toml mapping file"
        + (f" ({path.resolve()} does not exist)" if path.suffix == ".toml" else "")
    )


def load(choice: str, prefix: str | None = None) -> MappingSpec:
    """Read and check a mapping: a preset's name or a file's path; `prefix` replaces the file's own."""
    path = resolve(choice)
    text = path.read_text(encoding="utf-8")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise MappingError(f"{path}: not valid TOML: {error}") from None
    return _Reader(path, text).mapping(document, prefix)


class _Reader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.prefix = ""

    def fail(self, key: str, expected: str) -> MappingError:
        return MappingError(f"{self.path}: [{key}] {expected}")

    def mapping(self, document: dict[str, Any], prefix: str | None) -> MappingSpec:
        unknown = set(document) - {"mapping", "options", *CONCEPTS}
        if unknown:
            raise self.fail(
                sorted(unknown)[0],
                f"is not a concept; expected [mapping], [options] or concepts among {', '.join(CONCEPTS)}",
            )
        head = self.table(document.get("mapping", {}), "mapping", {"about", "time_zone", "absent"})
        absent = self.table(head.get("absent", {}), "mapping.absent", set(CONCEPTS))
        if not all(isinstance(reason, str) for reason in absent.values()):
            raise self.fail("mapping.absent", "expected concept = 'why the shop has none'")
        options = self.table(document.get("options", {}), "options", {"prefix"})
        self.prefix = prefix if prefix is not None else self.string(options, "options", "prefix", default="")
        if not re.fullmatch(r"[A-Za-z0-9_]*", self.prefix):
            raise self.fail("options", f"prefix {self.prefix!r}: expected letters, digits and underscores only")
        concepts = {name: self.concept(name, document[name]) for name in CONCEPTS if name in document}
        missing = [name for name in REQUIRED_CONCEPTS if name not in concepts]
        if missing:
            raise self.fail(missing[0], "is missing: every mapping says where the shop's customers and orders are")
        return MappingSpec(
            name=self.path.stem,
            path=self.path,
            about=self.string(head, "mapping", "about", default=""),
            time_zone=self.zone(head, "mapping", default="UTC"),
            concepts=concepts,
            absent_because={name: absent[name] for name in CONCEPTS if name not in concepts and name in absent},
            prefix=self.prefix,
            text=self.text,
        )

    def concept(self, name: str, raw: Any) -> ConceptSpec:
        keys = {"table", "alias", "joins", "where", "time_zone", "optional", "columns", "lookups"}
        raw = self.table(raw, name, keys)
        lookups = {
            lookup: self.lookup(f"{name}.lookups.{lookup}", value)
            for lookup, value in self.table(raw.get("lookups", {}), f"{name}.lookups", None).items()
        }
        aliases = [raw.get("alias", name), *(lookup.alias for lookup in lookups.values())]
        if len(set(aliases)) < len(aliases):
            raise self.fail(name, f"aliases {', '.join(aliases)}: the concept's and each lookup's must differ")
        canonical = CONCEPTS[name]
        columns_raw = self.table(raw.get("columns", {}), f"{name}.columns", None)
        for column in columns_raw:
            if column not in canonical.c:
                raise self.fail(
                    f"{name}.columns", f"{column!r} is not a column of {name}; expected one of {_names(canonical)}"
                )
        columns = {
            column: self.column(f"{name}.columns", canonical, column, value, lookups)
            for column, value in columns_raw.items()
        }
        if "id" not in columns and "id" in canonical.c:
            raise self.fail(f"{name}.columns", "lacks id: every concept with an id says where its key is")
        return ConceptSpec(
            name=name,
            table=self.identifier(raw, name, "table"),
            alias=self.identifier(raw, name, "alias", default=name),
            joins=self.joins(raw, name),
            where=self.sql(raw, name, "where"),
            time_zone=self.zone(raw, name, default=None),
            optional=self.flag(raw, name, "optional"),
            columns=columns,
            lookups=lookups,
        )

    def lookup(self, key: str, raw: Any) -> Lookup:
        raw = self.table(raw, key, {"table", "alias", "match", "value", "key", "order", "pick", "optional"})
        pick = self.string(raw, key, "pick", default="latest")
        if pick not in ("first", "latest"):
            raise self.fail(key, f"pick {pick!r}: expected 'first' or 'latest'")
        match = self.sql(raw, key, "match")
        if match is None:
            raise self.fail(key, "lacks match: the SQL that ties a row of the lookup's table to the concept's row")
        value = self.sql(raw, key, "value")
        if value is None:
            raise self.fail(key, "lacks value: the SQL of the value it looks up")
        if "order" not in raw:
            raise self.fail(
                key, "lacks order: a unique column (the table's key) that picks one row of those that match"
            )
        return Lookup(
            table=self.identifier(raw, key, "table"),
            alias=self.identifier(raw, key, "alias"),
            match=match,
            value=value,
            key=self.sql(raw, key, "key"),
            order=self.sql(raw, key, "order") or "",
            latest=pick == "latest",
            optional=self.flag(raw, key, "optional"),
        )

    def column(self, key: str, canonical: Table, name: str, raw: Any, lookups: dict[str, Lookup]) -> ColumnSpec:
        where = f"{key}] [{name}"
        if isinstance(raw, str):
            raw = {"sql": raw}
        if not isinstance(raw, dict):
            raise self.fail(where, "expected SQL text, or a table with sql or lookup (and null_if, sign, values)")
        unknown = set(raw) - _COLUMN_FORMS
        if unknown:
            raise self.fail(where, f"{sorted(unknown)[0]!r}: expected keys among {', '.join(sorted(_COLUMN_FORMS))}")
        lookup = raw.get("lookup")
        if ("sql" in raw) == (lookup is not None):
            raise self.fail(where, "expected exactly one of sql (a SQL expression) or lookup (a lookup's name)")
        if lookup is not None:  # sugar for sql = "{lookup:key}"
            sql = "{" + str(lookup) + (f":{raw['key']}" if "key" in raw else "") + "}"
        else:
            sql = self.sub(self.string(raw, where, "sql"))
        for used, used_key in PLACEHOLDER.findall(sql):
            if used not in lookups:
                known = ", ".join(lookups) or "none defined"
                raise self.fail(where, f"lookup {used!r} is not defined; expected one of: {known}")
            if (lookups[used].key is not None) != bool(used_key):
                needs = f"needs a key, as {{{used}:some_key}}" if lookups[used].key is not None else "takes no key"
                raise self.fail(where, f"lookup {used!r} {needs}")
        sign = raw.get("sign", 1)
        if sign not in (1, -1):
            raise self.fail(where, f"sign {sign!r}: expected 1 or -1")
        null_if = raw.get("null_if", [])
        if not isinstance(null_if, list):
            raise self.fail(where, "null_if: expected a list of values that mean 'none', e.g. [0]")
        values = raw.get("values")
        if values is not None:
            values = self.values(where, canonical, name, values)
        seen_in = raw.get("seen_in", [])
        if not isinstance(seen_in, list) or (not seen_in and "seen_in" in raw):
            raise self.fail(where, "seen_in: expected a list of tables, each with table, alias, key and at")
        if seen_in and not isinstance(canonical.c[name].type, DateTime):
            raise self.fail(where, f"seen_in: {canonical.name}.{name} is not a time; only a change time is seen")
        seen = tuple(self.seen(f"{where}] [seen_in {n + 1}", entry) for n, entry in enumerate(seen_in))
        return ColumnSpec(sql=sql, null_if=tuple(null_if), sign=sign, values=values, seen_in=seen)

    def seen(self, where: str, raw: Any) -> Seen:
        raw = self.table(raw, where, _SEEN_KEYS)
        for required in ("key", "at"):
            if required not in raw:
                raise self.fail(
                    where,
                    f"lacks {required}: "
                    + (
                        "the SQL of the concept's id in this table"
                        if required == "key"
                        else "the SQL of when it changed"
                    ),
                )
        return Seen(
            table=self.identifier(raw, where, "table"),
            alias=self.identifier(raw, where, "alias"),
            key=self.sql(raw, where, "key") or "",
            at=self.sql(raw, where, "at") or "",
            where=self.sql(raw, where, "where"),
            joins=self.joins(raw, where),
            optional=self.flag(raw, where, "optional"),
        )

    def values(self, where: str, canonical: Table, name: str, raw: Any) -> dict[Any, Any]:
        allowed = vocabulary(canonical.c[name])
        if allowed is None:
            raise self.fail(where, f"values: {canonical.name}.{name} takes no value map")
        if not isinstance(raw, dict):
            raise self.fail(where, "values: expected a table of source value = pipeline value")
        consent = allowed == tuple(CONSENT_STATES)
        mapped: dict[Any, Any] = {}
        for source_value, target in raw.items():
            if target not in allowed:
                raise self.fail(where, f"values: {source_value!r} = {target!r}: expected one of {', '.join(allowed)}")
            mapped[source_value] = CONSENT_STATES[target] if consent else target
        return mapped

    # -- small readers ----------------------------------------------------------------------------------

    def table(self, raw: Any, key: str, allowed: set[str] | None) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.fail(key, "expected a table")
        if allowed is not None:
            unknown = set(raw) - allowed
            if unknown:
                raise self.fail(
                    key, f"{sorted(unknown)[0]!r} is not a key here; expected among {', '.join(sorted(allowed))}"
                )
        return raw

    def string(self, raw: dict[str, Any], key: str, name: str, default: str | None = None) -> str:
        value = raw.get(name, default)
        if not isinstance(value, str):
            raise self.fail(key, f"{name}: expected text")
        return value

    def sql(self, raw: dict[str, Any], key: str, name: str) -> str | None:
        if name not in raw:
            return None
        return self.sub(self.string(raw, key, name))

    def identifier(self, raw: dict[str, Any], key: str, name: str, default: str | None = None) -> str:
        if name not in raw and default is None:
            raise self.fail(key, f"lacks {name}")
        value = self.sub(self.string(raw, key, name, default))
        if not _NAME.fullmatch(value):
            raise self.fail(key, f"{name} {value!r}: expected a table name or alias (letters, digits, underscores)")
        return value

    def zone(self, raw: dict[str, Any], key: str, default: str | None) -> str | None:
        if "time_zone" not in raw:
            return default
        value = self.string(raw, key, "time_zone")
        if value == SOURCE_ZONE:
            return value
        try:
            ZoneInfo(value)
        except (KeyError, ValueError, OSError):
            raise self.fail(key, f"time_zone {value!r}: expected UTC, an IANA zone or {SOURCE_ZONE!r}") from None
        return value

    def joins(self, raw: dict[str, Any], key: str) -> tuple[str, ...]:
        joins = raw.get("joins", [])
        if not isinstance(joins, list) or not all(isinstance(join, str) for join in joins):
            raise self.fail(key, "joins: expected a list of SQL JOIN clauses")
        return tuple(self.sub(join) for join in joins)

    def flag(self, raw: dict[str, Any], key: str, name: str) -> bool:
        value = raw.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(key, f"{name}: expected true or false")
        return value

    def sub(self, text: str) -> str:
        return text.replace("{prefix}", self.prefix)


def _names(table: Table) -> str:
    return ", ".join(column.name for column in table.columns)
