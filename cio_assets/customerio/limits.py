"""Customer.io's documented Track API limits, enforced before anything is sent.

An item that cannot fit is rejected here with a reason (never truncated, never sent to fail):
- request body < 500 KB and each batch item <= 32 KB (Track v2 `/batch`);
- person id <= 150 bytes; attribute value <= 1000 bytes; <= 300 attributes per identify;
- event name <= 100 bytes; event data <= 100,000 bytes.
KB is read as 1000 bytes, the stricter reading.
"""

from __future__ import annotations

import orjson

MAX_BODY_BYTES = 500_000
MAX_ITEM_BYTES = 32_000
MAX_ID_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100_000

# The envelope around the items: {"batch":[ ... ]}
BODY_OVERHEAD = len(b'{"batch":[]}')


def item_problem(item: dict, encoded: bytes) -> str | None:
    """Why Customer.io would refuse this batch item, or None if it fits."""
    person_id = str(item.get("identifiers", {}).get("id", ""))
    if len(person_id.encode()) > MAX_ID_BYTES:
        return f"person id is {len(person_id.encode())} bytes (limit {MAX_ID_BYTES})"
    if len(encoded) > MAX_ITEM_BYTES:
        return f"item is {len(encoded)} bytes (limit {MAX_ITEM_BYTES})"
    if item.get("action") == "event":
        return _event_problem(item)
    return _attributes_problem(item.get("attributes") or {})


def _event_problem(item: dict) -> str | None:
    name_bytes = len(str(item.get("name", "")).encode())
    if name_bytes > MAX_EVENT_NAME_BYTES:
        return f"event name is {name_bytes} bytes (limit {MAX_EVENT_NAME_BYTES})"
    data_bytes = len(orjson.dumps(item.get("attributes") or {}))
    if data_bytes > MAX_EVENT_DATA_BYTES:
        return f"event data is {data_bytes} bytes (limit {MAX_EVENT_DATA_BYTES})"
    return None


def _attributes_problem(attributes: dict) -> str | None:
    if len(attributes) > MAX_ATTRIBUTES:
        return f"{len(attributes)} attributes (limit {MAX_ATTRIBUTES} per call)"
    for key, value in attributes.items():
        size = len(value.encode()) if isinstance(value, str) else len(orjson.dumps(value))
        if size > MAX_ATTRIBUTE_VALUE_BYTES:
            return f"attribute {key!r} is {size} bytes (limit {MAX_ATTRIBUTE_VALUE_BYTES})"
    return None
