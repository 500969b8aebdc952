"""Packing items into `/api/v2/batch` request bodies by bytes.

Items are serialised once; a batch is closed when the next item would push the body to the
500 KB limit. The body is assembled from the already-encoded items, so what was measured is
exactly what is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from cio_assets.customerio.limits import BODY_OVERHEAD, MAX_BODY_BYTES, item_problem


@dataclass(frozen=True)
class Item:
    """One batch item, the key our ledger knows it by (a person id or an event_id), and what the
    caller wants recorded once Customer.io accepted it (carried along so nothing else must be kept)."""

    key: str
    payload: dict
    record: object = None


@dataclass
class Batch:
    items: list[Item] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    size: int = BODY_OVERHEAD  # the body's length in bytes, kept as items are added (not summed again)

    @property
    def body(self) -> bytes:
        return b'{"batch":[' + b",".join(self.encoded) + b"]}"

    def add(self, item: Item, encoded: bytes) -> None:
        self.size += len(encoded) + (1 if self.encoded else 0)  # the item, and the comma before it
        self.items.append(item)
        self.encoded.append(encoded)


@dataclass(frozen=True)
class Refused:
    """An item refused before sending, because it cannot fit Customer.io's limits."""

    item: Item
    reason: str


def pack(items: Iterable[Item], max_body_bytes: int = MAX_BODY_BYTES) -> Iterator[Batch | Refused]:
    """Yield full batches (and refusals) in item order; the last batch may be partly full."""
    batch = Batch()
    for item in items:
        encoded = orjson.dumps(item.payload)
        problem = item_problem(item.payload, encoded)
        if problem:
            yield Refused(item, problem)
            continue
        if batch.items and batch.size + 1 + len(encoded) >= max_body_bytes:
            yield batch
            batch = Batch()
        batch.add(item, encoded)
    if batch.items:
        yield batch
