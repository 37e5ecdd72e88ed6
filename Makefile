# Two commands: `make demo` and `make test`. Each sets up everything it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mfotel demo

test: $(STAMP)
	$(PY) -m ruff check mfotel metaflow_extensions tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
