"""The sync assets' checks: refusal, 429 and 5xx rates per sync (WARN) and refusals that stay (ERROR); and a
dry run that says "planned", never "sent"."""

from pathlib import Path

import dagster as dg
import pytest

from cio_assets.customerio.batching import Item
from cio_assets.defs.assets.sync import delivery_metadata
from cio_assets.defs.checks.delivery import (
    customerio_events_checks,
    customerio_people_checks,
    rates_result,
    stale_check_name,
)
from cio_assets.defs.resources import CustomerIO, Settings
from cio_assets.delivery import deliver as deliver_module
from cio_assets.delivery.deliver import Sender, deliver
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.schema import state as state_tables
from cio_assets_tests.checks_runner import evaluations, run_checks, value
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.definitions import customerio_people

PEOPLE = "customerio_people"
RATES = "customerio_people_delivery_rates"
CHECKS = [customerio_people_checks, customerio_events_checks]
OCTOBER = ("2026-10-01", "2026-10-03")


def _sync(**metadata) -> tuple[str, dict]:
    return "run-1", {"dry_run": False, "items_sent": 100, "rejected": 0, "requests": 10, **metadata}


@pytest.mark.parametrize(
    ("sync", "passed"),
    [
        # a clean sync: passes
        (_sync(), True),
        # 1 of 101 items refused (~1%, at the limit): passes
        (_sync(rejected=1), True),
        # 5 of 105 refused: warns
        (_sync(rejected=5), False),
        # 3 of 10 requests answered 429: warns
        (_sync(throttled_429=3), False),
        # 1 of 10 answered 5xx (10% > 5%): warns
        (_sync(server_errors_5xx=1), False),
        # a dry run has no HTTP answers; its local refusals alone are judged: passes
        (("run-2", {"dry_run": True, "items_planned": 50, "rejected": 0}), True),
        # no sync yet: nothing to judge, passes
        (None, True),
    ],
)
def test_the_rates_of_a_sync_against_their_thresholds(sync, passed):
    result = rates_result(PEOPLE, sync, Settings())

    assert result.passed is passed
    assert result.severity == dg.AssetCheckSeverity.WARN


@pytest.mark.parametrize(
    ("fault", "failing_rate"),
    [
        # Customer.io answers the people batch 429 twice before taking it: 2 of 3 requests throttled
        ((2, 429), "throttled_429_rate"),
        # a 503, then success: 1 of 2 requests a 5xx
        ((1, 503), "server_errors_5xx_rate"),
        # no fault: every rate passes
        (None, None),
    ],
)
def test_the_rates_check_reads_the_http_counters_of_the_sync_in_the_same_run(
    shop, pipeline, customerio, fault, failing_rate
):
    shop.customer(1)
    shop.order(1, paid_at="2026-10-02 12:00")
    if fault:
        customerio.fake.fail_next(*fault)

    result = pipeline.run(partition_range=OCTOBER, assets=[*SYNC, *CHECKS], customerio=customerio.resource())

    people = {k: v.value for k, v in result.asset_materializations_for_node(PEOPLE)[0].metadata.items()}
    rates = evaluations(result)[RATES]
    assert isinstance(people["throttled_429"], int) and isinstance(people["server_errors_5xx"], int)
    assert rates.passed is (fault is None)
    if failing_rate:
        assert value(rates, failing_rate) > 0.0
        assert failing_rate in (rates.description or "")


def test_a_refused_person_pushes_the_refusal_rate_over_its_threshold(shop, pipeline, customerio):
    shop.customer(1)
    shop.customer(2)
    customerio.fake.refuse_people({"1"})

    result = pipeline.run(partition_range=OCTOBER, assets=[*SYNC, *CHECKS], customerio=customerio.resource())

    rates = evaluations(result)[RATES]
    assert (rates.passed, value(rates, "refused"), value(rates, "refusal_rate")) == (False, 1, 0.5)


@pytest.mark.parametrize(
    ("days_ago", "passed"),
    [
        # refused yesterday, still within 3 days: passes
        (1, True),
        # refused five days ago and never accepted since: an error naming the person
        (5, False),
    ],
)
def test_a_refusal_older_than_the_limit_is_an_error(pipeline, state_engine, days_ago, passed):
    first = unix(utc_now()) - days_ago * 86_400
    state_tables.state_metadata.create_all(state_engine)
    with state_engine.begin() as conn:
        conn.execute(
            state_tables.delivery_rejections.insert(),
            [
                {
                    "kind": "person",
                    "item_key": "42",
                    "payload": "{}",
                    "as_of": first,
                    "reason": "invalid: identifiers.id",
                    "attempts": 7,
                    "first_rejected_at": first,
                    "last_rejected_at": first + 3600,
                }
            ],
        )

    checks = run_checks(pipeline, [customerio_people], [customerio_people_checks])

    stale = checks[stale_check_name(PEOPLE)]
    assert (stale.passed, stale.severity) == (passed, dg.AssetCheckSeverity.ERROR)
    assert value(stale, "pending_refusals") == 1
    assert value(stale, "stale_refusals") == (0 if passed else 1)
    assert ("| 42 | invalid: identifiers.id | 7 |" in value(stale, "stale_sample")) is not passed


def test_the_stale_refusals_check_does_not_block_the_sync():
    specs = {spec.name: spec.blocking for spec in customerio_people_checks.check_specs}

    assert specs == {RATES: False, stale_check_name(PEOPLE): False}


# --- a dry run says "planned" ---------------------------------------------------------------------


def test_a_dry_run_logs_and_reports_planned_never_sent(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(deliver_module, "PROGRESS_EVERY", 1)  # a progress line for every batch
    items = [
        Item(f"person:{i}", {"type": "person", "identifiers": {"id": str(i)}, "action": "identify"}) for i in range(3)
    ]
    lines: list[str] = []

    customerio = CustomerIO(dry_run=True, outbox_dir=str(tmp_path))
    sender = Sender(customerio.sends, tmp_path / "plan.jsonl", customerio.workspace, customerio.client)

    report = deliver(items, sender, lambda delivered: None, lambda refused: None, lines.append)
    metadata = delivery_metadata(report)

    assert lines and all("planned" in line and "sent" not in line for line in lines)
    assert metadata["items_planned"] == 3
    assert not [key for key in metadata if "sent" in key]
    assert not [v for v in metadata.values() if isinstance(v, str) and "sent" in v]


def test_a_dry_run_sync_materialisation_has_no_sent_key(shop, pipeline):
    shop.customer(1)
    shop.order(1, paid_at="2026-10-02 12:00")

    result = pipeline.run(partition_range=OCTOBER, assets=SYNC)

    for node in ("customerio_people", "customerio_events"):
        metadata = result.asset_materializations_for_node(node)[0].metadata
        assert [key for key in metadata if "sent" in key] == [], node
        assert metadata["items_planned"].value >= 1, node
