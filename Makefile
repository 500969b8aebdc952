# The two commands: `make demo` (run the pipeline on a generated sample shop) and `make test`.
# Both install what they need first (system packages, uv, the locked environment).

# The demo's Dagster instance, shared by `make demo` and `make dev`: DAGSTER_HOME is this folder, so Dagster
# reads ./dagster.yaml where it stands (no copy, and no warning from `dagster dev` about a dagster.yaml
# outside DAGSTER_HOME); that file keeps the run history under .cio/dagster_home.
demo dev: export DAGSTER_HOME := $(CURDIR)
# The sensor and the schedule wait to be turned on in the UI: the demo's shop is a fixed sample, and a
# dev server should not launch runs by itself (set CIO_AUTOMATION=on to try them).
dev: export CIO_AUTOMATION ?= off

.PHONY: install demo dev test lint validate docs bench bench-live reference doctor

install:
	@bash scripts/install.sh

# A platform preset's sample shop (make demo CIO_SOURCE_MAPPING=magento2) is written in MariaDB: its tables are MySQL's.
demo: install
	@case "$$CIO_SOURCE_MAPPING" in woocommerce|magento2) bash scripts/ensure-mariadb.sh;; esac
	.venv/bin/python -m cio_assets.demo

dev: install
	.venv/bin/dagster dev -w workspace.yaml

# What the pipeline will make of the shop (CIO_MYSQL_URL, CIO_SOURCE_MAPPING), before the first sync: concepts,
# unmapped statuses, duplicate keys, consent, time zones, event families, the hot queries' plans. Read only.
doctor: install
	.venv/bin/python -m cio_assets doctor

# The layers' rules, the code location as `dg` loads it, the docs site, then the suite.
test: install
	@bash scripts/ensure-mariadb.sh
	.venv/bin/lint-imports --no-cache
	$(MAKE) --no-print-directory validate docs
	.venv/bin/python -m pytest

lint: install
	.venv/bin/ruff check cio_assets cio_assets_tests
	.venv/bin/ruff format --check cio_assets cio_assets_tests
	.venv/bin/lint-imports --no-cache

# The definitions load as Dagster's tooling loads the project (`dg check defs`; `dagster definitions validate` is
# superseded by it). `make dev`'s `dagster dev -w workspace.yaml` loads the same module; the UI test starts it.
validate: install
	env -u DAGSTER_HOME .venv/bin/dg check defs

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or a page left out of the
# navigation fails the build. `.venv/bin/mkdocs serve` shows it while editing.
docs: install
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet

# The pipeline at scale on the local MariaDB (BENCH_PLATFORM=woocommerce|magento2: the shop in that platform's
# own tables, read through its preset).
bench: install
	@bash scripts/ensure-mariadb.sh
	.venv/bin/python -m cio_assets.demo.bench

# Live latency: the daemon with the sensor on, paid orders and an idle cart written to the shop, timed to
# their arrival at a local sink (BENCH_CUSTOMERS=20000 for a quicker run; BENCH_PLATFORM as for bench).
bench-live: install
	@bash scripts/ensure-mariadb.sh
	.venv/bin/python -m cio_assets.demo.latency

# The generated references: the data dictionary (attributes and events sent to Customer.io, Markdown and JSON
# Schema), the configuration page and the reference schema's DDL; a test fails while a committed copy differs
# from what the code generates.
reference: install
	.venv/bin/python -m cio_assets.dictionary --write
