"""How long `make dev` takes to stop: start it in a session of its own, wait for the webserver, send the
signal, and time every process of the session until none is left.

    .venv/bin/python scripts/dev-stop-time.py [ctrl-c | ctrl-c-twice | dagster-dev | term]

ctrl-c (default): SIGINT to the whole process group, as a terminal's Ctrl-C does; ctrl-c-twice: the same,
twice a second apart; dagster-dev: SIGINT to the `dagster dev` process only; term: SIGTERM to make, as a
supervisor stops it. Prints each process with the seconds it took to exit, and exits 1 if any process is
still running after 60 s (the survivors are then killed). Uses port 3000 and the demo's instance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WAIT = 60.0


def session(sid: int) -> dict[int, str]:
    """The live (not zombie) processes of session `sid`: pid -> command line."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(sid)], capture_output=True, text=True).stdout
    rows = (line.split(None, 2) for line in out.splitlines() if line.strip())
    return {int(pid): args[:120] for pid, stat, args in rows if not stat.startswith("Z")}


def main(mode: str) -> int:
    log = Path(tempfile.mkdtemp(prefix="cio-dev-stop-")) / "make-dev.log"
    with log.open("w") as out:
        make = subprocess.Popen(["make", "dev"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    started = time.monotonic()
    while "Serving dagster-webserver" not in log.read_text():
        if make.poll() is not None or time.monotonic() - started > 300:
            print(f"`make dev` did not come up; see {log}")
            os.killpg(make.pid, signal.SIGKILL)
            return 1
        time.sleep(1)
    time.sleep(10)  # the daemon's first iterations
    before = session(make.pid)

    sent = time.monotonic()
    if mode == "dagster-dev":
        os.kill(next(pid for pid, args in before.items() if "dagster dev" in args), signal.SIGINT)
    elif mode == "term":
        os.kill(make.pid, signal.SIGTERM)
    else:
        os.killpg(make.pid, signal.SIGINT)
        if mode == "ctrl-c-twice":
            time.sleep(1)
            os.killpg(make.pid, signal.SIGINT)

    gone: dict[int, float] = {}
    while time.monotonic() - sent < WAIT:
        alive = session(make.pid)
        gone.update({pid: time.monotonic() - sent for pid in before if pid not in alive and pid not in gone})
        if not alive:
            break
        time.sleep(0.25)
    for pid, args in before.items():
        print(f"{gone[pid]:6.1f} s  {args}" if pid in gone else f"  >{WAIT:.0f} s  {args}")
    left = session(make.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    make.wait()
    outcome = "all stopped" if not left else f"{len(left)} still running"
    print(f"{mode}: {outcome} after {max(gone.values(), default=0):.1f} s; log: {log}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "ctrl-c"))
