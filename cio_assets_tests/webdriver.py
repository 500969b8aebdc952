"""A tiny W3C WebDriver client over httpx, enough to look at the Dagster UI in headless Chromium.

It speaks the W3C WebDriver HTTP protocol (https://www.w3.org/TR/webdriver2/) to a `chromedriver`
started here: open a session, navigate, find elements by XPath, read their text, run a script,
read the page's source, take a screenshot, quit. No Selenium.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cio_assets_tests.processes import free_port, stop

# The key under which W3C WebDriver returns an element reference.
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
# Debian's `chromium` and `chromium-driver` packages.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAME = "chromedriver"


class WebDriverError(RuntimeError):
    """chromedriver answered with an error (W3C error code and message)."""


@dataclass(frozen=True)
class Browser:
    """Where the two binaries are."""

    chromium: str
    chromedriver: str


@dataclass(frozen=True)
class Session:
    """One browser session behind one chromedriver."""

    http: httpx.Client
    session_id: str

    @property
    def base(self) -> str:
        return f"/session/{self.session_id}"


def find_browser() -> Browser | None:
    """Chromium and chromedriver on PATH, or None when either is missing."""
    chromium = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    chromedriver = shutil.which(CHROMEDRIVER_NAME)
    if chromium is None or chromedriver is None:
        return None
    return Browser(chromium=chromium, chromedriver=chromedriver)


@contextmanager
def chromedriver(browser: Browser, log_path: Path, ready_within: float = 30.0) -> Iterator[httpx.Client]:
    """Start chromedriver on a free loopback port; yield an HTTP client for it; stop it afterwards."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [browser.chromedriver, f"--port={port}", "--allowed-ips=127.0.0.1"], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as http:
                _wait_ready(http, process, ready_within, log_path)
                yield http
        finally:
            stop(process, within=10)


def _wait_ready(http: httpx.Client, process: subprocess.Popen[bytes], within: float, log_path: Path) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WebDriverError(f"chromedriver exited with {process.returncode}; see {log_path}")
        try:
            if http.get("/status").json()["value"]["ready"]:
                return
        except (httpx.TransportError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise WebDriverError(f"chromedriver did not answer within {within:.0f} s; see {log_path}")


def _call(http: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = http.request(method, path, json=body)
    value = response.json().get("value")
    if response.status_code >= 400:
        error = value.get("error", "?") if isinstance(value, dict) else "?"
        message = value.get("message", "") if isinstance(value, dict) else str(value)
        raise WebDriverError(f"{method} {path}: {response.status_code} {error}: {message.splitlines()[0]}")
    return value


def new_session(http: httpx.Client, browser: Browser, width: int = 1600, height: int = 1000) -> Session:
    """A headless Chromium session with a fixed window size (so screenshots and layouts are stable)."""
    args = [
        "--headless=new",
        "--no-sandbox",  # Chromium refuses to sandbox as root, which CI runs as
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ]
    capabilities = {"browserName": "chrome", "goog:chromeOptions": {"binary": browser.chromium, "args": args}}
    value = _call(http, "POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
    return Session(http=http, session_id=value["sessionId"])


def quit_session(session: Session) -> None:
    _call(session.http, "DELETE", session.base)


def navigate(session: Session, url: str) -> None:
    _call(session.http, "POST", f"{session.base}/url", {"url": url})


def find_elements(session: Session, xpath: str) -> list[str]:
    """The element references matching an XPath, in document order (empty when none match)."""
    value = _call(session.http, "POST", f"{session.base}/elements", {"using": "xpath", "value": xpath})
    return [element[ELEMENT_KEY] for element in value]


def element_text(session: Session, element: str) -> str:
    """An element's rendered text, as a reader sees it."""
    return str(_call(session.http, "GET", f"{session.base}/element/{element}/text"))


def execute(session: Session, script: str, *args: Any) -> Any:
    """Run a synchronous script in the page (its body is a function body; `arguments` holds args)."""
    return _call(session.http, "POST", f"{session.base}/execute/sync", {"script": script, "args": list(args)})


def page_text(session: Session) -> str:
    """The whole page's rendered text (`document.body.innerText`)."""
    return str(execute(session, "return document.body.innerText;"))


def page_source(session: Session) -> str:
    return str(_call(session.http, "GET", f"{session.base}/source"))


def screenshot(session: Session, path: Path) -> Path:
    """Save a PNG of the viewport to `path`."""
    path.write_bytes(base64.b64decode(_call(session.http, "GET", f"{session.base}/screenshot")))
    return path


def wait_for_elements(session: Session, xpath: str, within: float = 30.0) -> list[str]:
    """Poll until the XPath matches something (the UI renders after its GraphQL answers); [] on timeout."""
    deadline = time.monotonic() + within
    while True:
        found = find_elements(session, xpath)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.25)
