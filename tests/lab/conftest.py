"""Fixtures for the tests on the namespace lab: one lab per session, a controller per module."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.slot import API_PORT, LAB_PREFIX, MGMT, OPENFLOW_PORT, UNDERLAY


HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    # The hook sees every test of the run: only those in this room need the lab.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.lab)


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


@contextmanager
def plugin_fabric(lab, state: str, token: str, api_port: int = API_PORT,
                  openflow_port: int = OPENFLOW_PORT, **controller_args):
    """A controller whose API the hosts' namespaces reach (where the plugins run), with a
    token, the lab's hosts registered; what its endpoints and networks were, removed after."""
    from lab.controller import ControllerProcess
    controller = ControllerProcess(state, lab.controller_ip, api_port, openflow_port,
                                   token=token, api_ip=lab.controller_ip, **controller_args)
    controller.start()
    try:
        controller.register(lab.hosts)
        fab = Fabric(lab, controller)
        yield fab
        fab.detach_all()
    finally:
        controller.stop()


@contextmanager
def cni_runtimes(fabric, tmp_path_factory, network: str, subnet: str, token: str, hosts,
                 ca_cert: str | None = None):
    """``network`` made, and a CNI runtime of each host with the plugin installed and its host
    token; the pods' namespaces removed after."""
    from lab.cni import CniRuntime, remove_sandboxes
    fabric.client.create_network(network, subnet)
    try:
        yield {h: CniRuntime.with_host_token(
            fabric.lab.host(h), str(tmp_path_factory.mktemp(f"cni-{h}")),
            fabric.controller.url, network, token, ca_cert=ca_cert) for h in hosts}
    finally:
        remove_sandboxes(fabric.lab.prefix)


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


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory):
    """Three etcd members on loopback (Debian's etcd-server) for the session's tests of the
    etcd store and replicas; each test wipes what it uses."""
    from lab.etcd import EtcdCluster
    from tests.slot import SLOT
    with EtcdCluster(tmp_path_factory.mktemp("etcd"), SLOT) as cluster:
        yield cluster


def wipe_etcd(cluster) -> None:
    """Everything ovsfabric keeps in etcd (state, claims, members, leader) deleted."""
    from cluster.etcd import EtcdClient, EtcdTarget, encode, prefix_end
    client = EtcdClient(EtcdTarget.parse(cluster.url))
    client.post("kv/deleterange", {"key": encode("/ovsfabric/"),
                                   "range_end": encode(prefix_end("/ovsfabric/"))})
