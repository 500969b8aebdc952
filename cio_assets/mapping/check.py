"""Does the shop hold what the mapping reads? One message lists everything that does not match.

Each concept's SELECT is run once with no rows asked for; a concept the database refuses is tried column by
column, so the message names the mapping's key and the database's own words ("Unknown column 'o.paid_at'"),
never a value from a row. `SourceDatabase` runs this once per resource, on its first connection, and then
installs the mapping on its engine.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, inspect, literal
from sqlalchemy.exc import DBAPIError

from cio_assets.lib.engines import driver_message
from cio_assets.mapping.compile import Relations, compile_mapping
from cio_assets.mapping.spec import MappingSpec
from cio_assets.schema.shop import CONCEPTS


class SourceSchemaError(RuntimeError):
    """The source lacks tables or columns the mapping reads."""


def tables_in(bind: Connection | Engine) -> set[str]:
    """The shop's tables and views, lower-case (MySQL on some systems, and SQLite, ignore case)."""
    inspector = inspect(bind)
    return {name.lower() for name in (*inspector.get_table_names(), *inspector.get_view_names())}


def mismatches(conn: Connection, mapping: MappingSpec, relations: Relations, found: set[str]) -> list[str]:
    """What the shop lacks, concept by concept in the pipeline's order: 'table wp_wc_orders (orders)',
    'orders.paid_at: Unknown column …'."""
    problems: list[str] = []
    for name in CONCEPTS:
        spec = mapping.concepts.get(name)
        if spec is None or name not in relations.present:
            continue
        tables = (spec.table, *(lookup.table for lookup in spec.lookups.values() if not lookup.optional))
        missing = [table for table in tables if table.lower() not in found]
        if missing:
            problems += [f"table {table}" + ("" if table == name else f" ({name})") for table in dict.fromkeys(missing)]
            continue
        statement = relations.selects[name]
        if _refused(conn, statement) is None:
            continue
        rows = _refused(conn, statement.with_only_columns(literal(1)))
        if rows is not None:  # the tables, joins, lookups or row filter
            problems.append(f"{name}: {rows}")
            continue
        per_column = []
        for column in CONCEPTS[name].columns:
            refused = _refused(conn, statement.with_only_columns(statement.selected_columns[column.name]))
            if refused is not None:
                per_column.append(f"column {name}.{column.name}: {refused}")
        problems += per_column or [f"{name}: {_refused(conn, statement)}"]
    return problems


def check_source(bind: Engine, mapping: MappingSpec, where: str) -> Relations:
    """The mapping compiled for this shop; raises SourceSchemaError listing everything the shop lacks."""
    with bind.connect() as conn:
        found = tables_in(conn)
        relations = compile_mapping(mapping, found)
        problems = mismatches(conn, mapping, relations, found)
    if problems:
        raise SourceSchemaError(
            f"The {where} lacks what the pipeline reads through {mapping.shown}: {'; '.join(problems)}."
        )
    return relations


def _refused(conn: Connection, statement) -> str | None:
    """The database's message if it refuses the statement (asked for no rows), else None."""
    try:
        conn.execute(statement.limit(0)).close()
    except DBAPIError as error:
        conn.rollback()
        return driver_message(error)[1]
    return None
