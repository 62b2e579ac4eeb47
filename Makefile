# fundus-edge: `make test` and `make bench` work on a fresh machine with Python 3.11.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/DRIVE
THREADS ?= 2
BENCH_ARGS ?=
BENCH_OUT ?= build/bench
export OMP_NUM_THREADS ?= $(THREADS)

.PHONY: install lint test test-all test-arm bench publish bench-quick bench-pytest variants models runs-save runs-restore clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-nodeps.txt pyproject.toml
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# DATA reaches the DRIVE-backed tests when it holds DRIVE (.ci/run exports FUNDUS_EDGE_DRIVE itself).
DRIVE_ENV = $(if $(wildcard $(DATA)/test/images),FUNDUS_EDGE_DRIVE=$(abspath $(DATA)),)

# The layering contract (pyproject.toml [tool.importlinter]) and ruff. import-linter reads packages from
# the folder tree, and ours map onto top-level folders (pyproject's package-dir), so it reads a plain install
# of the package into build/lint, made by the same mapping a wheel uses.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf build/lint && $(BIN)/pip install -q --no-deps --no-build-isolation --target build/lint . 2>/dev/null
	cd build/lint && PYTHONPATH=. ../../$(BIN)/lint-imports ../../pyproject.toml

test: install
	$(DRIVE_ENV) $(BIN)/python -m pytest -q

# Heavy checks too (tests/test_slow.py: a real DRIVE training run and a benchmark sweep on DRIVE): run on purpose.
test-all: install
	$(DRIVE_ENV) $(BIN)/python -m pytest -q -m "slow or not slow"

# ARM64 bundles checked on ARM under qemu-aarch64-static (docs/deploy.md, "ARM64"): an aarch64 Python unpacked
# from Debian's arm64 packages into build/arm (root for apt-get; nothing of the host replaced), the s2d-fast
# bundles for ONNX Runtime, OpenVINO and LiteRT packed for linux-aarch64 and selftested there. About 15 minutes
# from scratch on 2 cores (ARM_ARGS=--fresh); downloads are kept under build/arm for a rerun.
ARM_ARGS ?=
test-arm: install
	$(DRIVE_ENV) $(BIN)/python -m fundus_edge.deploy.arm_check $(if $(wildcard $(DATA)/test/images),--data $(DATA),) $(ARM_ARGS)

variants: install
	$(BIN)/fundus-edge quantize models/default --variants build/models --data $(DATA) $(if $(FORCE),--force,)

# A run writes only under build/ (issue 42: the checkout stays clean, `git pull` still works): its record and
# reports, its own test reads (test-reads.csv) and the page it would publish (page/, named by the CPU identity).
bench: install
	$(BIN)/fundus-edge bench --data $(DATA) --threads $(THREADS) --out $(BENCH_OUT) $(BENCH_ARGS)
	$(BIN)/python -m fundus_edge.bench.history $(BENCH_OUT)/results.json --out $(BENCH_OUT)/page --no-index

# The maintainers' step after a bench: the run's page and record into docs/results/, its test reads appended
# to docs/test-reads.csv (those not there yet), README's generated tables from the newest record.
publish: install
	$(BIN)/python -m fundus_edge.bench.history $(BENCH_OUT)/results.json $(if $(wildcard $(BENCH_OUT)/test-reads.csv),--reads $(BENCH_OUT)/test-reads.csv,)
	$(BIN)/python -m fundus_edge.readme_tables

bench-quick: install
	$(BIN)/fundus-edge bench --data $(DATA) --threads $(THREADS) --out build/bench-quick --quick $(BENCH_ARGS)

bench-pytest: install
	$(BIN)/python -m pytest -q -m "slow or not slow" tests/test_latency_bench.py --benchmark-only

# How the shipped models were made (hours on 2 CPU cores; not part of `make bench`). The recipes are
# chosen on a 16 / 4 validation split (runs/default, runs/small, runs/small-robust); each is then refit
# on all 20 training images with the validation run's threshold at its final iteration. The small refit
# shipped; the default refit scored below its rule and did not, so the default is runs/default's best
# checkpoint continued for a second cosine cycle on 128-px crops, kept by validation F1
# (runs/default-cont; docs/experiments-*.md). small-pruned is the small model with half of every 3x3
# convolution's filters removed and 800 fine-tuning iterations (the fastest model; minutes, not hours).
# models/wnet and models/wnet-small (not in this target: their rules take checkpoints mid-run; docs/experiments-wnet.md):
# `fundus-edge train --config wnet[-small] --data DRIVE --threads 1 --to-static --out runs/wnet[-small]` (16100
# iterations, 4 cosine cycles, cycle ends copied to cand-cycleN/); for wnet a context stage (`--config wnet-ctx
# --init runs/wnet/best --out runs/wnet-ctx`); `fundus-edge average` of the cycle ends (wnet: cand-cycle2,
# cand-cycle3, last and runs/wnet-ctx/best -> runs/wnet-swa4; wnet-small: cand-cycle2, cand-cycle3, last ->
# runs/wnet-small-swa3); a refit on all 20 images (`--config wnet-refit20 --init runs/wnet-swa4`, `--config
# wnet-small-refit20 --init runs/wnet-small-swa3`); then `fundus-edge export runs/<refit>/best --out models/NAME
# --formats pir,onnx` (wnet with `--threshold 0.445` from `fundus-edge evaluate runs/wnet-refit20/best --split train
# --best-threshold`; wnet-small-refit20 stores its own with `threshold: train`) and the model card as below.
TRAIN = $(BIN)/fundus-edge train --data $(DATA) --threads 1 --no-progress
models: install
	$(TRAIN) --config default --out runs/default
	$(TRAIN) --config default-cont --init runs/default/best --out runs/default-cont
	$(TRAIN) --config small --out runs/small
	$(TRAIN) --config small-robust --init runs/small/best --out runs/small-robust
	$(TRAIN) --config small --val-count 0 --threshold 0.571 --out runs/small-refit
	$(TRAIN) --config small-robust --init runs/small-refit/best --val-count 0 --threshold 0.571 --out runs/small-robust-refit
	$(BIN)/fundus-edge export runs/default-cont/best --out models/default --formats pir,onnx --force
	$(BIN)/fundus-edge export runs/small-robust-refit/best --out models/small --formats pir,onnx --force
	$(BIN)/python -m fundus_edge.modelcard --run runs/default-cont --model models/default --data $(DATA) --perturb --notes docs/experiments-default.md \
		--train-command "fundus-edge train --config default --data DRIVE (3000 iterations, runs/default), then fundus-edge train --config default-cont --init runs/default/best --data DRIVE --threads 1 --out runs/default-cont"
	$(BIN)/python -m fundus_edge.modelcard --run runs/small-robust-refit --model models/small --data $(DATA) --perturb --notes docs/experiments-small.md \
		--train-command "fundus-edge train --config small --data DRIVE --iters 4000 --val-count 0 --threshold 0.571 --threads 1 --out runs/small-refit; fundus-edge train --config small-robust --init runs/small-refit/best --data DRIVE --val-count 0 --threshold 0.571 --threads 1 --out runs/small-robust-refit; fundus-edge export runs/small-robust-refit/best --out models/small --formats pir,onnx"
	$(BIN)/fundus-edge quantize models/small --out models/small-pruned --prune 0.5 --data $(DATA) --force
	$(BIN)/python -m fundus_edge.modelcard --model models/small-pruned --data $(DATA) --perturb
	# s2d-fast (docs/experiments-s2d.md: rules fixed before the run ended); the run keeps cand-cycle<k>/ itself
	$(TRAIN) --config s2d-b16-d2 --to-static --out runs/s2d-b16-d2
	$(BIN)/fundus-edge average runs/s2d-b16-d2/cand-cycle2 runs/s2d-b16-d2/cand-cycle3 runs/s2d-b16-d2/last --data $(DATA) --out runs/s2d-b16-d2-swa3
	$(TRAIN) --config s2d-fast-refit20 --init runs/s2d-b16-d2-swa3 --to-static --out runs/s2d-fast-refit20
	$(BIN)/fundus-edge export runs/s2d-fast-refit20/best --out models/s2d-fast --formats pir,onnx --force
	$(BIN)/fundus-edge validate models/s2d-fast --data $(DATA)
	$(BIN)/fundus-edge quantize models/s2d-fast --out models/s2d-fast-int8-nncf --int8 nncf --data $(DATA) --force
	$(BIN)/fundus-edge quantize models/s2d-fast --out models/s2d-fast-int8-ort --int8 ort --data $(DATA) --force
	$(BIN)/fundus-edge validate models/s2d-fast-int8-nncf models/s2d-fast-int8-ort --data $(DATA)
	$(BIN)/python -m fundus_edge.modelcard --run runs/s2d-fast-refit20 --model models/s2d-fast --data $(DATA) --perturb --notes docs/experiments-s2d.md
	# s2d-wnet: the same pipeline for the folded W-Net (docs/experiments-s2d.md, its own rules)
	$(TRAIN) --config s2d-wnet --to-static --out runs/s2d-wnet
	$(BIN)/fundus-edge average runs/s2d-wnet/cand-cycle2 runs/s2d-wnet/cand-cycle3 runs/s2d-wnet/last --data $(DATA) --out runs/s2d-wnet-swa3
	$(TRAIN) --config s2d-wnet-refit20 --init runs/s2d-wnet-swa3 --to-static --out runs/s2d-wnet-refit20
	$(BIN)/fundus-edge export runs/s2d-wnet-refit20/best --out models/s2d-wnet --name s2d-wnet --formats pir,onnx --force
	$(BIN)/fundus-edge validate models/s2d-wnet --data $(DATA)
	$(BIN)/fundus-edge quantize models/s2d-wnet --out models/s2d-wnet-int8-nncf --int8 nncf --data $(DATA) --force
	$(BIN)/fundus-edge quantize models/s2d-wnet --out models/s2d-wnet-int8-ort --int8 ort --data $(DATA) --force
	$(BIN)/fundus-edge validate models/s2d-wnet-int8-nncf models/s2d-wnet-int8-ort --data $(DATA)
	$(BIN)/python -m fundus_edge.modelcard --run runs/s2d-wnet-refit20 --model models/s2d-wnet --data $(DATA) --perturb --notes docs/experiments-s2d.md
	# the default's pruned recipe as the bench builds it, shipped so make bench need not fine-tune
	$(BIN)/fundus-edge quantize models/default --out models/default-pruned --prune 0.5 --finetune-iters 800 --data $(DATA) --force
	$(BIN)/python -m fundus_edge.modelcard --model models/default-pruned --pruned-build

# Long training runs outlive a session but not a new machine (runs/ is outside git). The resumable state of
# the runs IN PROGRESS (last/ with the optimizer, best/, cand-*/, log, status, config: about 1 MB a run) is kept in
# git: `make runs-save` before a session stops, `make runs-restore` on a machine whose runs/ lacks them, then
# `fundus-edge train ... --out runs/NAME --resume` continues exactly where the saved last/ stood. A run whose
# status says finished is not saved, and its saved state is removed: train-state/ holds no training pickles of
# a finished run (a shipped model keeps its provenance in its card). Plain checkpoints (e.g. an average made
# mid-pipeline) are saved only when named: `make runs-save KEEP="s2d-b16-swa3"`.
STATE ?= train-state
KEEP ?=
runs-save:
	@for n in $(KEEP); do r=runs/$$n; [ -f $$r/checkpoint.yaml ] || { echo "KEEP $$n: runs/$$n is not a checkpoint"; exit 1; }; \
	  rm -rf $(STATE)/$$n && mkdir -p $(STATE) && cp -r $$r $(STATE)/$$n && echo "saved checkpoint $$n"; done
	@for r in runs/*/; do n=$$(basename $$r); [ -f $$r/last/checkpoint.yaml ] || continue; \
	  if grep -q '^event: finished' $$r/status.yaml 2>/dev/null; then \
	    [ ! -d $(STATE)/$$n ] || { rm -rf $(STATE)/$$n && echo "removed $(STATE)/$$n (run finished)"; }; continue; fi; \
	  rm -rf $(STATE)/$$n.tmp && mkdir -p $(STATE)/$$n.tmp && \
	  cp -r $$r/last $$r/log.csv $$r/status.yaml $$r/config.yaml $(STATE)/$$n.tmp/ && \
	  for d in $$r/best $$r/cand-*; do [ ! -d $$d ] || cp -r $$d $(STATE)/$$n.tmp/; done && \
	  rm -rf $(STATE)/$$n && mv $(STATE)/$$n.tmp $(STATE)/$$n && \
	  echo "saved $$n at iteration $$(sed -n 's/^iteration: //p' $(STATE)/$$n/last/checkpoint.yaml)"; done

runs-restore:
	@for s in $(STATE)/*/; do [ -d "$$s" ] || { echo "nothing saved in $(STATE)/"; continue; }; n=$$(basename $$s); \
	  if [ -e runs/$$n ]; then echo "runs/$$n exists: kept (remove it to restore the saved state)"; \
	  else mkdir -p runs && cp -r $$s runs/$$n && echo "restored runs/$$n at iteration $$(sed -n 's/^iteration: //p' $$(ls runs/$$n/last/checkpoint.yaml runs/$$n/checkpoint.yaml 2>/dev/null | head -1))"; fi; done

clean:
	rm -rf build
