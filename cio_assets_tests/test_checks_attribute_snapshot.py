"""The attribute snapshot's checks: one row per person and day (ERROR, blocking), null rates and the people
changed per day (WARN)."""

import dagster as dg
import pandas as pd
import pytest

from cio_assets.config import SettingsError
from cio_assets.defs.checks.attribute_snapshot import (
    NULL_RATES,
    ONE_ROW,
    VOLUME,
    judged_rates,
    null_rates_result,
    one_row_result,
)
from cio_assets.defs.checks.days import EvaluatedDays
from cio_assets.defs.resources import Settings
from cio_assets.mapping.spec import load
from cio_assets_tests.checks_runner import evaluations, value
from cio_assets_tests.conftest import PIPELINE
from cio_assets_tests.definitions import attribute_snapshot_checks

DAYS = EvaluatedDays(("2026-10-02", "2026-10-03"), "test")
OCTOBER = ("2026-10-01", "2026-10-03")


@pytest.mark.parametrize(
    ("repeated", "passed"),
    [
        # every person once a day: passes
        ([], True),
        # person 7 twice on 10-02: fails
        ([("2026-10-02", "7", 2)], False),
    ],
)
def test_one_row_per_person_and_day(repeated, passed):
    result = one_row_result(pd.DataFrame(repeated, columns=["day", "person_id", "rows"]), DAYS)

    assert (result.passed, result.severity) == (passed, dg.AssetCheckSeverity.ERROR)
    assert result.metadata["repeated_person_days"].value == len(repeated)


@pytest.mark.parametrize(
    ("rows", "passed", "email_rate"),
    [
        # 1 null e-mail in 100 people with orders, under 5%: passes
        ([("2026-10-02", 60, 1), ("2026-10-03", 40, 0)], True, 0.01),
        # 10 in 100, over 5%: warns
        ([("2026-10-02", 60, 10), ("2026-10-03", 40, 0)], False, 0.1),
        # nobody with orders on these days: nothing to judge, passes
        ([], True, 0.0),
    ],
)
def test_null_rates_among_people_with_orders(rows, passed, email_rate):
    nulls = pd.DataFrame(rows, columns=["day", "people", "email"]).astype({"people": "int64", "email": "int64"})

    result = null_rates_result(nulls, {"email": 0.05}, DAYS, unjudged={})

    assert (result.passed, result.severity) == (passed, dg.AssetCheckSeverity.WARN)
    assert result.metadata["null_rate_email"].value == email_rate
    assert result.metadata["max_null_rate_email"].value == 0.05


@pytest.mark.parametrize(
    ("preset", "judged", "not_judged"),
    [
        # the reference schema has every column the default rates judge
        ("reference", {"email", "first_name", "last_product_category"}, set()),
        # WooCommerce keeps no product category: its null rate would warn for everyone, so it is not judged
        ("woocommerce", {"email", "first_name"}, {"last_product_category"}),
    ],
)
def test_an_attribute_the_mapping_cannot_fill_is_not_judged_and_said_so(preset, judged, not_judged):
    rates, unjudged = judged_rates(Settings().max_null_rates, load(preset))

    assert (set(rates), set(unjudged)) == (judged, not_judged)
    assert all("does not map order_items.category" in why for why in unjudged.values())


@pytest.mark.parametrize(
    ("second_email", "passed"),
    [
        # both buyers have an e-mail: passes
        ("bob@example.com", True),
        # one of two buyers has none: 50% > 5%, warns and names the day
        (None, False),
    ],
)
def test_the_null_rate_check_on_the_snapshot_the_pipeline_wrote(shop, pipeline, second_email, passed):
    shop.customer(1, email="ada@example.com")
    shop.customer(2, email=second_email)
    shop.customer(3, email=None)  # no orders: not counted
    shop.order(1, paid_at="2026-10-02 09:00")
    shop.order(2, paid_at="2026-10-02 10:00")

    result = pipeline.run(
        partition_range=OCTOBER,
        assets=[*PIPELINE, attribute_snapshot_checks],
        settings=Settings(check_max_null_rates="email:0.05"),
    )

    checks = evaluations(result)
    assert checks[NULL_RATES].passed is passed
    assert value(checks[NULL_RATES], "null_rate_email") == (0.0 if passed else 0.5)
    assert ("2026-10-02" in value(checks[NULL_RATES], "days_over")) is not passed
    assert checks[ONE_ROW].passed is True


@pytest.mark.parametrize(
    ("last_day_people", "passed"),
    [
        # one new customer a day, and one on 10-10 too: passes
        (1, True),
        # one a day, then twelve on 10-10: a spike, warns
        (12, False),
    ],
)
def test_the_people_changed_per_day_against_the_trailing_mean(shop, pipeline, last_day_people, passed):
    for day in range(2, 10):
        shop.customer(day, created_at=f"2026-10-{day:02d} 09:00")
    for n in range(last_day_people):
        shop.customer(100 + n, created_at="2026-10-10 09:00")

    result = pipeline.run(partition_range=("2026-10-01", "2026-10-10"), assets=[*PIPELINE, attribute_snapshot_checks])

    volume = evaluations(result)[VOLUME]
    assert (volume.passed, volume.severity) == (passed, dg.AssetCheckSeverity.WARN)
    assert value(volume, "spikes") == (0 if passed else 1)
    assert value(volume, "days_evaluated") == 10


def test_the_one_row_check_blocks_delivery_and_the_others_only_warn():
    blocking = {spec.name: spec.blocking for spec in attribute_snapshot_checks.check_specs}

    assert blocking == {ONE_ROW: True, NULL_RATES: False, VOLUME: False}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # a typo in an attribute name would silently check nothing
        ("emial:0.05", "'emial' is not one"),
        # a share above 1
        ("email:5", "with shares from 0 to 1; 'email:5' breaks that"),
        # an entry without a share
        ("email", "'email' has no ':'"),
    ],
)
def test_a_bad_null_rate_setting_names_the_variable_and_the_entry(monkeypatch, raw, expected):
    monkeypatch.setenv("CIO_CHECK_MAX_NULL_RATES", raw)

    with pytest.raises(SettingsError) as failure:
        Settings.from_env()

    assert f"CIO_CHECK_MAX_NULL_RATES={raw!r} is invalid" in str(failure.value)
    assert expected in str(failure.value)


def test_the_null_rate_setting_reads_each_attributes_share(monkeypatch):
    monkeypatch.setenv("CIO_CHECK_MAX_NULL_RATES", " email:0.1 , phone:0.9 ")

    assert Settings.from_env().max_null_rates == {"email": 0.1, "phone": 0.9}
