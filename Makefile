# The two commands: `make demo` (run the pipeline on a generated sample shop) and `make test`.
# Both install what they need first (system packages, uv, the locked environment).

# The demo's Dagster instance (run history), shared by `make demo` and `make dev`.
DEMO_DAGSTER_HOME := $(CURDIR)/.cio/dagster_home
demo dev: export DAGSTER_HOME := $(DEMO_DAGSTER_HOME)

.PHONY: install demo dev test lint validate bench

install:
	@bash scripts/install.sh

$(DEMO_DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DEMO_DAGSTER_HOME) && cp dagster.yaml $(DEMO_DAGSTER_HOME)/dagster.yaml

demo: install $(DEMO_DAGSTER_HOME)/dagster.yaml
	.venv/bin/python -m cio_assets.demo

dev: install $(DEMO_DAGSTER_HOME)/dagster.yaml
	.venv/bin/dagster dev -w workspace.yaml

test: install
	@bash scripts/ensure-mariadb.sh
	env -u DAGSTER_HOME .venv/bin/dagster definitions validate -m cio_assets.definitions
	.venv/bin/python -m pytest

lint: install
	.venv/bin/ruff check cio_assets cio_assets_tests
	.venv/bin/ruff format --check cio_assets cio_assets_tests

bench: install
	@bash scripts/ensure-mariadb.sh
	.venv/bin/python -m cio_assets.demo.bench
