"""Named locks in the state database (cio_assets/state/locks.py): one holder at a time across processes, a waiter
told that it waits, a bounded wait that gives up naming the lock, and nothing left behind by a killed holder.

Each case runs on every kind of state database the pipeline writes: MariaDB (the test server), PostgreSQL (the
local server, skipped when it does not answer) and a SQLite file.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from cio_assets.lib.locks import LockTimeout, named_lock
from cio_assets_tests.conftest import SERVER_URL

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
HOLD_SECONDS = 1.5


def _postgres_unreachable() -> str | None:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        import psycopg2  # noqa: F401
    except (OSError, ImportError) as error:
        return f"PostgreSQL is not usable at 127.0.0.1:5432: {error}"
    return None


@pytest.fixture(
    params=[
        "mariadb",  # GET_LOCK, server-wide
        pytest.param("postgresql", marks=pytest.mark.skipif(bool(_postgres_unreachable()), reason="no PostgreSQL")),
        "sqlite",  # flock on a file beside the database
    ]
)
def lock_url(request: pytest.FixtureRequest, database_urls: tuple[str, str], tmp_path: Path) -> str:
    return {
        "mariadb": database_urls[1],
        "postgresql": POSTGRES,
        "sqlite": f"sqlite:///{tmp_path / 'state.sqlite'}",
    }[request.param]


@pytest.fixture
def engine(lock_url: str) -> Iterator[Engine]:
    engine = create_engine(lock_url)
    yield engine
    engine.dispose()


def _name() -> str:
    return f"cio_test_{uuid.uuid4().hex[:12]}"


def _hold_in_thread(engine: Engine, name: str) -> tuple[threading.Thread, threading.Event, list[float]]:
    """A thread that takes the lock, holds it HOLD_SECONDS and notes when it let go."""
    taken, released = threading.Event(), []

    def hold() -> None:
        with named_lock(engine, name):
            taken.set()
            time.sleep(HOLD_SECONDS)
            released.append(time.monotonic())

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10), "the first holder never got the lock"
    return thread, taken, released


def test_a_second_holder_waits_until_the_first_lets_go_and_is_told_it_waits(engine: Engine):
    name = _name()
    thread, _, released = _hold_in_thread(engine, name)
    waits: list[float] = []
    # Another name is free meanwhile: locks are per name.
    with named_lock(engine, _name(), timeout_seconds=1) as waited_elsewhere:
        assert waited_elsewhere < 0.5
    with named_lock(engine, name, on_wait=waits.append, report_every=0.4) as waited:
        got_it = time.monotonic()
    thread.join()

    assert released and got_it >= released[0], "both held the lock at once"
    assert waited >= HOLD_SECONDS * 0.5
    assert waits and all(later > earlier for earlier, later in itertools.pairwise(waits))


def test_a_bounded_wait_gives_up_naming_the_lock(engine: Engine):
    name = _name()
    thread, _, _ = _hold_in_thread(engine, name)
    started = time.monotonic()
    with pytest.raises(LockTimeout, match=name), named_lock(engine, name, timeout_seconds=0.5):
        pass
    gave_up_after = time.monotonic() - started
    thread.join()
    assert gave_up_after < HOLD_SECONDS


def test_a_holder_killed_with_sigkill_leaves_no_lock_behind(lock_url: str, engine: Engine):
    name = _name()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from sqlalchemy import create_engine
                from cio_assets.lib.locks import named_lock
                with named_lock(create_engine({lock_url!r}), {name!r}):
                    print("held", flush=True)
                    time.sleep(300)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        # Really held by the other process.
        with pytest.raises(LockTimeout), named_lock(engine, name, timeout_seconds=0.3):
            pass
    finally:
        holder.kill()
        holder.wait()
    with named_lock(engine, name, timeout_seconds=10) as waited:
        assert waited < 10


def test_lock_names_longer_than_mysql_allows_are_refused():
    with pytest.raises(ValueError, match="longer than 64"), named_lock(create_engine(SERVER_URL), "x" * 65):
        pass


def test_the_sqlite_lock_file_sits_beside_the_database(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with named_lock(create_engine(url), "cio_turn"):
        assert (tmp_path / "state.sqlite.cio_turn.lock").exists()
