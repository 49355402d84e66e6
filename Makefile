# The one entry point. Every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test unit integration bench lint clean

setup: $(STAMP)

# Reinstall when the pins or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: setup
	$(BIN)/omboard run

test: setup
	$(BIN)/python -m pytest

unit: setup
	$(BIN)/python -m pytest tests/unit

integration: setup
	$(BIN)/python -m pytest tests/integration tests/e2e

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m tests.benchmarks.pipeline

# Grafana dashboards as code: regenerate deploy/grafana/dashboards/*.json (commit the result).
.PHONY: dashboards
dashboards: setup
	$(BIN)/python -m deploy.grafana.generate

# The event contract as an AsyncAPI document for upstream teams (commit the result).
.PHONY: asyncapi
asyncapi: setup
	$(BIN)/python -c "from pathlib import Path; from schemas.export import write_asyncapi; print(write_asyncapi(Path('docs/asyncapi.json')))"

clean:
	rm -rf $(VENV) var build *.egg-info
