"""Egress and published ports in the compiled flows of both bridges, run through the simulator
(the two bridges of a host share one conntrack, as in one datapath): SNAT to the host's
address and the reply, published ports in and back, egress false, networks with overlapping
subnets kept apart by their transit addresses, the host's own traffic left alone."""
from __future__ import annotations

from dataclasses import replace

import pytest

from flows import HostFlows, compile_host
from flows import pipeline as p
from flows.conformance import check, check_physical
from flows.egress import transit_address
from flows.host_flows import concerned_hosts, touched_units
from flows.physical import compile_physical
from flowsim import Packet
from harness.simfabric import (NEXT_HOP_MAC, PHY_MAC, build_outside, host_ports, outside_name,
                               with_physical)
from model import Store
from model.entities import Change, PublishedPort
from tests.unit.routed_fabric import eps, net, routed_store, with_routers

OUTSIDE_IP, OUTSIDE_MAC = "203.0.113.200", "02:aa:00:00:00:01"
H1_IP = "192.0.2.1"


def fabric_store() -> Store:
    """h1 holds blue and red (the same subnet, so the same first address) and closed;
    blue also has an endpoint on h2."""
    store = Store(":memory:")
    store.create_host("h1", "unix:/run/h1.sock", H1_IP)
    store.create_host("h2", "unix:/run/h2.sock", "192.0.2.2")
    for name, subnet in [("blue", "10.1.0.0/24"), ("red", "10.1.0.0/24"),
                         ("closed", "10.4.0.0/24")]:
        store.create_network(name, subnet)
    for network, host in [("blue", "h1"), ("red", "h1"), ("closed", "h1"), ("blue", "h2")]:
        store.create_endpoint(network, host)
    return store


@pytest.fixture
def snap():
    snap = fabric_store().snapshot()
    closed = net(snap, "closed")
    return replace(snap, networks={**snap.networks,
                                   closed.id: replace(closed, egress=False)})


def out_tcp(snap, ep, sport=40000, dport=8080, dst=OUTSIDE_IP, **kw):
    gateway_mac = snap.networks[ep.network_id].gateway_mac
    return Packet.tcp(ep.mac, gateway_mac, ep.ip, dst, sport, dport, **kw)


def from_outside(dst, sport, dport, src=OUTSIDE_IP):
    return Packet.tcp(OUTSIDE_MAC, PHY_MAC, src, dst, sport, dport)


def published(snap, ep, *ports):
    return replace(snap, published={**snap.published, ep.id: tuple(
        PublishedPort(ep.id, "tcp", port, host_port) for port, host_port in ports)})


def test_egress_leaves_source_natted_to_the_host_and_the_reply_comes_back(snap):
    fabric, _, _ = build_outside(snap)
    blue = eps(snap, "blue")[0]
    [(where, got)] = fabric.send(blue.id, out_tcp(snap, blue))
    assert where == outside_name("h1")
    assert (got.ipv4_src, got.tcp_src, got.ipv4_dst, got.tcp_dst) == \
        (H1_IP, 40000, OUTSIDE_IP, 8080)
    assert (got.eth_src, got.eth_dst) == (PHY_MAC, NEXT_HOP_MAC)
    [(where, reply)] = fabric.send(outside_name("h1"), from_outside(H1_IP, 8080, 40000))
    assert where == blue.id
    assert (reply.ipv4_src, reply.ipv4_dst, reply.tcp_dst, reply.eth_dst) == \
        (OUTSIDE_IP, blue.ip, 40000, blue.mac)
    assert reply.eth_src == snap.networks[blue.network_id].gateway_mac


def test_each_container_leaves_from_its_own_host(snap):
    fabric, _, _ = build_outside(snap)
    remote = eps(snap, "blue")[1]  # on h2
    [(where, got)] = fabric.send(remote.id, out_tcp(snap, remote))
    assert (where, got.ipv4_src) == (outside_name("h2"), "192.0.2.2")


def test_the_egress_address_wins_over_the_tunnel_address(snap):
    h1 = snap.hosts["h1"]
    snap = replace(snap, hosts={**snap.hosts, "h1": replace(h1, egress_ip="198.51.100.7")})
    fabric, _, _ = build_outside(snap)
    blue = eps(snap, "blue")[0]
    [(_, got)] = fabric.send(blue.id, out_tcp(snap, blue))
    assert got.ipv4_src == "198.51.100.7"
    [(where, _)] = fabric.send(outside_name("h1"), from_outside("198.51.100.7", 8080, 40000))
    assert where == blue.id


def test_without_egress_nothing_leaves(snap):
    fabric, _, _ = build_outside(snap)
    closed = eps(snap, "closed")[0]
    assert fabric.send(closed.id, out_tcp(snap, closed)) == []
    ping = Packet.icmp(closed.mac, net(snap, "closed").gateway_mac, closed.ip, OUTSIDE_IP)
    assert fabric.send(closed.id, ping) == []
    assert fabric.normal == [], "nothing reaches the physical bridge's own forwarding"


def test_a_reply_the_nat_zone_does_not_know_is_not_let_in(snap):
    fabric, _, _ = build_outside(snap)
    # Nothing went out: a packet to the host's address is the host's own (NORMAL).
    assert fabric.send(outside_name("h1"), from_outside(H1_IP, 8080, 40000)) == []
    assert [name for name, _ in fabric.normal] == ["h1/phy"]


def test_overlapping_networks_egress_at_once_with_the_same_port_and_stay_apart(snap):
    fabric, tables, _ = build_outside(snap)
    blue, red = eps(snap, "blue")[0], eps(snap, "red")[0]
    assert blue.ip == red.ip and blue.network_id != red.network_id
    assert transit_address(blue) != transit_address(red)
    [(_, first)] = fabric.send(blue.id, out_tcp(snap, blue))
    [(_, second)] = fabric.send(red.id, out_tcp(snap, red))
    assert first.ipv4_src == second.ipv4_src == H1_IP
    assert first.tcp_src != second.tcp_src, "the second connection got another port"
    for ep, sport in [(blue, first.tcp_src), (red, second.tcp_src)]:
        [(where, reply)] = fabric.send(outside_name("h1"), from_outside(H1_IP, 8080, sport))
        assert (where, reply.tcp_dst) == (ep.id, 40000)


def test_egress_through_a_router_is_routed_then_natted():
    snap = with_routers(routed_store().snapshot())
    fabric, _, _ = build_outside(snap)
    front = eps(snap, "front")[0]
    [(where, got)] = fabric.send(front.id, out_tcp(snap, front))
    assert (where, got.ipv4_src, got.nw_ttl) == (outside_name("h1"), H1_IP, 63)
    # Another network of the router is still routed to, not sent out.
    back = eps(snap, "back")[0]
    [(where, _)] = fabric.send(front.id, out_tcp(snap, front, dst=back.ip))
    assert where == back.id


def test_the_own_subnet_and_the_gateway_are_not_sent_out(snap):
    fabric, _, _ = build_outside(snap)
    blue = eps(snap, "blue")[0]
    assert fabric.send(blue.id, out_tcp(snap, blue, dst="10.1.0.77")) == []
    gateway = net(snap, "blue").gateway
    ping = Packet.icmp(blue.mac, net(snap, "blue").gateway_mac, blue.ip, gateway)
    [(where, echo)] = fabric.send(blue.id, ping)
    assert (where, echo.icmpv4_type) == (blue.id, 0)


def test_anti_spoofing_stays(snap):
    fabric, _, _ = build_outside(snap)
    blue = eps(snap, "blue")[0]
    spoofed = out_tcp(snap, blue)
    spoofed.ipv4_src = "10.1.0.99"
    assert fabric.send(blue.id, spoofed) == []


def test_a_published_port_reaches_the_container_and_its_replies_leave(snap):
    closed = eps(snap, "closed")[0]  # published ports work without egress too
    snap = published(snap, closed, (80, 8081))
    fabric, _, _ = build_outside(snap)
    [(where, got)] = fabric.send(outside_name("h1"), from_outside(H1_IP, 50000, 8081))
    assert (where, got.ipv4_dst, got.tcp_dst, got.ipv4_src) == \
        (closed.id, closed.ip, 80, OUTSIDE_IP)
    reply = Packet.tcp(closed.mac, net(snap, "closed").gateway_mac, closed.ip, OUTSIDE_IP,
                       80, 50000)
    [(where, back)] = fabric.send(closed.id, reply)
    assert (where, back.ipv4_src, back.tcp_src, back.tcp_dst) == \
        (outside_name("h1"), H1_IP, 8081, 50000)
    # Another port of the host is the host's own.
    assert fabric.send(outside_name("h1"), from_outside(H1_IP, 50000, 8082)) == []


def test_an_unpublished_port_is_closed(snap):
    blue = eps(snap, "blue")[0]
    fabric, _, _ = build_outside(published(snap, blue))
    assert fabric.send(outside_name("h1"), from_outside(H1_IP, 50000, 8081)) == []


def test_tunnels_and_the_hosts_own_traffic_stay_with_the_physical_bridge(snap):
    fabric, _, _ = build_outside(snap)
    vxlan = Packet.udp(OUTSIDE_MAC, PHY_MAC, "192.0.2.2", H1_IP, 33000, 4789)
    ping = Packet.icmp(OUTSIDE_MAC, PHY_MAC, OUTSIDE_IP, H1_IP)
    for packet in (vxlan, ping):
        assert fabric.send(outside_name("h1"), packet) == []
        assert [name for name, _ in fabric.normal] == ["h1/phy"]


def test_nothing_leaves_while_the_next_hop_is_unknown(snap):
    ports = with_physical(host_ports(snap), next_hop_mac=None)
    fabric, _, _ = build_outside(snap, ports)
    blue = eps(snap, "blue")[0]
    assert fabric.send(blue.id, out_tcp(snap, blue)) == []


def test_without_a_physical_bridge_there_are_no_nat_flows(snap):
    ports = host_ports(snap)
    nat_tables = {p.NAT.id, p.OUTBOUND.id, p.FROM_OUTSIDE.id, p.TO_OUTSIDE.id}
    for host in snap.hosts:
        flows = compile_host(snap, host, ports[host]).values()
        assert {f.table for f in flows if f.priority} & nat_tables == set()
        physical = compile_physical(snap, host, ports[host])
        assert {(f.priority, f.actions) for f in physical.values()} == {(0, (("output",
                                                                              0xFFFFFFFA),))}


def test_both_tables_keep_to_their_declarations(snap):
    snap = published(snap, eps(snap, "blue")[0], (80, 8081), (443, 8443))
    ports = with_physical(host_ports(snap))
    for host in snap.hosts:
        for flow in compile_host(snap, host, ports[host]).values():
            check(flow)
        physical = compile_physical(snap, host, ports[host])
        for flow in physical.values():
            check_physical(flow)
        assert all(p.decode_cookie(f.cookie) for f in physical.values())


def test_publishing_updates_only_the_endpoints_host_incrementally(snap):
    blue = eps(snap, "blue")[0]
    after = published(snap, blue, (80, 8081))
    change = Change(published=frozenset({blue.id}))
    assert concerned_hosts(snap, after, change) == {"h1"}
    ports = with_physical(host_ports(snap))
    flows = HostFlows()
    flows.rebuild(snap, flows.view_for(snap, "h1", ports["h1"]))
    result = flows.update(after, flows.view_for(after, "h1", ports["h1"]), touched_units(change))
    assert result is not None and len(result.add) == 1 and not result.delete
    assert flows.flows == compile_host(after, "h1", ports["h1"])


def test_turning_egress_off_updates_the_network_incrementally(snap):
    blue = net(snap, "blue")
    after = replace(snap, networks={**snap.networks, blue.id: replace(blue, egress=False)})
    change = Change(networks=frozenset({blue.id}))
    ports = with_physical(host_ports(snap))
    flows = HostFlows()
    flows.rebuild(snap, flows.view_for(snap, "h1", ports["h1"]))
    result = flows.update(after, flows.view_for(after, "h1", ports["h1"]), touched_units(change))
    assert result is not None and len(result.delete) == 1
    assert result.delete[0].table == p.OUTBOUND.id
    assert flows.flows == compile_host(after, "h1", ports["h1"])


# ---- the trace ----------------------------------------------------------------------------

def live_with_outside(snap, next_hop_mac=NEXT_HOP_MAC):
    from harness.simfabric import flow_stats
    from inspection.trace import LiveHost
    ports = with_physical(host_ports(snap), next_hop_mac)
    return {h: LiveHost(flow_stats(compile_host(snap, h, ports[h])), ports[h])
            for h in snap.hosts}


def test_a_trace_to_the_outside_names_the_host_and_the_address_it_leaves_with(snap):
    from inspection.trace import trace
    blue = eps(snap, "blue")[1]  # on h2
    result = trace(snap, blue.id, OUTSIDE_IP, "tcp", 8080, live_with_outside(snap))
    verdict = result["verdict"]
    assert verdict["result"] == "leaves"
    assert verdict["outside"] == {"host": "h2", "address": "192.0.2.2", "port": 40000,
                                  "next_hop_mac": NEXT_HOP_MAC}
    assert "from host h2 as 192.0.2.2:40000" in verdict["reason"]
    assert result["hops"][-1]["step"] == "leave"
    assert {"nat", "outbound", "to_outside"} <= {h.get("table_name") for h in result["hops"]}


def test_a_trace_says_why_nothing_leaves(snap):
    from inspection.trace import trace
    closed = eps(snap, "closed")[0]
    verdict = trace(snap, closed.id, OUTSIDE_IP, "tcp", 8080, live_with_outside(snap))["verdict"]
    assert verdict["result"] == "dropped" and "has no egress" in verdict["reason"]
    blue = eps(snap, "blue")[0]
    verdict = trace(snap, blue.id, OUTSIDE_IP, "tcp", 8080,
                    live_with_outside(snap, next_hop_mac=None))["verdict"]
    assert verdict["result"] == "dropped" and "not resolved yet" in verdict["reason"]


def test_a_published_udp_port_reaches_the_container_and_answers(snap):
    blue = eps(snap, "blue")[0]
    snap = replace(snap, published={blue.id: (PublishedPort(blue.id, "udp", 53, 5353),)})
    fabric, _, _ = build_outside(snap)
    query = Packet.udp(OUTSIDE_MAC, PHY_MAC, OUTSIDE_IP, H1_IP, 33333, 5353)
    [(where, got)] = fabric.send(outside_name("h1"), query)
    assert (where, got.ipv4_dst, got.udp_dst) == (blue.id, blue.ip, 53)
    answer = Packet.udp(blue.mac, net(snap, "blue").gateway_mac, blue.ip, OUTSIDE_IP, 53, 33333)
    [(where, back)] = fabric.send(blue.id, answer)
    assert (where, back.ipv4_src, back.udp_src) == (outside_name("h1"), H1_IP, 5353)
    # The same port number over TCP is not published.
    tcp = Packet.tcp(OUTSIDE_MAC, PHY_MAC, OUTSIDE_IP, H1_IP, 33333, 5353)
    assert fabric.send(outside_name("h1"), tcp) == []


def test_policy_holds_on_the_way_out_and_on_published_ports(snap):
    """blue's h1 endpoint may reach only the outside's port 8080 and be reached from the
    outside on its port 80: another outside port is refused on the way out, another source of
    the published port on the way in; the replies pass both ways."""
    from model.policy import EGRESS, INGRESS, Peer, Policy, PortRange, Rule, Selector
    blue = eps(snap, "blue")[0]
    snap = snap.relabelled(blue, (("app", "web"),))
    policy = Policy(1, "id-web", "web", Selector((("app", "web"),)), ingress=(
        Rule(1, INGRESS, 0, (Peer(cidr=f"{OUTSIDE_IP}/32"),), (PortRange("tcp", 80),)),),
        egress=(Rule(2, EGRESS, 0, (Peer(cidr="203.0.113.0/24"),), (PortRange("tcp", 8080),)),))
    snap = published(snap.with_policies({policy.id: policy}), blue, (80, 8080))
    fabric, _, _ = build_outside(snap)
    blue = snap.endpoints[blue.id]
    [(where, _)] = fabric.send(blue.id, out_tcp(snap, blue))
    assert where == outside_name("h1"), "allowed out"
    [(where, _)] = fabric.send(outside_name("h1"), from_outside(H1_IP, 8080, 40000))
    assert where == blue.id, "and its reply in"
    assert fabric.send(blue.id, out_tcp(snap, blue, sport=40001, dport=22)) == [], \
        "another port of the outside"
    [(where, _)] = fabric.send(outside_name("h1"), from_outside(H1_IP, 50000, 8080))
    assert where == blue.id, "the published port, from the allowed address"
    assert fabric.send(outside_name("h1"), from_outside(H1_IP, 50001, 8080,
                                                        src="203.0.113.201")) == [], \
        "the published port, from another address"
