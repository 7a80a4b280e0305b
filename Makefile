# Every target installs what it needs on a fresh Debian 12 machine (as root).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The versions everything is tested with (make pins rewrites it), the backend that builds
# ovsfabric itself included.
PINS := constraints.txt

.PHONY: setup system-deps pins demo test test-unit test-lab bench bench-compare bench-scale \
        bench-replicas bench-etcd-traffic clean-lab

system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml $(PINS)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -c $(PINS) --upgrade pip
	$(VENV)/bin/pip install -q -c $(PINS) --build-constraint $(PINS) -e '.[test]'
	touch $(STAMP)

setup: system-deps $(STAMP)

# Moves the pins to the newest releases pyproject.toml admits; then test, and commit both.
pins:
	bash scripts/pin-deps.sh

demo: setup
	$(PY) -m lab.demo

test: setup
	$(PY) -m pytest -q

# The unit tests are independent of each other, and many wait on sockets and processes: four
# workers keep two cores busy (make test runs them in one).
test-unit: $(STAMP)
	$(PY) -m pytest -q -n 4 tests/unit

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

# 3 replicas on etcd beside the single controller on SQLite, one lab (root, etcd-server;
# about 5 minutes); OVSFABRIC_TEST_SLOT picks the lab's prefix, subnets and ports (default 5)
bench-replicas: setup
	$(PY) bench/replicas.py

# etcd bytes per endpoint change at 1,000 and 10,000 endpoints (etcd-server, no OVS)
bench-etcd-traffic: setup
	$(PY) bench/etcd_traffic.py

clean-lab: $(STAMP)
	$(PY) -m lab down
