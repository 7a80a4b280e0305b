"""The trace across a router, over tables as the switches would report them: it names the
router, the route and the TTL, and says why a packet is not routed."""
from __future__ import annotations

import pytest

from flows import compile_host
from harness.simfabric import flow_stats, host_ports
from inspection.trace import LiveHost, hosts_to_read, trace
from tests.unit.routed_fabric import eps, routed_store, with_routers


@pytest.fixture
def snap():
    return with_routers(routed_store().snapshot())


def live(snap):
    ports = host_ports(snap)
    return {h: LiveHost(flow_stats(compile_host(snap, h, ports[h])), ports[h])
            for h in snap.hosts}


def test_a_routed_trace_names_the_router_the_route_and_the_ttl(snap):
    src, dst = eps(snap, "front")[0], eps(snap, "back")[0]
    result = trace(snap, src.id, dst.name, "tcp", 80, live(snap))
    verdict = result["verdict"]
    assert verdict["result"] == "delivered" and verdict["endpoints"] == [dst.id]
    [route] = verdict["routes"]
    assert route == {"router": "r1", "destination": "10.2.0.0/24", "nexthop": None,
                     "network": "back", "ttl": {"before": 64, "after": 63}}
    assert "routed by r1" in verdict["reason"] and "TTL 64 -> 63" in verdict["reason"]
    [tunnel] = [h for h in result["hops"] if h["step"] == "tunnel"]
    assert tunnel["vni"] == snap.networks[dst.network_id].vni, "carried in back's VNI"
    assert hosts_to_read(snap, src) == {"h1", "h2", "h3"}


def test_a_static_route_is_named_with_its_next_hop(snap):
    appliance = eps(snap, "back")[0]
    snap = with_routers(snap, [("203.0.113.0/24", appliance.ip)])
    verdict = trace(snap, eps(snap, "front")[0].id, "203.0.113.9", "icmp", None,
                    live(snap))["verdict"]
    assert verdict["endpoints"] == [appliance.id]
    assert verdict["routes"][0]["nexthop"] == appliance.ip
    assert verdict["routes"][0]["destination"] == "203.0.113.0/24"


def test_no_route_and_no_router_are_said(snap):
    src = eps(snap, "front")[0]
    verdict = trace(snap, src.id, "198.51.100.1", "icmp", None, live(snap))["verdict"]
    assert verdict["result"] == "dropped"
    assert verdict["reason"] == "router r1 has no route to 198.51.100.1"
    island = eps(snap, "island")[0]
    verdict = trace(snap, island.id, src.ip, "icmp", None, live(snap))["verdict"]
    assert verdict["result"] == "dropped" and "on no router" in verdict["reason"]
    # A network of no router of front's: r1 has no route to it.
    verdict = trace(snap, src.id, island.name, "icmp", None, live(snap))["verdict"]
    assert verdict["result"] == "dropped" and "no route to 10.3.0." in verdict["reason"]


def test_an_overlapping_address_behind_another_router_is_not_reached(snap):
    src, dmz = eps(snap, "front")[0], eps(snap, "dmz")[0]
    verdict = trace(snap, src.id, dmz.name, "icmp", None, live(snap))["verdict"]
    assert dmz.id not in verdict["endpoints"]
    twin = [e for e in eps(snap, "back") if e.ip == dmz.ip]
    assert verdict["endpoints"] == [e.id for e in twin], "r1 routes to its own back network"
