"""A MariaDB server of the tests' own with row-based binary logging, for binlog change capture.

The shared test server (CIO_TEST_MYSQL_URL) may or may not log rows; these tests need one that does, so they start
their own: a throwaway data directory initialised with `mariadb-install-db`, a free port on 127.0.0.1, `--log-bin`
with `--binlog-format=ROW` and `--binlog-row-image=FULL`, and a small buffer pool. It is stopped, and its directory
removed, when the session ends. Without the server's binaries (`mariadbd`, `mariadb-install-db`: Debian's
mariadb-server, which `make install` installs) the tests that need it are skipped, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from cio_assets_tests.processes import free_port, stop

SERVER = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
MISSING = (
    None
    if Path(SERVER).exists() and Path(INSTALL_DB).exists()
    else "binlog capture needs a MariaDB server of the tests' own, and mariadbd or mariadb-install-db is missing "
    "(apt-get install mariadb-server; `make install` does)"
)


@contextmanager
def binlog_server() -> Iterator[str]:
    """A running MariaDB that logs rows: its URL (root, no password, no database). Stopped at the end."""
    home = Path(tempfile.mkdtemp(prefix="cio-binlog-"))
    data = home / "data"
    subprocess.run(
        [
            INSTALL_DB,
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--skip-test-db",
            "--auth-root-authentication-method=normal",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [
            SERVER,
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={home / 'mysqld.sock'}",
            f"--pid-file={home / 'mysqld.pid'}",
            "--user=root",
            f"--log-bin={data / 'binlog'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--server-id=1",
            "--innodb-buffer-pool-size=64M",
            "--skip-name-resolve",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"mysql+mysqldb://root@127.0.0.1:{port}/"
    try:
        _wait_for(url, server, home / "server.log")
        yield url
    finally:
        stop(server, within=30)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def _wait_for(url: str, server: subprocess.Popen, log: Path) -> None:
    engine = create_engine(url)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the binlog test server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
    finally:
        engine.dispose()
