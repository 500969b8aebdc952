"""Look at the Dagster UI as a person would: the demo's instance in `dagster dev`, in headless Chromium.

The module runs `make demo`'s pipeline into a temporary data folder and Dagster instance, starts
`dagster dev -w workspace.yaml` on them, opens pages through chromedriver (W3C WebDriver, see
`cio_assets_tests/webdriver.py`) and compares what the pages show with the definitions and with the
demo's state database. A screenshot, the text and the DOM of every page, and the logs of the demo, of
`dagster dev` and of chromedriver, go to `$CIO_UI_ARTIFACTS` (default: a pytest temporary folder).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from cio_assets.schema.state import attribute_snapshot
from cio_assets_tests.definitions import daily_partitions, defs
from cio_assets_tests.webdriver import (
    Session,
    chromedriver,
    element_text,
    execute,
    find_browser,
    find_elements,
    free_port,
    navigate,
    new_session,
    page_source,
    page_text,
    quit_session,
    screenshot,
    wait_for_elements,
)

REPO = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).parent / "dagster")
BROWSER = find_browser()

DEMO_TIMEOUT = 300.0  # seconds for the whole demo run
LOAD_TIMEOUT = 120.0  # for `dagster dev` to load the code location
PAGE_TIMEOUT = 30.0  # for one page to render what it is waited on for
STOP_GRACE = 20.0  # after SIGINT, before `dagster dev`'s process group is killed

# The snapshot's attributes its Columns section must list (a sample across types).
SNAPSHOT_ATTRIBUTES = ("email", "total_orders", "last_order_at")
ROW_COUNT = "dagster/row_count"
# The UI keeps view preferences in the browser's localStorage (values are JSON). Dismiss the "Join the
# Dagster community" dialog that covers the first page, and lay the graph out top-down: this graph is wide
# and shallow, so fitted to the width every node is on screen (the UI draws only the nodes on screen).
BROWSER_STORAGE = {"communityNux": '"1"', "asset-graph-direction": '"vertical"'}

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(
        BROWSER is None,
        reason="the UI test needs `chromium` and `chromedriver` on PATH (Debian: apt-get install chromium "
        "chromium-driver; scripts/install.sh installs them when run as root)",
    ),
]


@dataclass(frozen=True)
class DemoUI:
    """The UI's address and the demo's state database behind it (the truth to compare the UI with)."""

    url: str
    state_url: str


# ---------------------------------------------------------------------------------------------------------
# Fixtures: the demo's run, `dagster dev` on its instance, a browser
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("CIO_UI_ARTIFACTS")
    folder = Path(configured).resolve() if configured else tmp_path_factory.mktemp("ui-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"UI test screenshots, page texts and logs: {folder}")
    return folder


def demo_environment(data_dir: Path, dagster_home: Path) -> dict[str, str]:
    """The environment `make demo` and `make dev` would see on a fresh checkout, pointed at temporary folders.

    Every CIO_ variable is dropped, so the UI shows the embedded demo (not a `CIO_MYSQL_URL` shop) in a dry
    run with the default settings, whatever this shell has set.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIO_", "DAGSTER_"))}
    # CIO_AUTOMATION=off as in `make dev`: the daemon must not launch runs while the UI is looked at.
    env.update(CIO_DATA_DIR=str(data_dir), DAGSTER_HOME=str(dagster_home), CIO_AUTOMATION="off")
    return env


def run_demo(env: dict[str, str], log_path: Path) -> None:
    """`make demo`: generate the sample shop and materialise every partition, on the instance in `env`."""
    with log_path.open("wb") as log:
        finished = subprocess.run(
            [sys.executable, "-m", "cio_assets.demo"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=DEMO_TIMEOUT,
        )
    assert finished.returncode == 0, f"the demo run failed with exit code {finished.returncode}; see {log_path}"


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[DemoUI]:
    """The demo's run, and `dagster dev` on its instance (in its own process group) once its code location loaded.

    `dagster dev` starts first and loads the code location while the demo runs: that saves most of a minute.
    """
    root = tmp_path_factory.mktemp("ui-demo")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = demo_environment(root / "data", home)
    port = free_port()
    log_path = artifacts / "dagster-dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            run_demo(env, artifacts / "demo.log")
            url = f"http://127.0.0.1:{port}"
            wait_for_code_location(url, process, log_path)
            yield DemoUI(url=url, state_url=f"sqlite:///{root / 'data' / 'state.sqlite'}")
        finally:
            stop_process_group(process)


def wait_for_code_location(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll the webserver's GraphQL until every code location has loaded; fail with its error if one cannot."""
    query = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    deadline = time.monotonic() + LOAD_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"`dagster dev` exited with {process.returncode}; see {log_path}"
        try:
            answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=10.0).json()
        except (httpx.TransportError, ValueError):
            time.sleep(0.5)
            continue
        entries = answer.get("data", {}).get("workspaceOrError", {}).get("locationEntries") or []
        errors = [e["locationOrLoadError"] for e in entries if (e["locationOrLoadError"] or {}).get("message")]
        assert not errors, f"the code location failed to load: {errors[0]['message']}"
        if entries and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries):
            return
        time.sleep(0.5)
    raise AssertionError(f"`dagster dev` did not load the code location within {LOAD_TIMEOUT:.0f} s; see {log_path}")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to the whole group, as Ctrl-C in a terminal sends; SIGKILL to what is left after a grace period."""
    group = process.pid  # started with start_new_session: it leads its own process group
    try:
        os.killpg(group, signal.SIGINT)
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):  # the whole group already exited
            os.killpg(group, signal.SIGKILL)  # children that outlived the grace period
        process.wait()


@pytest.fixture(scope="module")
def session(ui: DemoUI, artifacts: Path) -> Iterator[Session]:
    assert BROWSER is not None  # the module is skipped otherwise
    with chromedriver(BROWSER, artifacts / "chromedriver.log") as http:
        browser = new_session(http, BROWSER)
        try:
            navigate(browser, f"{ui.url}/server_info")  # any page of the origin, to reach its localStorage
            for key, value in BROWSER_STORAGE.items():
                execute(browser, "localStorage.setItem(arguments[0], arguments[1]);", key, value)
            yield browser
        finally:
            quit_session(browser)


# ---------------------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A page as rendered: the browser on it, and where its screenshot is."""

    session: Session
    screenshot: Path


def open_page(session: Session, url: str, name: str, ready: str, artifacts: Path) -> Page:
    """Navigate, wait until the XPath `ready` matches (the page's data has arrived), save a screenshot and the text.

    When `ready` never matches the page is still saved, so a failing assertion can point at what was shown.
    """
    navigate(session, url)
    wait_for_elements(session, ready, PAGE_TIMEOUT)
    time.sleep(1.0)  # let the graph lay out and late queries settle before the screenshot
    (artifacts / f"{name}.txt").write_text(page_text(session))
    (artifacts / f"{name}.html").write_text(page_source(session))  # the DOM, to find selectors when the UI changes
    return Page(session=session, screenshot=screenshot(session, artifacts / f"{name}.png"))


def asset_url(base: str, asset: str, **query: str) -> str:
    path = "/".join(quote(part) for part in asset.split("/"))
    params = "&".join(f"{k}={quote(v)}" for k, v in query.items())
    return f"{base}/assets/{path}" + (f"?{params}" if params else "")


def has_text(text: str) -> str:
    """XPath: the innermost elements whose own text is exactly `text` (after trimming)."""
    return f"//*[normalize-space(text())={xpath_literal(text)}]"


def xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in text.split("'")) + ")"


def all_assets() -> list[str]:
    return sorted(key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys())


def global_graph_url(base: str) -> str:
    """The global asset lineage with every group expanded (groups start collapsed, showing only a count).

    The `expanded` parameter holds the UI's group ids, `global@global:<group>` (ui-core's `groupIdForNode`).
    """
    graph = defs.resolve_asset_graph()
    groups = sorted({graph.get(key).group_name for key in graph.get_all_asset_keys()})
    return f"{base}/asset-groups?expanded=" + ",".join(quote(f"global@global:{group}") for group in groups)


def checks_of(asset: str) -> list[str]:
    return sorted(c.name for c in defs.resolve_asset_graph().asset_check_keys if c.asset_key.to_user_string() == asset)


# ---------------------------------------------------------------------------------------------------------
# The truth, from the demo's state database
# ---------------------------------------------------------------------------------------------------------


def snapshot_rows_by_day(state_url: str) -> dict[str, int]:
    engine = create_engine(state_url)
    try:
        with engine.connect() as conn:
            day = attribute_snapshot.c.day
            return dict(conn.execute(select(day, func.count()).group_by(day)).tuples().all())
    finally:
        engine.dispose()


def an_ordinary_day(rows_by_day: dict[str, int]) -> str:
    """The busiest day after the first partition (which also holds all earlier history): a day's own figure."""
    first = daily_partitions.get_first_partition_key()
    later = {day: n for day, n in rows_by_day.items() if day != first}
    assert later, f"the demo wrote no snapshot rows after {first}: {rows_by_day}"
    return max(sorted(later), key=lambda day: later[day])


def metadata_value(label: str) -> str:
    """XPath: the value cell of the metadata table row whose key cell is `label`."""
    return f"//tr[td[1][normalize-space(.)={xpath_literal(label)}]]/td[2]"


def shown_number(page: Page, label: str) -> int | None:
    """The number in the first metadata row labelled `label` (digits may be grouped with commas), or None."""
    for cell in find_elements(page.session, metadata_value(label)):
        found = re.fullmatch(r"-?\d[\d,]*", element_text(page.session, cell).strip())
        if found:
            return int(found.group().replace(",", ""))
    return None


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------


def test_the_global_asset_graph_shows_every_asset(session: Session, ui: DemoUI, artifacts: Path) -> None:
    assets = all_assets()
    # A leaf of the graph: once it is drawn, the whole lineage is.
    page = open_page(session, global_graph_url(ui.url), "asset-graph", has_text("customerio_events"), artifacts)
    # Node labels show the last part of the key (`source/orders` is drawn as `orders`).
    missing = [a for a in assets if not find_elements(session, has_text(a.split("/")[-1]))]
    assert not missing, f"the global asset graph does not show {missing} (screenshot: {page.screenshot})"


@pytest.mark.parametrize(
    "asset",
    [
        "attribute_snapshot",  # the contract asset: its Pandera check
        "event_log",  # the other contract asset
        "identity_map",  # identity: its conflicts check
    ],
)
def test_an_assets_checks_tab_lists_its_checks(session: Session, ui: DemoUI, artifacts: Path, asset: str) -> None:
    checks = checks_of(asset)
    assert checks, f"{asset} defines no checks, so this case tests nothing"
    page = open_page(
        session, asset_url(ui.url, asset, view="checks"), f"checks-{asset}", has_text(checks[0]), artifacts
    )
    missing = [name for name in checks if not find_elements(session, has_text(name))]
    assert not missing, (
        f"the checks tab of {asset} does not list {missing} of its checks {checks} (screenshot: {page.screenshot})"
    )


def test_a_partitions_row_count_is_that_days_rows(session: Session, ui: DemoUI, artifacts: Path) -> None:
    rows_by_day = snapshot_rows_by_day(ui.state_url)
    day = an_ordinary_day(rows_by_day)
    url = asset_url(ui.url, "attribute_snapshot", view="partitions", partition=day)
    page = open_page(session, url, f"partition-attribute_snapshot-{day}", metadata_value(ROW_COUNT), artifacts)
    shown = shown_number(page, ROW_COUNT)
    assert shown == rows_by_day[day], (
        f"attribute_snapshot's partition {day} shows {ROW_COUNT} {shown}, but the state database holds "
        f"{rows_by_day[day]} rows for that day ({sum(rows_by_day.values())} over all {len(rows_by_day)} days); "
        f"screenshot: {page.screenshot}"
    )


def test_the_snapshots_columns_section_lists_its_attributes(session: Session, ui: DemoUI, artifacts: Path) -> None:
    url = asset_url(ui.url, "attribute_snapshot", view="overview")
    # The overview's sections (Description, Columns, ...) arrive together with the asset's definition.
    ready = f"{has_text('Columns')} | {has_text('Description')}"
    page = open_page(session, url, "overview-attribute_snapshot", ready, artifacts)
    assert find_elements(session, has_text("Columns")), (
        f"attribute_snapshot's overview has no Columns section (expected one listing {list(SNAPSHOT_ATTRIBUTES)}); "
        f"screenshot: {page.screenshot}"
    )
    # The Columns table has a "Column name" header; the names are the first cell of its body's rows.
    cells = find_elements(session, "//table[.//td[normalize-space(.)='Column name']]/tbody/tr/td[1]")
    shown = {element_text(session, cell).split("\n")[0].strip() for cell in cells}
    missing = [name for name in SNAPSHOT_ATTRIBUTES if name not in shown]
    assert not missing, (
        f"attribute_snapshot's Columns section does not list {missing}; it lists {sorted(shown)}; "
        f"screenshot: {page.screenshot}"
    )
