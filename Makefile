# Every target installs what it needs on a fresh Debian 12 machine (as root).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-deps demo test test-unit test-lab bench bench-compare bench-scale clean-lab

system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

setup: system-deps $(STAMP)

demo: setup
	$(PY) -m lab.demo

test: setup
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-lab: setup
	$(PY) -m pytest -q tests/lab

bench: setup
	$(PY) bench/convergence.py

# ovsfabric and OVN side by side (installs OVN first; about 20 minutes; CI does not run it)
bench-compare: setup
	bash scripts/install-bench-deps.sh
	$(PY) bench/compare.py

# the flow computation at 100 hosts and 10,000 endpoints, simulated (no lab, no root)
bench-scale: $(STAMP)
	$(PY) bench/scale.py

clean-lab: $(STAMP)
	$(PY) -m lab down
