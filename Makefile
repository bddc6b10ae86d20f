# Two entry points for a fresh machine (see README):
#   make demo  - set up, train image+meta on the bundled sample, evaluate, write a report
#   make test  - set up and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/demo

.PHONY: setup demo test clean constraints serve

# constraints.txt pins every package to the versions the suite last passed with;
# pyproject.toml keeps the honest ranges for people installing into their own environment.
# GPU=1: the CUDA 12 build of jax as well (pinned in constraints-cuda.txt; on a machine
# without a GPU jax falls back to the CPU and says so).
GPU ?=
comma := ,
EXTRAS := dev,pretrained$(if $(GPU),$(comma)cuda)
CUDA_PINS := $(if $(GPU),-c constraints-cuda.txt)
$(VENV)/.installed: pyproject.toml constraints.txt constraints-cuda.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q pip==26.3
	$(PY) -m pip install -q -c constraints.txt $(CUDA_PINS) -e '.[$(EXTRAS)]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	rm -rf $(RUN)
	$(PY) scripts/explore.py --config configs/ham10000_sample.yaml --out $(RUN)/explore
	$(PY) scripts/train.py --config configs/ham10000_sample.yaml --modality image+meta --workdir $(RUN)
	$(PY) scripts/evaluate.py --checkpoint $(RUN) --out $(RUN)/eval
	@echo "report: $(RUN)/eval/report.html (and report.md)"

# The web demo on the bundled-sample model: trains $(RUN) first when it has no finished run
# (about 3 min on 2 cores; an interrupted one is resumed), then serves http://$(HOST):$(PORT)
HOST ?= 127.0.0.1
PORT ?= 8000
serve: setup
	@if [ ! -f $(RUN)/summary.json ]; then \
	  if [ -f $(RUN)/config.yaml ]; then $(PY) scripts/train.py --workdir $(RUN) --resume; \
	  else $(PY) scripts/train.py --config configs/ham10000_sample.yaml --modality image+meta --workdir $(RUN); fi; \
	fi
	$(PY) scripts/serve.py --checkpoint $(RUN) --host $(HOST) --port $(PORT)

# Two test processes per machine (pytest-xdist; most tests are compile- or start-up-bound, one
# core each) and XLA's backend optimisation off: tiny test models compile in half the time and
# their results do not depend on it. JAX's persistent compilation cache, new for each run and
# shared by both workers and the scripts they start: many tests compile the same smoke step.
# TEST_DEVICES: forced host devices (multi-device code on CPU). --durations: the slowest tests
# are listed at the end, to keep the suite under its 15 minutes.
TEST_DEVICES ?= 4
TEST_WORKERS ?= 2
test: setup
	cache=$$(mktemp -d) && trap 'rm -rf "$$cache"' EXIT INT TERM && \
	XLA_FLAGS="--xla_force_host_platform_device_count=$(TEST_DEVICES) --xla_backend_optimization_level=0" \
	  JAX_COMPILATION_CACHE_DIR="$$cache" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
	  $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 tests

# Re-resolve the newest versions allowed by pyproject.toml into constraints.txt (then run
# `make test` and commit both files).
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install -q -e '.[dev,pretrained]'
	{ sed -n '1,2p' constraints.txt; .venv-constraints/bin/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .venv-constraints .venv/.installed

clean:
	rm -rf runs .pytest_cache
