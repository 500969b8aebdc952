"""The shop's tables as external assets: the pipeline never writes them.

The source sensor (`defs/automation/sensor.py`) records an observation of each table (row count and high-water
marks, `tracking/marks.py`), so the UI shows how fresh and how large the source is.
"""

from __future__ import annotations

import dagster as dg
from sqlalchemy import Table

from cio_assets.defs.catalog import SOURCE_GROUP, code_reference, pii_tags, source_key, table_metadata
from cio_assets.schema import shop
from cio_assets.schema.shop import SOURCE_TABLES
from cio_assets.tracking.marks import Marks

source_tables = [
    dg.AssetSpec(
        source_key(table),
        group_name=SOURCE_GROUP,
        kinds={"mysql"},
        description=f"{table.comment}: the shop's `{table.name}` table, read only.",
        metadata={**table_metadata(table), **code_reference(shop.__file__, f"{table.name} = Table(")},
        tags=pii_tags(table),
    )
    for table in SOURCE_TABLES
]


def observation(table: Table, marks: Marks) -> dg.AssetObservation:
    """A table's row count and high-water marks, as an observation of its asset."""
    marks = dict(marks)
    metadata: dict[str, object] = {"dagster/row_count": int(marks.pop("row_count") or 0)}  # type: ignore[call-overload]
    metadata.update({key: value for key, value in marks.items() if value is not None})
    return dg.AssetObservation(asset_key=source_key(table), metadata=metadata)
