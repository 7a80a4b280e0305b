"""The egress next hop: the ARP request the controller sends, the reply it takes from the
physical bridge's packet-in, the binding it keeps in OVSDB, and the flow that copies the
next hop's replies to it."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ether

from controller.fabric import Fabric
from controller.neighbours import arp_reply_sender, arp_request
from flows.physical import compile_physical
from flowsim import Packet, SimSwitch
from harness.simfabric import PEER_PATCH, PHY_MAC, UPLINK, host_ports, messages_for, with_physical
from model import Store
from ovsdb.config import next_hop_binding

HOST_IP, NEXT_HOP, NEXT_HOP_MAC = "192.0.2.1", "192.0.2.254", "02:aa:00:00:00:fe"


def reply(src_ip=NEXT_HOP, src_mac=NEXT_HOP_MAC, dst_ip=HOST_IP, opcode=arp.ARP_REPLY) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(PHY_MAC, src_mac, ether.ETH_TYPE_ARP))
    pkt.add_protocol(arp.arp(opcode=opcode, src_mac=src_mac, src_ip=src_ip, dst_mac=PHY_MAC,
                             dst_ip=dst_ip))
    pkt.serialize()
    return bytes(pkt.data)


def test_the_request_asks_for_the_next_hop_from_the_hosts_address():
    request = packet.Packet(arp_request(PHY_MAC, HOST_IP, NEXT_HOP)).get_protocol(arp.arp)
    assert (request.opcode, request.src_mac, request.src_ip, request.dst_ip) == \
        (arp.ARP_REQUEST, PHY_MAC, HOST_IP, NEXT_HOP)


def test_only_a_reply_gives_a_binding():
    assert arp_reply_sender(reply()) == (NEXT_HOP, NEXT_HOP_MAC)
    assert arp_reply_sender(reply(opcode=arp.ARP_REQUEST)) is None
    assert arp_reply_sender(b"\x00" * 10) is None


def test_a_binding_reads_back_and_nothing_else_does():
    assert next_hop_binding(f"{NEXT_HOP}={NEXT_HOP_MAC}") == (NEXT_HOP, NEXT_HOP_MAC)
    for text in (None, "", NEXT_HOP, f"={NEXT_HOP_MAC}"):
        assert next_hop_binding(text) is None


def store() -> Store:
    s = Store(":memory:")
    s.create_host("h1", "unix:/run/h1.sock", HOST_IP)
    return s


def physical_ports(next_hop, next_hop_mac=None):
    ports = with_physical(host_ports(store().snapshot()), next_hop_mac)
    return {h: replace(hp, physical=replace(hp.physical, next_hop=next_hop))
            for h, hp in ports.items()}


def test_the_physical_bridge_copies_the_next_hops_replies_to_the_controller():
    snap = store().snapshot()
    switch = SimSwitch()
    switch.apply_all(messages_for(compile_physical(snap, "h1", physical_ports(NEXT_HOP)["h1"])))
    answer = Packet.arp_reply(NEXT_HOP_MAC, NEXT_HOP, PHY_MAC, HOST_IP)
    assert sorted(port for port, _ in switch.process(answer, UPLINK)) == \
        ["controller", "normal"], "the host's own stack still gets it"
    stranger = Packet.arp_reply(NEXT_HOP_MAC, "192.0.2.77", PHY_MAC, HOST_IP)
    assert [port for port, _ in switch.process(stranger, UPLINK)] == ["normal"]
    # From the integration bridge: out of the uplink, untouched.
    assert [port for port, _ in switch.process(answer, PEER_PATCH)] == [UPLINK]


def test_no_next_hop_named_no_copy():
    snap = store().snapshot()
    flows = compile_physical(snap, "h1", physical_ports(None)["h1"])
    assert not any(("output", 0xFFFFFFFD) in f.actions for f in flows.values())


class FakeOvsdb:
    def __init__(self, ports):
        self.ports = ports
        self.desired = []

    def set_desired(self, config):
        self.desired.append(config)


def fabric_with(next_hop, next_hop_mac=None):
    s = store()
    fabric = Fabric(s, "tcp:127.0.0.1:6653")
    fabric._snapshot = s.snapshot()
    dp = object()
    fabric.physical_switches["h1"] = SimpleNamespace(dp=dp, programs=lambda: True)
    fabric.ovsdb_sessions["h1"] = FakeOvsdb(physical_ports(next_hop, next_hop_mac)["h1"])
    return fabric, dp


def test_a_reply_of_the_next_hop_is_kept_in_ovsdb_once():
    fabric, dp = fabric_with(NEXT_HOP)
    fabric.packet_in(dp, reply())
    fabric.packet_in(dp, reply())  # the same binding again: nothing to write
    [config] = fabric.ovsdb_sessions["h1"].desired
    assert config.physical.next_hop == (NEXT_HOP, NEXT_HOP_MAC)
    fabric.packet_in(dp, reply(src_mac="02:aa:00:00:00:01"))  # it moved: learnt again
    assert fabric.ovsdb_sessions["h1"].desired[-1].physical.next_hop[1] == "02:aa:00:00:00:01"


def test_replies_of_others_or_from_another_switch_are_ignored():
    fabric, dp = fabric_with(NEXT_HOP)
    fabric.packet_in(dp, reply(src_ip="192.0.2.77"))
    fabric.packet_in(object(), reply())
    assert fabric.ovsdb_sessions["h1"].desired == []


def test_the_resolver_asks_until_resolved_then_less_often():
    fabric, _ = fabric_with(NEXT_HOP)
    [query] = fabric._next_hop_queries()
    assert (query.uplink, query.bridge_mac, query.source_ip, query.next_hop, query.resolved) == \
        (UPLINK, PHY_MAC, HOST_IP, NEXT_HOP, False)
    fabric, _ = fabric_with(NEXT_HOP, NEXT_HOP_MAC)
    assert [q.resolved for q in fabric._next_hop_queries()] == [True]
    fabric, _ = fabric_with(None)
    assert fabric._next_hop_queries() == []
