# Two commands: `make demo` and `make test`. Each sets up everything it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-backfill bench-tags bench-container bench-chatty compile collector clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]" --config-settings editable_mode=compat
	touch $(STAMP)

# What pip does for a regular install: byte-compile, so imports cost what they cost users.
compile:
	$(PY) -m compileall -q mfotel metaflow_extensions

demo: $(STAMP) compile
	$(VENV)/bin/mfotel demo

# The kit's slim OpenTelemetry Collector, built with ocb from the Go module proxy and cached in
# ~/.cache/mfotel/collector (keyed by the manifest). Without Go, the collector tests say so.
collector: $(STAMP)
	@if command -v go >/dev/null 2>&1; then $(VENV)/bin/mfotel collector build; \
	else echo "make: no Go found, so the collector tests will skip: install Go >= 1.24"; fi

test: $(STAMP) compile collector
	$(PY) -m ruff check mfotel metaflow_extensions tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -q tests

bench: $(STAMP) compile
	$(PY) benchmarks/bench_overhead.py

bench-backfill: $(STAMP) compile
	$(PY) benchmarks/bench_backfill.py

bench-tags: $(STAMP) compile collector
	$(PY) benchmarks/bench_tag_mapping.py

bench-container: $(STAMP) compile
	$(PY) benchmarks/bench_container.py

bench-chatty: $(STAMP) compile
	$(PY) benchmarks/bench_chatty.py
	$(PY) benchmarks/bench_chatty.py --container

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
