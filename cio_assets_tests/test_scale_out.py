"""The distributed path: a backfill on two Celery workers, with the production instance (deploy/dagster.yaml on
Postgres), delivers to Customer.io exactly what the in-process run delivers; and the instance's pool keeps
concurrent runs from sending to Customer.io at the same time.

The tests that run workers need RabbitMQ on 127.0.0.1:5672 (guest/guest) and PostgreSQL on 127.0.0.1:5432 (user
postgres, trust); they are marked `celery` and skipped, saying which is missing, without them. (The first two
tests, on the CIO_EXECUTOR and CIO_CELERY_BROKER settings, need neither.) Each such test makes its own Postgres
database for the Dagster instance and its own Celery queue (so stale workers or tasks from another run never
interfere), starts its workers with `dagster-celery worker start`, and drops, deletes and kills all of it at
the end. The shop and the state databases are throwaway MariaDB databases; Customer.io is the fake over real
HTTP, which the workers reach like any other client.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import create_engine, make_url, text

from cio_assets_tests.conftest import SERVER_URL, LocalCustomerIO
from cio_assets_tests.scale_out_job import celery_backfill, in_process_backfill

PROJECT = Path(__file__).resolve().parent.parent
DEPLOY_INSTANCE = PROJECT / "deploy" / "dagster.yaml"
DEPLOY_WORKERS = PROJECT / "deploy" / "celery.yaml"
BROKER = os.environ.get("CIO_TEST_CELERY_BROKER", "pyamqp://guest:guest@127.0.0.1:5672//")
POSTGRES = os.environ.get("CIO_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
RANGE = ("2026-10-01", "2026-10-03")
SYNC_STEPS = {"customerio_people", "customerio_events"}
WORKER_START_SECONDS = 60


def _unreachable(name: str, url: str, default_port: int) -> str | None:
    parsed = make_url(url.replace("pyamqp://", "amqp://"))
    host, port = parsed.host or "127.0.0.1", parsed.port or default_port
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as error:
        return f"{name} is not reachable at {host}:{port} ({error})"
    return None


def _skip_reason() -> str | None:
    try:
        import dagster_celery  # noqa: F401
        import dagster_postgres  # noqa: F401
    except ImportError as error:
        return f"the scale-out extra is not installed (uv sync --extra scale-out): {error}"
    return _unreachable("RabbitMQ", BROKER, 5672) or _unreachable("PostgreSQL", POSTGRES, 5432)


# dagster-celery registers its step task again for every step it submits; Celery 5.7 warns each time.
pytestmark = pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")


# ------------------------------------------------------------------------------------------------------------
# The production instance, on a throwaway Postgres database
# ------------------------------------------------------------------------------------------------------------


@dataclass
class ScaleOut:
    """A DAGSTER_HOME holding deploy/dagster.yaml on its own Postgres database, two state databases on
    MariaDB (one per run under comparison), and the environment the runs and the workers read."""

    home: Path
    env: dict[str, str]
    state_urls: dict[str, str]  # "celery" | "in_process" | "other" -> a fresh state database

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    @staticmethod
    def executor_config(queue: str) -> dict[str, Any]:
        """The run's Celery config: a queue only this test uses (the broker comes from CIO_CELERY_BROKER)."""
        return {"config_source": {"task_default_queue": queue}}

    def state_env(self, run: str) -> dict[str, str]:
        return {**self.env, "CIO_STATE_URL": self.state_urls[run]}


@pytest.fixture
def scale_out(
    tmp_path: Path, customerio: LocalCustomerIO, database_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ScaleOut]:
    name = f"cio_test_{uuid.uuid4().hex[:10]}"
    postgres = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    mariadb = create_engine(SERVER_URL)
    states = {run: f"{name}_{run}" for run in ("celery", "in_process", "other")}
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    pg = make_url(POSTGRES)
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": pg.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg.port or 5432),
        "DAGSTER_PG_USER": pg.username or "postgres",
        "DAGSTER_PG_PASSWORD": pg.password or "unused-with-trust-auth",
        "DAGSTER_PG_DB": name,
        "CIO_MYSQL_URL": database_urls[0],
        "CIO_SITE_ID": customerio.fake.site_id,
        "CIO_API_KEY": customerio.fake.api_key,
        "CIO_TRACK_URL": customerio.url,
        "CIO_RATE_LIMIT": "1000",
        "CIO_CELERY_BROKER": BROKER,
        "CIO_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with postgres.begin() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        base = make_url(SERVER_URL)
        with mariadb.begin() as conn:
            for db in states.values():
                conn.execute(text(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4"))
        state_urls = {run: base.set(database=db).render_as_string(hide_password=False) for run, db in states.items()}
        # The instance's schema and the pool's limit exist before any worker or run starts, as in a deployment
        # (docs/deployment.md): two workers opening an empty instance database at once both create the schema
        # (one fails), and two runs claiming a pool not yet limited can both set it up from default_limit.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.event_log_storage.set_concurrency_slots("customerio_api", 1)
        yield ScaleOut(home, env, state_urls=state_urls)
    finally:
        with mariadb.begin() as conn:
            for db in states.values():
                conn.execute(text(f"DROP DATABASE IF EXISTS `{db}`"))
        with postgres.begin() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        mariadb.dispose()
        postgres.dispose()


# ------------------------------------------------------------------------------------------------------------
# Celery workers
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def celery_workers(scale_out: ScaleOut, queue: str, count: int, env: dict[str, str]) -> Iterator[list[Worker]]:
    """`count` workers (one process each) on `queue`, started as production starts them (deploy/celery.yaml),
    with the environment `env` (the run's CIO_* variables); stopped, and the queue deleted, on the way out."""
    bin_dir = Path(sys.executable).parent
    worker_env = {
        **os.environ,
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(PROJECT),
    }
    workers: list[Worker] = []
    try:
        for index in range(count):
            name = f"{queue}-{index}"
            log = scale_out.home / f"{name}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [
                        str(bin_dir / "dagster-celery"),
                        "worker",
                        "start",
                        "--app",
                        "dagster_celery.app",
                        "--config-yaml",
                        str(DEPLOY_WORKERS),
                        "--queue",
                        queue,
                        "--name",
                        name,
                        # The job's module, imported once by the worker before it forks its process.
                        "--includes",
                        "cio_assets_tests.scale_out_job",
                        "--loglevel",
                        "INFO",
                        "--",
                        "--concurrency=1",
                    ],
                    cwd=PROJECT,
                    env=worker_env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: the CLI, celery and its child go together
                )
            workers.append(Worker(name, process, log))
        yield workers
    finally:
        for worker in workers:
            _stop(worker.process)
        _delete_queue(queue)


def wait_until_ready(workers: list[Worker]) -> None:
    deadline = time.monotonic() + WORKER_START_SECONDS
    pending = list(workers)
    while pending:
        for worker in list(pending):
            if f"{worker.name}@" in worker.output() and " ready." in worker.output():
                pending.remove(worker)
            elif worker.process.poll() is not None:
                raise AssertionError(f"worker {worker.name} exited ({worker.process.returncode}):\n{worker.output()}")
        if pending and time.monotonic() > deadline:
            logs = "\n".join(w.output()[-3000:] for w in pending)
            raise AssertionError(f"workers not ready after {WORKER_START_SECONDS} s:\n{logs}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with _no_such_process():
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with _no_such_process():
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    with _no_such_process():  # celery's forked child, if it outlived its parent
        os.killpg(process.pid, signal.SIGKILL)


def _no_such_process() -> suppress:
    return suppress(ProcessLookupError)


def _delete_queue(queue: str) -> None:
    from kombu import Connection

    with Connection(BROKER, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(queue)


# ------------------------------------------------------------------------------------------------------------
# Runs and what they delivered
# ------------------------------------------------------------------------------------------------------------


def _small_shop(shop) -> None:
    """Four customers (one guest checkout) with paid orders, a refund, a cart and a subscription over three days."""
    for customer_id in (1, 2, 3, 4):
        shop.customer(customer_id, created_at="2026-09-20 09:00")
    shop.order(1, total=20.0, paid_at="2026-10-01 12:00")
    refunded = shop.order(1, total=35.0, paid_at="2026-10-03 08:00")
    shop.refund(refunded, 10.0, created_at="2026-10-03 12:00")
    shop.order(2, total=12.5, paid_at="2026-10-02 18:30")
    shop.order(3, total=99.0, paid_at="2026-10-02 09:15")
    shop.order(3, total=5.0, paid_at="2026-10-03 23:00")
    shop.order(None, total=42.0, email="guest@shop.com", paid_at="2026-10-02 11:00")
    shop.cart(customer_id=4, updated_at="2026-10-02 10:00")
    shop.subscription(2, started_at="2026-10-01 10:00")


@dataclass(frozen=True)
class Delivered:
    """What landed in the fake Customer.io. Event ULIDs are minted per delivery, so events are compared by
    everything else (their `event_id`-derived content is in the attributes)."""

    people: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]
    duplicate_events: int

    @classmethod
    def read(cls, customerio: LocalCustomerIO) -> Delivered:
        fake = customerio.fake
        with fake.lock:
            events = [{k: v for k, v in event.items() if k != "id"} for event in fake.events]
            assert all(len(event.get("id", "")) == 26 for event in fake.events), "every event carries a ULID"
            return cls(copy.deepcopy(fake.people), sorted(events, key=repr), fake.duplicate_events)


def _queue() -> str:
    return f"cio-test-{uuid.uuid4().hex[:10]}"


def _run(job: dg.ReconstructableJob, instance: dg.DagsterInstance, run_config: dict | None = None):
    tags = {"dagster/asset_partition_range_start": RANGE[0], "dagster/asset_partition_range_end": RANGE[1]}
    return dg.execute_job(job, instance=instance, run_config=run_config, tags=tags)


def _step_records(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> list:
    return [
        record.event_log_entry
        for record in instance.get_records_for_run(run_id, of_type=event_type, limit=1000).records
    ]


def _waited_for_turn(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Step key -> seconds its sync waited for the workspace's turn to send (from its materialization)."""
    waited = {}
    for entry in _step_records(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.dagster_event.step_materialization_data.materialization
        if "waited_for_turn_s" in materialization.metadata:
            waited[entry.step_key] = float(materialization.metadata["waited_for_turn_s"].value)
    return waited


def _failure(result: dg.JobExecutionResult) -> str:
    errors = [
        event.event_specific_data.error.to_string()
        for event in result.all_events
        if event.is_failure and getattr(event.event_specific_data, "error", None)
    ]
    return "\n".join(errors) or "the run failed without a step error"


# ------------------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------------------


def test_cio_executor_chooses_the_code_locations_executor_and_refuses_anything_else(tmp_path: Path):
    """The setting is read when the definitions load; each value gives its executor."""
    script = (
        "import os\n"
        "import cio_assets.definitions as d\n"
        "for value in ('', 'in_process', 'multiprocess', 'celery', 'threads'):\n"
        "    os.environ['CIO_EXECUTOR'] = value\n"
        "    try:\n"
        "        print(value or '(unset)', d.defs().executor.name)\n"
        "    except Exception as error:\n"
        "        print(value, type(error).__name__, error)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIO_")}
    env.update(CIO_DATA_DIR=str(tmp_path), PYTHONPATH=str(PROJECT))
    loaded = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)

    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines() == [
        "(unset) in_process",  # the demo's and the default: steps are short, one process is fastest
        "in_process in_process",
        "multiprocess multiprocess",
        "celery celery",
        "threads SettingsError CIO_EXECUTOR='threads' is invalid: expected one of in_process, multiprocess, celery",
    ]


def test_a_celery_run_takes_its_broker_from_cio_celery_broker_unless_its_config_names_one(
    monkeypatch: pytest.MonkeyPatch,
):
    pytest.importorskip("dagster_celery", reason="the scale-out extra is not installed")
    from cio_assets.defs.executor import executor_named

    schema = executor_named("celery").config_schema
    monkeypatch.setenv("CIO_CELERY_BROKER", "pyamqp://cio:secret@rabbitmq.internal:5672//")
    assert (
        schema.resolve_config({"config": {}}).value["config"]["broker"]
        == "pyamqp://cio:secret@rabbitmq.internal:5672//"
    )
    named = {"config": {"broker": "pyamqp://other@elsewhere//"}}
    assert schema.resolve_config(named).value["config"]["broker"] == "pyamqp://other@elsewhere//"
    monkeypatch.delenv("CIO_CELERY_BROKER")
    # Unset: no broker, so dagster-celery's own default (guest on $DAGSTER_CELERY_BROKER_HOST or localhost).
    assert schema.resolve_config({"config": {}}).value["config"]["broker"] is None


@pytest.mark.celery
@pytest.mark.skipif(bool(_skip_reason()), reason=_skip_reason() or "")
def test_a_backfill_on_two_celery_workers_delivers_exactly_what_the_in_process_run_delivers(
    scale_out: ScaleOut, shop, customerio: LocalCustomerIO, monkeypatch: pytest.MonkeyPatch
):
    _small_shop(shop)
    queue = _queue()
    # On the workers the event log's three days are three pieces, each a step of its own (the reference run
    # extracts them as one piece): the workers share them out, and the log they publish must be the same.
    with celery_workers(scale_out, queue, 2, {**scale_out.state_env("celery"), "CIO_CHUNK_DAYS": "1"}) as workers:
        # The workers start (imports, broker) while the in-process reference run goes.
        monkeypatch.setenv("CIO_STATE_URL", scale_out.state_urls["in_process"])
        with dg.instance_for_test() as reference_instance:
            reference = _run(dg.reconstructable(in_process_backfill), reference_instance)
            assert reference.success, _failure(reference)
        expected = Delivered.read(customerio)
        customerio.fake.reset()

        monkeypatch.setenv("CIO_STATE_URL", scale_out.state_urls["celery"])
        wait_until_ready(workers)
        instance = scale_out.instance()
        started = time.monotonic()
        result = _run(
            dg.reconstructable(celery_backfill), instance, {"execution": {"config": scale_out.executor_config(queue)}}
        )
        elapsed = time.monotonic() - started
        assert result.success, _failure(result) + "\n" + "\n".join(w.output()[-2000:] for w in workers)
        delivered = Delivered.read(customerio)

        # Every step ran in a worker: the worker's engine event names it, and the step's process is not ours.
        handed_over = [
            entry
            for entry in _step_records(instance, result.run_id, dg.DagsterEventType.ENGINE_EVENT)
            if entry.message and "in celery worker" in entry.message
        ]
        starts = _step_records(instance, result.run_id, dg.DagsterEventType.STEP_START)

    pieces = [
        f"event_log.event_log_piece[days_{day.replace('-', '_')}]" for day in ("2026-10-01", "2026-10-02", "2026-10-03")
    ]
    assert sorted(entry.step_key for entry in starts) == sorted(
        [
            *(set(SYNC_STEPS) | {"rejected_rows", "identity_map", "attribute_snapshot"}),
            "event_log.event_log_plan",
            *pieces,
            "event_log.event_log_publish",
        ]
    )
    assert {entry.step_key for entry in handed_over} == {entry.step_key for entry in starts}
    worker_names = {entry.dagster_event.event_specific_data.metadata["Celery worker"].value for entry in handed_over}
    assert worker_names <= {f"{w.name}@{socket.gethostname()}" for w in workers}, worker_names
    assert all(entry.dagster_event.pid not in (None, os.getpid()) for entry in starts)
    # The broker (a URL that may hold a password) came from CIO_CELERY_BROKER, not from the stored run config.
    assert "broker" not in instance.get_run_by_id(result.run_id).run_config["execution"]["config"]  # type: ignore[union-attr]

    assert expected.people and expected.events, "the reference run delivered nothing: the comparison would be empty"
    assert delivered == expected
    assert delivered.duplicate_events == 0
    print(f"celery backfill: {elapsed:.1f} s on workers {sorted(worker_names)}")


@pytest.mark.celery
@pytest.mark.skipif(bool(_skip_reason()), reason=_skip_reason() or "")
def test_two_concurrent_celery_runs_never_send_to_customerio_at_the_same_time(
    scale_out: ScaleOut, shop, customerio: LocalCustomerIO
):
    """Only one sync at a time sends to a Customer.io workspace: deploy/dagster.yaml's `customerio_api` pool holds
    a second sync step back, and the workspace's lock in the state database covers the moment both claim the pool
    at once (Dagster can let both through on Postgres), so Customer.io never sees two of these runs' requests."""
    _small_shop(shop)
    latency = 2.5  # every Track request takes this long: long enough for two runs' syncs to meet
    customerio.fake.latency_seconds = latency
    runs = ("celery", "other")  # two runs, each with its own state database, queue and worker
    queues = {run: _queue() for run in runs}
    # Two state databases on one Dagster instance are two sync ledgers, which the instance would refuse as a
    # lost ledger (test_faults.py); here they are two pipelines on purpose, so both accept a new ledger.
    env = {run: {**scale_out.state_env(run), "CIO_ACCEPT_NEW_LEDGER": "1"} for run in runs}
    with ExitStack() as stack:
        workers = {run: stack.enter_context(celery_workers(scale_out, queues[run], 1, env[run])) for run in runs}
        for run in runs:
            wait_until_ready(workers[run])
        launched = {
            run: subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cio_assets_tests.scale_out_job",
                    *RANGE,
                    json.dumps(scale_out.executor_config(queues[run])),
                ],
                cwd=PROJECT,
                env={**os.environ, **env[run], "PYTHONPATH": str(PROJECT)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for run in runs
        }
        for run, process in launched.items():  # both have imported everything: start them together
            assert process.stdout is not None and process.stdout.readline() == "ready\n", f"run {run} did not start"
        for process in launched.values():
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = {run: process.communicate(timeout=180) for run, process in launched.items()}

    for run, process in launched.items():
        assert process.returncode == 0, f"run {run} failed:\n{outputs[run][1][-5000:]}"
    instance = scale_out.instance()
    run_ids = [outputs[run][0].split()[-1] for run in runs]
    windows = []  # (start sending, end, run id, step) of every sync step: it sends once it has its turn
    ready = {}  # run id -> when its last step before the syncs succeeded: from then on it could send
    for run_id in run_ids:
        starts = {e.step_key: e.timestamp for e in _step_records(instance, run_id, dg.DagsterEventType.STEP_START)}
        ends = {e.step_key: e.timestamp for e in _step_records(instance, run_id, dg.DagsterEventType.STEP_SUCCESS)}
        assert set(starts) >= SYNC_STEPS and set(ends) >= SYNC_STEPS
        waited = _waited_for_turn(instance, run_id)
        windows += [(starts[step] + waited[step], ends[step], run_id, step) for step in SYNC_STEPS]
        ready[run_id] = max(at for step, at in ends.items() if step not in SYNC_STEPS)
    windows.sort()
    overlaps = [(a, b) for a, b in itertools.pairwise(windows) if b[0] < a[1]]
    assert not overlaps, f"sync steps sent at the same time: {overlaps}"
    # The runs really met: a run was ready to send while the other run's sync step was sending, and its own
    # sync sent only after that one ended (else the absence of overlaps would prove nothing). Whether the pool
    # or the lock made it wait, the sending windows show it.
    met = [
        (mine, theirs)
        for mine in windows
        for theirs in windows
        if theirs[2] != mine[2] and theirs[0] < mine[0] and ready[mine[2]] < theirs[1]
    ]
    assert met, f"the runs never competed for Customer.io: ready at {ready}, sending at {windows}"
    # And Customer.io saw one request at a time: each arrived after the one before had been answered.
    arrivals = sorted(r.received_monotonic for r in customerio.fake.requests)
    assert len(arrivals) == 4  # one batch per sync step per run
    assert all(b - a >= latency * 0.95 for a, b in itertools.pairwise(arrivals)), arrivals
