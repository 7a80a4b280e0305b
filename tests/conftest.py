"""Fixtures for the end-to-end tests: one namespace lab per session, a controller per module."""
from __future__ import annotations

import os
import re
import shutil

import pytest

import flows.compiler

# Every flow the compiler emits in a test keeps to the declared pipeline (flows.conformance).
flows.compiler.check_flows = True

# Several test runs can share a machine (e.g. two developers' sessions): each takes a slot,
# which gives it its own lab prefix, subnets and ports.
SLOT = int(os.environ.get("OVSFABRIC_TEST_SLOT", "0"))
LAB_PREFIX = f"ovfe{SLOT}"
UNDERLAY = f"198.18.{40 + 2 * SLOT}.0/24"
MGMT = f"198.18.{41 + 2 * SLOT}.0/24"
API_PORT = 18686 + 10 * SLOT
OPENFLOW_PORT = 16653 + 10 * SLOT

needs_lab = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ovs-vswitchd") is None,
    reason="needs root and Open vSwitch")


@pytest.fixture(scope="session")
def lab():
    from lab import Lab
    lab = Lab(n_hosts=3, prefix=LAB_PREFIX, underlay_subnet=UNDERLAY, mgmt_subnet=MGMT)
    lab.up()
    yield lab
    lab.down()


class Fabric:
    """A running controller on the lab, with helpers to make containers its endpoints."""

    def __init__(self, lab, controller):
        self.lab = lab
        self.controller = controller
        self.client = controller.client
        self.containers = []

    def attach(self, host: str, name: str, network: str, **fields):
        container = self.lab.add_container(host, name)
        self.containers.append(container)
        ep = self.client.create_endpoint(network, host, port=container.port, **fields)
        container.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"])
        return container, ep

    def detach_all(self) -> None:
        for ep in self.client.endpoints():
            self.client.delete_endpoint(ep["id"])
        for container in self.containers:
            self.lab.remove_container(container)
        self.containers.clear()
        for net in self.client.networks():
            self.client.delete_network(net["id"])


@pytest.fixture(scope="module")
def fabric(lab, tmp_path_factory):
    """A fresh controller and state per module, on the session's lab, hosts registered."""
    from lab.controller import ControllerProcess
    state = str(tmp_path_factory.mktemp("state") / "ovsfabric.db")
    controller = ControllerProcess(state, lab.controller_ip, API_PORT, OPENFLOW_PORT)
    controller.start()
    try:
        controller.register(lab.hosts)
        fab = Fabric(lab, controller)
        yield fab
        if controller.proc is not None:
            fab.detach_all()
    finally:
        controller.stop()


_VOLATILE = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*")


def flow_table(host) -> list[str]:
    """The host's br-int flows as ovs-ofctl prints them, counters removed, sorted."""
    lines = [line for line in host.ofctl("dump-flows").splitlines() if "actions=" in line]
    return sorted(_VOLATILE.sub("", line).strip() for line in lines)
