"""Run asset checks on their own, against what the test databases hold (as a check launched from the UI would).

The checked assets are passed so Dagster knows them, but only the checks execute: rows a test wrote
into the state tables by hand stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase


def run_checks(
    pipeline,
    assets: Sequence[dg.AssetsDefinition],
    checks: Sequence[dg.AssetChecksDefinition],
    partition_range: tuple[str, str] | None = None,
    settings: Settings | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dict[str, dg.AssetCheckEvaluation]:
    """{check name: evaluation} of `checks`, run for `partition_range` (as the run's partition tags)."""
    tags = {}
    if partition_range:
        tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
    resources = {
        "settings": settings or Settings(),
        "source": SourceDatabase(url=pipeline.source_url),
        "state": StateDatabase(url=pipeline.state_url),
        "customerio": CustomerIO(dry_run=True, outbox_dir=str(pipeline.outbox_dir)),
    }
    if instance is not None:
        return evaluations(_run(assets, checks, tags, resources, instance))
    with dg.instance_for_test() as fresh:
        return evaluations(_run(assets, checks, tags, resources, fresh))


def _run(assets, checks, tags, resources, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*assets, *checks],
        selection=dg.AssetSelection.checks(*checks),
        tags=tags,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """{check name: evaluation} of a run's checks."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def value(evaluation: dg.AssetCheckEvaluation, key: str) -> object:
    """A metadata entry's plain value (Markdown as its text)."""
    return evaluation.metadata[key].value
