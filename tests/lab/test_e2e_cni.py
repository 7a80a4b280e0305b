"""The CNI plugin executed as runtimes execute it, on real OVS hosts: every verb, its results
and its errors, and what it leaves behind."""
from __future__ import annotations

import os
import signal
import time

import pytest

from lab import netns
from lab.cni import CniRuntime, Sandbox, sandbox
from lab.traffic import Server, tcp_connects, udp_ask
from security import certs
from tests.lab.conftest import cni_runtimes, plugin_fabric
from tests.slot import LAB_PREFIX

NETWORK = "cni-red"
SUBNET = "10.77.0.0/24"
TOKEN = "cni-e2e-token"


@pytest.fixture(scope="module")
def fabric(lab, tmp_path_factory):
    """Over HTTPS with a token, as in production."""
    state = str(tmp_path_factory.mktemp("state") / "ovsfabric.db")
    pki = str(tmp_path_factory.mktemp("pki"))
    certs.make_ca(pki)
    certs.make_cert(pki, "api", [lab.controller_ip])
    with plugin_fabric(lab, state, TOKEN, scheme="https", ca_cert=f"{pki}/ca.pem",
                       extra_args=("--api-cert", f"{pki}/api.pem",
                                   "--api-key", f"{pki}/api-key.pem")) as fab:
        yield fab


@pytest.fixture(scope="module")
def runtimes(fabric, tmp_path_factory):
    with cni_runtimes(fabric, tmp_path_factory, NETWORK, SUBNET, TOKEN, ("h1", "h2"), ca_cert=fabric.controller.verify) as made:
        yield made


def pod(runtime: CniRuntime, name: str) -> str:
    return sandbox(LAB_PREFIX, f"{runtime.host.name}{name}")


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
    b_ip = b.output["ips"][0]["address"].split("/")[0]
    assert ping(a_ns, b_ip)
    server = Server(Sandbox(b_ns), tcp=(5000,), udp=(5001,))
    try:  # TCP and UDP too: the plugin's checksum setting is what lets them through
        assert tcp_connects(Sandbox(a_ns), b_ip, 5000)
        assert udp_ask(Sandbox(a_ns), b_ip, 5001) == "echo"
    finally:
        server.close()

    for runtime, cid, ns in ((runtimes["h1"], "ctr-a", a_ns), (runtimes["h2"], "ctr-b", b_ns)):
        assert runtime.delete(cid, ns).status == 0
        assert runtime.delete(cid, ns).status == 0  # idempotent
        assert runtime.host_veths() == [] and runtime.ovs_ports() == []
    assert fabric.client.endpoints(network=NETWORK) == []


def endpoints_named(fabric, name: str) -> list[dict]:
    return [ep for ep in fabric.client.endpoints(network=NETWORK) if ep["name"] == name]


def test_check_passes_and_then_names_what_is_not_as_the_result_says(fabric, runtimes):
    runtime = runtimes["h1"]
    ns = pod(runtime, "chk")
    added = runtime.add("ctr-chk", ns)
    assert added.status == 0, added.output
    prev = added.output

    def check(**extra):
        return runtime.exec("CHECK", runtime.config(prevResult=prev, **extra), "ctr-chk", ns)

    assert check().status == 0, check().output
    name = ns.rsplit("/", 1)[1]
    netns.ip("route", "del", "default", netns=name)
    failed = check()
    assert failed.status == 1 and failed.error["code"] == 101
    assert "default route is not through 10.77.0.1" in failed.error["msg"]
    netns.ip("addr", "flush", "dev", "eth0", netns=name)
    assert f"no address {prev['ips'][0]['address']}" in check().error["msg"]
    (ep,) = endpoints_named(fabric, "ctr-chk-eth0")
    cookies = {f["cookie"] for f in fabric.client.endpoint_flows(ep["id"]) if f["host"] == "h1"}
    assert cookies
    for cookie in cookies:  # behind the controller's back
        runtime.host.ofctl("del-flows", f"cookie={cookie}/-1")
    assert "of its endpoint's flows are missing or different on h1" in check().error["msg"]
    fabric.client.delete_endpoint(ep["id"])
    assert "endpoint ctr-chk-eth0 does not exist" in check().error["msg"]
    assert runtime.exec("CHECK", runtime.config(version="0.3.1", prevResult=prev), "ctr-chk",
                        ns).error["code"] == 2  # CHECK came with 0.4.0
    assert runtime.delete("ctr-chk", ns).status == 0
    assert runtime.host_veths() == []


def test_status_is_50_while_the_controller_cannot_be_reached(runtimes):
    runtime = runtimes["h1"]
    assert runtime.exec("STATUS", runtime.config(version="1.1.0")).status == 0
    away = runtime.config(version="1.1.0", controller="http://127.0.0.1:9")
    outcome = runtime.exec("STATUS", away)
    assert outcome.status == 1 and outcome.error["code"] == 50
    assert "cannot reach the ovsfabric controller" in outcome.error["msg"]
    unknown = runtime.exec("STATUS", runtime.config(version="1.1.0", network="nowhere"))
    assert unknown.error["code"] == 50 and "nowhere" in unknown.error["msg"]


@pytest.mark.parametrize("config, env, code, says", [
    (b"{not json", {}, 6, "not JSON"),
    (None, {"netns_path": ""}, 4, "CNI_NETNS"),
    ({"network": "nowhere"}, {}, 7, "nowhere"),
    ({"controller": "http://127.0.0.1:9"}, {}, 11, "cannot reach"),
    ({"token_file": "/nonexistent"}, {}, 7, "token_file"),
    ({"mtu": 9000}, {}, 7, "mtu 9000"),
    ({"ca_cert": "other-ca"}, {}, 7, "is not the one ca_cert signs"),
])
def test_errors_are_the_spec_s_json_and_leave_nothing_behind(fabric, runtimes, config, env,
                                                              code, says, tmp_path):
    runtime = runtimes["h1"]
    ns = pod(runtime, f"err{code}")
    try:
        if config == {"ca_cert": "other-ca"}:
            other = tmp_path / "other-ca"
            other.mkdir()
            certs.make_ca(str(other))
            config = {"ca_cert": str(other / "ca.pem")}
        if isinstance(config, dict):
            config = runtime.config(**config)
        outcome = runtime.exec("ADD", config, "ctr-err", **{"netns_path": ns, **env})
        assert outcome.status == 1
        assert outcome.error["code"] == code and says in outcome.error["msg"], outcome.error
        # The configuration's version, unless it could not be read.
        assert outcome.error["cniVersion"] == ("1.1.0" if isinstance(config, bytes)
                                               else "1.0.0")
        assert runtime.host_veths() == [] and runtime.ovs_ports() == []
        assert endpoints_named(fabric, "ctr-err-eth0") == []
        assert len(netns.ip("-o", "link", "show", netns=ns.rsplit("/", 1)[1]
                            ).stdout.splitlines()) == 1  # lo only
    finally:
        netns.delete(ns.rsplit("/", 1)[1])


def test_port_mappings_become_published_ports_and_go_with_del(fabric, runtimes):
    runtime = runtimes["h2"]
    ns = pod(runtime, "pub")
    mappings = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 18053, "containerPort": 53, "protocol": "udp"}]
    added = runtime.exec("ADD", runtime.config(runtimeConfig={"portMappings": mappings}),
                         "ctr-pub", ns)
    assert added.status == 0, added.output
    (ep,) = endpoints_named(fabric, "ctr-pub-eth0")
    published = sorted((p["protocol"], p["port"], p["host_port"])
                       for p in fabric.client.published(ep["id"]))
    assert published == [("tcp", 80, 18080), ("udp", 53, 18053)]
    # A host port taken already: the second ADD fails whole.
    other = pod(runtime, "pub2")
    clash = runtime.exec("ADD", runtime.config(runtimeConfig={"portMappings": mappings[:1]}),
                         "ctr-pub2", other)
    assert clash.status == 1 and "18080" in clash.error["msg"], clash.output
    assert endpoints_named(fabric, "ctr-pub2-eth0") == []
    assert runtime.delete("ctr-pub", ns).status == 0
    assert endpoints_named(fabric, "ctr-pub-eth0") == [] and runtime.host_veths() == []


def test_gc_removes_what_the_runtime_no_longer_holds(fabric, runtimes):
    runtime = runtimes["h1"]
    pods = {cid: pod(runtime, cid) for cid in ("gc1", "gc2", "gc3")}
    for cid, ns in pods.items():
        assert runtime.add(cid, ns).status == 0
    # Another runtime's attachment to the same fabric network: under its own configuration.
    others = runtime.config(name="other-runtime")
    other_pod = pod(runtime, "gcother")
    assert runtime.exec("ADD", others, "gcother", other_pod).status == 0
    # What a killed ADD leaves before its endpoint exists: a veth with the plugin's alias.
    from cni.naming import alias, endpoint_name, host_veth
    stray = host_veth(endpoint_name("gc4", "eth0"))
    netns.ip("link", "add", stray, "type", "veth", "peer", "name", "ofcstray",
             netns=runtime.host.netns)
    netns.ip("link", "set", stray, "alias", alias(NETWORK, "gc4", "eth0"),
             netns=runtime.host.netns)
    gc = runtime.exec("GC", runtime.config(
        version="1.1.0", **{"cni.dev/valid-attachments": [
            {"containerID": "gc2", "ifname": "eth0"}]}))
    assert gc.status == 0, gc.output
    names = [ep["name"] for ep in fabric.client.endpoints(network=NETWORK, host="h1")]
    assert sorted(names) == ["gc2-eth0", "gcother-eth0"]
    kept = sorted([host_veth("gc2-eth0"), host_veth("gcother-eth0")])
    assert sorted(runtime.host_veths()) == kept and sorted(runtime.ovs_ports()) == kept
    assert runtime.exec("DEL", others, "gcother", other_pod).status == 0
    other = runtimes["h2"]
    far = pod(other, "gcfar")
    far_ip = other.add("gcfar", far).output["ips"][0]["address"].split("/")[0]
    assert ping(pods["gc2"], far_ip)
    for r, cid, ns in ((runtime, "gc2", pods["gc2"]), (other, "gcfar", far)):
        assert r.delete(cid, ns).status == 0


def test_it_chains_before_tuning_bandwidth_and_portmap(fabric, runtimes):
    runtime = runtimes["h1"]
    ns = pod(runtime, "chain")
    plugins = [runtime.conflist["plugins"][0],
               {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
               {"type": "bandwidth", "capabilities": {"bandwidth": True}},
               {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False}]
    runtime_config = {"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 100_000,
                                    "egressRate": 8_000_000, "egressBurst": 100_000}}
    outcomes = runtime.chain("ADD", plugins, "ctr-chain", ns, runtime_config=runtime_config)
    assert [o.status for o in outcomes] == [0, 0, 0, 0], [o.output for o in outcomes]
    ours = outcomes[0].output
    for later in outcomes[1:]:
        for key in ("interfaces", "ips", "routes"):
            assert later.output[key][:len(ours[key])] == ours[key]
    name = ns.rsplit("/", 1)[1]
    assert netns.run(["sysctl", "-n", "net.ipv4.conf.eth0.arp_notify"],
                     netns=name).stdout.strip() == "1"
    host_end = ours["interfaces"][0]["name"]
    assert "tbf" in netns.ip("-o", "link", "show", host_end, netns=runtime.host.netns).stdout
    deleted = runtime.chain("DEL", plugins, "ctr-chain", ns, prev_result=outcomes[-1].output)
    assert [o.status for o in deleted] == [0, 0, 0, 0], [o.output for o in deleted]
    assert endpoints_named(fabric, "ctr-chain-eth0") == [] and runtime.host_veths() == []


def test_a_controller_killed_during_an_add_leaves_nothing_and_the_retry_succeeds(
        fabric, runtimes):
    runtime = runtimes["h1"]
    ns = pod(runtime, "kill")
    # Without PATH: a runtime may pass none, and the plugin still finds its tools.
    adding = runtime.start("ADD", None, "ctr-kill", ns, with_path=False)
    deadline = time.monotonic() + 10
    while not runtime.host_veths() and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(fabric.controller.proc.pid, signal.SIGKILL)  # the ADD is in its REST calls
    fabric.controller.proc.wait()
    outcome = adding.outcome(30)
    assert outcome.status == 1 and outcome.error["code"] == 11, outcome.output
    assert runtime.host_veths() == [] and runtime.ovs_ports() == []
    fabric.controller.start()
    fabric.controller.wait_connected([h.name for h in fabric.lab.hosts])
    retried = runtime.add("ctr-kill", ns)
    assert retried.status == 0, retried.output
    assert len(endpoints_named(fabric, "ctr-kill-eth0")) == 1
    assert len(runtime.host_veths()) == 1
    assert runtime.delete("ctr-kill", ns).status == 0
    assert endpoints_named(fabric, "ctr-kill-eth0") == [] and runtime.host_veths() == []


def test_a_del_the_controller_misses_removes_the_veth_and_asks_again(fabric, runtimes):
    runtime = runtimes["h2"]
    ns = pod(runtime, "del")
    assert runtime.add("ctr-del", ns).status == 0
    away = runtime.exec("DEL", runtime.config(controller="http://127.0.0.1:9"), "ctr-del", ns)
    assert away.status == 1 and away.error["code"] == 11
    assert runtime.host_veths() == [] and len(endpoints_named(fabric, "ctr-del-eth0")) == 1
    netns.delete(ns.rsplit("/", 1)[1])  # the pod is gone by the time the runtime retries
    assert runtime.delete("ctr-del", "").status == 0
    assert endpoints_named(fabric, "ctr-del-eth0") == [] and runtime.ovs_ports() == []


def test_an_interface_name_taken_in_the_pod_is_refused_and_nothing_is_left(fabric, runtimes):
    runtime = runtimes["h1"]
    ns = pod(runtime, "taken")
    netns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "other0",
             netns=ns.rsplit("/", 1)[1])
    outcome = runtime.add("ctr-taken", ns)
    assert outcome.status == 1 and outcome.error["code"] == 102, outcome.output
    assert "eth0 exists" in outcome.error["msg"]
    assert runtime.host_veths() == [] and endpoints_named(fabric, "ctr-taken-eth0") == []


def test_the_host_end_sends_no_ipv6_of_the_host_s_to_the_pod(fabric, runtimes):
    runtime = runtimes["h2"]
    host_ns = runtime.host.netns
    netns.sysctl(host_ns, **{"net.ipv6.conf.default.disable_ipv6": 0})  # as on most nodes
    try:
        ns = pod(runtime, "six")
        added = runtime.add("ctr-six", ns)
        assert added.status == 0, added.output
        host_end = added.output["interfaces"][0]["name"]
        assert netns.run(["sysctl", "-n", f"net.ipv6.conf.{host_end}.disable_ipv6"],
                         netns=host_ns).stdout.strip() == "1"
        assert runtime.delete("ctr-six", ns).status == 0
    finally:
        netns.sysctl(host_ns, **{"net.ipv6.conf.default.disable_ipv6": 1})
