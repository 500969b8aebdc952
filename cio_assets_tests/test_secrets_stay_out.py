"""Databases are named when they fail, and secrets and personal data stay out of errors and logs.

The first tests look at one error each: an unreachable server, a refused write, a source without the
reference schema. The last one is the end-to-end guarantee: the real definitions run in a subprocess
(`dagster asset materialize`) against MariaDB as a user with a known password and against the fake
Customer.io with a known API key, once each for a day, a range and two failures, and neither secret
may appear anywhere: output, Dagster's run and event storage, compute logs. The shop's e-mails, phones
and names may appear only where they are data (the sample tables in asset metadata, the outbox), never
in output, logs, or event messages and error texts.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import orjson
import pytest
from sqlalchemy import create_engine, make_url, text

from cio_assets.defs.resources import SourceDatabase, StateDatabase
from cio_assets.lib.engines import DatabaseError, redact_driver_message
from cio_assets.mapping.check import SourceSchemaError
from cio_assets.schema import state as state_tables
from cio_assets.schema.shop import source_metadata
from cio_assets_tests.conftest import SERVER_URL
from cio_assets_tests.fake_customerio import FakeCustomerIO, serve
from cio_assets_tests.shop import ShopBuilder

DAGSTER = str(Path(sys.executable).parent / "dagster")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# One error at a time
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "named"),
    [
        # the source, as CIO_MYSQL_URL names it
        (SourceDatabase, "Cannot connect to the source database (CIO_MYSQL_URL) at"),
        # the state database, as CIO_STATE_URL names it
        (StateDatabase, "Cannot connect to the state database (CIO_STATE_URL) at"),
    ],
)
def test_an_unreachable_database_is_named_with_host_port_and_database_but_not_the_password(build, named):
    port = _closed_port()
    password = secrets.token_hex(8)
    database = build(url=f"mysql+mysqldb://writer:{password}@127.0.0.1:{port}/cio_sync")

    started = time.monotonic()
    with pytest.raises(DatabaseError) as failure, database.connect():
        pass

    message = str(failure.value)
    assert time.monotonic() - started < 15
    assert message.startswith(f"{named} mysql+mysqldb://writer:***@127.0.0.1:{port}/cio_sync: (2002) ")
    assert password not in message
    assert failure.value.__suppress_context__ and failure.value.__cause__ is None


@pytest.mark.parametrize(
    ("table", "rows", "said"),
    [
        # a duplicate primary key that is an e-mail: MySQL quotes it in "Duplicate entry '...'"
        (
            state_tables.identity_map,
            [{"identifier_type": "email", "identifier": "ada.secret@shop.com", "person_id": "1", "source": "x"}] * 2,
            "failed on INSERT INTO cio_identity_map: (1062) Duplicate entry '***' for key 'PRIMARY'",
        ),
        # an e-mail where a number belongs: MySQL quotes it in "Incorrect integer value: '...'"
        (
            state_tables.people_ledger,
            [{"person_id": "1", "attributes": "{}", "as_of": "ada.secret@shop.com", "delivered_at": 1}],
            "failed on INSERT INTO cio_people_ledger: (1366) Incorrect integer value: '***' for column",
        ),
        # a value too long for its column: the column is named, the value is not
        (
            state_tables.identity_map,
            [{"identifier_type": "ada.secret@shop.com", "identifier": "x", "person_id": "1", "source": "x"}],
            "(1406) Data too long for column 'identifier_type' at row 1",
        ),
    ],
)
def test_a_refused_write_names_table_and_column_but_no_value(database_urls, state_engine, table, rows, said):
    state = StateDatabase(url=database_urls[1])

    with pytest.raises(DatabaseError) as failure, state.begin() as conn:
        conn.execute(table.insert(), rows)

    message = str(failure.value)
    assert message.startswith("The state database (CIO_STATE_URL) at mysql+mysqldb://root@127.0.0.1:3306/")
    assert said in message
    assert "ada.secret" not in message and "[parameters" not in message and "[SQL" not in message


def test_an_error_inside_nested_blocks_names_the_database_that_raised_it(database_urls, source_engine, state_engine):
    source, state = SourceDatabase(url=database_urls[0]), StateDatabase(url=database_urls[1])

    with pytest.raises(DatabaseError) as failure, source.connect() as src, state.begin():
        src.execute(text("SELECT no_such_column FROM customers"))

    assert str(failure.value).startswith("The source database (CIO_MYSQL_URL) at ")
    assert "failed on SELECT FROM customers: (1054) Unknown column 'no_such_column'" in str(failure.value)


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        # a duplicate key holding an e-mail with a quote in it
        ("Duplicate entry 'o'brien@shop.com' for key 'PRIMARY'", "Duplicate entry '***' for key 'PRIMARY'"),
        # a composite key
        ("Duplicate entry 'email-ada@shop.com' for key 'uq_x'", "Duplicate entry '***' for key 'uq_x'"),
        # bytes that are not UTF-8
        (
            r"Incorrect string value: '\xF0\x9F\x98\x80' for column `db`.`t`.`first_name` at row 1",
            "Incorrect string value: '***' for column `db`.`t`.`first_name` at row 1",
        ),
        # a syntax error quotes the statement from where it broke
        (
            "You have an error in your SQL syntax; check the manual near 'ada@shop.com' at line 1",
            "You have an error in your SQL syntax; check the manual near '***' at line 1",
        ),
        # a conversion warning turned error
        ("Truncated incorrect DOUBLE value: 'ada@shop.com'", "Truncated incorrect DOUBLE value: '***'"),
        # a value clipped by the server, without its closing quote
        ("Duplicate entry 'ada@shop.c", "Duplicate entry '***'"),
        # names only: kept as they are
        ("Unknown column 'paid_at' in 'field list'", "Unknown column 'paid_at' in 'field list'"),
    ],
)
def test_driver_messages_lose_quoted_values_and_keep_names(said, shown):
    assert redact_driver_message(said) == shown


def test_a_source_without_a_table_and_a_column_gets_one_message_listing_both(database_urls, source_engine):
    with source_engine.begin() as conn:
        conn.execute(text("DROP TABLE identity_links"))
        conn.execute(text("ALTER TABLE orders DROP COLUMN paid_at"))
        conn.execute(text("ALTER TABLE carts DROP COLUMN anonymous_id"))
    source = SourceDatabase(url=database_urls[0])

    with pytest.raises(SourceSchemaError) as failure, source.connect():
        pass

    shown = make_url(database_urls[0]).render_as_string(hide_password=True)
    assert str(failure.value) == (
        f"The source database (CIO_MYSQL_URL at {shown}) lacks what the pipeline reads through the preset "
        "'reference' (cio_assets/mapping/presets/reference.toml): "
        "column orders.paid_at: Unknown column 'o.paid_at' in 'SELECT'; "
        "column carts.anonymous_id: Unknown column 'ct.anonymous_id' in 'SELECT'; "
        "table identity_links."
    )


def test_the_schema_is_checked_once_per_resource(database_urls, source_engine):
    source = SourceDatabase(url=database_urls[0])
    with source.connect():
        pass
    with source_engine.begin() as conn:
        conn.execute(text("DROP TABLE identity_links"))

    with source.connect() as conn:  # no second look at the schema
        assert conn.execute(text("SELECT 1")).scalar() == 1
    with pytest.raises(SourceSchemaError), SourceDatabase(url=database_urls[0]).connect():
        pass


# ---------------------------------------------------------------------------------------------------------
# End to end: the real definitions in a subprocess
# ---------------------------------------------------------------------------------------------------------


class Person(NamedTuple):
    id: int
    email: str
    phone: str  # as the shop holds it
    e164: str  # as the pipeline sends it
    first_name: str
    last_name: str


PEOPLE = [
    Person(1, "zebulon.quartermain@shop-pii.test", "(415) 555-0134", "+14155550134", "Zebulon", "Quartermain"),
    Person(
        2, "ottoline.vasquez-brandt@shop-pii.test", "+44 20 7946 0321", "+442079460321", "Ottoline", "Vasquez-Brandt"
    ),
    Person(3, "PERPETUA.Nightingale@Shop-PII.test ", "415.555.0177", "+14155550177", "Perpetua", "Nightingale"),
]


class SecretWorld:
    """A MariaDB user with a known password owning throwaway databases (a shop and two state databases),
    and a fake Customer.io with a known key."""

    def __init__(self, password: str, urls: list[str], fake: FakeCustomerIO, track_url: str) -> None:
        self.password = password
        self.source_url, self.state_url, self.other_state_url = urls
        self.fake = fake
        self.track_url = track_url


@pytest.fixture(scope="module")
def secret_world() -> Iterator[SecretWorld]:
    server = create_engine(SERVER_URL)
    suffix = secrets.token_hex(4)
    user = f"cio_secret_{suffix}"
    password = f"Pw{secrets.token_hex(12)}"
    databases = [f"cio_secret_{suffix}_{name}" for name in ("shop", "state", "state_b")]
    hosts = ("%", "localhost", "127.0.0.1")  # MariaDB matches the most specific host first
    with server.begin() as conn:
        for db in databases:
            conn.execute(text(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4"))
        for host in hosts:
            conn.execute(text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"))
            for db in databases:
                conn.execute(text(f"GRANT ALL ON `{db}`.* TO '{user}'@'{host}'"))
    base = make_url(SERVER_URL).set(username=user, password=password, host="127.0.0.1")
    urls = [base.set(database=db).render_as_string(hide_password=False) for db in databases]
    fake = FakeCustomerIO(
        site_id=f"site-{suffix}",
        api_key=f"cio-key-{secrets.token_hex(12)}",
        app_api_key=f"cio-app-key-{secrets.token_hex(12)}",
    )
    try:
        with serve(fake) as track_url:
            yield SecretWorld(password, urls, fake, track_url)
    finally:
        with server.begin() as conn:
            for db in databases:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{db}`"))
            for host in hosts:
                conn.execute(text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
        server.dispose()


def _build_shop(source_url: str) -> None:
    engine = create_engine(source_url)
    try:
        source_metadata.create_all(engine)
        shop = ShopBuilder(engine)
        for person_id, email, phone, _, first, last in PEOPLE:
            shop.customer(person_id, email=email, phone=phone, first_name=first, last_name=last, sms_opt_in=True)
        shop.order(1, total=80.0, created_at="2026-10-02 10:00", paid_at="2026-10-02 10:05")
        shop.order(2, total=120.0, created_at="2026-10-02 11:00", paid_at="2026-10-02 11:01")
        shop.order(None, total=30.0, email="guest.wilhelmina@shop-pii.test", paid_at="2026-10-03 09:00")
        shop.cart(customer_id=PEOPLE[2].id, email=PEOPLE[2].email, updated_at="2026-10-02 12:00")
    finally:
        engine.dispose()


def _materialize(world: SecretWorld, home: Path, *selection: str, **overrides: str) -> subprocess.Popen:
    """Start `dagster asset materialize` on the real definitions, with every setting from the environment."""
    command = [DAGSTER, "asset", "materialize", "-m", "cio_assets.definitions", "--select", "*", *selection]
    return _start(world, home, command, **overrides)


def _read_back(world: SecretWorld, home: Path) -> subprocess.Popen:
    """Start a run of the `read_back` job, as the read_back_after_sync sensor launches it after a sync's run."""
    return _start(world, home, [DAGSTER, "job", "execute", "-m", "cio_assets.definitions", "-j", "read_back"])


def _start(world: SecretWorld, home: Path, command: list[str], **overrides: str) -> subprocess.Popen:
    """Start a `dagster` command on the real definitions, with every setting from the environment."""
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIO_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        CIO_DATA_DIR=str(home / "data"),
        CIO_OUTBOX_DIR=str(home / "outbox"),
        CIO_START_DATE="2026-10-01",
        CIO_BUSINESS_TZ="UTC",
        CIO_MYSQL_URL=world.source_url,
        CIO_STATE_URL=world.state_url,
        CIO_SITE_ID=world.fake.site_id,
        CIO_API_KEY=world.fake.api_key,
        CIO_TRACK_URL=world.track_url,
        CIO_APP_API_KEY=world.fake.app_api_key,  # the read-back reconciliation, in a read_back run after the sync
        CIO_APP_URL=world.track_url,
        CIO_RECONCILE_SETTLE_SECONDS="0",
        CIO_RATE_LIMIT="1000",
        CIO_ACCEPT_NEW_LEDGER="1",
    )
    env.update(overrides)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=home)


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=180)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _event_texts(home: Path) -> dict[str, list[str]]:
    """Per run: every event's message and every error text in the run's event log."""
    texts: dict[str, list[str]] = {}
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        for run in instance.get_runs():
            found = texts.setdefault(run.run_id, [])
            for entry in instance.all_logs(run.run_id):
                found.append(entry.user_message or "")
                if entry.error_info:
                    found.append(entry.error_info.to_string())
                data = entry.dagster_event.event_specific_data if entry.dagster_event else None
                error = getattr(data, "error", None)
                if error is not None:
                    found.append(error.to_string())
    finally:
        instance.dispose()
    return texts


def _personal_data() -> list[bytes]:
    values = ["guest.wilhelmina@shop-pii.test", "wilhelmina"]
    for _, email, phone, e164, first, last in PEOPLE:
        values += [email.strip(), email.strip().lower(), phone, e164, first, last]
    return [v.encode() for v in values]


def test_secrets_and_personal_data_stay_out_of_output_logs_and_run_storage(secret_world, tmp_path):
    _build_shop(secret_world.source_url)
    homes = [tmp_path / name for name in ("home", "home_state_down", "home_customerio_down")]
    closed = _closed_port()

    # In parallel (they share no state): one good day; the state database unreachable (its URL carries the
    # password); Customer.io unreachable, on a state database of its own.
    started = [
        _materialize(secret_world, homes[0], "--partition", "2026-10-02"),
        _materialize(
            secret_world,
            homes[1],
            "--partition",
            "2026-10-02",
            CIO_STATE_URL=make_url(secret_world.state_url).set(port=closed).render_as_string(hide_password=False),
        ),
        _materialize(
            secret_world,
            homes[2],
            "--partition",
            "2026-10-02",
            CIO_STATE_URL=secret_world.other_state_url,
            CIO_TRACK_URL=f"http://127.0.0.1:{closed}",
            CIO_RETRY_BUDGET_SECONDS="1",
        ),
    ]
    day, no_state, no_customerio = (_finish(process) for process in started)
    backfill = _finish(_materialize(secret_world, homes[0], "--partition-range", "2026-10-01...2026-10-03"))
    read_back = _finish(_read_back(secret_world, homes[0]))

    assert day.returncode == 0, day.stderr.decode()[-3000:]
    assert backfill.returncode == 0, backfill.stderr.decode()[-3000:]
    assert read_back.returncode == 0, read_back.stderr.decode()[-3000:]
    assert {e["identifiers"]["id"] for e in secret_world.fake.events} >= {"1", "2"}  # delivery happened
    assert no_state.returncode != 0 and no_customerio.returncode != 0
    assert b"Cannot connect to the state database (CIO_STATE_URL) at mysql+mysqldb://" in no_state.stderr
    assert b"within the 1 s retry budget (CIO_RETRY_BUDGET_SECONDS)" in no_customerio.stderr

    runs = {
        "day": day,
        "state down": no_state,
        "Customer.io down": no_customerio,
        "range": backfill,
        "read-back": read_back,
    }
    output = [(f"{name} {stream}", content) for name, run in runs.items() for stream, content in run_streams(run)]
    files = [(str(path), path.read_bytes()) for path in sorted(tmp_path.rglob("*")) if path.is_file()]
    events = {run_id: texts for home in homes for run_id, texts in _event_texts(home).items()}
    assert len(events) == 5
    event_texts = [(f"event log of run {run_id}", "\n".join(texts).encode()) for run_id, texts in events.items()]

    # What is searched is the real thing: compute logs were written, error texts were read, data was sent.
    compute_logs = [content for where, content in files if "/compute_logs/" in where]
    assert any(b"customerio_people" in content for content in compute_logs)
    assert any(b"Cannot connect to the state database" in content for _, content in event_texts)
    assert any(b"within the 1 s retry budget" in content for _, content in event_texts)
    assert PEOPLE[0].first_name.encode() in b"".join(orjson.dumps(p) for p in secret_world.fake.people.values())
    assert secret_world.fake.app_requests, "the reconciliation read people back with the App API key"
    # ... in the read_back run: a run that syncs people leaves the read-back to it, its events waiting for nothing
    assert any(b"customerio_people_reconciled skipped: this run syncs" in content for _, content in event_texts)

    # The secrets: nowhere at all (output, instance storage and compute logs, outbox, event texts).
    fake = secret_world.fake
    for secret in (secret_world.password.encode(), fake.api_key.encode(), fake.app_api_key.encode()):
        leaks = [where for where, content in [*output, *files, *event_texts] if secret in content]
        assert leaks == [], f"a secret appears in {leaks}"

    # Personal data: not in output, logs (the instances' files other than SQLite databases and the outbox)
    # or event messages and error texts.
    logs = [(where, content) for where, content in files if "/outbox/" not in where and not _is_sqlite(content)]
    for value in _personal_data():
        leaks = [where for where, content in [*output, *logs, *event_texts] if value in content]
        assert leaks == [], f"{value!r} appears in {leaks}"


def run_streams(run: subprocess.CompletedProcess) -> list[tuple[str, bytes]]:
    return [("stdout", run.stdout), ("stderr", run.stderr)]


def _is_sqlite(content: bytes) -> bool:
    return content.startswith(b"SQLite format 3")
