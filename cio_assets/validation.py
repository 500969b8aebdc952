"""Pandera inside the asset, reported as a blocking asset check.

Validation runs before a row is written. A failure yields a failed check (so the UI shows what was
wrong) and then stops the step with a readable error, so downstream assets never see bad data.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from cio_assets.metadata import markdown_table


def validate(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> tuple[pd.DataFrame, SchemaErrors | None]:
    try:
        return schema.validate(frame, lazy=True), None
    except SchemaErrors as errors:
        return frame, errors


def passed_check(check_name: str, rows: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=check_name, passed=True, metadata={"rows_validated": rows})


def failed_check(check_name: str, errors: SchemaErrors) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "failures": len(errors.failure_cases),
            "failures_by_check": markdown_table(_summary(errors)),
            "failure_sample": markdown_table(errors.failure_cases[["column", "check", "failure_case", "index"]]),
        },
    )


def failure(asset_name: str, errors: SchemaErrors) -> dg.Failure:
    lines = [f"- {row.column}: {row.check} ({row.failures} rows)" for row in _summary(errors).itertuples()]
    return dg.Failure(
        description=f"{asset_name} failed its data contract; nothing was written.\n" + "\n".join(lines),
    )


def _summary(errors: SchemaErrors) -> pd.DataFrame:
    cases = errors.failure_cases.fillna({"column": "(table)"})
    return (
        cases.groupby(["column", "check"], dropna=False)
        .size()
        .rename("failures")
        .reset_index()
        .sort_values("failures", ascending=False)
    )
