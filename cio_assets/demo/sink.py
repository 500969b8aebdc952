"""Local stand-ins for Customer.io's `POST /api/v2/batch`, for the benchmarks.

- `sink_app` answers 200 `{}` to every batch and keeps nothing; `serve_sink()` runs it in a process of its
  own (`make bench`), so the numbers measure the pipeline, not the sink.
- `RecordingSink` also answers 200 `{}`, and records every item of every batch with the moment it arrived;
  `serve_recording(sink)` runs it on a thread of the caller (`make bench-live`), which reads the arrivals.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import orjson
import uvicorn

_HEADERS = [(b"content-type", b"application/json")]


async def _read_body(receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _answer_ok(send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b"{}"})


async def sink_app(scope, receive, send) -> None:
    """Accept every batch: read the body, answer 200 `{}` (what Customer.io answers when all is valid)."""
    if scope["type"] != "http":
        return
    await _read_body(receive)
    await _answer_ok(send)


@dataclass(frozen=True)
class Arrival:
    """One batch item as it reached the sink."""

    at: float  # Unix seconds (time.time()) when its request arrived
    seq: int  # arrival order over every item the sink received
    item: dict  # the item as sent: type, identifiers, action, name, id, attributes, ...

    @property
    def person_id(self) -> str | None:
        return (self.item.get("identifiers") or {}).get("id")

    @property
    def action(self) -> str | None:
        return self.item.get("action")

    @property
    def attributes(self) -> dict:
        return self.item.get("attributes") or {}


class RecordingSink:
    """An ASGI app that accepts every batch and, once `start()`ed, records each item with its arrival time.

    Only the attributes named in `keep` are recorded, so a long recording stays small (events carry
    their line items); with `keep=None` every attribute is."""

    def __init__(self, keep: tuple[str, ...] | None = None) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._arrivals: list[Arrival] = []
        self._recording = False

    def start(self) -> None:
        """Record from now on (before this, batches are answered and forgotten, e.g. during a warm-up)."""
        self._recording = True

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        arrived = time.time()
        if self._recording:
            try:
                items = orjson.loads(body).get("batch", []) if body else []
            except orjson.JSONDecodeError:
                items = []
            with self._lock:
                for item in items:
                    self._arrivals.append(Arrival(arrived, len(self._arrivals), self._slim(item)))
        await _answer_ok(send)

    def _slim(self, item: dict) -> dict:
        if self._keep is None or not isinstance(item.get("attributes"), dict):
            return item
        return {**item, "attributes": {k: v for k, v in item["attributes"].items() if k in self._keep}}

    def arrivals(self) -> list[Arrival]:
        """Everything received so far, in arrival order."""
        with self._lock:
            return list(self._arrivals)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str) -> None:
    for _ in range(100):
        try:
            httpx.post(url + "/api/v2/batch", content=b'{"batch":[]}')
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the sink at {url} did not start")


@contextmanager
def serve_sink() -> Iterator[str]:
    """`sink_app` in a process of its own; yields its base URL (the Customer.io track URL to use)."""
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", "cio_assets.demo.sink:sink_app", "--port", str(port)]
    process = subprocess.Popen([*command, "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def serve_recording(sink: RecordingSink) -> Iterator[str]:
    """`sink` on a thread of this process; yields its base URL. The probe request records nothing."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(sink, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="recording-sink", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
