"""Does the source hold every table and column the pipeline reads? One message lists everything missing.

A shop whose schema differs from the reference (`tables.py`) would otherwise fail on its first query,
naming one column at a time. `SourceDatabase` runs this once per resource, on its first connection.
Views count as tables, so a shop can map its own schema onto the reference names with views.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Engine, Table, inspect

from cio_assets.schema.shop import SOURCE_TABLES

REFERENCE = "The reference schema is cio_assets/schema/shop.py (MySQL DDL: cio_assets/schema/reference_schema.sql)."


class SourceSchemaError(RuntimeError):
    """The source lacks tables or columns the pipeline reads."""


def missing_from(bind: Connection | Engine, tables: Iterable[Table] = SOURCE_TABLES) -> list[str]:
    """What the source lacks, as 'table identity_links' and 'column orders.paid_at', in reference order.

    Names compare case-insensitively (MySQL on some systems, and SQLite, ignore case)."""
    inspector = inspect(bind)
    present: dict[str | None, dict[str, str]] = {}
    missing: list[str] = []
    for table in tables:
        if table.schema not in present:
            names = [*inspector.get_table_names(schema=table.schema), *inspector.get_view_names(schema=table.schema)]
            present[table.schema] = {name.lower(): name for name in names}
        actual = present[table.schema].get(table.name.lower())
        if actual is None:
            missing.append(f"table {table.fullname}")
            continue
        columns = {str(column["name"]).lower() for column in inspector.get_columns(actual, schema=table.schema)}
        missing += [f"column {table.fullname}.{c.name}" for c in table.columns if c.name.lower() not in columns]
    return missing


def describe_missing(missing: list[str], where: str) -> str:
    """'The source database (...) lacks what the pipeline reads: table x; column y.z. The reference ...'"""
    return f"The {where} lacks what the pipeline reads: {'; '.join(missing)}. {REFERENCE}"


def schema_problem(bind: Connection | Engine, where: str) -> str | None:
    """The one message for everything the source lacks, or None when it has all the pipeline reads."""
    missing = missing_from(bind)
    return describe_missing(missing, where) if missing else None
