"""A run that must stop for a person to act: the message says what is wrong and what to do.

Stages raise `StopRun` (they know nothing of Dagster); the Dagster wiring turns it into a `dagster.Failure`, so
the UI shows the description and the metadata (`defs/failures.py`).
"""

from __future__ import annotations

from collections.abc import Mapping


class StopRun(RuntimeError):
    def __init__(self, description: str, metadata: Mapping[str, object] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.metadata = dict(metadata or {})
