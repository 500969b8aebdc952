"""What a column's `info=` says about it, beyond its type: personal data, text clipped on write, its sources.

The catalog (`dagster/column_schema`, `defs/catalog.py`), the bulk writes (`lib/writes.py`, which owns `CLIPPED`)
and the data dictionary (`dictionary.py`) read these markers, so each is declared once, on the column itself.
"""

from __future__ import annotations

from sqlalchemy import Column

from cio_assets.lib.writes import CLIPPED

__all__ = ["CLIPPED", "PII", "PII_TAG", "copied_column", "is_pii", "sources"]

# Personal data (e-mails, phones, names and the identifiers or raw values that may hold them): the catalog
# shows the column tag `pii`.
PII_TAG = "pii"
PII = {PII_TAG: True}


def sources(*tables: str, copies: str | None = None, **info: object) -> dict[str, object]:
    """Column.info naming the shop tables an attribute is derived from (the data dictionary shows them), and, for an
    attribute that is one source column's value, that column as 'table.column' (a shop whose mapping leaves it
    out has none to judge: the null-rate check says so instead of warning)."""
    return {"sources": tables, **({"copies": copies} if copies else {}), **info}


def copied_column(column: Column) -> tuple[str, str] | None:
    """The (table, column) an attribute copies, if it copies one."""
    copies = column.info.get("copies")
    return tuple(copies.split(".", 1)) if isinstance(copies, str) else None  # type: ignore[return-value]


def is_pii(column: Column) -> bool:
    return bool(column.info.get(PII_TAG))
