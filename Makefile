# The two commands a newcomer needs: `make run` and `make test`. Both install everything first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export REMEDY_DATA_DIR ?= $(CURDIR)/.data
# The test suite runs its own broker on other ports and another data directory, so it never
# disturbs a `make run` that is still up.
TEST_ENV := REMEDY_DATA_DIR=$(CURDIR)/.data/test REMEDY_KAFKA_PORT=19092 REMEDY_KAFKA_CONTROLLER_PORT=19093 \
	REMEDY_KAFKA_BOOTSTRAP=127.0.0.1:19092
SAMPLE := samples/sample-day.jsonl

.PHONY: install run test test-unit stop kafka-start kafka-stop registry-start registry-stop bench

# The fraud page's browser test drives Debian's chromium through its chromedriver (/usr/bin/chromedriver).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/.installed: pyproject.toml
	command -v chromium >/dev/null && test -x /usr/bin/chromedriver || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

kafka-start:
	deploy/local/kafka.sh start

kafka-stop:
	deploy/local/kafka.sh stop

## Registry mode (schemas/README.md): Apicurio Registry on 127.0.0.1:8081; then
## export REMEDY_SCHEMA_REGISTRY_URL=$$(deploy/local/registry.sh url) before `make run`.
registry-start:
	deploy/local/registry.sh start

registry-stop:
	deploy/local/registry.sh stop

## make run: install, start Kafka and the worker, publish the sample day, print finance totals.
run: install kafka-start
	$(BIN)/remedy-ledger topics create
	PATH=$(CURDIR)/$(BIN):$$PATH deploy/local/worker.sh start
	$(BIN)/remedy-ledger publish $(SAMPLE)
	$(BIN)/remedy-ledger wait --file $(SAMPLE) --timeout 300
	$(BIN)/remedy-ledger finance totals --by reason
	@echo
	@echo "The worker and Kafka keep running: try 'make totals', 'tail -f .data/worker.log'; 'make stop' ends them."

totals: install
	$(BIN)/remedy-ledger finance totals --by day

stop:
	-deploy/local/worker.sh stop
	-deploy/local/registry.sh stop
	-deploy/local/kafka.sh stop

## make test: install, start a test broker, run the whole suite, stop the broker.
test: install
	$(TEST_ENV) deploy/local/kafka.sh start
	$(TEST_ENV) $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15; status=$$?; \
	$(TEST_ENV) deploy/local/kafka.sh stop; exit $$status

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

## make bench: workload, publish, ceilings, end to end (1 and 2 workers), latency, profiles, state size.
## Runs its own broker on 127.0.0.1:29092 (data in .data/bench) and stops it; about 10 minutes on 2 cores.
## BENCH_ARGS="--source HEAD" measures the last commit instead of the working tree (see bench/README.md).
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)
