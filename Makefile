# The one entry point. Every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Apache Kafka, pinned in deploy/kafka/pom.xml and fetched by Maven once into build/ (outside git).
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)
KAFKA_LIBS    := build/kafka-$(KAFKA_VERSION)

.PHONY: setup run test unit integration bench lint clean

setup: $(STAMP) $(KAFKA_LIBS)/.fetched

# Without Java and Maven there is nothing to fetch: omboard run falls back to Tansu and says so.
$(KAFKA_LIBS)/.fetched: deploy/kafka/pom.xml
	@if command -v java >/dev/null && command -v mvn >/dev/null; then \
	  echo "fetching Apache Kafka $(KAFKA_VERSION) with Maven into $(KAFKA_LIBS)"; \
	  rm -rf $(KAFKA_LIBS) && mvn -q -B -Dstyle.color=never -f deploy/kafka/pom.xml dependency:copy-dependencies \
	    -DincludeScope=runtime -DoutputDirectory="$(abspath $(KAFKA_LIBS))" && touch $@; \
	else \
	  echo "no Java or no Maven: Apache Kafka is not fetched; the embedded broker will be Tansu (memory only)"; \
	fi

# Reinstall when the pins or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: setup
	$(BIN)/omboard run

# Each run keeps its temporary files in a folder of its own, removed when every test passed: as
# root, a starting pytest session takes the search bit off the shared /tmp/pytest-of-root, and the
# embedded PostgreSQL of a session already running there (it runs as user postgres) loses its data.
PYTEST = tmp=$$(mktemp -d /tmp/omboard-tests-XXXXXX); $(BIN)/python -m pytest --basetemp=$$tmp $(1); \
	status=$$?; if [ $$status -eq 0 ]; then rm -rf $$tmp; else echo "the tests' files are kept in $$tmp"; fi; exit $$status

test: setup
	@$(call PYTEST,)

unit: setup
	@$(call PYTEST,tests/unit)

integration: setup
	@$(call PYTEST,tests/integration tests/e2e)

lint: setup
	$(BIN)/ruff check .

# make bench BENCH_ARGS="--broker tansu" for the fallback broker's figure; --help lists the rest.
bench: setup
	$(BIN)/python -m tests.benchmarks.pipeline $(BENCH_ARGS)

# The scale benchmark (issue 9): 1,000,000 open tasks over 300 providers, each figure a ratio to a
# baseline of the same run; not part of make test. make bench-scale SCALE_ARGS="--tasks 100000"; --help lists the rest.
.PHONY: bench-scale
bench-scale: setup
	$(BIN)/python -m tests.benchmarks.scale $(SCALE_ARGS)

# The crash test (issue 8): 20 rounds, each a fresh stack whose workers are SIGKILLed at random,
# compared with the dry run; not part of make test. make chaos CHAOS_ARGS="--rounds 2 --seed 7"; --help lists the rest.
.PHONY: chaos
chaos: setup
	$(BIN)/python -m tests.chaos.crash $(CHAOS_ARGS)

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
