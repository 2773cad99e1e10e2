# Every target runs tools as `python -m ...` of the interpreter the package is installed in.
PYTHON ?= python

.PHONY: install stack-up stack-down status test test-unit

install:
	$(PYTHON) -m pip install -e '.[test]'

stack-up:
	$(PYTHON) -m cdcapp.cli stack up

stack-down:
	$(PYTHON) -m cdcapp.cli stack down

status:
	$(PYTHON) -m cdcapp.cli stack status

# The whole suite: integration tests need the native stack (it stays up afterwards).
test: stack-up
	$(PYTHON) -m pytest -q

test-unit:
	$(PYTHON) -m pytest -q tests/unit
