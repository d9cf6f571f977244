# Everything runs in a project venv that the targets create and keep in sync with pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,tools,tflite,mavlink,demo,metrics
STAMP := $(VENV)/.installed-$(shell echo $(EXTRAS) | tr ',' '-')
DEMO_ZOO ?= model_zoo

.PHONY: install test lint format demo demo-detect bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "edged needs Python >= 3.10"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "could not create a venv: on Debian / Raspberry Pi OS run: sudo apt install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

# Two workers, each taking whole test files (module fixtures are built once): the broker, daemon and fault tests
# spend most of their time waiting, so they overlap the model tests that keep a core busy. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff format --check edged tests
	$(BIN)/ruff check edged tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format edged tests
	$(BIN)/ruff check --fix edged tests

# The daemon's embedded demo (Ctrl-C stops it); `make demo-detect` writes an annotated clip instead.
demo: install
	$(BIN)/edged run

demo-detect: install
	@mkdir -p out
	$(BIN)/edged detect edged/demo/vtest_10s.mp4 --zoo $(DEMO_ZOO) --annotate out/demo.mp4
	@echo "annotated video: out/demo.mp4"

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache *.egg-info

# Rebuild edged's demo family (model_zoo/) on this CPU from the COCO YOLOX-nano in ../shared: fine-tunes, prunes,
# factorizes, binarises, quantizes, exports TFLite, measures (hours on 2 cores; MODEL_CARD.md states the time).
# Resumable: checkpoints in out/zoo-build. Needs the [build] extra and ../shared.
.PHONY: zoo
zoo: install
	@$(BIN)/python -c "import torch, litert_torch" 2>/dev/null || { \
	  echo "make zoo needs the [build] extra: $(BIN)/pip install -e '.[build]'"; exit 1; }
	$(BIN)/python -m edged.factory.train.family --out model_zoo --shared $(or $(EDGED_SHARED),../shared)

# Every benchmark (bench/), then a summary of ratios against DESIGN.md's quality bars: about 15 minutes with the
# 10-minute soak (SOAK_MINUTES=0 skips it). BENCH_RESULTS=bench/RESULTS.md records the run for the README.
SOAK_MINUTES ?= 10
BENCH_RESULTS ?= out/bench/RESULTS.md
bench: install
	$(BIN)/python -m bench.run_all --zoo $(DEMO_ZOO) --soak-minutes $(SOAK_MINUTES) --results $(BENCH_RESULTS)
