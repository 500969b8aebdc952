"""rejected_rows_share: the share of each source table's rows set aside by the hygiene rules (WARN)."""

import dagster as dg
import pandas as pd
import pytest

from cio_assets.defs.checks.hygiene import SHARE, rejected_rows_share, share_result
from cio_assets.defs.resources import Settings
from cio_assets_tests.checks_runner import evaluations, value
from cio_assets_tests.conftest import PIPELINE

COLUMNS = ["source_table", "source_key", "column_name", "raw_value", "reason"]


@pytest.mark.parametrize(
    ("rejections", "passed"),
    [
        # nothing set aside: passes
        ([], True),
        # 1 order in 200 (0.5%): passes
        ([("orders", "1", "total", "-5", "negative_amount")], True),
        # 3 orders in 200 (1.5%), one failing two rules (counted once): warns
        (
            [
                ("orders", "1", "total", "-5", "negative_amount"),
                ("orders", "1", "subtotal", "-5", "negative_amount"),
                ("orders", "2", "paid_at", None, "null_timestamp"),
                ("orders", "3", "status", "weird", "unknown_status"),
            ],
            False,
        ),
    ],
)
def test_the_share_per_source_table_against_the_threshold(rejections, passed):
    frame = pd.DataFrame(rejections, columns=COLUMNS)

    result = share_result(frame, {"orders": 200, "customers": 50}, max_share=0.01)

    assert (result.passed, result.severity) == (passed, dg.AssetCheckSeverity.WARN)
    assert result.metadata["rejected_orders"].value == len({r[1] for r in rejections})
    assert result.metadata["rejected_customers"].value == 0


@pytest.mark.parametrize(
    ("bad_total", "passed"),
    [
        # three good orders: passes
        (40.0, True),
        # one of three orders has a negative total (33% > 1%): warns, naming the order
        (-500.0, False),
    ],
)
def test_the_check_on_the_rows_the_pipeline_set_aside(shop, pipeline, bad_total, passed):
    shop.customer(1)
    shop.order(1, id=1, paid_at="2026-10-02 09:00")
    shop.order(1, id=2, paid_at="2026-10-02 10:00")
    shop.order(1, id=3, total=bad_total, paid_at="2026-10-02 11:00")

    result = pipeline.run(partition="2026-10-02", assets=[*PIPELINE, rejected_rows_share], settings=Settings())

    check = evaluations(result)[SHARE]
    assert (check.passed, check.severity) == (passed, dg.AssetCheckSeverity.WARN)
    assert value(check, "rejected_share_orders") == (0.0 if passed else 0.3333)
    assert ("negative_amount" in value(check, "rejected_sample")) is not passed
