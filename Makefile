# speechkit: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint bench-clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/speechkit synthesize "Hello! This voice was trained from scratch on a two-core machine." -o out/hello.wav
	$(VENV)/bin/speechkit demo -o out

test: setup
	OMP_NUM_THREADS=2 $(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check speechkit export mobile tests bench examples
