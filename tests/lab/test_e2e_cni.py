"""The CNI plugin executed as runtimes execute it, on real OVS hosts: every verb, its results
and its errors, and what it leaves behind."""
from __future__ import annotations

import pytest

from lab import netns
from lab.cni import CniRuntime, sandbox
from security import tokens
from tests.lab.conftest import Fabric
from tests.slot import API_PORT, LAB_PREFIX, OPENFLOW_PORT

NETWORK = "cni-red"
SUBNET = "10.77.0.0/24"
TOKEN = "cni-e2e-token"


@pytest.fixture(scope="module")
def fabric(lab, tmp_path_factory):
    """A controller whose API the hosts' namespaces reach (the plugin runs there)."""
    from lab.controller import ControllerProcess
    state = str(tmp_path_factory.mktemp("state") / "ovsfabric.db")
    controller = ControllerProcess(state, lab.controller_ip, API_PORT, OPENFLOW_PORT,
                                   token=TOKEN, api_ip=lab.controller_ip)
    controller.start()
    try:
        controller.register(lab.hosts)
        fab = Fabric(lab, controller)
        yield fab
        fab.detach_all()
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def runtimes(fabric, tmp_path_factory):
    fabric.client.create_network(NETWORK, SUBNET)
    made = {}
    for h in ("h1", "h2"):
        workdir = tmp_path_factory.mktemp(f"cni-{h}")
        token_file = workdir / "token"
        token_file.write_text(tokens.host_token(TOKEN, h))
        made[h] = CniRuntime(fabric.lab.host(h), str(workdir), fabric.controller.url, NETWORK,
                             token_file=str(token_file))
    yield made
    for h, runtime in made.items():
        for name in netns.names(f"{LAB_PREFIX}-p{h}"):
            netns.delete(name)


def pod(runtime: CniRuntime, name: str) -> str:
    return sandbox(f"{LAB_PREFIX}-p{runtime.host.name}{name}")


def ping(netns_path: str, ip: str) -> bool:
    name = netns_path.rsplit("/", 1)[1]
    return netns.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", ip], netns=name,
                     check=False).returncode == 0


def test_add_attaches_across_hosts_and_del_removes_everything(fabric, runtimes):
    a_ns, b_ns = pod(runtimes["h1"], "a"), pod(runtimes["h2"], "b")
    a = runtimes["h1"].add("ctr-a", a_ns, args="IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;"
                                             "K8S_POD_NAME=web-1")
    b = runtimes["h2"].add("ctr-b", b_ns)
    assert a.status == 0, a.output
    assert b.status == 0, b.output
    result = a.output
    assert result["cniVersion"] == "1.0.0"
    host_if, pod_if = result["interfaces"]
    assert host_if["name"].startswith("ofn") and "sandbox" not in host_if
    assert pod_if == {"name": "eth0", "mac": pod_if["mac"], "sandbox": a_ns}
    ip = result["ips"][0]
    assert ip["interface"] == 1 and ip["gateway"] == "10.77.0.1"
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}]
    ep = next(e for e in fabric.client.endpoints(host="h1") if e["port"] == host_if["name"])
    assert ep["name"] == "ctr-a-eth0"
    assert ep["labels"] == {"K8S_POD_NAMESPACE": "shop", "K8S_POD_NAME": "web-1"}
    assert f"{ep['ip']}/{ep['prefix_len']}" == ip["address"]
    assert ping(a_ns, b.output["ips"][0]["address"].split("/")[0])

    for runtime, cid, ns in ((runtimes["h1"], "ctr-a", a_ns), (runtimes["h2"], "ctr-b", b_ns)):
        assert runtime.delete(cid, ns).status == 0
        assert runtime.delete(cid, ns).status == 0  # idempotent
        assert runtime.host_veths() == [] and runtime.ovs_ports() == []
    assert fabric.client.endpoints(network=NETWORK) == []
