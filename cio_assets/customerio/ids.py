"""Deterministic ULIDs for Customer.io's event de-duplication.

Customer.io ignores an event whose `id` (a ULID) it has already received. Deriving the ULID from
our stable `event_id` and the event's time means a retry after a crash re-sends the same id, so
Customer.io drops the duplicate too. The time part is the event's time (Customer.io does not use
it, but it keeps ids sortable); the random part is the first 80 bits of SHA-256 of the event_id.
"""

from __future__ import annotations

import hashlib

from ulid import ULID


def event_ulid(event_id: str, timestamp: int) -> str:
    milliseconds = max(timestamp, 0) * 1000
    entropy = hashlib.sha256(event_id.encode()).digest()[:10]
    return str(ULID.from_bytes(milliseconds.to_bytes(6, "big") + entropy))
