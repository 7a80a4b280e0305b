"""Routers in the compiled flows, run through the flow-table simulator: routed on the sending
host, one tunnel hop in the destination network's VNI, longest prefix first, nothing between
networks of different routers or of none, and anti-spoofing kept."""
from __future__ import annotations

import itertools

import pytest

from flows import HostFlows, compile_host
from flows.host_flows import concerned_hosts, touched_units
from flows.pipeline import decode_cookie
from flowsim import Packet
from harness.simfabric import build, host_ports
from model.entities import Change
from tests.unit.routed_fabric import NETWORKS, eps, net, routed_store, with_routers


@pytest.fixture
def snap():
    return with_routers(routed_store().snapshot())

def to_router(snap, src, dst_ip, **kw):
    """What ``src`` sends to an address off its network: to its gateway's MAC."""
    return Packet.icmp(src.mac, net(snap, snap.networks[src.network_id].name).gateway_mac,
                       src.ip, dst_ip, **kw)


def test_routed_on_the_sender_in_one_hop_with_the_destination_vni(snap):
    fabric, _ = build(snap)
    src, dst = eps(snap, "front")[0], eps(snap, "back")[0]  # h1 -> h2
    [(name, got)] = fabric.send(src.id, to_router(snap, src, dst.ip))
    assert name == dst.id
    r1 = snap.routers["id-r1"]
    assert (got.eth_src, got.eth_dst, got.nw_ttl) == (r1.mac, dst.mac, 63)
    assert [hop[0] for hop in fabric.last_path] == ["h1", "h2"], "one tunnel hop, no hairpin"
    tunnel_in = fabric.last_path[1][2][0]  # h2's first lookup: the tunnel's classification
    assert tunnel_in.entry.match["tunnel_id"] == net(snap, "back").vni


def test_replies_route_back(snap):
    fabric, _ = build(snap)
    src, dst = eps(snap, "back")[1], eps(snap, "front")[1]  # h3 -> h1
    [(name, got)] = fabric.send(src.id, to_router(snap, src, dst.ip, icmp_type=0))
    assert name == dst.id and got.nw_ttl == 63


def test_routers_keep_their_networks_apart_though_the_subnets_overlap(snap):
    fabric, _ = build(snap)
    senders = [e for n in NETWORKS for e in eps(snap, n)]
    for src, dst in itertools.permutations(senders, 2):
        if src.network_id == dst.network_id:
            continue
        delivered = [name for name, _ in fabric.send(src.id, to_router(snap, src, dst.ip))]
        router = snap.router_of(src.network_id)
        reachable = set(router.networks) if router is not None else set()
        # The address may also be another endpoint's in an overlapping network: exactly the
        # one of the sender's router gets it, and nothing outside that router is reached.
        assert (delivered == [dst.id]) == (dst.network_id in reachable), \
            (src.name, dst.name, delivered)
        assert {snap.endpoints[d].network_id for d in delivered} <= reachable, \
            (src.name, dst.name, delivered)


def test_a_network_on_no_router_is_not_routed(snap):
    fabric, _ = build(snap)
    island, front = eps(snap, "island")[0], eps(snap, "front")[0]
    assert fabric.send(island.id, to_router(snap, island, front.ip)) == []
    assert fabric.send(front.id, to_router(snap, front, island.ip)) == []


def test_the_gateway_still_answers_ping_on_a_router(snap):
    fabric, _ = build(snap)
    src = eps(snap, "front")[0]
    gateway = net(snap, "front").gateway
    [(name, echo)] = fabric.send(src.id, to_router(snap, src, gateway))
    assert name == src.id and (echo.ipv4_src, echo.icmpv4_type) == (gateway, 0)


def test_an_expired_ttl_is_not_routed(snap):
    fabric, _ = build(snap)
    src, dst = eps(snap, "front")[0], eps(snap, "back")[0]
    assert fabric.send(src.id, to_router(snap, src, dst.ip, nw_ttl=1)) == []


def test_static_routes_go_to_the_appliance_longest_prefix_first(snap):
    wide, narrow = eps(snap, "back")[0], eps(snap, "back")[1]
    snap = with_routers(snap, [("203.0.113.0/24", wide.ip), ("203.0.113.128/25", narrow.ip),
                               ("0.0.0.0/0", wide.ip)])
    fabric, _ = build(snap)
    src = eps(snap, "front")[0]
    for address, appliance in [("203.0.113.7", wide), ("203.0.113.200", narrow),
                               ("198.51.100.1", wide)]:
        [(name, got)] = fabric.send(src.id, to_router(snap, src, address))
        assert (name, got.eth_dst, got.ipv4_dst, got.nw_ttl) == \
            (appliance.id, appliance.mac, address, 63)
    # An attached network's own prefix beats a route as long: routed to the endpoint itself.
    other_back = eps(snap, "back")[2]
    [(name, _)] = fabric.send(src.id, to_router(snap, src, other_back.ip))
    assert name == other_back.id


def test_an_appliance_may_send_what_it_forwards_and_nobody_else_may(snap):
    appliance = eps(snap, "back")[0]
    snap = with_routers(snap, [("203.0.113.0/24", appliance.ip)])
    fabric, _ = build(snap)
    dst = eps(snap, "front")[0]
    forwarded = Packet.icmp(appliance.mac, net(snap, "back").gateway_mac, "203.0.113.7", dst.ip,
                            icmp_type=0)
    [(name, got)] = fabric.send(appliance.id, forwarded)
    assert (name, got.ipv4_src) == (dst.id, "203.0.113.7")
    spoofer = eps(snap, "back")[1]
    spoofed = Packet.icmp(spoofer.mac, net(snap, "back").gateway_mac, "203.0.113.7", dst.ip)
    assert fabric.send(spoofer.id, spoofed) == []
    outside = Packet.icmp(appliance.mac, net(snap, "back").gateway_mac, "198.51.100.1", dst.ip)
    assert fabric.send(appliance.id, outside) == [], "only from the routes' destinations"


def test_router_flows_are_only_on_the_senders_hosts_and_owned_by_the_router(snap):
    ports = host_ports(snap)
    r2 = snap.routers["id-r2"]
    for host in ["h1", "h2", "h3"]:
        table = compile_host(snap, host, ports[host])
        owners = {decode_cookie(f.cookie) for f in table.values()}
        has_r2 = ("router", r2.seq) in owners
        # r2's networks have endpoints on h1 (other) and h2 (dmz), none on h3
        assert has_r2 == (host != "h3"), host


def test_an_endpoint_in_a_routed_network_updates_the_senders_hosts_incrementally():
    store = routed_store()
    before = with_routers(store.snapshot())
    ep = store.create_endpoint("back", "h3")
    after = with_routers(store.snapshot())
    change = Change(networks=frozenset({ep.network_id}), endpoints=frozenset({ep.id}))
    concerned = concerned_hosts(before, after, change)
    assert "h1" in concerned, "h1 routes front's packets to back: it must learn the endpoint"
    ports_before, ports_after = host_ports(before), host_ports(after)
    for host in before.hosts:
        if host not in concerned:
            assert compile_host(before, host, ports_before[host]) == \
                compile_host(after, host, ports_after[host])
            continue
        flows = HostFlows()
        flows.rebuild(before, flows.view_for(before, host, ports_before[host]))
        result = flows.update(after, flows.view_for(after, host, ports_after[host]),
                              touched_units(change))
        if result is None:
            flows.rebuild(after, flows.view_for(after, host, ports_after[host]))
        assert flows.flows == compile_host(after, host, ports_after[host]), host
