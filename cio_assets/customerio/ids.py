"""Deterministic ULIDs for Customer.io's event de-duplication.

Customer.io ignores an event whose `id` (a ULID) it has already received. Deriving the ULID from
our stable `event_id` and the event's time means a retry after a crash re-sends the same id, so
Customer.io drops the duplicate too. The time part is the event's time (Customer.io does not use
it, but it keeps ids sortable); the random part is the first 80 bits of SHA-256 of the event_id.

Encoded here, per the spec (https://github.com/ulid/spec): 128 bits as 26 characters of Crockford's
base32, the first holding the top 3 bits. Ten bits at a time through a table of character pairs, since
a first sync encodes one per event (767,000 at 100,000 customers).
"""

from __future__ import annotations

import hashlib

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [first + second for first in CROCKFORD for second in CROCKFORD]  # index: 10 bits
MAX_MILLISECONDS = (1 << 48) - 1  # the time part's 48 bits: the year 10889


def event_ulid(event_id: str, timestamp: int) -> str:
    milliseconds = max(timestamp, 0) * 1000
    if milliseconds > MAX_MILLISECONDS:
        raise ValueError(f"event {event_id}: timestamp {timestamp} does not fit a ULID's 48-bit time")
    entropy = int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:10], "big")
    value = (milliseconds << 80) | entropy
    # 3 bits, then 5, then twelve pairs of 5: 128 bits.
    head = CROCKFORD[value >> 125] + CROCKFORD[(value >> 120) & 31]
    return head + "".join([_PAIRS[(value >> shift) & 1023] for shift in range(110, -1, -10)])
