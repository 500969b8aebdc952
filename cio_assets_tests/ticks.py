"""One tick of the source sensor, evaluated as the daemon evaluates it (for the tests of what launches a run)."""

from __future__ import annotations

import tempfile
from contextlib import nullcontext

import dagster as dg

from cio_assets.defs.resources import Settings, SourceDatabase, StateDatabase
from cio_assets_tests.definitions import defs, source_changes


def tick(
    source_url: str,
    cursor: str | None = None,
    settings: Settings | None = None,
    instance: dg.DagsterInstance | None = None,  # one holding runs; a throwaway one if None
    state_url: str | None = None,  # where marks are kept; a SQLite file of the tick's own (keeping none) if None
    mapping: str = "reference",  # CIO_SOURCE_MAPPING
    sensor: dg.SensorDefinition = source_changes,  # another built with other automation settings (binlog capture)
) -> dg.SensorExecutionData:
    """One evaluation as the daemon runs it: the returned cursor is the one the daemon would keep."""
    with (
        nullcontext(instance) if instance else dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            repository_def=defs.get_repository_def(),
            resources={
                "source": SourceDatabase(url=source_url, mapping=mapping),
                "state": StateDatabase(url=state_url or f"sqlite:///{tempfile.mkdtemp(prefix='cio-sensor-')}/state.db"),
                "settings": settings or Settings(),
            },
        ) as context,
    ):
        return sensor.evaluate_tick(context)
