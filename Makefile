# Two entry points for a fresh machine (see README):
#   make demo  - set up, train image+meta on the bundled sample, evaluate, write a report
#   make test  - set up and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/demo

.PHONY: setup demo test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,pretrained]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	rm -rf $(RUN)
	$(PY) scripts/explore.py --config configs/ham10000_sample.yaml --out $(RUN)/explore
	$(PY) scripts/train.py --config configs/ham10000_sample.yaml --modality image+meta --workdir $(RUN)
	$(PY) scripts/evaluate.py --checkpoint $(RUN) --out $(RUN)/eval
	@echo "report: $(RUN)/eval/report.html (and report.md)"

test: setup
	XLA_FLAGS=--xla_force_host_platform_device_count=4 $(PY) -m pytest -q tests

clean:
	rm -rf runs .pytest_cache
