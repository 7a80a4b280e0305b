"""Routing between networks on the lab, with real packets: routed on the sending host, carried
once in the destination network's VNI, routers kept apart though their subnets overlap, a
static route through an appliance that forwards, a controller killed during a routed ping,
and nothing left behind when routers go."""
from __future__ import annotations

import re
import subprocess
import time

import pytest

from lab import netns
from lab.proc import run, stop_pid
from tests.helpers import eventually, flow_table
from tests.lab.fabric_checks import TimedPing, report
from tests.lab.ofproto_trace import both_traces
from flows.pipeline import NAT_ZONE
from tests.slot import needs_lab

pytestmark = [pytest.mark.lab, needs_lab]

# flows.pipeline KINDS: the kind is the cookie's top byte, 5 a router's
ROUTER_COOKIE = re.compile(r"cookie=0x5[0-9a-f]{14},")
NETWORK_COOKIE = re.compile(r"cookie=0x3[0-9a-f]{14},")  # 3 a network's


def serve_name(container, port: int, name: str) -> subprocess.Popen:
    """A TCP server in the container that answers every connection with its name and the
    address the connection came from."""
    code = ("import socket\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('0.0.0.0', {port})); s.listen()\n"
            "while True:\n"
            "    c, a = s.accept(); c.sendall(('%s %s' % (" + repr(name) + ", a[0])).encode())\n"
            "    c.close()\n")
    return subprocess.Popen(["ip", "netns", "exec", container.netns, "python3", "-c", code])


def tcp_ask(container, ip: str, port: int) -> str | None:
    code = (f"import socket; s = socket.create_connection(({ip!r}, {port}), timeout=2); "
            "print(s.recv(200).decode())")
    done = container.exec("python3", "-c", code, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


@pytest.fixture(scope="module")
def routed(fabric):
    api = fabric.client
    for name, subnet in [("front", "10.40.1.0/24"), ("back", "10.40.2.0/24"),
                         ("other", "10.40.1.0/24"), ("dmz", "10.40.2.0/24"),
                         ("island", "10.40.3.0/24")]:
        api.create_network(name, subnet)
    for router, networks in [("r1", ["front", "back"]), ("r2", ["other", "dmz"])]:
        api.request("POST", "/v1/routers", {"name": router})
        for network in networks:
            api.request("POST", f"/v1/routers/{router}/networks", {"network": network})
    c = {}
    for name, host, network, ip in [("fa", "h1", "front", None), ("ba", "h2", "back", None),
                                    ("bb", "h3", "back", None), ("oa", "h1", "other", None),
                                    ("ia", "h3", "island", None)]:
        c[name] = fabric.attach(host, name, network, **({"ip": ip} if ip else {}))
    # dmz's container has back's container's very address, on the same host.
    c["da"] = fabric.attach("h2", "da", "dmz", ip=c["ba"][1]["ip"])
    for container, ep in c.values():
        netns.ip("route", "replace", "default", "via", ep["gateway"], "dev", "eth0",
                 netns=container.netns)
    servers = [serve_name(c[n][0], 7000, n) for n in ("ba", "da", "fa")]
    yield c
    for server in servers:
        stop_pid(server.pid)
        server.wait()
    for router in ("r1", "r2"):
        for network in api.request("GET", f"/v1/routers/{router}")["networks"]:
            api.request("DELETE", f"/v1/routers/{router}/networks/{network}")
        api.request("DELETE", f"/v1/routers/{router}")


def test_ping_and_tcp_across_networks_are_routed_with_ttl_63(routed):
    (fa, ep_fa), (ba, ep_ba) = routed["fa"], routed["ba"]
    assert eventually(lambda: fa.ping(ep_ba["ip"], count=1, timeout=1), 10)
    out = fa.exec("ping", "-n", "-c", "2", "-W", "2", ep_ba["ip"]).stdout
    assert re.findall(r"ttl=(\d+)", out) == ["63", "63"], out  # the reply, routed once on h2
    assert tcp_ask(fa, ep_ba["ip"], 7000) == f"ba {ep_fa['ip']}"
    assert tcp_ask(ba, ep_fa["ip"], 7000) == f"fa {ep_ba['ip']}"


def test_a_routed_packet_crosses_the_underlay_once_in_the_destination_vni(fabric, routed):
    (fa, _), (_, ep_ba) = routed["fa"], routed["ba"]
    vnis = {n["name"]: n["vni"] for n in fabric.client.networks()}
    assert fa.ping(ep_ba["ip"], count=1, timeout=2)
    capture = subprocess.Popen(
        ["tcpdump", "-n", "-l", "-vv", "-i", fabric.lab.ul_bridge, "udp", "port", "4789"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(1.0)
        assert fa.ping(ep_ba["ip"], count=1, timeout=2)
        time.sleep(0.5)
    finally:
        stop_pid(capture.pid)
    text = capture.communicate(timeout=5)[0]
    requests = [line for line in re.split(r"\n(?=\d\d:)", text)
                if "ICMP echo request" in line and ep_ba["ip"] in line]
    assert len(requests) == 1, text
    assert f"vni {vnis['back']}" in requests[0], requests[0]
    h1, h2 = fabric.lab.host("h1").tunnel_ip, fabric.lab.host("h2").tunnel_ip
    assert f"{h1}." in requests[0] and f"> {h2}." in requests[0], "h1 straight to h2"


def test_routers_keep_overlapping_networks_apart(routed):
    (fa, ep_fa), (oa, ep_oa), (_, ep_ba) = routed["fa"], routed["oa"], routed["ba"]
    # The same address is back's container behind r1 and dmz's behind r2.
    assert tcp_ask(fa, ep_ba["ip"], 7000) == f"ba {ep_fa['ip']}"
    assert tcp_ask(oa, ep_ba["ip"], 7000) == f"da {ep_oa['ip']}"


def test_a_network_on_no_router_is_not_routed(routed):
    (fa, ep_fa), (ia, ep_ia) = routed["fa"], routed["ia"]
    assert fa.ping(routed["ba"][1]["ip"], count=1, timeout=2), "positive control"
    assert not ia.ping(ep_fa["ip"], count=2, timeout=1)
    assert not fa.ping(ep_ia["ip"], count=2, timeout=1)


def test_a_static_route_through_an_appliance_that_forwards(fabric, routed):
    """bb routes 203.0.113.0/24 to a namespace behind it; r1 sends that prefix to bb."""
    api = fabric.client
    (fa, _), (bb, ep_bb) = routed["fa"], routed["bb"]
    behind = f"{bb.netns}-b"
    netns.add(behind)
    try:
        netns.add_veth("fwd0", "eth0", behind, netns=bb.netns)
        netns.ip("addr", "add", "203.0.113.1/24", "dev", "fwd0", netns=bb.netns)
        netns.ip("link", "set", "fwd0", "up", netns=bb.netns)
        netns.ip("addr", "add", "203.0.113.7/24", "dev", "eth0", netns=behind)
        netns.ip("link", "set", "eth0", "up", netns=behind)
        netns.ip("route", "add", "default", "via", "203.0.113.1", netns=behind)
        netns.sysctl(bb.netns, **{"net.ipv4.ip_forward": 1})
        router = api.request("PUT", "/v1/routers/r1/routes",
                             [{"destination": "203.0.113.0/24", "nexthop": ep_bb["ip"]}])
        assert router["routes"] == [{"destination": "203.0.113.0/24", "nexthop": ep_bb["ip"]}]
        forwarded_before = _forwarded(bb)
        assert eventually(lambda: fa.ping("203.0.113.7", count=1, timeout=1), 10)
        out = fa.exec("ping", "-n", "-c", "3", "-W", "2", "203.0.113.7").stdout
        # Routed by r1 (64 -> 63), forwarded by bb (-> 62), back by bb and r1: 62.
        assert re.findall(r"ttl=(\d+)", out) == ["62", "62", "62"], out
        assert _forwarded(bb) >= forwarded_before + 6, "bb forwarded both ways"
        api.request("PUT", "/v1/routers/r1/routes", [])
        assert eventually(lambda: not fa.ping("203.0.113.7", count=1, timeout=1), 10)
    finally:
        api.request("PUT", "/v1/routers/r1/routes", [])
        netns.delete(behind)
        netns.ip("link", "del", "fwd0", netns=bb.netns, check=False)


def _forwarded(container) -> int:
    """Packets the container's kernel forwarded (IP statistics)."""
    text = run(["cat", "/proc/net/snmp"], netns=container.netns).stdout
    header, values = [line.split() for line in text.splitlines() if line.startswith("Ip:")][:2]
    return int(values[header.index("ForwDatagrams")])


def test_the_router_flows_and_the_trace(fabric, routed):
    api = fabric.client
    (_, ep_fa), (_, ep_ba) = routed["fa"], routed["ba"]
    flows = api.request("GET", "/v1/routers/r1/flows")
    assert flows and all(f["owner"]["kind"] == "router" and f["owner"]["name"] == "r1"
                         for f in flows)
    assert {f["table_name"] for f in flows} == {"router_in", "l3_lookup"}
    assert {f["host"] for f in flows} == {"h1", "h2", "h3"}
    result = api.request("POST", "/v1/trace", {"from": ep_fa["id"], "to": ep_ba["id"],
                                               "protocol": "tcp", "dst_port": 7000})
    verdict = result["verdict"]
    assert verdict["result"] == "delivered" and verdict["endpoints"] == [ep_ba["id"]]
    assert verdict["routes"][0] | {"ttl": None} == {
        "router": "r1", "destination": "10.40.2.0/24", "nexthop": None, "network": "back",
        "ttl": None}
    assert verdict["routes"][0]["ttl"] == {"before": 64, "after": 63}


@pytest.mark.parametrize("target", ["routed", "not_routed"])
def test_a_routed_trace_agrees_with_ofproto_trace(fabric, routed, target):
    """The same packet through h1's live table: our simulator and OVS's own trace hit the
    same flows, and agree on delivered (into the tunnel, TTL 63) or dropped."""
    (_, ep_fa), (_, ep_dst) = routed["fa"], routed["ba" if target == "routed" else "ia"]
    front = next(n for n in fabric.client.networks() if n["name"] == "front")
    ours, actions = both_traces(fabric, ep_fa, ep_dst["id"], ep_dst["ip"], front["gateway_mac"])
    if target == "routed":
        assert "tnl_push" in actions and "ttl=63" in actions
        assert ours["verdict"]["result"] == "delivered"
    else:
        # Not routed into the island: with egress (the default) it heads for the outside
        # through the NAT zone, where ofproto/trace stops (a recirculation), and this lab
        # names no next hop, so our trace sees it dropped before it leaves.
        assert "tnl_push" not in actions and f"ct(zone={NAT_ZONE},nat)" in actions
        verdict = ours["verdict"]
        assert verdict["result"] == "dropped" and verdict["table_name"] == "to_outside"


def test_controller_killed_during_a_routed_ping_loses_nothing(fabric, routed):
    (fa, _), (_, ep_ba) = routed["fa"], routed["ba"]
    fa.neigh(routed["fa"][1]["gateway"],
             next(n["gateway_mac"] for n in fabric.client.networks() if n["name"] == "front"))
    before = {h.name: flow_table(h) for h in fabric.lab.hosts}
    ping = TimedPing(fa, ep_ba["ip"], interval=0.01, count=400)
    time.sleep(0.5)
    fabric.controller.kill()  # SIGKILL
    fabric.controller.start()
    fabric.controller.wait_connected([h.name for h in fabric.lab.hosts])
    assert eventually(lambda: all(h["flow_mods_sent"] is not None
                                  for h in fabric.client.hosts()))
    result = ping.result()
    report("controller kill -9 + restart, routed ping", sent=result.sent, lost=result.lost)
    assert result.sent == 400 and result.lost == 0
    assert {h.name: flow_table(h) for h in fabric.lab.hosts} == before
    assert [h["flow_mods_sent"] for h in fabric.client.hosts()] == [0, 0, 0]


def test_detaching_and_deleting_leave_no_router_flow(fabric, routed):
    api = fabric.client
    (fa, _), (_, ep_ba) = routed["fa"], routed["ba"]
    # The check below sees routers' flows: they are there before.
    assert any(ROUTER_COOKIE.search(line) for line in flow_table(fabric.lab.hosts[0]))
    api.request("DELETE", "/v1/routers/r2/networks/dmz")
    api.request("DELETE", "/v1/routers/r2/networks/other")
    api.request("DELETE", "/v1/routers/r2")
    api.request("DELETE", "/v1/routers/r1/networks/back")
    assert eventually(lambda: not fa.ping(ep_ba["ip"], count=1, timeout=1), 10)
    api.request("DELETE", "/v1/routers/r1/networks/front")
    api.request("DELETE", "/v1/routers/r1")
    for host in fabric.lab.hosts:
        assert eventually(lambda: not any(ROUTER_COOKIE.search(line)
                                          for line in flow_table(host)))
        # What stays is each network's own way out of the fabric (router_in, to nat).
        assert not [line for line in flow_table(host)
                    if "table=11," in line or "table=12," in line or "table=14," in line
                    if "priority=0 " not in line and not NETWORK_COOKIE.search(line)], host.name
        assert api.audit(host.name)["in_sync"]
    # The routers' module teardown finds nothing left to remove; put them back for it.
    for router, networks in [("r1", ["front", "back"]), ("r2", ["other", "dmz"])]:
        api.request("POST", "/v1/routers", {"name": router})
        for network in networks:
            api.request("POST", f"/v1/routers/{router}/networks", {"network": network})
