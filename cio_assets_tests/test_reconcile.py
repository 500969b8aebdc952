"""Read-back reconciliation: people read back from the (fake) App API agree with the ledger, or are named."""

import asyncio
import threading
import time

import dagster as dg
import httpx
import orjson
import pytest
from dagster._core.loader import LoadingContextForTest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus
from sqlalchemy import update

from cio_assets.config import SettingsError
from cio_assets.customerio.app_api import AppApiAuthError, AppApiError, AppClient
from cio_assets.defs.checks.reconcile import CHECK_NAME, PEOPLE_ASSET, customerio_people_reconciled
from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets.delivery import ledger
from cio_assets.delivery.reconcile import (
    choose_people,
    compare_person,
    pick,
    read_back,
    sample_positions,
    values_match,
)
from cio_assets.schema.shop import customers
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.definitions import customerio_resource
from cio_assets_tests.fake_customerio import APP_PEOPLE_PATH, _customer_validator

CHECK_KEY = dg.AssetCheckKey(PEOPLE_ASSET, CHECK_NAME)


def _reading(customerio, **overrides) -> CustomerIO:
    """A live resource on the fake with the App API key, reading back at once (no settle delay)."""
    options = {"app_api_key": customerio.fake.app_api_key, "app_url": customerio.url, "reconcile_settle_seconds": 0}
    return customerio.resource(**{**options, **overrides})


class Run:
    """One in-process run of the sync, then one of the check alone (as `read_back` runs it, after the sync's run),
    with what the instance recorded about the check."""

    def __init__(
        self,
        pipeline,
        resource: CustomerIO,
        partition_range=("2026-10-01", "2026-10-02"),
        settings: Settings | None = None,
    ) -> None:
        tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
        resources = {
            "settings": settings or Settings(),
            "source": SourceDatabase(url=pipeline.source_url),
            "state": StateDatabase(url=pipeline.state_url),
            "customerio": resource,
        }
        with dg.instance_for_test() as instance:
            dg.materialize(SYNC, tags=tags, instance=instance, resources=resources)
            self.result = dg.materialize(
                [*SYNC, customerio_people_reconciled],
                selection=dg.AssetSelection.checks(customerio_people_reconciled),
                instance=instance,
                resources=resources,
            )
            run_id = self.result.run_id
            self.messages = [e.user_message for e in instance.all_logs(run_id) if e.user_message]
            (record,) = instance.event_log_storage.get_asset_check_execution_history(CHECK_KEY, limit=1)
            self.status = asyncio.run(record.resolve_status(LoadingContextForTest(instance)))
        evaluations = [e for e in self.result.get_asset_check_evaluations() if e.asset_check_key == CHECK_KEY]
        self.evaluation = evaluations[0] if evaluations else None

    @property
    def metadata(self) -> dict:
        assert self.evaluation is not None
        return {k: v.value for k, v in self.evaluation.metadata.items()}


def _two_customers(shop):
    shop.customer(1, email="ada@shop.com", first_name="Ada", created_at="2026-10-01 09:00")
    shop.customer(2, email="bob@shop.com", first_name="Bob", email_opt_in=False, created_at="2026-10-01 10:00")
    shop.order(1, total=49.99, paid_at="2026-10-02 10:00")


def test_a_clean_sync_reconciles(shop, pipeline, customerio):
    _two_customers(shop)

    run = Run(pipeline, _reading(customerio))

    assert run.evaluation is not None and run.evaluation.passed, run.metadata.get("mismatch_table")
    assert run.evaluation.severity == dg.AssetCheckSeverity.ERROR
    metadata = run.metadata
    assert (metadata["people_checked"], metadata["mismatches"], metadata["profiles_missing"]) == (2, 0, 0)
    # A first sync delivers everyone, so everyone read back is one this sync changed.
    assert (metadata["people_checked_changed"], metadata["people_checked_random"]) == (2, 0)
    assert metadata["attributes_compared"] > 2 * 10
    reads = [r for r in customerio.fake.app_requests if r.path == APP_PEOPLE_PATH]
    assert [r.status for r in reads] == [200]  # two people, one request
    assert reads[0].headers["authorization"] == f"Bearer {customerio.fake.app_api_key}"


# (attribute, what someone set in Customer.io, our value and theirs as the mismatch table shows them)
CORRUPTIONS = [
    # text edited in Customer.io's UI
    ("first_name", "Mallory", "Ada", "Mallory"),
    # a number that moved: Unix seconds and counts compare as numbers
    ("total_orders", 7, "1", "7"),
    # money: 49.99 is not 49.9
    ("lifetime_value", 49.9, "49.99", "49.9"),
    # a boolean that flipped
    ("email_eligible", False, "true", "false"),
    # an attribute removed from the profile
    ("email", None, "ada@shop.com", "(not set)"),
]


def test_a_profile_changed_behind_the_pipelines_back_is_caught_and_named(shop, pipeline, customerio):
    _two_customers(shop)
    resource = _reading(customerio)
    assert Run(pipeline, resource).evaluation.passed
    customerio.fake.corrupt_person("1", **{attribute: theirs for attribute, theirs, _, _ in CORRUPTIONS})

    run = Run(pipeline, resource)

    assert run.evaluation is not None and not run.evaluation.passed
    assert run.evaluation.severity == dg.AssetCheckSeverity.ERROR
    metadata = run.metadata
    assert (metadata["mismatches"], metadata["people_mismatched"], metadata["profiles_missing"]) == (5, 1, 0)
    table = metadata["mismatch_table"]
    assert table.splitlines()[0] == "| person | attribute | ours | theirs |"
    for attribute, _, ours_shown, theirs_shown in CORRUPTIONS:
        assert f"| 1 | {attribute} | {ours_shown} | {theirs_shown} |" in table
    assert "| 2 |" not in table


def test_a_profile_deleted_in_customerio_is_a_mismatch(shop, pipeline, customerio):
    _two_customers(shop)
    resource = _reading(customerio)
    Run(pipeline, resource)
    customerio.fake.forget_person("2")

    run = Run(pipeline, resource)

    assert not run.evaluation.passed
    assert (run.metadata["profiles_missing"], run.metadata["mismatches"]) == (1, 1)
    assert "| 2 | (profile) | (delivered) | (no profile) |" in run.metadata["mismatch_table"]


@pytest.mark.parametrize(
    ("resource_options", "reason"),
    [
        # a dry run delivers nothing, so there is nothing to read back
        ({"dry_run": True}, "dry run: nothing is delivered to Customer.io"),
        # live delivery, but no App API key to read with
        ({"app_api_key": ""}, "CIO_APP_API_KEY is not set"),
    ],
)
def test_the_check_is_skipped_with_its_reason(shop, pipeline, customerio, resource_options, reason, tmp_path):
    _two_customers(shop)
    options = {"app_api_key": customerio.fake.app_api_key, "app_url": customerio.url, "outbox_dir": str(tmp_path)}
    resource = customerio.resource(**{**options, **resource_options})

    run = Run(pipeline, resource)

    assert run.result.success
    assert run.evaluation is None  # no result at all: not a pass
    assert run.status == AssetCheckExecutionResolvedStatus.SKIPPED
    assert any(message.startswith(f"{CHECK_NAME} skipped: {reason}") for message in run.messages), run.messages
    assert customerio.fake.app_requests == []


def test_the_people_the_latest_sync_changed_are_read_first(shop, pipeline, customerio, source_engine):
    _two_customers(shop)
    resource = _reading(customerio, reconcile_sample=1)
    Run(pipeline, resource)
    customerio.fake.corrupt_person("2", first_name="Mallory")  # not changed by the next sync
    with source_engine.begin() as conn:
        conn.execute(
            update(customers).where(customers.c.id == 1).values(first_name="Grace", updated_at="2026-10-03 08:00")
        )
    time.sleep(1.1)  # the ledger counts whole seconds: the next run starts in a later one

    changed_first = Run(pipeline, resource, partition_range=("2026-10-03", "2026-10-03"))

    # One person read: Ada, whom this sync changed; Bob's corrupted profile is not read.
    assert changed_first.evaluation.passed
    assert (changed_first.metadata["people_checked_changed"], changed_first.metadata["people_checked_random"]) == (1, 0)
    assert changed_first.metadata["people_changed_by_sync"] == 1

    everyone = Run(pipeline, _reading(customerio, reconcile_sample=2), partition_range=("2026-10-03", "2026-10-03"))

    assert not everyone.evaluation.passed
    assert "| 2 | first_name | Bob | Mallory |" in everyone.metadata["mismatch_table"]


@pytest.mark.parametrize(
    ("catches_up", "mismatches"),
    [
        # Customer.io applies the identify during the settle delay: the second read agrees
        (True, []),
        # it never does: the difference stands
        (False, [("1", "first_name", "Ada", "Stale")]),
    ],
)
def test_people_that_differ_are_read_again_after_the_settle_delay(customerio, catches_up, mismatches):
    customerio.fake.people["1"] = {"first_name": "Stale"}
    customerio.fake.people["2"] = {"first_name": "Bob"}
    catch_up = threading.Timer(0.5, customerio.fake.corrupt_person, args=("1",), kwargs={"first_name": "Ada"})
    if catches_up:
        catch_up.start()

    resource = _reading(customerio, reconcile_settle_seconds=1.5)
    reading = read_back(resource.app_client(), OURS, resource.reconcile_settle_seconds)
    catch_up.cancel()

    assert [(m.person_id, m.attribute, m.ours, m.theirs) for m in reading.mismatches] == mismatches
    assert reading.rechecked == 1  # only Ada is read again
    assert [len(orjson.loads(r.body)["ids"]) for r in customerio.fake.app_requests] == [2, 1]


OURS = {"1": {"first_name": "Ada"}, "2": {"first_name": "Bob"}}


# ---------------------------------------------------------------------------------------------------------
# The sample, on crafted ledger rows
# ---------------------------------------------------------------------------------------------------------


def _ledger(pipeline, delivered_at: dict[int, list[str]]) -> StateDatabase:
    state = StateDatabase(url=pipeline.state_url)
    with state.begin() as conn:
        for at, people in delivered_at.items():
            ledger.record_people(conn, [(p, {"first_name": p}, 1) for p in people], now=at)
    return state


def test_the_sample_puts_changed_people_first_then_a_seeded_sample_of_the_rest(pipeline):
    earlier = [f"p{n:03}" for n in range(100)]
    state = _ledger(pipeline, {100: earlier, 200: ["c1", "c2", "c3"]})

    with state.connect() as conn:
        sample = choose_people(conn, since=200, size=10, seed="run-a")
        again = choose_people(conn, since=200, size=10, seed="run-a")
        other = choose_people(conn, since=200, size=10, seed="run-b")
        few = choose_people(conn, since=200, size=2, seed="run-a")

    assert sorted(sample.changed) == ["c1", "c2", "c3"] and sample.people[:3] == sample.changed
    assert len(sample.others) == 7 and set(sample.others) <= set(earlier)
    assert (sample.delivered, sample.changed_total) == (103, 3)
    assert again == sample  # the same sync reads the same people
    assert other.others != sample.others  # another sync reads others
    assert len(few.people) == 2 and set(few.people) <= {"c1", "c2", "c3"}  # changed people fill a small sample


def test_the_sample_is_everyone_when_fewer_were_delivered(pipeline):
    state = _ledger(pipeline, {100: ["a", "b"]})

    with state.connect() as conn:
        sample = choose_people(conn, since=200, size=20, seed="run")

    assert (sample.changed, sorted(sample.others)) == ([], ["a", "b"])


def test_sample_positions_are_distinct_deterministic_and_in_range():
    positions = sample_positions(1000, 20, "seed")

    assert positions == sample_positions(1000, 20, "seed")
    assert len(set(positions)) == 20 and all(0 <= p < 1000 for p in positions)
    assert positions != sample_positions(1000, 20, "another seed")
    assert sorted(sample_positions(3, 20, "seed")) == [0, 1, 2]


def test_pick_returns_ids_in_the_order_of_positions_and_stops_after_the_last():
    read: list[str] = []

    def ids():
        for person_id in "abcdefgh":
            read.append(person_id)
            yield person_id

    assert pick(ids(), [4, 0, 2]) == ["e", "a", "c"]
    assert read == list("abcde")


# ---------------------------------------------------------------------------------------------------------
# String forms
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs", "match"),
    [
        ("Ada", "Ada", True),  # text: exactly equal
        ("Ada", "ada", False),  # text: case matters
        (1489014595, "1489014595", True),  # Unix seconds as Customer.io prints them
        (1489014595, "1.489014595e+09", True),  # the same number in exponent form
        (3, "3.5", False),  # an integer is compared exactly
        (3, "three", False),  # not a number at all
        (50.0, "50", True),  # a whole float printed without ".0"
        (49.99, "49.99", True),  # money
        (49.99, "49.98", False),  # a cent off
        (True, "true", True),  # booleans in JSON's spelling
        (False, "true", False),  # a flipped boolean
        (True, "1", False),  # only JSON's spelling counts
        (None, None, True),  # null: never sent to a new profile
        (None, "", True),  # null: cleared with an empty string
        (None, "x", False),  # a value where we hold null
        ("", None, True),  # empty text counts as null
        ("Ada", None, False),  # an attribute missing from the profile
        (0, None, False),  # zero is a value, not null
    ],
)
def test_values_compare_in_string_form(ours, theirs, match):
    assert values_match(ours, theirs) is match


def test_attributes_customerio_adds_are_ignored_and_a_missing_profile_is_one_mismatch():
    ours = {"first_name": "Ada", "total_orders": 1}
    theirs = {"first_name": "Ada", "total_orders": "1", "cio_id": "a1", "id": "1", "_last_emailed": "1"}

    assert compare_person("1", ours, theirs) == []
    assert [(m.attribute, m.ours, m.theirs) for m in compare_person("1", ours, None)] == [
        ("(profile)", "(delivered)", "(no profile)")
    ]


# ---------------------------------------------------------------------------------------------------------
# The App API client
# ---------------------------------------------------------------------------------------------------------


def _app_client(customerio, **options) -> AppClient:
    return AppClient(customerio.fake.app_api_key, customerio.url, **options)


def test_a_429_is_honoured_for_its_retry_after(customerio):
    customerio.fake.people["1"] = {"first_name": "Ada", "total_orders": 2, "lifetime_value": 50.0, "vip": True}
    customerio.fake.throttle_app_next(1, retry_after="1")

    with _app_client(customerio, backoff_base=0.01) as client:
        people = client.read_people(["1", "unknown"])

    assert set(people) == {"1"}  # an unknown id is left out of the answer
    assert {k: people["1"][k] for k in ("first_name", "total_orders", "lifetime_value", "vip", "id")} == {
        "first_name": "Ada",
        "total_orders": "2",  # every attribute comes back as a string
        "lifetime_value": "50",
        "vip": "true",
        "id": "1",
    }
    first, second = customerio.fake.app_requests
    assert (first.status, second.status) == (429, 200)
    assert second.received_monotonic - first.received_monotonic >= 1.0  # Retry-After: 1, not the 10 ms backoff
    assert (client.stats.throttled, client.stats.retries) == (1, 1)


def test_throttling_past_the_retry_budget_names_the_url_never_the_key(customerio):
    customerio.fake.throttle_app_next(3, retry_after="5")

    started = time.monotonic()
    with _app_client(customerio, retry_budget_seconds=2.0) as client, pytest.raises(AppApiError) as failure:
        client.read_people(["1"])

    assert time.monotonic() - started < 2.0  # a wait past the budget is not started
    message = str(failure.value)
    assert customerio.url in message and "retry budget" in message and "Retry-After: 5" in message
    assert customerio.fake.app_api_key not in message


def test_a_wrong_app_api_key_stops_at_once_naming_the_variable_not_the_key(customerio):
    with AppClient("wrong-key-never-shown", customerio.url) as client, pytest.raises(AppApiAuthError) as failure:
        client.read_people(["1"])

    message = str(failure.value)
    assert "CIO_APP_API_KEY" in message and customerio.url in message and "wrong-key-never-shown" not in message
    assert len(customerio.fake.app_requests) == 1


def test_reads_go_in_requests_of_at_most_100_ids_and_at_most_10_per_second(customerio):
    ids = [str(n) for n in range(1100)]  # 11 requests

    with _app_client(customerio) as client:
        assert client.read_people(ids) == {}  # nobody exists: everyone is left out of the answer

    reads = customerio.fake.app_requests
    assert [r.item_count for r in reads] == [0] * 11 and all(r.status == 200 for r in reads)
    assert reads[10].received_monotonic - reads[0].received_monotonic >= 1.0 - 0.05


def test_the_fake_app_api_answers_as_documented(customerio):
    customerio.fake.people["1"] = {"email": "ada@shop.com", "lifetime_value": 49.99, "phone": ""}
    bearer = {"Authorization": f"Bearer {customerio.fake.app_api_key}"}

    found = httpx.get(f"{customerio.url}/v1/customers/1/attributes", headers=bearer)
    missing = httpx.get(f"{customerio.url}/v1/customers/2/attributes", headers=bearer)
    too_many = httpx.post(f"{customerio.url}{APP_PEOPLE_PATH}", headers=bearer, json={"ids": ["1"] * 101})
    basic = httpx.post(f"{customerio.url}{APP_PEOPLE_PATH}", auth=("site", "key"), json={"ids": ["1"]})

    assert found.status_code == 200 and _customer_validator().is_valid(found.json())
    customer = found.json()["customer"]
    assert customer["identifiers"] == {"id": "1", "email": "ada@shop.com", "cio_id": customer["attributes"]["cio_id"]}
    assert customer["attributes"]["lifetime_value"] == "49.99" and "phone" not in customer["attributes"]
    assert missing.status_code == 404 and missing.json()["errors"][0]["status"] == "404"
    assert too_many.status_code == 400
    assert basic.status_code == 401  # the App API takes a Bearer key, not the Track credentials


# ---------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------


def test_the_app_url_defaults_by_region():
    assert CustomerIO(region="us").app_base_url == "https://api.customer.io"
    assert CustomerIO(region="eu").app_base_url == "https://api-eu.customer.io"
    assert CustomerIO(region="eu", app_url="http://127.0.0.1:9").app_base_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CIO_RECONCILE_SAMPLE", "0", "CIO_RECONCILE_SAMPLE='0' is invalid: expected a whole number >= 1"),
        ("CIO_RECONCILE_SAMPLE", "lots", "CIO_RECONCILE_SAMPLE='lots' is invalid: expected a whole number >= 1"),
        ("CIO_RECONCILE_SETTLE_SECONDS", "-1", "CIO_RECONCILE_SETTLE_SECONDS='-1' is invalid: expected a number >= 0"),
        # a URL is never echoed: it may carry credentials
        ("CIO_APP_URL", "ftp://user:pw@api.example.com", "CIO_APP_URL is invalid: expected an http(s) URL"),
    ],
)
def test_a_bad_reconciliation_setting_names_the_variable(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as failure:
        customerio_resource()

    assert expected in str(failure.value)


def test_the_app_api_key_reaches_the_resource_only_as_an_env_var(monkeypatch):
    monkeypatch.setenv("CIO_APP_API_KEY", "app-key-never-shown")

    resource = customerio_resource()

    assert isinstance(resource.app_api_key, dg.EnvVar)
