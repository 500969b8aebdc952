"""The refusal queue: items Customer.io refused, or that a sync held back, waiting to be sent again.

Every run of a sync retries what is queued for its kind (`person` or `event`), until it is accepted or no longer
needed. Identity's erasure clears a person's entries too, which is why the queue lives below every stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy import Connection, and_, delete, select

from cio_assets.lib.chunking import chunks
from cio_assets.lib.text import clip
from cio_assets.lib.writes import KEYS_PER_STATEMENT
from cio_assets.schema.state import delivery_rejections

PERSON = "person"
EVENT = "event"

Pending = tuple[str, dict, int]  # (key, payload, as_of) of an item refused or held back earlier


def pending_rejections(conn: Connection, kind: str) -> list[Pending]:
    """(key, payload, as_of) of every item of `kind` refused or waiting, not yet accepted."""
    rows = conn.execute(
        select(delivery_rejections.c.item_key, delivery_rejections.c.payload, delivery_rejections.c.as_of)
        .where(delivery_rejections.c.kind == kind)
        .order_by(delivery_rejections.c.item_key)
    )
    return [(key, orjson.loads(payload), int(as_of)) for key, payload, as_of in rows]


def record_rejections(conn: Connection, kind: str, rows: Sequence[tuple[str, dict, int, str]], now: int) -> None:
    """(key, payload, as_of, reason) refused this time; attempts count up across runs."""
    if not rows:
        return
    keys = [r[0] for r in rows]
    previous: dict[str, tuple[int, int]] = {}
    for chunk in chunks(keys, KEYS_PER_STATEMENT):
        result = conn.execute(
            select(
                delivery_rejections.c.item_key,
                delivery_rejections.c.attempts,
                delivery_rejections.c.first_rejected_at,
            ).where(delivery_rejections.c.kind == kind, delivery_rejections.c.item_key.in_(chunk))
        )
        previous.update({key: (int(attempts), int(first)) for key, attempts, first in result})
    clear_rejections(conn, kind, keys)
    width = delivery_rejections.c.reason.type.length
    conn.execute(
        delivery_rejections.insert(),
        [
            {
                "kind": kind,
                "item_key": key,
                "payload": orjson.dumps(payload).decode(),
                "as_of": as_of,
                "reason": clip(reason, width),
                "attempts": previous.get(key, (0, now))[0] + 1,
                "first_rejected_at": previous.get(key, (0, now))[1],
                "last_rejected_at": now,
            }
            for key, payload, as_of, reason in rows
        ],
    )


def clear_rejections(conn: Connection, kind: str, keys: Sequence[str]) -> None:
    for chunk in chunks(list(keys), KEYS_PER_STATEMENT):
        conn.execute(
            delete(delivery_rejections).where(
                and_(delivery_rejections.c.kind == kind, delivery_rejections.c.item_key.in_(chunk))
            )
        )
