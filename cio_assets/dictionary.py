"""The data dictionary: every attribute and event this pipeline sends to Customer.io, versioned.

    python -m cio_assets.dictionary           # Markdown
    python -m cio_assets.dictionary --json    # JSON Schema (draft 2020-12)
    make reference                            # both, written to docs/ (what is committed), with the other
                                              # generated references: docs/configuration.md and the reference
                                              # schema's DDL (cio_assets/schema/reference_schema.sql)

Generated from the code that builds the data: attributes from the snapshot's column definitions
(`schema/state.py`: the same comments the Dagster UI shows as column descriptions), the reserved
attributes the people sync adds, and each event family's declared properties (`schema/events.py`,
which the tests hold the extractors to). The committed `docs/data-contract.md` must equal the generated
one, so a changed definition shows up in review; a changed meaning needs a new name (`lifetime_value_net`
beside `lifetime_value`, not a redefined `lifetime_value`) and a new `CONTRACT_VERSION`.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pandas as pd
from sqlalchemy import BigInteger, Boolean, Column, Float, Integer

from cio_assets.config import CONFIGURATION_PAGE, configuration_page
from cio_assets.delivery.consent import UNSUBSCRIBED
from cio_assets.delivery.profiles import ANONYMOUS_ID
from cio_assets.lib.frames import markdown as markdown_table
from cio_assets.schema.events import BACKFILL, DECLARED, ITEMS, LINE_ITEM, Property
from cio_assets.schema.shop import REFERENCE_DDL_PATH, reference_ddl
from cio_assets.schema.state import ATTRIBUTE_COLUMNS, attribute_snapshot

# Bump when a definition changes, with CONTRACT_DIGEST (the test that compares them says what to set).
CONTRACT_VERSION = 2
CONTRACT_DIGEST = "17a29f6ac5f81b8f"
DOCS = Path(__file__).resolve().parent.parent / "docs"
MARKDOWN_PATH, SCHEMA_PATH = DOCS / "data-contract.md", DOCS / "data-contract.schema.json"

# Attributes an identify may carry besides the snapshot's columns: (name, type, definition, sources).
RESERVED_ATTRIBUTES = (
    (
        UNSUBSCRIBED,
        "boolean",
        "Customer.io's global unsubscribe: true on an explicit e-mail opt-out, never for unknown consent; false "
        "only to undo the pipeline's own true once the shop no longer records an opt-out (CIO_UNSUBSCRIBE)",
        ("customers",),
    ),
    (
        ANONYMOUS_ID,
        "string",
        "An anonymous id resolved to this person, sent once in an identify of its own, so Customer.io joins that "
        "id's events to them",
        ("identity_links", "carts"),
    ),
)


def _json_type(column: Column) -> str:
    if isinstance(column.type, Boolean):
        return "boolean"
    if isinstance(column.type, BigInteger | Integer):
        return "integer"
    if isinstance(column.type, Float):
        return "number"
    return "string"


def attributes() -> list[dict[str, object]]:
    """Every attribute an identify may carry: name, type, nullable, definition, source tables."""
    rows: list[dict[str, object]] = [
        {
            "name": name,
            "type": _json_type(column),
            "nullable": bool(column.nullable),
            "definition": column.comment,
            "sources": list(column.info.get("sources", ())),
        }
        for name in ATTRIBUTE_COLUMNS
        for column in [attribute_snapshot.c[name]]
    ]
    rows += [
        {"name": n, "type": t, "nullable": False, "definition": d, "sources": list(s)}
        for n, t, d, s in RESERVED_ATTRIBUTES
    ]
    return rows


def _property_schema(prop: Property) -> dict[str, object]:
    schema: dict[str, object] = {"type": [prop.type, "null"] if prop.nullable else prop.type}
    if prop is ITEMS:
        schema["items"] = _object_schema("A line", LINE_ITEM)
    return {**schema, "description": prop.definition}


def _object_schema(description: str, properties: tuple[Property, ...]) -> dict[str, object]:
    return {
        "type": "object",
        "description": description,
        "properties": {p.name: _property_schema(p) for p in properties},
        "required": [p.name for p in properties if p.required],
        "additionalProperties": False,
    }


def attributes_schema() -> dict[str, object]:
    """An identify's `attributes`. Updates carry only the keys that changed; a value that became null is sent as
    an empty string, which clears it in Customer.io."""
    properties: dict[str, object] = {}
    for a in attributes():
        typed: dict[str, object] = {"type": a["type"]}
        if a["nullable"]:
            typed = {"anyOf": [typed, {"type": "null"}, {"const": ""}]}
        properties[str(a["name"])] = {**typed, "description": a["definition"]}
    return {
        "type": "object",
        "description": (
            "An identify's attributes: an update carries only the keys that changed, and a value that became null is "
            "sent as an empty string, which clears it"
        ),
        "properties": properties,
        "additionalProperties": False,
    }


def event_schema(family_name: str) -> dict[str, object]:
    """An event's data (`attributes` of the batch item), with its timestamp and idempotency key noted."""
    family = next(f for f in DECLARED if f.name == family_name)
    schema = _object_schema(family.definition, (*family.properties, BACKFILL))
    return {
        **schema,
        "x-timestamp": family.timestamp,
        "x-idempotency-key": f"event_id {family.name}:<{family.source_table}.id>; Customer.io id: a ULID from it",
    }


def schema_document() -> dict[str, object]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cio-assets data contract",
        "contract_version": CONTRACT_VERSION,
        "attributes": attributes_schema(),
        "events": {family.name: event_schema(family.name) for family in DECLARED},
    }


def contract_digest() -> str:
    """What the definitions say, without the version: it changes exactly when a definition does."""
    document = {k: v for k, v in schema_document().items() if k != "contract_version"}
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _types(prop: Property) -> str:
    return f"{prop.type} or null" if prop.nullable else prop.type


def markdown() -> str:
    attribute_rows = pd.DataFrame(
        [
            (
                f"`{a['name']}`",
                f"{a['type']}{' or null' if a['nullable'] else ''}",
                a["definition"],
                ", ".join(a["sources"]),
            )  # type: ignore[arg-type]
            for a in attributes()
        ],
        columns=["attribute", "type", "definition", "source tables"],
    )
    lines = [
        "# Data contract",
        "",
        f"contract_version: {CONTRACT_VERSION}",
        "",
        "Generated by `make reference` (`python -m cio_assets.dictionary --write`) from the code that builds the "
        "data; do not edit by hand. A changed meaning needs a new name and a new contract_version. JSON Schema: "
        "[data-contract.schema.json](data-contract.schema.json).",
        "",
        "## Person attributes",
        "",
        "Sent in `identify` calls under the canonical person id (`CIO_CANONICAL_ID`). An update carries only the "
        "attributes that changed; a value that became null is sent as an empty string, which clears it. Times are "
        "Unix seconds, UTC.",
        "",
        markdown_table(attribute_rows, limit=len(attribute_rows), cell_chars=None),
        "",
        "## Events",
        "",
        "Each family is sent under its own name unless `CIO_EVENT_NAMES` maps it to another; `CIO_EVENT_FAMILIES` "
        "chooses the families sent. Every event may also carry `backfill: true` (history, older than "
        "`CIO_LIVE_WINDOW_HOURS` when sent).",
    ]
    for family in DECLARED:
        rows = pd.DataFrame(
            [(f"`{p.name}`", _types(p), "yes" if p.required else "no", p.definition) for p in family.properties],
            columns=["property", "type", "required", "definition"],
        )
        lines += [
            "",
            f"### `{family.name}`",
            "",
            f"{family.definition}.",
            "",
            f"- timestamp: {family.timestamp}, Unix seconds, UTC",
            f"- idempotency key: event id `{family.name}:<{family.source_table}.id>`; Customer.io's `id` is a ULID "
            "derived from it and the timestamp, so a resend is dropped",
            "",
            markdown_table(rows, limit=len(rows), cell_chars=None),
        ]
    lines += ["", "Each line of `items`: " + ", ".join(f"`{p.name}` ({_types(p)})" for p in LINE_ITEM) + "."]
    return "\n".join(lines) + "\n"


def schema_json() -> str:
    return orjson.dumps(schema_document(), option=orjson.OPT_INDENT_2).decode() + "\n"


# Every generated reference document: where it is committed, and what generates it (`make reference` writes them
# all; `test_data_dictionary.py` keeps each committed copy equal to what the code generates).
GENERATED: dict[Path, Callable[[], str]] = {
    MARKDOWN_PATH: lambda: markdown(),
    SCHEMA_PATH: lambda: schema_json(),
    CONFIGURATION_PAGE: configuration_page,
    REFERENCE_DDL_PATH: reference_ddl,
}


def main(argv: list[str]) -> None:
    if "--write" in argv:
        DOCS.mkdir(exist_ok=True)
        for path, generate in GENERATED.items():
            path.write_text(generate(), encoding="utf-8")
            print(f"wrote {path}")
        print(f"(contract_version {CONTRACT_VERSION})")
    else:
        print(schema_json() if "--json" in argv else markdown(), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
