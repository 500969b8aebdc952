"""Cutting free text to fit: a column's width in characters, or a limit in UTF-8 bytes.

Clipping is only used where it is harmless and documented (docs/bad-input.md):
reasons and raw values in listings, product names and other free text inside event properties, and
attribute values over Customer.io's 1000-byte limit. Identifiers are never clipped: a value too
long to keep is set aside with a reason instead.
"""

from __future__ import annotations

import pandas as pd

ELLIPSIS = "…"


def clip(value: object, chars: int) -> object:
    """A string cut to `chars` characters, ending in an ellipsis when cut; anything else unchanged."""
    if isinstance(value, str) and len(value) > chars:
        return value[: chars - 1] + ELLIPSIS
    return value


def clip_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` that is at most `max_bytes` in UTF-8, never half a character."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def clip_column(values: pd.Series, chars: int) -> pd.Series:
    """`clip` over a whole column at once (vectorised: event properties are built a page at a time)."""
    values = values.astype(object)
    long = pd.to_numeric(values.str.len(), errors="coerce").gt(chars)  # NULL has no length: not long
    return values.where(~long, values.str.slice(0, chars - 1) + ELLIPSIS)
