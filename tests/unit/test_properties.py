"""Property tests: random topologies compiled and run through the flow-table simulator.

Whatever the hosts, networks (overlapping subnets, so the same addresses recur across
networks) and endpoints, unicast reaches exactly the endpoints of the sender's network and
broadcast reaches exactly the other members of it, once each.
"""
from __future__ import annotations

import ipaddress
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsim import Packet
from model import Store
from harness.simfabric import build

# All overlap 10.0.0.0/28 at least partly; none is smaller than /28, so 12 endpoints never
# exhaust a network and each keeps a free address to broadcast an ARP for.
SUBNETS = ["10.0.0.0/24", "10.0.0.0/28", "10.0.0.0/16", "10.0.0.16/28", "10.0.0.0/24"]
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"


@st.composite
def topologies(draw):
    n_hosts = draw(st.integers(1, 5))
    subnets = draw(st.lists(st.sampled_from(SUBNETS), min_size=1, max_size=4))
    endpoints = draw(st.lists(st.tuples(st.integers(0, len(subnets) - 1),
                                        st.integers(0, n_hosts - 1)), max_size=12))
    return n_hosts, subnets, endpoints


def make_store(n_hosts, subnets, endpoints) -> Store:
    store = Store(":memory:")
    for i in range(n_hosts):
        store.create_host(f"h{i}", f"unix:/run/h{i}.sock", f"192.0.2.{i + 1}")
    for n, subnet in enumerate(subnets):
        store.create_network(f"n{n}", subnet)
    for network, host in endpoints:
        store.create_endpoint(f"n{network}", f"h{host}")
    return store


def free_address(snap, network_id) -> str:
    net = snap.networks[network_id]
    used = {e.ip for e in snap.network_endpoints(network_id)} | {net.gateway}
    return next(str(ip) for ip in ipaddress.ip_network(net.subnet).hosts()
                if str(ip) not in used)


SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(topologies())
def test_unicast_reaches_exactly_the_same_network(topology):
    snap = make_store(*topology).snapshot()
    fabric, _ = build(snap)
    eps = list(snap.endpoints.values())
    for src, dst in itertools.permutations(eps, 2):
        pkt = Packet.icmp(src.mac, dst.mac, src.ip, dst.ip)
        delivered = [name for name, _ in fabric.send(src.id, pkt)]
        expected = [dst.id] if src.network_id == dst.network_id else []
        assert delivered == expected, (src.name, dst.name, topology)


@SETTINGS
@given(topologies())
def test_broadcast_reaches_exactly_the_other_members(topology):
    snap = make_store(*topology).snapshot()
    fabric, _ = build(snap)
    for src in snap.endpoints.values():
        net = snap.networks[src.network_id]
        members = sorted(e.id for e in snap.network_endpoints(net.id) if e.id != src.id)
        # An IPv4 broadcast is flooded; an ARP request for an address nobody has goes to the
        # network's hosts (one of them would own it) and is dropped there, unseen.
        arp = Packet.arp_request(src.mac, src.ip, free_address(snap, net.id))
        bcast_ip = str(ipaddress.ip_network(net.subnet).broadcast_address)
        ping_b = Packet.icmp(src.mac, BROADCAST_MAC, src.ip, bcast_ip)
        for pkt, expected in ((arp, []), (ping_b, members)):
            delivered = sorted(name for name, _ in fabric.send(src.id, pkt))
            assert delivered == expected, (src.name, pkt, topology)  # once each, no one else
            # Only the hosts where the network lives see the flood.
            hosts = {e.host for e in snap.network_endpoints(net.id)}
            assert {hop[0] for hop in fabric.last_path} == hosts, (src.name, topology)
