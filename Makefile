# The two commands: `make demo` (run the pipeline on a generated sample shop) and `make test`.
# Both install what they need first (system packages, uv, the locked environment).

DAGSTER_HOME ?= $(CURDIR)/.cio/dagster_home
export DAGSTER_HOME

.PHONY: install demo dev test lint validate bench

install:
	@bash scripts/install.sh

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install $(DAGSTER_HOME)/dagster.yaml
	.venv/bin/python -m cio_assets.demo

dev: install $(DAGSTER_HOME)/dagster.yaml
	.venv/bin/dagster dev -w workspace.yaml

test: install
	@bash scripts/ensure-mariadb.sh
	.venv/bin/python -m pytest
	.venv/bin/dagster definitions validate -m cio_assets.definitions

lint: install
	.venv/bin/ruff check cio_assets cio_assets_tests
	.venv/bin/ruff format --check cio_assets cio_assets_tests

bench: install
	@bash scripts/ensure-mariadb.sh
	.venv/bin/python -m cio_assets.demo.bench
