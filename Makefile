# fundus-edge: `make test` and `make bench` work on a fresh machine with Python 3.11.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/DRIVE
THREADS ?= 2
BENCH_ARGS ?=
export OMP_NUM_THREADS ?= $(THREADS)

.PHONY: install test test-all bench bench-quick bench-pytest variants models clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-nodeps.txt pyproject.toml
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q

# Heavy checks too (real DRIVE training smoke, full benchmark smoke): run on purpose.
test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

variants: install
	$(BIN)/fundus-edge quantize models/default --variants build/models --data $(DATA) $(if $(FORCE),--force,)

bench: install
	$(BIN)/fundus-edge bench --data $(DATA) --threads $(THREADS) --out build/bench $(BENCH_ARGS)

bench-quick: install
	$(BIN)/fundus-edge bench --data $(DATA) --threads $(THREADS) --out build/bench-quick --quick $(BENCH_ARGS)

bench-pytest: install
	$(BIN)/python -m pytest -q -m "slow or not slow" bench/test_latency.py --benchmark-only

# How the shipped models were made (hours on 2 CPU cores; not part of `make bench`).
models: install
	$(BIN)/fundus-edge train --config default --data $(DATA) --out runs/default --threads 1 --no-progress
	$(BIN)/fundus-edge train --config small --data $(DATA) --out runs/small --threads 1 --iters 4000 --no-progress
	$(BIN)/fundus-edge export runs/default/best --out models/default --formats pir,onnx --force
	$(BIN)/fundus-edge export runs/small/best --out models/small --formats pir,onnx --force
	$(BIN)/python -m fundus_edge.modelcard --run runs/default --model models/default --data $(DATA)
	$(BIN)/python -m fundus_edge.modelcard --run runs/small --model models/small --data $(DATA)

clean:
	rm -rf build
