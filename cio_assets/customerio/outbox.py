"""The dry-run outbox: the exact request bodies that would have been sent, one JSON line each."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from cio_assets.customerio.batching import Batch


def write_outbox(path: Path, batches: Iterable[Batch]) -> Iterator[Batch]:
    """Append each batch's body to `path` as it passes through (the body is already JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as outbox:
        for batch in batches:
            outbox.write(batch.body + b"\n")
            yield batch
