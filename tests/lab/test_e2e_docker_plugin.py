"""The Docker plugin on the lab, driven over its unix socket as dockerd drives it
(tests/dockerd.py), for what a real dockerd cannot be made to do: stop between CreateEndpoint
and Join or right after Leave, send bad requests, run the compose hosts' entrypoint. What
Docker does with the answers (the veth moved into a container namespace, renamed, address and
default route set) is done here too, and pings cross hosts through Open vSwitch. A real dockerd
drives the plugin in tests/lab/test_e2e_dockerd.py.

Run with a slot of your own: OVSFABRIC_TEST_SLOT=3 pytest tests/lab/test_e2e_docker_plugin.py
"""
from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab import netns
from lab.dockerd import LabDockerd
from lab.dockerhost import IDLE, IMAGE
from lab.plugin import PluginProcess
from lab.proc import run
from security import tokens
from tests.slot import API_PORT, MGMT, OPENFLOW_PORT, UNDERLAY, needs_lab
from tests.dockerd import Container, Dockerd, unix_transport
from tests.helpers import ROOT

pytestmark = [pytest.mark.lab, needs_lab]

TOKEN = "docker-plugin-e2e-token"
OPT = "ovsfabric.network"
SUBNET = "10.77.0.0/24"


class LabSandbox:
    """What Docker does with the interface a Join names, in a namespace per container."""

    def __init__(self, lab, host):
        self.lab, self.host = lab, host

    def netns(self, c: Container) -> str:
        return f"{self.lab.prefix}-{self.host.name}-{c.name}"

    def attach(self, c: Container) -> None:
        ns = self.netns(c)
        netns.add(ns)
        netns.ip("link", "set", c.src_name, "netns", ns, netns=self.host.netns)
        netns.ip("link", "set", c.src_name, "name", "eth0", netns=ns)
        if c.mac:
            netns.ip("link", "set", "eth0", "address", c.mac, netns=ns)
        netns.ip("addr", "add", c.address, "dev", "eth0", netns=ns)
        netns.ip("link", "set", "eth0", "up", netns=ns)
        netns.ip("route", "replace", "default", "via", c.gateway, "dev", "eth0", netns=ns)

    def detach(self, c: Container) -> None:
        """Back to the host, renamed to SrcName and down; then the sandbox goes."""
        ns = self.netns(c)
        netns.ip("link", "set", "eth0", "down", netns=ns)
        netns.ip("link", "set", "eth0", "name", c.src_name, netns=ns)
        netns.ip("link", "set", c.src_name, "netns", self.host.netns, netns=ns)
        netns.delete(ns)

    def ping(self, c: Container, ip: str, count: int = 3) -> bool:
        """True if replies came (the first packet may meet a port OVS is still adding)."""
        return run(["ping", "-n", "-q", "-c", count, "-i", "0.2", "-W", "2", ip],
                   netns=self.netns(c), check=False, timeout=30).returncode == 0


class DockerHost:
    def __init__(self, lab, host, url, workdir):
        self.host = host
        self.plugin = PluginProcess(host, url, os.path.join(workdir, f"{host.name}-plugin.sock"),
                                    os.path.join(workdir, f"{host.name}-plugin.log"),
                                    token=tokens.host_token(TOKEN, host.name))
        self.sandbox = LabSandbox(lab, host)
        self.docker = Dockerd(unix_transport(self.plugin.socket), self.sandbox)

    def links(self, prefix: str = "of") -> list[str]:
        out = netns.ip("-o", "link", "show", netns=self.host.netns).stdout
        names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
        return [n for n in names if n.startswith(("ofh", "ofc"))]


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    """A controller whose REST API listens on the lab's management address (a host namespace
    reaches nothing else of the root namespace), and plugins on h1 and h2."""
    from lab.controller import ControllerProcess
    workdir = str(tmp_path_factory.mktemp("docker"))
    controller = ControllerProcess(os.path.join(workdir, "ovsfabric.db"), lab.controller_ip,
                                   API_PORT, OPENFLOW_PORT, token=TOKEN,
                                   api_ip=lab.controller_ip)
    controller.start()
    hosts = {}
    try:
        controller.register(lab.hosts)
        for host in lab.hosts[:2]:
            hosts[host.name] = DockerHost(lab, host, controller.url, workdir)
            hosts[host.name].plugin.start()
        yield controller.client, hosts
    finally:
        for dh in hosts.values():
            for name in list(dh.docker.containers):
                try:
                    dh.docker.stop(name)
                except Exception:  # noqa: BLE001 - the lab's cleanup takes what is left
                    pass
            dh.plugin.kill(signal.SIGTERM)
        controller.stop()


def ovs_port(host, name: str) -> dict | None:
    """The br-int port `name` with its iface-id, None if not on the bridge."""
    if name not in host.vsctl("list-ports", "br-int").split():
        return None
    return {"iface-id": host.vsctl("get", "Interface", name, "external_ids:iface-id").strip()
            .strip('"'), "mtu": int(host.vsctl("get", "Interface", name, "mtu").strip())}


def link_mtu(ns: str, dev: str) -> int:
    return int(netns.ip("-o", "link", "show", dev, netns=ns).stdout.split(" mtu ")[1].split()[0])


# ---- the scenario, in order ------------------------------------------------------------------

def test_handshake_and_bad_requests_over_the_socket(env):
    _, hosts = env
    docker = hosts["h1"].docker
    found = docker.activate()
    assert found["implements"] == ["NetworkDriver", "IpamDriver"]
    assert found["network"] == {"Scope": "local", "ConnectivityScope": "global"}
    call = docker.transport
    assert call("NetworkDriver.NoSuchMethod", {})[0] == 404
    assert call("IpamDriver.RequestPool", None, raw=b"{nope")[0] == 400
    assert call("Plugin.Activate", None, verb="GET")[0] == 405
    status, payload = call("NetworkDriver.Join", {"NetworkID": "0" * 64, "EndpointID": "1" * 64,
                                                  "SandboxKey": "/x"})
    assert status == 500 and "not an ovsfabric network" in payload["Err"]
    status, payload = call("IpamDriver.RequestPool", {"Pool": "", "V6": False})
    assert status == 400 and "--subnet" in payload["Err"], "an IPAM error is never a 200"


def test_one_network_created_on_two_hosts(env):
    api, hosts = env
    # h1 names it as a driver option, h2 as an IPAM option: either correlates.
    n1 = hosts["h1"].docker.network_create("blue", SUBNET, driver_opts={OPT: "blue"})
    n2 = hosts["h2"].docker.network_create("blue", SUBNET, ipam_opts={OPT: "blue"})
    assert n1.gateway == n2.gateway == "10.77.0.1/24"
    blue = api.network("blue")
    assert {f"docker:h1:{n1.id}", f"docker:h2:{n2.id}"} <= set(blue["aliases"])
    assert [n["name"] for n in api.networks()] == ["blue"]


def test_containers_on_two_hosts_ping(env):
    api, hosts = env
    h1, h2 = hosts["h1"], hosts["h2"]
    ready = {}

    def before_join(c: Container, dh: DockerHost) -> None:
        """Between CreateEndpoint and Join: the port is on br-int, its flows installed."""
        ep = next(e for e in api.endpoints(host=dh.host.name) if e["name"] == c.endpoint_id)
        port = ovs_port(dh.host, ep["port"])
        live = [f for f in api.endpoint_flows(ep["id"])
                if f["host"] == dh.host.name and f.get("packets") is not None]
        # anti-spoofing (2), ARP reply, delivery, and its transit address out and back (2,
        # the way out of the fabric through the host's physical bridge)
        ready[c.name] = (port and port["iface-id"] == ep["id"], len(live) == 6)

    a = h1.docker.run("a", "blue", before_join=lambda c: before_join(c, h1))
    b = h2.docker.run("b", "blue", before_join=lambda c: before_join(c, h2))
    assert ready == {"a": (True, True), "b": (True, True)}
    assert a.address != b.address
    for dh, c in ((h1, a), (h2, b)):
        ep = next(e for e in api.endpoints(host=dh.host.name) if e["name"] == c.endpoint_id)
        assert link_mtu(dh.host.netns, ep["port"]) == 1450
        assert link_mtu(dh.sandbox.netns(c), "eth0") == 1450, "Docker never sets the MTU"
    assert h1.sandbox.ping(a, b.address.split("/")[0])
    assert h2.sandbox.ping(b, a.address.split("/")[0])
    assert h1.sandbox.ping(a, "10.77.0.1"), "the gateway answers ping in the fabric"
    assert h2.sandbox.ping(b, "10.77.0.1")


def test_parallel_runs_on_both_hosts(env):
    api, hosts = env
    h1, h2 = hosts["h1"], hosts["h2"]
    with ThreadPoolExecutor(6) as pool:
        runs = [(dh, pool.submit(dh.docker.run, f"p{i}", "blue"))
                for i in range(3) for dh in (h1, h2)]
        started = [(dh, r.result()) for dh, r in runs]
    addresses = [c.address for _, c in started] + [
        h1.docker.containers["a"].address, h2.docker.containers["b"].address]
    assert len(set(addresses)) == 8
    a = h1.docker.containers["a"].address.split("/")[0]
    with ThreadPoolExecutor(6) as pool:
        assert all(pool.map(lambda pair: pair[0].sandbox.ping(pair[1], a), started))


def test_plugin_restart_in_the_middle(env):
    api, hosts = env
    h1, h2 = hosts["h1"], hosts["h2"]

    def restart_plugin(_container):
        h2.plugin.kill()  # SIGKILL: its socket file stays behind
        assert os.path.exists(h2.plugin.socket)
        h2.plugin.start()

    # Between CreateEndpoint and Join, then a stop and a new network the new process never
    # saw created.
    c = h2.docker.run("r", "blue", before_join=restart_plugin)
    assert h2.sandbox.ping(c, h1.docker.containers["a"].address.split("/")[0])
    h2.plugin.kill()
    h2.plugin.start()
    h2.docker.stop("p0")
    assert not any(e["name"] == "p0" for e in api.endpoints())
    solo = h2.docker.network_create("solo", "10.78.0.0/24")
    h2.plugin.kill()
    h2.plugin.start()
    s = h2.docker.run("s", "solo")
    assert h2.sandbox.ping(s, "10.78.0.1")
    assert api.network(solo.id)["name"] == solo.id, "no option: a fabric network of its own"


def test_stop_deletes_the_veth_in_delete_endpoint_not_in_leave(env):
    api, hosts = env
    h1 = hosts["h1"]
    c = h1.docker.containers["p1"]
    ep = next(e for e in api.endpoints() if e["name"] == c.endpoint_id)
    seen = {}

    def after_leave(container):
        seen["in container"] = "eth0" in netns.ip("-o", "link", "show",
                                                  netns=h1.sandbox.netns(container)).stdout
        seen["port"] = ovs_port(h1.host, ep["port"]) is not None

    h1.docker.stop("p1", after_leave=after_leave)
    assert seen == {"in container": True, "port": True}
    assert ep["port"] not in h1.links() and c.src_name not in h1.links()
    assert ovs_port(h1.host, ep["port"]) is None
    assert all(e["id"] != ep["id"] for e in api.endpoints())
    assert c.address.split("/")[0] not in [r["ip"] for r in api.addresses("blue")]


def test_network_rm_on_every_host(env):
    api, hosts = env
    for dh in hosts.values():
        for name in list(dh.docker.containers):
            dh.docker.stop(name)
        for name in list(dh.docker.networks):
            dh.docker.network_rm(name)
        assert dh.links() == [], "every veth deleted"
        assert [p for p in dh.host.vsctl("list-ports", "br-int").split()
                if p.startswith("ofh")] == []
    assert api.endpoints() == []
    # A network of its own went with its Docker network; the named one stays, bare.
    assert [(n["name"], n["aliases"]) for n in api.networks()] == [("blue", [])]
    assert api.addresses("blue") == []


def test_compose_host_entrypoint_on_a_bare_namespace(env, lab):
    """compose/host_entrypoint.py does on a fresh "machine" (a namespace with a management
    and an underlay NIC, as a compose container has) what the lab does for its hosts, registers
    it, and becomes the plugin, which a real dockerd there uses: its container reaches one on
    h1 (ping and TCP)."""
    api, hosts = env
    h9 = types.SimpleNamespace(name="h9", netns=f"{lab.prefix}-h9",
                               rundir=os.path.join(lab.workdir, "h9"))
    mgmt_ip = str(ipaddress.ip_network(MGMT)[19])
    tunnel_ip = str(ipaddress.ip_network(UNDERLAY)[19])
    docker9 = LabDockerd(h9, lab.workdir)
    plugin_socket = docker9.plugin_socket()
    os.makedirs(h9.rundir)
    os.makedirs(docker9.plugin_dir)
    netns.add(h9.netns)
    entry = None
    try:
        for root_end, nic, bridge, ip, subnet in (
                (f"{lab.prefix}-m9", "eth0", lab.mgmt_bridge, mgmt_ip, MGMT),
                (f"{lab.prefix}-u9", "eth1", lab.ul_bridge, tunnel_ip, UNDERLAY)):
            netns.add_veth(root_end, nic, h9.netns)
            netns.no_ipv6(root_end)
            netns.ip("link", "set", root_end, "master", bridge, "up")
            netns.ip("addr", "add", f"{ip}/{subnet.split('/')[1]}", "dev", nic, netns=h9.netns)
            netns.ip("link", "set", nic, "up", netns=h9.netns)
        venv_bin = os.path.dirname(sys.executable)
        log_path = os.path.join(h9.rundir, "entry.log")
        with open(log_path, "w") as log:
            entry = subprocess.Popen(
                ["ip", "netns", "exec", h9.netns, sys.executable, "compose/host_entrypoint.py"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}",
                     "OVSFABRIC_HOST": "h9", "OVSFABRIC_CONTROLLER": hosts["h1"].plugin.url,
                     "OVSFABRIC_TOKEN": TOKEN, "OVSFABRIC_MGMT_IP": mgmt_ip,
                     "OVSFABRIC_TUNNEL_IP": tunnel_ip, "OVSFABRIC_RUNDIR": h9.rundir,
                     "OVSFABRIC_PLUGIN_SOCKET": plugin_socket})

        def up() -> bool:
            known = {h["name"]: h for h in api.hosts()}
            return known.get("h9", {}).get("connected", False) and os.path.exists(plugin_socket)

        deadline = time.monotonic() + 30
        while not up():
            assert entry.poll() is None, open(log_path).read()
            assert time.monotonic() < deadline, "h9 did not come up"
            time.sleep(0.1)
        assert api.host("h9")["ovsdb"] == f"tcp:{mgmt_ip}:6640"
        assert tunnel_ip in netns.ip("-o", "addr", "show", "br-phy", netns=h9.netns).stdout
        # As the lab does: the userspace tunnel drops what it sends before ARP resolved.
        h1 = lab.host("h1")
        mac = netns.ip("-br", "link", "show", "br-phy", netns=h9.netns).stdout.split()[2]
        h1.appctl("tnl/neigh/set", "br-phy", tunnel_ip, mac)

        docker9.start()
        docker9.import_busybox_image(IMAGE)
        docker9.docker("network", "create", "-d", "ovsfabric", "--ipam-driver", "ovsfabric",
                       "--subnet", "10.79.0.0/24", "-o", f"{OPT}=green", "green")
        hosts["h1"].docker.network_create("green", "10.79.0.0/24", ipam_opts={OPT: "green"})
        docker9.docker("run", "-d", "--name", "g9", "--network", "green", IMAGE, *IDLE)
        g1 = hosts["h1"].docker.run("g1", "green")
        g1_ip = g1.address.split("/")[0]
        docker9.docker("exec", "g9", "ping", "-c", "3", "-W", "2", g1_ip)  # fails if no reply
        listener = subprocess.Popen(["ip", "netns", "exec", hosts["h1"].sandbox.netns(g1),
                                     "busybox", "nc", "-l", "-p", "7000"],
                                    stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            docker9.docker("exec", "g9", "sh", "-c", f"echo compose-tcp | nc -w 2 {g1_ip} 7000")
            assert listener.communicate(timeout=10)[0].strip() == "compose-tcp"
        finally:
            listener.kill()
        docker9.docker("rm", "-f", "g9")
        hosts["h1"].docker.stop("g1")
        docker9.docker("network", "rm", "green")
        hosts["h1"].docker.network_rm("green")
        api.delete_host("h9")
    finally:
        docker9.stop()
        netns.delete(h9.netns)  # stops the plugin and the OVS daemons inside
        for root_end in (f"{lab.prefix}-m9", f"{lab.prefix}-u9"):
            netns.ip("link", "del", root_end, check=False)
        if entry is not None:
            entry.wait(timeout=10)
