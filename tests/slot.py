"""The test slot: several test runs can share a machine (e.g. two developers' sessions), and
each takes a slot, which gives it its own lab prefix, subnets and ports."""
from __future__ import annotations

import os
import shutil

import pytest

SLOT = int(os.environ.get("OVSFABRIC_TEST_SLOT", "0"))
LAB_PREFIX = f"ovfe{SLOT}"
UNDERLAY = f"198.18.{40 + 2 * SLOT}.0/24"
MGMT = f"198.18.{41 + 2 * SLOT}.0/24"
# A slot's ports are API_PORT and OPENFLOW_PORT plus 0 to 9: tests that start a controller of
# their own take an offset of these, never a fixed port. Each pytest-xdist worker of a run
# (make test-unit) has ports of its own too.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
API_PORT = 18686 + 10 * SLOT + 1000 * WORKER
OPENFLOW_PORT = 16653 + 10 * SLOT + 1000 * WORKER

needs_lab = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ovs-vswitchd") is None,
    reason="needs root and Open vSwitch")
