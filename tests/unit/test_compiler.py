"""The flow compiler, run through the flow-table simulator: no switch, fast."""
from __future__ import annotations

import itertools

import pytest

from flows import HostPorts, compile_host, diff
from flows.pipeline import decode_cookie
from flowsim import Packet
from model import Store
from harness.simfabric import build, diff_messages, host_ports, messages_for


@pytest.fixture
def store():
    store = Store(":memory:")
    for i in range(1, 4):
        store.create_host(f"h{i}", f"unix:/run/h{i}.sock", f"192.0.2.{i}")
    store.create_network("red", "10.0.0.0/24")
    store.create_network("blue", "10.0.0.0/24")  # overlapping on purpose
    # red on h1 and h2; blue on h1 and h3; same addresses in both networks
    for network, host in [("red", "h1"), ("red", "h1"), ("red", "h2"),
                          ("blue", "h1"), ("blue", "h3"), ("blue", "h3")]:
        store.create_endpoint(network, host)
    return store


def members(snap, network_name):
    """The network's endpoints in creation order."""
    return sorted((e for e in snap.endpoints.values()
                   if snap.networks[e.network_id].name == network_name), key=lambda e: e.seq)


def icmp(src, dst):
    return Packet.icmp(src.mac, dst.mac, src.ip, dst.ip)


def test_unicast_reaches_exactly_the_same_network(store):
    snap = store.snapshot()
    fabric, _ = build(snap)
    eps = list(snap.endpoints.values())
    assert len({e.ip for e in eps}) == 3, "the two networks reuse the same addresses"
    for src, dst in itertools.permutations(eps, 2):
        delivered = [name for name, _ in fabric.send(src.id, icmp(src, dst))]
        if src.network_id == dst.network_id:
            assert delivered == [dst.id], (src.name, dst.name)
        else:
            assert delivered == [], (src.name, dst.name)


def test_arp_is_answered_in_the_fabric_for_known_addresses(store):
    snap = store.snapshot()
    fabric, _ = build(snap)
    red = members(snap, "red")
    src, dst = red[0], red[2]  # different hosts
    replies = fabric.send(src.id, Packet.arp_request(src.mac, src.ip, dst.ip))
    assert len(replies) == 1
    name, reply = replies[0]
    assert name == src.id, "the reply comes back to the asker, nobody else sees the request"
    assert (reply.arp_op, reply.arp_sha, reply.arp_spa) == (2, dst.mac, dst.ip)
    assert (reply.eth_src, reply.eth_dst, reply.arp_tha, reply.arp_tpa) == \
        (dst.mac, src.mac, src.mac, src.ip)


def test_broadcast_stays_in_the_network_and_its_hosts(store):
    snap = store.snapshot()
    fabric, _ = build(snap)
    red = members(snap, "red")
    src = red[0]
    broadcast = Packet.icmp(src.mac, "ff:ff:ff:ff:ff:ff", src.ip, "10.0.0.255")
    delivered = sorted(name for name, _ in fabric.send(src.id, broadcast))
    assert delivered == sorted(e.id for e in red[1:])
    assert {hop[0] for hop in fabric.last_path} == {"h1", "h2"}, "h3 has no red endpoint"


def test_arp_for_an_unknown_address_reaches_no_endpoint(store):
    snap = store.snapshot()
    fabric, _ = build(snap)
    red = members(snap, "red")
    src = red[0]
    assert fabric.send(src.id, Packet.arp_request(src.mac, src.ip, "10.0.0.200")) == []
    assert {hop[0] for hop in fabric.last_path} == {"h1", "h2"}, "asked only where red lives"


def test_spoofed_mac_or_ip_goes_nowhere(store):
    snap = store.snapshot()
    fabric, _ = build(snap)
    red = members(snap, "red")
    src, dst = red[0], red[2]
    forged_ip = Packet.icmp(src.mac, dst.mac, "10.0.0.99", dst.ip)
    forged_mac = Packet.icmp("02:00:00:00:00:99", dst.mac, src.ip, dst.ip)
    forged_arp = Packet.arp_request(src.mac, dst.ip, red[1].ip)  # claims another's address
    for pkt in (forged_ip, forged_mac, forged_arp):
        assert fabric.send(src.id, pkt) == []


def test_every_flow_is_owned(store):
    snap = store.snapshot()
    _, tables = build(snap)
    owners = {decode_cookie(f.cookie)[0] for table in tables.values() for f in table.values()}
    assert owners == {"fabric", "network", "endpoint"}


def test_hosts_hold_only_what_their_networks_need(store):
    snap = store.snapshot()
    _, tables = build(snap)
    red = next(n for n in snap.networks.values() if n.name == "red")
    h3_vnis = {dict(f.match).get("metadata") for f in tables["h3"].values()}
    assert red.vni not in h3_vnis
    # Adding a network elsewhere does not change h2's table.
    before = tables["h2"]
    store.create_network("green", "10.1.0.0/24")
    store.create_endpoint("green", "h3")
    store.create_endpoint("green", "h1")
    _, after = build(store.snapshot())
    assert after["h2"] == before


def test_applying_the_same_messages_twice_changes_nothing(store):
    snap = store.snapshot()
    fabric, tables = build(snap)
    switch = fabric.switches["h1"]
    before = [str(f) for f in switch.flows()]
    assert before
    switch.apply_all(messages_for(tables["h1"]))
    assert [str(f) for f in switch.flows()] == before


def test_diff_turns_the_old_table_into_the_new(store):
    snap = store.snapshot()
    ports = host_ports(snap)
    fabric, old_tables = build(snap, ports)
    gone = next(e for e in snap.endpoints.values() if e.host == "h2")
    store.delete_endpoint(gone.id)
    added = store.create_endpoint("red", "h2")
    new_snap = store.snapshot()
    new_ports = host_ports(new_snap)
    for host in new_snap.hosts:
        desired = compile_host(new_snap, host, new_ports[host])
        switch = fabric.switches[host]
        switch.apply_all(diff_messages(desired, old_tables[host]))
        fresh, _ = build(new_snap, new_ports)
        assert sorted(map(str, switch.flows())) == \
            sorted(map(str, fresh.switches[host].flows())), host
        assert not diff(desired, compile_host(new_snap, host, new_ports[host]))
    assert all(gone.mac not in str(f) for s in fabric.switches.values() for f in s.flows())
    assert any(added.mac in str(f) for f in fabric.switches["h1"].flows())


def test_unbound_endpoints_get_no_port_flows(store):
    snap = store.snapshot()
    h1_eps = snap.host_endpoints("h1")
    ports = HostPorts({h1_eps[0].id: 1}, {"h2": 100, "h3": 101})
    table = compile_host(snap, "h1", ports)
    in_ports = {dict(f.match).get("in_port") for f in table.values()} - {None}
    assert in_ports == {1}


def test_gateway_answers_arp_and_ping(store):
    snap = store.snapshot()
    fabric, _ = build(snap)
    red = next(n for n in snap.networks.values() if n.name == "red")
    src = next(e for e in snap.endpoints.values() if e.network_id == red.id)
    [(name, reply)] = fabric.send(src.id, Packet.arp_request(src.mac, src.ip, red.gateway))
    assert name == src.id and (reply.arp_sha, reply.arp_spa) == (red.gateway_mac, red.gateway)
    [(name, echo)] = fabric.send(src.id, Packet.icmp(src.mac, red.gateway_mac, src.ip,
                                                     red.gateway))
    assert name == src.id
    assert (echo.eth_src, echo.eth_dst, echo.ipv4_src, echo.ipv4_dst, echo.icmpv4_type) == \
        (red.gateway_mac, src.mac, red.gateway, src.ip, 0)
    # Only echo requests are answered: the gateway routes nothing.
    udp = Packet.udp(src.mac, red.gateway_mac, src.ip, "8.8.8.8", 5000, 53)
    assert fabric.send(src.id, udp) == []
