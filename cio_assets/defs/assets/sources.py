"""The shop's concepts as external assets (customers, orders, …): the pipeline never writes them.

Each is described as the source mapping (`CIO_SOURCE_MAPPING`) reads it: from which of the shop's tables, or why
the shop has none. The source sensor (`defs/automation/sensor.py`) records an observation of each (row count and
high-water marks, `tracking/marks.py`), so the UI shows how fresh and how large the source is.
"""

from __future__ import annotations

import dagster as dg
from sqlalchemy import Table

from cio_assets.defs.catalog import SOURCE_GROUP, code_reference, pii_tags, source_key, table_metadata
from cio_assets.mapping.spec import MappingSpec
from cio_assets.schema import shop
from cio_assets.schema.shop import SOURCE_TABLES
from cio_assets.tracking.marks import LATELY, Marks


def source_tables(mapping: MappingSpec) -> list[dg.AssetSpec]:
    """One external asset per concept the pipeline reads, described as `mapping` reads it from the shop."""
    return [
        dg.AssetSpec(
            source_key(table),
            group_name=SOURCE_GROUP,
            kinds={"mysql"},
            description=f"{table.comment}: {_read_from(mapping, str(table.name))}",
            metadata={
                **table_metadata(table),
                **code_reference(shop.__file__, f"{table.name} = Table("),
                "source_mapping": mapping.shown,
            },
            tags=pii_tags(table),
        )
        for table in SOURCE_TABLES
    ]


def _read_from(mapping: MappingSpec, concept: str) -> str:
    spec = mapping.concepts.get(concept)
    if spec is None:
        return f"none in this shop ({mapping.absent()[concept]})."
    tables = dict.fromkeys([spec.table, *(lookup.table for lookup in spec.lookups.values())])
    return f"read only, through {mapping.shown}, from {', '.join(f'`{t}`' for t in tables)}."


def observation(table: Table, marks: Marks) -> dg.AssetObservation:
    """A table's row count and high-water marks, as an observation of its asset (not the digest of the rows changed
    lately, which says nothing to a reader)."""
    marks = dict(marks)
    metadata: dict[str, object] = {"dagster/row_count": int(marks.pop("row_count") or 0)}  # type: ignore[call-overload]
    metadata.update({key: value for key, value in marks.items() if value is not None and key != LATELY})
    return dg.AssetObservation(asset_key=source_key(table), metadata=metadata)
