"""Named locks across processes and machines, kept by the state database every run and worker shares.

`named_lock(engine, name)` holds the lock for the `with` block:
- MySQL/MariaDB: `GET_LOCK` (server-wide, on a connection held for the block);
- PostgreSQL: a session advisory lock keyed by the name's hash;
- SQLite: `flock` on a file beside the database (one machine, like SQLite itself).

The server releases a lock when its holder's connection ends, so a step killed with -9 never leaves one
behind. While it waits, `on_wait(seconds waited so far)` is called every `report_every` seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text

# MySQL's limit on a lock name.
MAX_NAME = 64
# How often a waiter asks again where the server offers no blocking wait with a timeout.
_POLL_SECONDS = 0.2
# In-memory SQLite databases live in one process: a plain lock per name serves them.
_MEMORY_LOCKS: dict[str, threading.Lock] = {}


class LockTimeout(TimeoutError):
    """The lock stayed held by someone else for longer than the caller would wait."""


@contextmanager
def named_lock(
    engine: Engine,
    name: str,
    *,
    timeout_seconds: float | None = None,
    on_wait: Callable[[float], None] | None = None,
    report_every: float = 30.0,
) -> Iterator[float]:
    """Hold the lock `name` (at most 64 characters) for the block, which receives the seconds it waited for
    it; wait without limit, or raise `LockTimeout` after `timeout_seconds`."""
    if len(name) > MAX_NAME:
        raise ValueError(f"lock name {name!r} is longer than {MAX_NAME} characters")
    waiter = _Waiter(timeout_seconds, on_wait, report_every, name)
    dialect = engine.dialect.name
    if dialect in ("mysql", "mariadb"):
        with engine.connect() as conn:
            waiter.until(lambda: _mysql_try(conn, name, waiter.next_wait()))
            try:
                yield waiter.waited()
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
    elif dialect == "postgresql":
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
        with engine.connect() as conn:
            # Session-level: it outlives transactions on this connection and ends with it.
            waiter.until(lambda: bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()))
            try:
                yield waiter.waited()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    elif dialect == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        path = Path(f"{engine.url.database}.{name}.lock")
        with path.open("a") as handle:
            waiter.until(lambda: _flock(handle.fileno()))
            try:
                yield waiter.waited()
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    elif dialect == "sqlite":
        lock = _MEMORY_LOCKS.setdefault(name, threading.Lock())
        waiter.until(lambda: lock.acquire(timeout=waiter.next_wait()))
        try:
            yield waiter.waited()
        finally:
            lock.release()
    else:
        raise NotImplementedError(f"no named locks on {dialect}: use MySQL/MariaDB, PostgreSQL or SQLite")


def _mysql_try(conn: Connection, name: str, seconds: float) -> bool:
    # GET_LOCK waits up to `seconds` itself (whole seconds; 0 only asks). NULL means an error: not taken.
    taken = conn.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": max(0, int(seconds))})
    return taken.scalar() == 1


def _flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class _Waiter:
    """Asks `attempt` until it succeeds, reporting the wait and honouring the timeout."""

    def __init__(self, timeout: float | None, on_wait: Callable[[float], None] | None, every: float, name: str):
        self.timeout, self.on_wait, self.every, self.name = timeout, on_wait, every, name
        self.started = time.monotonic()
        self.reported = self.started

    def next_wait(self) -> float:
        """How long one blocking attempt may wait: up to the next report, never past the timeout."""
        now = time.monotonic()
        limit = self.reported + self.every - now
        if self.timeout is not None:
            limit = min(limit, self.started + self.timeout - now)
        return max(0.0, min(limit, self.every))

    def waited(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def until(self, attempt: Callable[[], bool]) -> None:
        while not attempt():
            now = time.monotonic()
            waited = now - self.started
            if self.timeout is not None and waited >= self.timeout:
                raise LockTimeout(f"waited {waited:.0f} s for the lock {self.name!r}, held elsewhere")
            if now - self.reported >= self.every:
                self.reported = now
                if self.on_wait is not None:
                    self.on_wait(waited)
            time.sleep(min(_POLL_SECONDS, self.next_wait()))
