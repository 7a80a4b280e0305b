"""Fixtures for the tests on the namespace lab: one lab per session, a controller per module."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.slot import API_PORT, LAB_PREFIX, MGMT, OPENFLOW_PORT, SLOT, UNDERLAY


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


# The session's etcd, for controllers that keep their state there (`serve --store`). Its
# members take the slot's etcd ports from this one on, so that the modules that run an etcd of
# their own (test_etcd_store.py, test_cluster_election.py: they kill its members) can do so
# while it runs.
SHARED_ETCD_FIRST = 10


@pytest.fixture(scope="session")
def shared_etcd(tmp_path_factory):
    """A 3-member etcd (lab/etcd.py), started the first time a module asks for it and stopped
    at the end of the session; each user wipes what it needs wiped (wipe_etcd_state)."""
    from lab.etcd import EtcdCluster
    with EtcdCluster(tmp_path_factory.mktemp("shared-etcd"), SLOT,
                     first=SHARED_ETCD_FIRST) as cluster:
        yield cluster


def wipe_etcd_state(url: str) -> None:
    """Everything ovsfabric keeps on the etcd at ``url`` deleted: the state, the schema
    version, the members and the leader key (the prefix /ovsfabric/). Leases stay until they
    expire, with nothing attached."""
    from cluster.etcd import EtcdClient, EtcdTarget, encode, prefix_end
    from cluster.etcd_store import ROOT
    EtcdClient(EtcdTarget.parse(url)).post(
        "kv/deleterange", {"key": encode(ROOT), "range_end": encode(prefix_end(ROOT))})


def forget_generations(lab) -> None:
    """What a controller with a term leaves in the lab's hosts, removed: the OVSDB fence
    (ovsdb/fence.py), and the highest generation_id each switch was asked a role with, which
    OVS keeps until ovs-vswitchd restarts and holds against every later role request
    (docs/replicas.md). A later module's terms start low again (tests/lab/replica.py: 5)."""
    from ovsdb.fence import GENERATION_KEY
    for host in lab.hosts:
        host.vsctl("--if-exists", "remove", "Open_vSwitch", ".", "external_ids",
                   GENERATION_KEY)
        host.stop_vswitchd()
        host.start_vswitchd()
    lab.seed_tunnel_neighbours()


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


@contextmanager
def controller_fabric(lab, state: str, store: str | None = None):
    """A controller on the lab, hosts registered: its state in the SQLite file ``state``, or
    on the etcd ``store`` (etcd://...; then ``state`` only names its log). What its endpoints
    and networks were, removed after, unless the controller is down then."""
    from lab.controller import ControllerProcess
    controller = ControllerProcess(state, lab.controller_ip, API_PORT, OPENFLOW_PORT,
                                   store=store)
    controller.start()
    try:
        controller.register(lab.hosts)
        fab = Fabric(lab, controller)
        yield fab
        if controller.proc is not None:
            fab.detach_all()
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def fabric(lab, tmp_path_factory):
    """A fresh controller and state per module, on the session's lab, hosts registered."""
    with controller_fabric(lab, str(tmp_path_factory.mktemp("state") / "ovsfabric.db")) as fab:
        yield fab
