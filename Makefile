PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: venv demo test ui lint format bench clean

$(BIN)/microseg: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(BIN)/microseg

venv: $(BIN)/microseg

demo: venv
	$(BIN)/microseg generate --out data/landing --customers 5000 --days 180 --seed 42
	$(BIN)/microseg run

# Two workers on the 2 cores, modules in collection order (the whole-graph integration modules
# first, so no worker idles at the end behind one); the serial tests (kill -9, lock races) then
# run alone.
test: venv
	$(BIN)/pytest -q -n 2 --dist loadscope --no-loadscope-reorder -m "not serial"
	$(BIN)/pytest -q -m serial

ui: venv
	DAGSTER_HOME="$${DAGSTER_HOME:-$(CURDIR)/data/dagster_home}" $(BIN)/python -c \
		"from orchestration.runner import ensure_instance_config; ensure_instance_config()"
	DAGSTER_HOME="$${DAGSTER_HOME:-$(CURDIR)/data/dagster_home}" $(BIN)/dagster dev  # the code location of pyproject.toml [tool.dagster]

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p data
	MICROSEG_WAREHOUSE=$(CURDIR)/data/lint.duckdb MICROSEG_HMAC_KEY=lint-only \
		MICROSEG_REPO_ROOT=$(CURDIR) $(BIN)/sqlfluff lint dbt_project/models --processes 2

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf data .venv

bench: venv
	nice $(BIN)/python -m bench.identity
	nice $(BIN)/python -m bench.febrl
	nice $(BIN)/python -m bench.pipeline
	nice $(BIN)/python -m bench.segments
	nice $(BIN)/python -m bench.api

# Optional: headless-Chromium screenshots of the UI over the default data/ paths (needs chromium).
.PHONY: ui-screenshots
ui-screenshots: venv
	mkdir -p "$${DAGSTER_HOME:-$(CURDIR)/data/dagster_home}"
	DAGSTER_HOME="$${DAGSTER_HOME:-$(CURDIR)/data/dagster_home}" bench/ui_screenshots.sh data/ui_screenshots
