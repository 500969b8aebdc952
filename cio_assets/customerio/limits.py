"""Customer.io's documented Track API limits, enforced before anything is sent.

Free text is made to fit upstream, where it is harmless and listed: attribute values are clipped to
`MAX_ATTRIBUTE_VALUE_BYTES` (`cio_assets.lib.text.clip_utf8`) and a large order or cart keeps its most valuable lines
(`fit_line_items`). An item that still cannot fit is rejected here with a reason (never sent to fail):
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


# Room left in a 32 KB batch item for everything around an event's properties: the person id
# (<= 150 bytes), the name (<= 100), the ULID, the timestamp, the keys and the `backfill` flag.
EVENT_ENVELOPE_ALLOWANCE = 1000
MAX_EVENT_PROPERTIES_BYTES = MAX_ITEM_BYTES - EVENT_ENVELOPE_ALLOWANCE


def fit_line_items(properties: dict, max_bytes: int = MAX_EVENT_PROPERTIES_BYTES) -> tuple[dict, int]:
    """Properties that fit `max_bytes`, keeping the most valuable lines of `items`, and how many went.

    A large order or cart is still worth sending: it drives post-purchase journeys and suppresses
    cart recovery. When its lines do not fit, it keeps the most valuable ones (quantity x price,
    ties in line order) and says so with `items_truncated: true`; `item_count` keeps the true count.
    """
    items = properties.get("items")
    if not items or len(orjson.dumps(properties)) <= max_bytes:
        return properties, 0
    ranked = sorted(items, key=lambda line: -(line.get("quantity") or 0) * (line.get("price") or 0))

    def keeping(count: int) -> dict:
        return {**properties, "items": ranked[:count], "items_truncated": True}

    low, high = 0, len(ranked) - 1  # the largest count that fits lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if len(orjson.dumps(keeping(middle))) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    return keeping(low), len(items) - low
