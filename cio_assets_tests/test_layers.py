"""The layers are rules the build checks: `lint-imports` keeps them, and breaking one fails it, naming the
contract, the file and the line (docs/architecture.md).

Each case copies the package and the contracts into a temporary folder, adds one import that breaks a rule,
and runs `lint-imports` on the copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT / "cio_assets", tmp_path / "cio_assets", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_every_contract():
    result = _lint(PROJECT)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "expected"),
    [
        # a utility reaching up into the Dagster wiring
        (
            "lib/text.py",
            "import cio_assets.defs",
            "Floors that only look down",
            "cio_assets.lib.text -> cio_assets.defs",
        ),
        # a stage reaching into a later one: hygiene runs before identity
        (
            "hygiene/rules.py",
            "import cio_assets.identity.normalize",
            "Floors that only look down",
            "cio_assets.hygiene.rules -> cio_assets.identity.normalize",
        ),
        # the Customer.io client knows nothing else of ours
        (
            "customerio/client.py",
            "import cio_assets.lib.chunking",
            "Floors that only look down",
            "cio_assets.customerio.client -> cio_assets.lib.chunking",
        ),
        # table definitions import only the utilities
        (
            "schema/shop.py",
            "import cio_assets.customerio.limits",
            "Table definitions import only the utilities",
            "cio_assets.schema.shop -> cio_assets.customerio.limits",
        ),
        # a stage taking a Dagster resource instead of an engine
        (
            "identity/refresh.py",
            "import dagster",
            "Only the wiring knows Dagster",
            "cio_assets.identity.refresh -> dagster",
        ),
        # two parts of the wiring importing each other
        (
            "defs/catalog.py",
            "import cio_assets.defs.assets.sources",
            "No import cycle between the parts of a package",
            "No cycles are allowed in cio_assets.defs",
        ),
    ],
)
def test_an_import_that_breaks_a_rule_fails_naming_the_rule_and_the_line(copy, module, line, contract, expected):
    path = copy / "cio_assets" / module
    lines = path.read_text().splitlines()
    lines.append(f"{line}  # noqa: E402, F401")
    path.write_text("\n".join(lines) + "\n")

    result = _lint(copy)

    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout
    assert expected in result.stdout
    if "->" in expected:
        assert f"(l.{len(lines)})" in result.stdout  # the line of the import that broke it
