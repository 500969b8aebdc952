#!/usr/bin/env bash
# Everything `make demo` and `make test` need, on a fresh Debian machine or an already set-up one:
# the C library mysqlclient compiles against, uv, and the locked Python environment in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null || need_apt+=(libmariadb-dev)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-dev python3-venv python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: missing system packages (${need_apt[*]}); run as root or: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  echo "install.sh: installing system packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" python3-dev >/dev/null
fi

# Headless Chromium and its WebDriver, for the test that looks at the Dagster UI (cio_assets_tests/test_ui.py).
# Only the tests need them: without root they are not installed and that test is skipped, saying so.
need_browser=()
command -v chromium >/dev/null 2>&1 || need_browser+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_browser+=(chromium-driver)
if [ ${#need_browser[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "install.sh: installing ${need_browser[*]} (for the UI test)"
    apt-get update -qq
    # Without recommends (desktop extras) but with a font, so screenshots show text on a bare machine.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_browser[@]}" fonts-liberation >/dev/null
  else
    echo "install.sh: ${need_browser[*]} missing, so the UI test will be skipped; install with: sudo apt-get install chromium chromium-driver" >&2
  fi
fi

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  echo "install.sh: installing uv from PyPI"
  python3 -m pip --version >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null; }
  python3 -m pip install --quiet uv 2>/dev/null || python3 -m pip install --quiet --break-system-packages uv
fi
UV=uv
command -v uv >/dev/null 2>&1 || UV="python3 -m uv"

# The scale-out extra (dagster-celery, dagster-postgres) too: production installs run on it, and the Celery test
# (cio_assets_tests/test_scale_out.py) proves that path whenever RabbitMQ and PostgreSQL are reachable.
# Bytecode is compiled here, once: machines that set PYTHONDONTWRITEBYTECODE (these do) otherwise compile
# Dagster's and pandas' sources again in every process, 3-9 s per command, step worker and daemon.
$UV sync --frozen --quiet --extra scale-out --compile-bytecode
