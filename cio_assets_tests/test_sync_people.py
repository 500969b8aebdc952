"""People sync: everyone once, then only what changed, never rolled back, refusals retried."""

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
from sqlalchemy import create_engine, update

from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import customers
from cio_assets_tests.conftest import SYNC, Pipeline, unix
from cio_assets_tests.fake_customerio import validate_batch_body


def _identifies(fake, since: int = 0) -> list[dict]:
    bodies = [orjson.loads(r.body) for r in fake.requests[since:] if r.status == 200]
    return [item for body in bodies for item in body["batch"] if item["action"] == "identify"]


def _metadata(result, node="customerio_people"):
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def _two_customers(shop):
    shop.customer(1, email=" Ada@Shop.com ", first_name="Ada", created_at="2026-10-01 09:00")
    shop.customer(2, email="bob@shop.com", first_name="Bob", email_opt_in=False, created_at="2026-10-01 10:00")
    shop.order(1, total=50.0, paid_at="2026-10-02 10:00")


def test_a_first_sync_identifies_everyone_once_with_their_state(shop, pipeline, customerio):
    _two_customers(shop)

    result = pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=customerio.resource())

    people = customerio.fake.people
    assert set(people) == {"1", "2"}
    assert {k: people["1"][k] for k in ("email", "first_name", "total_orders", "lifetime_value", "email_eligible")} == {
        "email": "ada@shop.com",
        "first_name": "Ada",
        "total_orders": 1,
        "lifetime_value": 50.0,
        "email_eligible": True,
    }
    assert people["1"]["last_order_at"] == unix("2026-10-02 10:00")
    assert all(isinstance(people["1"][k], int) for k in ("created_at", "first_order_at", "last_order_at"))
    assert "phone" not in people["1"]  # nothing null is sent to a new profile
    assert (people["2"]["total_orders"], people["2"]["email_eligible"]) == (0, False)
    identifies = _identifies(customerio.fake)
    assert sorted(i["identifiers"]["id"] for i in identifies) == ["1", "2"]
    # Each person's latest snapshot: Ada changed on Oct 2 (an order), Bob last on Oct 1 (sign-up).
    assert {i["identifiers"]["id"]: i["timestamp"] for i in identifies} == {
        "1": unix("2026-10-03 00:00"),
        "2": unix("2026-10-02 00:00"),
    }
    assert (_metadata(result)["people_created"], _metadata(result)["rejected"]) == (2, 0)
    assert all(validate_batch_body(orjson.loads(r.body)) == [] for r in customerio.fake.requests)


def test_a_rerun_sends_nothing(shop, pipeline, customerio):
    _two_customers(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=resource)
    requests_before = len(customerio.fake.requests)

    again = pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=resource)

    assert len(customerio.fake.requests) == requests_before
    assert _metadata(again)["people_unchanged"] == 2
    assert _metadata(again, "customerio_events")["events_duplicate_skipped"] == 1


def test_a_changed_attribute_sends_one_identify_with_only_that_key(shop, pipeline, customerio, source_engine):
    _two_customers(shop)
    resource = customerio.resource()
    pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=resource)
    before = len(customerio.fake.requests)
    with source_engine.begin() as conn:
        conn.execute(
            update(customers).where(customers.c.id == 1).values(first_name="Grace", updated_at="2026-10-03 08:00")
        )

    pipeline.run(partition="2026-10-03", assets=SYNC, customerio=resource)

    assert len(customerio.fake.requests) == before + 1
    assert _identifies(customerio.fake, since=before) == [
        {
            "type": "person",
            "identifiers": {"id": "1"},
            "action": "identify",
            "timestamp": unix("2026-10-04 00:00"),
            "attributes": {"first_name": "Grace"},
        }
    ]
    assert customerio.fake.people["1"]["first_name"] == "Grace"


def test_re_running_an_old_partition_never_rolls_newer_state_back(shop, pipeline, customerio):
    shop.customer(1, created_at="2026-10-01 09:00")
    shop.order(1, total=10.0, paid_at="2026-10-02 10:00")
    shop.order(1, total=20.0, paid_at="2026-10-03 10:00")
    resource = customerio.resource()
    pipeline.run(partition_range=("2026-10-01", "2026-10-03"), assets=SYNC, customerio=resource)
    before = len(customerio.fake.requests)

    old = pipeline.run(partition="2026-10-02", assets=SYNC, customerio=resource)

    assert len(customerio.fake.requests) == before
    assert _metadata(old)["people_skipped_older"] == 1
    assert (customerio.fake.people["1"]["total_orders"], customerio.fake.people["1"]["last_order_at"]) == (
        2,
        unix("2026-10-03 10:00"),
    )


def test_a_person_refused_by_customerio_is_retried_on_later_runs(shop, pipeline, customerio):
    _two_customers(shop)
    resource = customerio.resource()
    customerio.fake.refuse_people({"2"}, reason="invalid", field="identifiers.id")

    first = pipeline.run(partition_range=("2026-10-01", "2026-10-02"), assets=SYNC, customerio=resource)

    assert set(customerio.fake.people) == {"1"}  # a 207: only the refused item is missing
    assert _metadata(first)["rejected"] == 1
    refused = pipeline.table(state_tables.delivery_rejections)
    assert refused[["kind", "item_key", "attempts"]].values.tolist() == [["person", "2", 1]]
    assert "invalid" in refused["reason"][0]

    customerio.fake.refuse_people(set())
    retried = pipeline.run(partition="2026-10-05", assets=SYNC, customerio=resource)  # nothing changed that day

    assert customerio.fake.people["2"]["first_name"] == "Bob"
    assert _metadata(retried)["retried_refusals"] == 1
    assert pipeline.table(state_tables.delivery_rejections).empty


def test_a_name_over_customerios_value_limit_is_clipped_and_the_rest_of_the_identify_goes_out(
    shop, pipeline, customerio
):
    shop.customer(1, first_name="😀" * 255)  # 255 characters fit VARCHAR(255), but 1020 bytes do not fit Customer.io
    resource = customerio.resource()

    pipeline.run(partition="2026-10-01", assets=SYNC, customerio=resource)

    person = customerio.fake.people["1"]
    assert person["first_name"] == "😀" * 250  # 1000 bytes: the longest whole-character prefix that fits
    assert (person["email"], person["email_eligible"]) == ("customer1@shop.com", True)
    assert pipeline.table(state_tables.delivery_rejections).empty
    listed = pipeline.table(state_tables.quarantine)
    assert listed[["asset", "item_key", "outcome", "reason"]].values.tolist() == [
        [
            "attribute_snapshot",
            "1",
            "clipped",
            "first_name is 1020 bytes, clipped to 1000 (Customer.io's limit is 1000)",
        ]
    ]

    requests = len(customerio.fake.requests)
    pipeline.run(partition="2026-10-01", assets=SYNC, customerio=resource)
    assert len(customerio.fake.requests) == requests  # the ledger holds the clipped value: nothing to re-send


def test_a_person_refused_on_every_run_stays_listed_and_counts_each_attempt(shop, pipeline, customerio):
    # The person is fresh in every run (no ledger entry yet), so each run both re-plans and retries them:
    # the fresh identify replaces the earlier refusal, whose attempts must keep counting up.
    shop.customer(1)
    resource = customerio.resource()
    customerio.fake.refuse_people({"1"}, reason="invalid", field="identifiers.id")

    attempts = []
    for _ in range(3):
        pipeline.run(partition="2026-10-01", assets=SYNC, customerio=resource)
        refused = pipeline.table(state_tables.delivery_rejections)
        attempts.append(refused[["item_key", "attempts"]].values.tolist())

    assert attempts == [[["1", 1]], [["1", 2]], [["1", 3]]]


# One people sync in a process of its own (Dagster's in-process execution is not meant for threads): it
# imports everything, says "ready", waits for a line, syncs, and prints how long it waited for its turn.
_SYNC_IN_A_PROCESS = """
import json, sys
import dagster as dg
from cio_assets.defs.resources import CustomerIO, SourceDatabase, StateDatabase
from cio_assets.defs.resources import Settings
from cio_assets_tests.definitions import customerio_people

source, state, customerio, start, end = json.loads(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
result = dg.materialize(
    [customerio_people],
    instance=dg.DagsterInstance.ephemeral(),
    tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
    resources={
        "settings": Settings(),
        "source": SourceDatabase(url=source),
        "state": StateDatabase(url=state),
        "customerio": CustomerIO(**customerio),
    },
)
print(result.asset_materializations_for_node("customerio_people")[0].metadata["waited_for_turn_s"].value)
"""


def test_two_pipelines_syncing_to_one_workspace_at_once_send_one_after_the_other(
    shop, pipeline, customerio, second_state_url
):
    """Two runs with no Dagster pool between them (separate instances and state databases, one server): the
    workspace's lock in the state database alone keeps Customer.io from seeing both at once."""
    _two_customers(shop)
    days = ("2026-10-01", "2026-10-02")
    states = (pipeline.state_url, second_state_url)
    for state_url in states:  # the snapshots, without sending
        Pipeline(pipeline.source_url, state_url, create_engine(state_url), pipeline.outbox_dir).run(
            partition_range=days
        )
    latency = 2.0  # each request takes this long: long enough for both syncs to meet
    customerio.fake.latency_seconds = latency
    resource = {"site_id": customerio.fake.site_id, "api_key": customerio.fake.api_key, "track_url": customerio.url}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _SYNC_IN_A_PROCESS, json.dumps([pipeline.source_url, state, resource, *days])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        for state in states
    ]
    for process in processes:  # both have imported everything: start them together
        assert process.stdout is not None and process.stdout.readline() == "ready\n", process.stderr
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    outputs = [process.communicate(timeout=120) for process in processes]

    assert all(process.returncode == 0 for process in processes), [err[-3000:] for _, err in outputs]
    arrivals = sorted(r.received_monotonic for r in customerio.fake.requests)
    assert len(arrivals) == 2  # one batch per run
    assert arrivals[1] - arrivals[0] >= latency * 0.95, "both runs sent at once"
    waited = sorted(float(out.split()[-1]) for out, _ in outputs)
    assert waited[0] < latency / 2 <= waited[1]  # one went first, the other waited for it
