# Two commands do all the set-up on a fresh machine that has only python3:
#   make test   - create .venv, install the package with its dev tools, run ruff, mypy, the docs build and pytest
#   make docs   - the docs site into site/ (warnings are errors)
#   make demo   - run the example DAGs against the local emulator (KEEP=1: then keep its inbox up)
#   make chaos  - the long chaos profile (thousands of generated fault schedules), before a release
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install node-deps browser screenshots example docs docs-serve test test-cluster test-floor test-newest cluster-parts lint typecheck package pytest chaos demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Test-only: Alibaba's older Node.js client (@alicloud/pop-core), pinned by tests/node/package-lock.json.
# Without npm the tests that need it skip, saying why.
NODE_DEPS := tests/node/node_modules/.installed
$(NODE_DEPS): tests/node/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/node --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the @alicloud/pop-core tests will skip"; fi

node-deps: $(NODE_DEPS)

# Test-only: Chromium for the sandbox inbox's browser tests (Playwright drives it by its path; Playwright's own
# browser download is never used). Debian's package, installed when missing and we are root; else they skip.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && ! test -x /usr/lib/chromium/chromium; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
		else echo "chromium not found and not root: the browser tests will skip"; fi; fi

# The docs' screenshot of the inbox (docs/sandbox-inbox.png), taken by the browser test.
screenshots: install browser
	GLOBESMS_SCREENSHOTS=docs $(BIN)/pytest tests/test_sandbox_browser.py -k live_with -p no:cacheprovider

# lint-imports: the layers declared in pyproject.toml ([tool.importlinter]), see ARCHITECTURE.md.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The sdist and the wheel, built from a clean copy and checked as PyPI checks an upload (into dist/).
package: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist . >/dev/null
	$(BIN)/twine check --strict dist/*

typecheck: install
	$(BIN)/mypy

# The unit suite on both cores (pytest-xdist), then the live Airflow test alone (it starts its own processes).
# The live test runs Airflow on PostgreSQL (installed with apt by cluster-parts when root; else on SQLite).
pytest: install node-deps browser
	@$(MAKE) --no-print-directory cluster-parts || echo "PostgreSQL not installed: the live test runs on SQLite"
	$(BIN)/pytest -n 2 -m "not live"
	$(BIN)/pytest -m live

# The docs site (MkDocs) into site/, every warning an error; its examples are run by the tests.
# NO_MKDOCS_2_WARNING: Material's notice of its maintenance period, printed on every build (see docs/development.md).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

test: lint typecheck package docs pytest

# The version cells: the provider's wheel (built by `make package`, installed as users install it, never
# editable) with the floor Airflow on the lowest Python we support, and with the newest Airflow on the newest
# Python. Pythons from pyenv (installed there when missing). They run CELL_TESTS on both cores: every Airflow
# adapter (the operator with the example DAGs sending end to end, the sensor and trigger, the notifier, the
# hook, the connection form, the plugin and link, the push receiver served by the plugin and the sensor and
# operator reading pushed receipts, the provider info and Airflow's CLI listing them), the
# evidence, key and file rules, the opt-out reading, and the sandbox's origin rule in Chromium on the FastAPI
# that Airflow version brings (the floor cell pins FastAPI to our floor, 0.116). The rest of the unit suite
# (the client core, the emulator, the chaos and reliability runs) runs in the main venv only: run on each cell
# too it would double CI's time, beyond its budget. Tests asserting one version's behaviour skip elsewhere.
FLOOR_AIRFLOW  := 3.1.8
NEWEST_AIRFLOW := 3.3.2
FLOOR_PY  := 3.10
NEWEST_PY := 3.13
FLOOR_PINS  := "fastapi>=0.116,<0.117"
CELL_TESTS := tests/test_provider.py tests/test_example_dags.py tests/test_operator.py tests/test_notifier.py \
	tests/test_notifier_storms.py tests/test_sensor_push.py tests/test_push_receiver.py tests/test_confirm_by_receipts.py \
	tests/test_delivery.py tests/test_hook.py tests/test_sandbox_airflow.py tests/test_honest_evidence.py \
	tests/test_opt_outs.py tests/test_sandbox_origin.py tests/test_house.py tests/test_docs_examples.py \
	tests/test_sandbox_browser.py::test_a_page_on_another_loopback_port_cannot_change_a_fault

pyenv-python = $(shell command -v pyenv >/dev/null && { pyenv install --skip-existing $(1) >/dev/null 2>&1; \
	echo "$$(pyenv root)/versions/$$(pyenv latest $(1))/bin/python"; })

# $(1): the venv, $(2): the Python version, $(3): the Airflow version, $(4): extra pins. A venv left by another
# Python is made anew; the wheel is reinstalled each time (never a stale build).
define cell
	@test -x "$(call pyenv-python,$(2))" || { echo "Python $(2) not found: install pyenv (https://github.com/pyenv/pyenv)"; exit 1; }
	$(1)/bin/python -c 'import platform, sys; sys.exit(not platform.python_version().startswith("$(2)."))' 2>/dev/null \
		|| { rm -rf $(1) && "$(call pyenv-python,$(2))" -m venv $(1); }
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet --force-reinstall --no-deps dist/*.whl
	$(1)/bin/python -m pip install --quiet "$$(ls dist/*.whl)[dev]" "apache-airflow==$(3)" $(4)
	$(1)/bin/python -m pip check
	cd $(1) && rm -rf cell && mkdir cell && cp -r ../tests ../example_dags ../docs ../README.md ../pyproject.toml cell/ && rm -rf cell/tests/node
	cd $(1)/cell && timeout -s KILL 1200 ../bin/pytest -n 2 -p no:cacheprovider -o addopts="-ra --strict-markers" $(CELL_TESTS)
endef

test-floor: package browser
	$(call cell,.venv-floor,$(FLOOR_PY),$(FLOOR_AIRFLOW),$(FLOOR_PINS))

test-newest: package browser
	$(call cell,.venv-newest,$(NEWEST_PY),$(NEWEST_AIRFLOW),)

# The distributed test (tests_cluster/): CeleryExecutor with Redis, PostgreSQL, two Celery workers, the ledger
# on moto's S3 server. Its own venv (the Celery and Amazon providers stay out of the main one); Redis and
# PostgreSQL come from Debian's packages, installed here when missing (needs root and apt).
CLUSTER_VENV := .venv-cluster
$(CLUSTER_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(CLUSTER_VENV)
	$(CLUSTER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CLUSTER_VENV)/bin/python -m pip install --quiet -e '.[dev,cluster]'
	touch $@

cluster-parts:
	@if ! command -v redis-server >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		apt-get update -q && apt-get install -y -q redis-server postgresql; fi

test-cluster: $(CLUSTER_VENV)/.installed cluster-parts
	$(CLUSTER_VENV)/bin/pytest tests_cluster -p no:cacheprovider

# The long profiles, for before a release: the chaos suite (thousands of generated fault schedules and kills)
# and the opt-out reading properties (20,000 generated writings each).
chaos: install
	HYPOTHESIS_PROFILE=chaos $(BIN)/pytest tests/test_chaos.py tests/test_opt_outs.py -p no:cacheprovider -o timeout=7200

# KEEP=1 leaves the emulator (and its SMS sandbox inbox) up afterwards, until Ctrl-C.
demo: install
	$(BIN)/python scripts/demo.py $(if $(KEEP),--keep)

# One example by hand: make example NAME=globesms_templated_campaign [CONF='{"key": "value"}'] [KEEP=1]
example: install
	@test -n "$(NAME)" || { echo "say which: make example NAME=<dag_id> (the files in example_dags/)"; exit 2; }
	$(BIN)/python scripts/demo.py --only $(NAME) $(if $(CONF),--conf '$(CONF)') $(if $(KEEP),--keep)

bench: install
	$(BIN)/python bench/client_cpu.py
	$(BIN)/python bench/emulator_throughput.py
	$(BIN)/python bench/bulk_send.py
	$(BIN)/python bench/receipts_push.py

clean:
	rm -rf $(VENV) $(CLUSTER_VENV) .venv-floor .venv-newest .demo site .mypy_cache .ruff_cache .pytest_cache .hypothesis dist build
