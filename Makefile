# Quick start: `make run` (all shipped scenarios -> reports/index.html), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-noaccel lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,fast,dask]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/testbed run scenarios/ --out reports

test: $(STAMP)
	$(BIN)/python -m pytest

# The suite again with llvmlite unimportable (a stub package that raises ImportError): the
# NumPy mask passes in charge, as where the `fast` extra is not installed.
test-noaccel: $(STAMP)
	PYTHONPATH=tests/_no_llvmlite $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check testbed tests
	$(BIN)/mypy --strict testbed
	$(BIN)/mypy --check-untyped-defs tests
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
