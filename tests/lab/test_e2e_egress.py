"""Egress and published ports with real packets: an "outside" namespace on the underlay (no
fabric host) runs TCP servers and a capture; containers reach it from their own host's
address, it reaches published ports, and a controller killed and restarted loses no
connection of either kind."""
from __future__ import annotations

import ipaddress
import re
import signal
import subprocess
import time

import pytest
import requests

from flows.pipeline import NAT_ZONE
from lab.outside import ECHO_PORT, WHO_PORT, next_hop_outside, start_servers
from lab.proc import stop_pid
from ovsdb.config import NEXT_HOP_BINDING_KEY, PHYSICAL_BRIDGE
from tests.helpers import eventually, flow_table
from tests.lab.ofproto_trace import both_traces
from tests.slot import UNDERLAY, needs_lab

pytestmark = [pytest.mark.lab, needs_lab]

OUTSIDE_IP = str(ipaddress.ip_network(UNDERLAY)[200])

# A client in a container: connects, sends a line every 20 ms for SECONDS, checks each echo;
# prints how many came back and exits 1 on the first error or missing echo.
_STREAM = """
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((host, port), timeout=3)
f = s.makefile("rb")
n, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    line = b"%d\\n" % n
    s.sendall(line)
    if f.readline() != line:
        print(n, "bad echo"); sys.exit(1)
    n += 1
    time.sleep(0.02)
print(n)
"""


@pytest.fixture(scope="module")
def outside(lab, fabric):
    # The outside is on the underlay: it is the next hop itself. The host says so in its
    # physical bridge's external_ids; the controller resolves its MAC.
    with next_hop_outside(lab) as out:
        yield out


@pytest.fixture(scope="module")
def egress_net(fabric, outside):
    network = fabric.client.create_network("egress", "10.60.0.0/24")
    containers = {}
    for host in ("h1", "h2"):
        c, ep = fabric.attach(host, f"eg{host[-1]}", "egress")
        c.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"], gateway=network["gateway"])
        containers[host] = (c, ep)
    return network, containers


@pytest.fixture(scope="module")
def published(fabric, egress_net):
    """The container on h1 serves on 80 (who) and 81 (echo), published on 8081 and 8091."""
    _, containers = egress_net
    c, ep = containers["h1"]
    servers = start_servers(c.netns, 80, 81)
    try:
        yield c, ep
    finally:
        stop_pid(servers.pid)
        servers.wait()


def binding(host) -> str:
    return host.vsctl("--if-exists", "get", "Bridge", PHYSICAL_BRIDGE,
                      f"external_ids:{NEXT_HOP_BINDING_KEY}").strip().strip('"')


def who_am_i(container, address: str = OUTSIDE_IP, port: int = WHO_PORT) -> str | None:
    """The address and port the outside's server saw the container's connection from."""
    code = ("import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),"
            "timeout=2);print(s.recv(100).decode().strip())")
    result = container.exec("python3", "-c", code, address, str(port), check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def physical_table(host) -> list[str]:
    lines = [line for line in host.ofctl("dump-flows", bridge=PHYSICAL_BRIDGE).splitlines()
             if "actions=" in line]
    return sorted(re.sub(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ?", "", line)
                  .strip() for line in lines)


def flow_mods(fabric, name: str) -> float:
    text = requests.get(fabric.controller.url + "/metrics", timeout=5).text
    m = re.search(r'^ovsfabric_flow_mods_sent_total\{host="%s"\} (\S+)' % re.escape(name),
                  text, re.M)
    return float(m.group(1)) if m else 0.0


def test_the_physical_bridge_is_the_controllers_and_forwards_as_before(fabric, lab, outside):
    h1 = lab.host("h1")
    assert eventually(lambda: h1.vsctl("get", "Bridge", PHYSICAL_BRIDGE,
                                       "fail_mode").strip() == "secure", 10)
    table = physical_table(h1)
    assert any("priority=0" in line and "actions=NORMAL" in line for line in table), table
    view = fabric.client.host("h1")["physical"]
    assert view["fail_secure"] and view["flows"] == len(table), view
    # The host's own address still answers from the outside; tunnels still carry (the lab's
    # other tests hold them to that).
    assert outside.exec("ping", "-c2", "-W1", "-i0.2", h1.tunnel_ip, check=False).returncode == 0


def test_the_controller_resolves_the_next_hop_through_the_switch(fabric, lab, outside):
    # An ARP request by packet-out, the reply by packet-in; the binding kept in OVSDB.
    for host in lab.hosts:
        assert eventually(lambda: binding(host) == f"{OUTSIDE_IP}={outside.mac}", 10), \
            (host.name, binding(host))
        to_outside = [line for line in host.ofctl("dump-flows", "table=19").splitlines()
                      if f"set_field:{outside.mac}->eth_dst" in line]
        assert to_outside, host.name


def test_egress_leaves_from_each_containers_own_host_and_the_reply_arrives(
        fabric, lab, outside, egress_net):
    _, containers = egress_net
    for host, (c, _) in containers.items():
        capture = outside.capture(f"tcp port {WHO_PORT}")
        seen = eventually(lambda: who_am_i(c), 10)
        lines = capture.stop()
        address = lab.host(host).tunnel_ip
        assert seen is not None, f"no answer from the outside to the container on {host}"
        assert seen.split()[0] == address, seen  # the server saw the host's address
        assert any(f"{address}." in line and f"> {OUTSIDE_IP}.{WHO_PORT}" in line
                   for line in lines), lines
        assert not any(c.ip in line for line in lines), "no container address leaves"
        assert c.ping(OUTSIDE_IP, count=2, timeout=2), f"ping from {host} to the outside"


def test_a_routed_network_leaves_through_its_router_from_its_host(fabric, lab, outside):
    api = fabric.client
    network = api.create_network("routed", "10.62.0.0/24")
    api.create_router("rx")
    api.attach_network("rx", "routed")
    try:
        c, ep = fabric.attach("h2", "rt2", "routed")
        c.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"],
                    gateway=network["gateway"])
        capture = outside.capture(f"tcp port {WHO_PORT}", verbose=True)
        seen = eventually(lambda: who_am_i(c), 10)
        lines = capture.stop()
        assert seen is not None and seen.split()[0] == lab.host("h2").tunnel_ip, seen
        # Routed once on the way out: the TTL the container sent (64) less one.
        headers = [line for line in lines if "proto TCP" in line]
        sources = [line for line in lines if f"> {OUTSIDE_IP}.{WHO_PORT}" in line]
        assert sources and all(line.split()[0].startswith(lab.host("h2").tunnel_ip + ".")
                               for line in sources), sources
        assert headers and any("ttl 63" in line for line in headers), headers
    finally:
        api.detach_network("rx", "routed")
        api.delete_router("rx")


def connect_from_outside(outside, address: str, port: int) -> str | None:
    code = ("import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),"
            "timeout=2);print(s.recv(100).decode().strip())")
    result = outside.exec("python3", "-c", code, address, str(port), check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def test_without_egress_nothing_leaves_and_turning_it_on_opens_the_way(
        fabric, lab, outside, egress_net):
    fabric.client.create_network("closed", "10.61.0.0/24", egress=False)
    network = fabric.client.network("closed")
    assert network["egress"] is False
    c, ep = fabric.attach("h1", "cl1", "closed")
    c.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"], gateway=network["gateway"])
    open_c, _ = egress_net[1]["h1"]
    capture = outside.capture(f"tcp port {WHO_PORT}")
    assert who_am_i(open_c), "positive control: an egress network's container gets out"
    tries = [who_am_i(c) for _ in range(3)]
    assert not c.ping(OUTSIDE_IP, count=2, timeout=1), "no ping out either"
    lines = capture.stop()
    assert tries == [None] * 3
    sources = {line.split()[2].rsplit(".", 1)[0] for line in lines if " > " in line}
    assert sources <= {lab.host("h1").tunnel_ip, OUTSIDE_IP}
    # Exactly the positive control's connection was captured: 3 segments out at least.
    assert len([line for line in lines if f"> {OUTSIDE_IP}.{WHO_PORT}" in line]) >= 3
    outbound_before = len([line for line in lines if f"> {OUTSIDE_IP}.{WHO_PORT}" in line])
    fabric.client.set_network_egress("closed", True)
    capture = outside.capture(f"tcp port {WHO_PORT}")
    seen = eventually(lambda: who_am_i(c), 10)
    more = capture.stop()
    assert seen is not None and seen.split()[0] == lab.host("h1").tunnel_ip
    assert len([line for line in more if f"> {OUTSIDE_IP}.{WHO_PORT}" in line]) >= 3, \
        (outbound_before, more)


def test_a_published_port_is_reachable_from_outside_and_not_after_delete(
        fabric, lab, outside, published):
    _, ep = published
    address = lab.host("h1").tunnel_ip
    fabric.client.publish(ep["id"], "tcp", 80, 8081)
    assert [p["host_port"] for p in fabric.client.published(ep["id"])] == [8081]
    seen = eventually(lambda: connect_from_outside(outside, address, 8081), 10)
    assert seen is not None and seen.split()[0] == OUTSIDE_IP, seen  # its real address
    # Another host's address does not publish it.
    assert connect_from_outside(outside, lab.host("h2").tunnel_ip, 8081) is None
    fabric.client.unpublish(ep["id"], "tcp", 8081)
    assert fabric.client.published(ep["id"]) == []
    assert eventually(lambda: connect_from_outside(outside, address, 8081) is None, 5)
    for host in lab.hosts:
        assert "tp_dst=8081" not in host.ofctl("dump-flows")
        assert "tp_dst=8081" not in host.ofctl("dump-flows", bridge=PHYSICAL_BRIDGE)
        audit = fabric.client.audit(host.name)  # both bridges as the controller wants them
        assert audit["in_sync"] and audit["physical"]["in_sync"], audit


_UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 53))
while True:
    data, peer = s.recvfrom(2048); s.sendto(data, peer)
"""


def test_a_published_udp_port_answers(fabric, lab, outside, published):
    c, ep = published
    echo = subprocess.Popen(["ip", "netns", "exec", c.netns, "python3", "-c", _UDP_ECHO])
    try:
        fabric.client.publish(ep["id"], "udp", 53, 5353)
        code = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                "s.settimeout(1);s.sendto(b'ping',(sys.argv[1],5353));"
                "print(s.recvfrom(100)[0].decode())")

        def asked():
            result = outside.exec("python3", "-c", code, lab.host("h1").tunnel_ip,
                                  check=False)
            return result.returncode == 0 and result.stdout.strip() == "ping"
        assert eventually(asked, 10)
        fabric.client.unpublish(ep["id"], "udp", 5353)
        assert eventually(lambda: not asked(), 5)
    finally:
        stop_pid(echo.pid)
        echo.wait()


@pytest.mark.parametrize("egress", [True, False], ids=["leaves", "no_egress"])
def test_the_trace_to_the_outside_takes_the_flows_ofproto_trace_takes(
        fabric, lab, outside, egress_net, egress):
    """The same packet to the outside through h1's live table, conntrack included: our trace
    and OVS's hit the same flows, and agree that it leaves (the SNAT commit, then the patch) or
    is dropped where egress is off."""
    network, containers = egress_net
    _, ep = containers["h1"]
    assert eventually(lambda: binding(lab.host("h1")), 10)
    try:
        if not egress:
            fabric.client.request("PATCH", f"/v1/networks/{network['id']}", {"egress": False})
        ours, actions = both_traces(fabric, ep, OUTSIDE_IP, OUTSIDE_IP, network["gateway_mac"])
    finally:
        fabric.client.request("PATCH", f"/v1/networks/{network['id']}", {"egress": True})
    assert ours["verdict"]["result"] == ("leaves" if egress else "dropped")
    assert f"zone={NAT_ZONE}" in actions, actions  # the first pass: the transit rewrite, ct


def test_a_controller_kill_loses_no_egress_or_published_connection(
        fabric, lab, outside, egress_net, published):
    _, containers = egress_net
    c, _ = containers["h1"]
    _, ep = published
    fabric.client.publish(ep["id"], "tcp", 81, 8091)
    address = lab.host("h1").tunnel_ip
    assert eventually(lambda: who_am_i(c), 10)
    hosts = lab.hosts
    assert eventually(lambda: all(binding(h) for h in hosts), 10)
    before = {h.name: (flow_table(h), physical_table(h)) for h in hosts}
    streams = {
        "egress": subprocess.Popen(["ip", "netns", "exec", c.netns, "python3", "-c", _STREAM,
                                    OUTSIDE_IP, str(ECHO_PORT), "8"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        "published": subprocess.Popen(["ip", "netns", "exec", outside.netns, "python3", "-c",
                                       _STREAM, address, "8091", "8"],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)}
    outputs = {}
    try:
        time.sleep(1.5)
        fabric.controller.kill(signal.SIGKILL)
        time.sleep(1.0)  # the streams go on with no controller at all
        fabric.controller.start()
        fabric.controller.wait_connected([h.name for h in hosts])
        for name, stream in streams.items():
            outputs[name] = stream.communicate(timeout=30)[0]
    finally:
        for stream in streams.values():
            if stream.poll() is None:
                stream.kill()
                stream.wait()
    for name, stream in streams.items():
        assert stream.returncode == 0, (name, outputs.get(name))
        # 8 s of 20 ms lines, each echoed, through the kill and the restart
        assert int(outputs[name].split()[-1]) > 250, (name, outputs[name])
    print(f"\nstreams through controller kill -9 + restart: "
          f"{ {n: int(o.split()[-1]) for n, o in outputs.items()} } lines echoed, none lost")
    assert eventually(lambda: all(
        flow_mods(fabric, name) == 0 and _reconciled(fabric, name)
        for h in hosts for name in (h.name, f"{h.name}/{PHYSICAL_BRIDGE}")), 10) or \
        pytest.fail(_mods_report(fabric, hosts))
    assert {h.name: (flow_table(h), physical_table(h)) for h in hosts} == before
    assert [(h["flow_mods_sent"], h["physical"]["flow_mods_sent"])
            for h in fabric.client.hosts()] == [(0, 0)] * len(hosts)


def _reconciled(fabric, name: str) -> bool:
    text = requests.get(fabric.controller.url + "/metrics", timeout=5).text
    return re.search(r'^ovsfabric_reconcile_runs_total\{host="%s"\} [1-9]' % re.escape(name),
                     text, re.M) is not None


def _mods_report(fabric, hosts) -> str:
    return ", ".join(f"{name}: {flow_mods(fabric, name)}" for h in hosts
                     for name in (h.name, f"{h.name}/{PHYSICAL_BRIDGE}"))


def test_removing_a_host_gives_its_physical_bridge_back(fabric, lab, outside):
    h3 = lab.host("h3")  # no endpoint of this module's there
    assert eventually(lambda: h3.vsctl("get", "Bridge", PHYSICAL_BRIDGE,
                                       "fail_mode").strip() == "secure", 10)
    assert eventually(lambda: binding(h3), 10)
    fabric.client.delete_host("h3")
    try:
        def left():
            return {"controller": h3.vsctl("get-controller", PHYSICAL_BRIDGE).strip(),
                    "fail_mode": h3.vsctl("get", "Bridge", PHYSICAL_BRIDGE,
                                          "fail_mode").strip(),
                    "patch on br-phy": "patch-br-int" in h3.vsctl("list-ports",
                                                                  PHYSICAL_BRIDGE).split(),
                    "patch on br-int": "patch-br-phy" in h3.vsctl("list-ports",
                                                                  "br-int").split(),
                    "binding": binding(h3)}
        given_back = {"controller": "", "fail_mode": "standalone", "patch on br-phy": False,
                      "patch on br-int": False, "binding": ""}
        assert eventually(lambda: left() == given_back, 10), left()
        other_config = h3.vsctl("get", "Bridge", PHYSICAL_BRIDGE, "other_config")
        assert "datapath-id" not in other_config and "disable-in-band" not in other_config
        flows = [line for line in h3.ofctl("dump-flows", bridge=PHYSICAL_BRIDGE).splitlines()
                 if "actions=" in line]
        assert len(flows) == 1 and "priority=0" in flows[0] and "actions=NORMAL" in flows[0] \
            and "cookie=0x0" in flows[0], flows
        assert outside.exec("ping", "-c2", "-W1", "-i0.2", h3.tunnel_ip,
                            check=False).returncode == 0, "the host keeps its network"
    finally:  # registered again for what follows on the session's lab
        fabric.client.create_host(h3.name, h3.ovsdb, h3.tunnel_ip, datapath_type="netdev")
        fabric.controller.wait_connected([h3.name])
