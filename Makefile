# Every target runs tools as `python -m ...` of the interpreter the package is installed in.
PYTHON ?= python

.PHONY: install demo bench stack-up stack-down status test test-tools test-unit test-faults

install:
	$(PYTHON) -m pip install -e '.[test]'

# The main job, once: stack, worker, workload, ground-truth check, revenue by country and category.
demo: install
	$(PYTHON) -m cdcapp.cli demo

# Throughput, freshness and footprint on the local stack; prints a table and writes JSON
# (docs/performance.md). About 25 minutes; BENCH_ARGS="--parts drain" runs one part.
bench: install
	$(PYTHON) -m cdcapp.cli bench $(BENCH_ARGS)

stack-up:
	$(PYTHON) -m cdcapp.cli stack up

stack-down:
	$(PYTHON) -m cdcapp.cli stack down

status:
	$(PYTHON) -m cdcapp.cli stack status

# The whole suite: integration tests need the native stack (it stays up afterwards).
test: install stack-up test-tools
	$(PYTHON) -m pytest -q

# What only the tests use: Debian's chromium, for the status page test.
test-tools:
	command -v chromium >/dev/null 2>&1 || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium)

test-unit:
	$(PYTHON) -m pytest -q tests/unit

# The fault matrix alone (docs/reliability.md): worker, ClickHouse, broker, Connect and SQLite relay
# faults and a poison row, each under load, each ending in the ground-truth check. Part of `test`.
test-faults: install stack-up
	$(PYTHON) -m pytest -q -m faults tests/faults
