"""A stage's `StopRun` as the `dagster.Failure` the UI shows, with its description and metadata."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from cio_assets.lib.failures import StopRun


@contextmanager
def stops_as_failures() -> Iterator[None]:
    try:
        yield
    except StopRun as stop:
        raise dg.Failure(description=stop.description, metadata=stop.metadata) from None  # type: ignore[arg-type]
