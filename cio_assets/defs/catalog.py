"""What the Dagster catalog says about a table: its columns (`dagster/column_schema`) and where it lives.

Generated from the SQLAlchemy table definitions (`schema/shop.py`, `schema/state.py`), so the
catalog never drifts from what the pipeline reads and writes: each column's type, whether it may be
null, whether it is part of the primary key, its description (the column's `comment=`) and a `pii`
tag on columns marked `info=PII` (e-mails, phones, names and the identifiers or raw values that may
hold them). The event log also shows each family's declared properties (`properties/<family>`), the
data dictionary's own (`schema/events.py`, printed by `cio_assets/dictionary.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
from sqlalchemy import Column, Table

from cio_assets.schema.columns import PII_TAG, is_pii
from cio_assets.schema.events import Family

TABLE_NAME = "dagster/table_name"
# The shop's tables are external assets in this group, keyed source/<table>.
SOURCE_GROUP = "source"
COLUMN_SCHEMA = "dagster/column_schema"


def table_column(column: Column) -> dg.TableColumn:
    return dg.TableColumn(
        name=str(column.name),
        type=str(column.type),
        description=column.comment,
        constraints=dg.TableColumnConstraints(
            nullable=bool(column.nullable),
            other=["primary key"] if column.primary_key else None,
        ),
        tags={PII_TAG: ""} if is_pii(column) else None,
    )


def column_schema(table: Table) -> dg.TableSchema:
    """The table's columns, in order, as the Dagster UI shows them (Columns section, column tags)."""
    key = [str(c.name) for c in table.primary_key.columns]
    return dg.TableSchema(
        columns=[table_column(c) for c in table.columns],
        constraints=dg.TableConstraints(other=[f"primary key ({', '.join(key)})"]) if key else None,
    )


def family_properties(family: Family) -> dict[str, dg.MetadataValue]:
    """`properties/<family>`: an event family's declared properties (the data dictionary's), as a column schema."""
    columns = [
        dg.TableColumn(
            name=p.name,
            type=p.type,
            description=p.definition,
            constraints=dg.TableColumnConstraints(nullable=p.nullable, other=None if p.required else ["optional"]),
        )
        for p in family.properties
    ]
    return {f"properties/{family.name}": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns))}


def pii_tags(*tables: Table) -> dict[str, str]:
    """The asset tag `pii` when any of the tables holds personal data (filterable in the catalog)."""
    return {PII_TAG: ""} if any(is_pii(c) for t in tables for c in t.columns) else {}


def table_metadata(table: Table, listings: Sequence[Table] = ()) -> dict[str, object]:
    """Definition metadata of an asset stored in `table`: its name and column schema, plus the column
    schemas of the listings the same asset writes, so every owned table is described."""
    return {TABLE_NAME: table.name, COLUMN_SCHEMA: column_schema(table), **listing_schemas(*listings)}


def listing_schemas(*tables: Table) -> dict[str, dg.MetadataValue]:
    """`listing/<table>`: the column schema of each table an asset writes besides its own."""
    return {f"listing/{t.name}": dg.MetadataValue.table_schema(column_schema(t)) for t in tables}


def code_reference(path: str | Path, anchor: str) -> dict[str, dg.CodeReferencesMetadataValue]:
    """`dagster/code_references` to the first line of `path` that starts with `anchor` (e.g. where a table is
    defined), for assets that have no function of their own to point to."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    line = next((number for number, text in enumerate(lines, start=1) if text.startswith(anchor)), 1)
    reference = dg.LocalFileCodeReference(file_path=str(Path(path).resolve()), line_number=line)
    return {"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=[reference])}


def source_key(table: Table) -> dg.AssetKey:
    """The asset key of one of the shop's tables."""
    return dg.AssetKey([SOURCE_GROUP, table.name])
