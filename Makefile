# tapeflow: `make demo` and `make test` are all a newcomer needs; each sets up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TAPEFLOW_REAL_DATA ?= $(abspath ../shared/data)
export DAGSTER_DISABLE_TELEMETRY := 1
export JAX_PLATFORMS ?= cpu
PYTEST_WORKERS ?= 2

.PHONY: setup kernels demo test bench lint clean ui validate crash fuzz soak redis redis-server chromium dashboard

# the install: a venv with the project (editable) and its numba kernels compiled
setup: $(STAMP) kernels

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "tapeflow needs $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

# compile every numba kernel into its on-disk cache (kernels/__pycache__, or $$NUMBA_CACHE_DIR) and the
# JAX kernels into kernels/__pycache__/jax (read by every command and copied into each test session) once, so
# no command compiles on its first run; returns at once while the kernel sources are unchanged. A failure
# is reported and ignored: commands then compile on first use, and tests/test_warm.py says what broke.
kernels: $(STAMP)
	-@$(BIN)/python -m tapeflow.warm

# the batch library, then the live Bytewax flow on the simulated feed, then the Dagster materialization;
# each act keeps its "Next, try" hints for the last step, so they do not scroll away
demo: setup
	$(BIN)/python -m tapeflow.demo --defer-hints
	$(BIN)/python -m flows.demo --defer-hints
	$(BIN)/python -m dagster_project.demo --defer-hints
	$(BIN)/python -m tapeflow.venues.databento.demo --defer-hints
	$(BIN)/python -m tapeflow.derivatives.demo --defer-hints
	@$(BIN)/python -m tapeflow.demo --hints

# --dist loadscope: each test module runs whole on one worker, so its module-scoped fixtures (a Dagster
# deployment, a simulated day, a trained model) are built once; the default split rebuilt them whenever a
# worker came back to the module (tests/dagster -n 2: 418 -> 314 CPU s, 252 -> 192 s wall)
test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	@$(MAKE) --no-print-directory validate
	@$(MAKE) --no-print-directory redis-server
	@$(MAKE) --no-print-directory chromium
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope -q --durations=30

# kill -9 at 50 random points each of an ingest, a Dagster materialization and the live flow (with
# recovery), every rerun compared with an uninterrupted run (docs/reliability.md); `make test` runs a
# few points of each. Long: the Dagster half alone is ~50 materializations (~1 h on a busy 2-core box).
crash: setup
	TAPEFLOW_CRASH_POINTS=50 TAPEFLOW_CRASH_DAGSTER_POINTS=50 TAPEFLOW_CRASH_LIVE_KILLS=50 TAPEFLOW_CRASH_LIVE_POINTS=50 \
	$(BIN)/python -m pytest -q -s --timeout=0 tests/crash tests/flows/test_recovery.py

# fuzzing (docs/reliability.md): Hypothesis (FUZZ_EXAMPLES per format), then atheris, FUZZ_MINUTES per
# format (or FUZZ_SECONDS; FUZZ_FORMATS: all by default); a crash stops it with its input under .fuzz/
FUZZ_MINUTES ?= 2
FUZZ_SECONDS ?= $$(( $(FUZZ_MINUTES) * 60 ))
FUZZ_EXAMPLES ?= 5000
FUZZ_FORMATS ?= $$($(BIN)/python -c "from tests.fuzz.venues import FORMATS; print(*FORMATS)")

fuzz: $(STAMP)
	TAPEFLOW_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider tests/fuzz/test_fuzz_venues.py
	@mkdir -p .fuzz
	@for fmt in $(FUZZ_FORMATS); do \
	  echo "atheris: $$fmt for $(FUZZ_SECONDS) s"; \
	  $(BIN)/python -m tests.fuzz.atheris_target $$fmt -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=.fuzz/$$fmt- -print_final_stats=1 >.fuzz/$$fmt.log 2>&1 \
	    || { tail -60 .fuzz/$$fmt.log; exit 1; }; \
	  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" .fuzz/$$fmt.log; \
	done

# the soak (not in `make test`): SOAK_MINUTES (25) of the simulator feed replayed through the replay
# server into `tapeflow live` at 70 % of its measured max throughput; RSS every 10 s, p99 latency
SOAK_MINUTES ?= 25

soak: $(STAMP)
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m bench.soak

# python -m bench --help: --only MODULE[,MODULE], --quick
bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .demo build *.egg-info .fuzz
	rm -f kernels/__pycache__/*.nbi kernels/__pycache__/*.nbc kernels/__pycache__/tapeflow-warm.json
	rm -rf kernels/__pycache__/jax

# Dagster (owned by the dagster room): the UI with webserver + daemon (schedules, sensors, backfills) on
# 127.0.0.1:3000, history in a project-local DAGSTER_HOME. Unset TAPEFLOW_* paths point at the demo's.
DAGSTER_HOME_DIR := $(CURDIR)/.dagster
DAGSTER_DEMO := $(CURDIR)/.demo/dagster
# this machine only unless told otherwise (`make ui UI_HOST=0.0.0.0`: the UI has no login; docs/security.md)
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000

ui: $(STAMP)
	@$(BIN)/python -m dagster_project.home $(DAGSTER_HOME_DIR) >/dev/null
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) \
	TAPEFLOW_LAKE=$${TAPEFLOW_LAKE:-$(DAGSTER_DEMO)/lake} \
	TAPEFLOW_CLICKHOUSE=$${TAPEFLOW_CLICKHOUSE:-chdb://$(DAGSTER_DEMO)/warehouse} \
	TAPEFLOW_LANDING=$${TAPEFLOW_LANDING:-$(DAGSTER_DEMO)/landing} \
	TAPEFLOW_JOURNAL=$${TAPEFLOW_JOURNAL:-$(DAGSTER_DEMO)/journal} \
	$(BIN)/dagster dev -h $(UI_HOST) -p $(UI_PORT) -m dagster_project.definitions

validate: $(STAMP)
	@$(BIN)/python -m dagster_project.home $(DAGSTER_HOME_DIR) >/dev/null
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster definitions validate -m dagster_project.definitions

# Debian's redis-server for the live bus (tests/bus, bench/bus.py): installed when missing and root;
# otherwise the bus tests skip saying so
redis-server:
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } \
	  || echo "redis-server missing and not root: the bus tests will skip (apt-get install redis-server)"; }

# a redis-server on 127.0.0.1:$(REDIS_PORT) in the foreground, an append-only file in .redis/ (docs/bus.md);
# then e.g. `tapeflow live --capture ... --bus redis://127.0.0.1:$(REDIS_PORT)/0`
REDIS_PORT ?= 6379

redis: $(STAMP) redis-server
	$(BIN)/python -m tapeflow.bus.server --port $(REDIS_PORT) --dir .redis

# Debian's chromium for the dashboard's browser test (tests/serve/test_browser.py): installed when missing
# and root; otherwise the test skips and says why. Never `playwright install` (no browser downloads).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is missing and this is not root: the browser test will skip"

# the dashboard and the read API on the demo's live lake (run `make demo` first), on 127.0.0.1:8050,
# relaying a flow started with `tapeflow live ... --publish 127.0.0.1:8765` (docs/dashboard.md)
DASHBOARD_PORT ?= 8050
PUBLISH ?= 127.0.0.1:8765

dashboard: $(STAMP)
	@test -d .demo/live/lake || { echo "no demo lake: run make demo first"; exit 2; }
	$(BIN)/tapeflow serve --lake .demo/live/lake --port $(DASHBOARD_PORT) --live $(PUBLISH)

# the MLflow UI over the model registry (docs/models.md), on 127.0.0.1:5000. The project pins
# mlflow-skinny (no UI); full mlflow would move pyarrow and cryptography below this project's pins,
# so the UI gets a venv of its own, reading the same SQLite store (default: the demo's lake).
MLFLOW_VENV := .venv-mlflow
MLFLOW_LAKE ?= .demo/lake
MLFLOW_PORT ?= 5000
.PHONY: mlflow-ui
mlflow-ui:
	@test -f $(MLFLOW_LAKE)/_models/mlflow.db || { echo "no model registry under $(MLFLOW_LAKE)/_models: run make demo first"; exit 2; }
	@test -x $(MLFLOW_VENV)/bin/mlflow || { $(PYTHON) -m venv $(MLFLOW_VENV) && $(MLFLOW_VENV)/bin/python -m pip install --quiet 'mlflow==3.17.2'; }
	$(MLFLOW_VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(MLFLOW_LAKE))/_models/mlflow.db --host 127.0.0.1 --port $(MLFLOW_PORT)
