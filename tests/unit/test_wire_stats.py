"""openflow/stats.py against os-ken: the same reply bytes must give the same Flows both ways.

The reference is what the controller did before: os-ken's parse of the reply, then
openflow.flow_from_stats. Replies are built from every flow the compiler makes (serialized by
openflow/wire.py, whose bytes are os-ken's), from the spellings Open vSwitch answers with (NXM
headers in moves, its own field order), from random flows, and from a real Open vSwitch reply
(tests/unit/data). What the parser does not know goes to os-ken entry by entry, with the same result.
"""
from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp

from flows.flow import OFPP_IN_PORT, Flow, move, output
from harness.simfabric import DP
from openflow import stats as wire_stats
from openflow import wire
from openflow.os_ken import flow_from_stats
from tests.unit.test_wire import TOPOLOGIES, compiled, cts
from tests.unit.test_wire import flows as random_flows

XID = 0x80000042
ENTRY = struct.Struct("!HBxIIHHHH4xQQQ")  # ofp_flow_stats up to its match
REPLY = struct.Struct("!BBHIHH4x")
OVS_REPLY = os.path.join(os.path.dirname(__file__), "data", "ovs_flow_stats_reply.hex")


def entry(body: bytes, table: int = 0, priority: int = 0, cookie: int = 0,
          counters: int = 0) -> bytes:
    """One ofp_flow_stats; body is its match and instructions. Counters and timeouts vary,
    as in a real reply, and must not matter."""
    return ENTRY.pack(ENTRY.size + len(body), table, counters, counters * 7 % 10**9, priority,
                      counters % 3, counters % 5, 0, cookie, counters * 3, counters * 200) + body


def flow_entry(flow: Flow, counters: int = 0) -> bytes:
    body = wire.encode_match(flow.match) + wire.encode_instructions(flow)
    return entry(body, flow.table, flow.priority, flow.cookie, counters)


def reply(entries: list[bytes], xid: int = XID, more: bool = False) -> bytes:
    body = b"".join(entries)
    return REPLY.pack(4, ofp.OFPT_MULTIPART_REPLY, REPLY.size + len(body), xid,
                      ofp.OFPMP_FLOW, int(more)) + body


def os_ken_flows(message: bytes) -> list[Flow]:
    """What the controller did before: os-ken parses, flow_from_stats converts."""
    msg = ofproto_parser.msg(DP, *ofproto_parser.header(message), message)
    return [flow_from_stats(stats) for stats in msg.body]


def assert_same(message: bytes) -> list[Flow]:
    ours = wire_stats.flows(message)
    assert ours == os_ken_flows(message)
    # Again from the caches: the same answer.
    assert wire_stats.flows(message) == ours
    return ours


# ---- every flow the compiler makes ------------------------------------------------------------

@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_every_compiled_flow_reads_back_as_os_ken_reads_it(topology):
    wire_stats.clear_caches()
    flows = compiled(topology)
    message = reply([flow_entry(f, counters=i) for i, f in enumerate(flows)])
    # And as it was: the round trip through the wire gives the compiler's Flow back.
    assert assert_same(message) == flows


def test_a_real_open_vswitch_reply():
    """Bytes Open vSwitch 3.1 sent (one entry of each shape of a controller-programmed
    bridge): NXM headers in moves, reg0, a masked eth_dst, the ARP and ping answers."""
    with open(OVS_REPLY) as f:
        message = bytes.fromhex(f.read().replace("\n", ""))
    wire_stats.clear_caches()
    flows = assert_same(message)
    assert len(flows) == 13
    actions = {a for f in flows for a in f.actions}
    assert ("move", "eth_src", "eth_dst", 48) in actions  # OVS sent NXM_OF_ETH_SRC
    assert ("move", "arp_sha", "arp_tha", 48) in actions
    assert ("output", OFPP_IN_PORT) in actions
    assert any(name == "reg0" for f in flows for name, _ in f.match)
    assert any(v == ("01:00:00:00:00:00", "01:00:00:00:00:00") for f in flows for _, v in f.match)
    assert any(f.write_metadata is not None and f.goto is not None for f in flows)


def test_the_parts_of_a_big_table():
    """The compiler's flows of every topology, split over parts as a switch sends them."""
    flows = [f for name in TOPOLOGIES for f in compiled(name)]
    entries = [flow_entry(f) for f in flows]
    parts = [reply(entries[i:i + 50], more=i + 50 < len(entries))
             for i in range(0, len(entries), 50)]
    assert [wire_stats.reply_info(p)[1] for p in parts] == [True] * (len(parts) - 1) + [False]
    assert [f for p in parts for f in wire_stats.flows(p)] == flows


# ---- what Open vSwitch answers with ------------------------------------------------------------

def oxm_header(name: str, masked: bool = False) -> int:
    num = ofp.oxm_from_user_header(name)
    size = ofp.oxm_get_field_info_by_name(name)[1].size
    return (num << 9) | (0x100 | 2 * size if masked else size)


def reg_move(src: str, dst: str, n_bits: int, src_ofs: int = 0, dst_ofs: int = 0) -> bytes:
    return struct.pack("!HHIHHHHII", 0xFFFF, 24, 0x2320, 6, n_bits, src_ofs, dst_ofs,
                       oxm_header(src), oxm_header(dst))


def apply_actions(*actions: bytes) -> bytes:
    body = b"".join(actions)
    return struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 8 + len(body)) + body


def match_of(*tlvs: bytes) -> bytes:
    body = b"".join(tlvs)
    length = 4 + len(body)
    return struct.pack("!HH", 1, length) + body + bytes(-length % 8)


def tlv(name: str, value: bytes, mask: bytes | None = None) -> bytes:
    return struct.pack("!I", oxm_header(name, mask is not None)) + value + (mask or b"")


def set_field_action(field: bytes) -> bytes:
    length = (4 + len(field) + 7) // 8 * 8
    return struct.pack("!HH", ofp.OFPAT_SET_FIELD, length) + field + bytes(length - 4 - len(field))


@pytest.mark.parametrize("src,dst,n_bits", [
    ("eth_src_nxm", "eth_dst_nxm", 48), ("arp_sha_nxm", "arp_tha_nxm", 48),
    ("arp_spa_nxm", "arp_tpa_nxm", 32), ("ipv4_src_nxm", "ipv4_dst_nxm", 32),
    ("reg0", "tunnel_id_nxm", 32), ("eth_src", "eth_dst", 48), ("reg0", "reg1", 1)])
def test_moves_with_nxm_headers(src, dst, n_bits):
    flows = assert_same(reply([entry(match_of() + apply_actions(reg_move(src, dst, n_bits)))]))
    (kind, got_src, got_dst, got_bits), = flows[0].actions
    assert (kind, got_bits) == ("move", n_bits) and not got_src.endswith("_nxm")


def test_a_move_with_offsets_reads_as_flow_from_stats_reads_it():
    """flow_from_stats drops a move's offsets (the compiler moves whole fields): so must this."""
    assert_same(reply([entry(match_of() + apply_actions(reg_move("reg0", "reg1", 4, 8, 16)))]))


def test_field_order_does_not_matter():
    """Open vSwitch orders a match its own way; Flow.match is sorted by name either way."""
    fields = [tlv("in_port", struct.pack("!I", 3)), tlv("eth_type", b"\x08\x06"),
              tlv("reg0", bytes(4)), tlv("metadata", struct.pack("!Q", 9)),
              tlv("eth_dst", b"\x01" + bytes(5), b"\x01" + bytes(5)),
              tlv("arp_tpa", bytes([10, 0, 0, 1]))]
    results = set()
    for seed in range(5):
        random.Random(seed).shuffle(fields)
        results.add(tuple(assert_same(reply([entry(match_of(*fields))]))))
    assert len(results) == 1


@pytest.mark.parametrize("body", [
    match_of(tlv("eth_src", bytes.fromhex("02aabbccddee"), bytes.fromhex("ffffffffffff"))),
    match_of(tlv("ipv4_src", bytes([10, 1, 2, 3]), bytes([255, 255, 0, 0]))),
    match_of(tlv("tunnel_id", struct.pack("!Q", 5), struct.pack("!Q", 0xFFFF))),
    match_of(tlv("reg0", struct.pack("!I", 1), struct.pack("!I", 1))),
    match_of(tlv("reg5", struct.pack("!I", 7))),  # Nicira fields the compiler does not use
    match_of(tlv("tun_ipv4_src", bytes([192, 0, 2, 1]))),
    match_of(tlv("vlan_vid", struct.pack("!H", 0x1005))),
    match_of(tlv("eth_src_nxm", bytes.fromhex("02aabbccddee"))),
    match_of() + apply_actions(set_field_action(tlv("reg0", struct.pack("!I", 1)))),
    match_of() + apply_actions(set_field_action(tlv("tunnel_id_nxm", struct.pack("!Q", 1)))),
    # an output's max_len is not in Flow (flow_from_stats drops it too)
    match_of() + apply_actions(struct.pack("!HHIH6x", 0, 16, ofp.OFPP_CONTROLLER, 128)),
    # write-metadata with a partial mask: a (value, mask) pair
    match_of() + struct.pack("!HH4xQQ", ofp.OFPIT_WRITE_METADATA, 24, 5, 0xFF),
], ids=["masked-mac", "masked-ip", "masked-tunnel", "masked-reg0", "reg5", "tun-ipv4",
        "vlan", "nxm-eth-src", "set-reg0", "set-tun-id-nxm", "output-max-len",
        "partial-metadata-mask"])
def test_other_fields_and_forms(body):
    assert_same(reply([entry(body, 10, 5, 1)]))


# ---- what it does not know: os-ken's way, entry by entry ---------------------------------------

UNKNOWN_BODIES = {
    "ipv6-field": match_of(tlv("ipv6_src", bytes(16))),
    "clear-actions": match_of() + struct.pack("!HH4x", ofp.OFPIT_CLEAR_ACTIONS, 8),
    "write-actions": match_of() + struct.pack("!HH4x", ofp.OFPIT_WRITE_ACTIONS, 24)
    + struct.pack("!HHIH6x", 0, 16, 1, 0),
    "meter": match_of() + struct.pack("!HHI", ofp.OFPIT_METER, 8, 1),
    "two-gotos": match_of() + struct.pack("!HHB3x", 1, 8, 10) * 2,
    "group-action": match_of() + apply_actions(struct.pack("!HHI", ofp.OFPAT_GROUP, 8, 1)),
    "pop-vlan": match_of() + apply_actions(struct.pack("!HH4x", ofp.OFPAT_POP_VLAN, 8)),
    "nx-resubmit": match_of() + apply_actions(struct.pack("!HHIHHB5x", 0xFFFF, 16, 0x2320, 14,
                                                          1, 0)),
    "set-ipv6-field": match_of() + apply_actions(set_field_action(tlv("ipv6_dst", bytes(16)))),
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_BODIES))
def test_what_it_does_not_know_goes_to_os_ken(name, monkeypatch):
    slow = []
    os_ken_entry = wire_stats._os_ken_entry
    monkeypatch.setattr(wire_stats, "_os_ken_entry",
                        lambda buf, offset: slow.append(offset) or os_ken_entry(buf, offset))
    known = Flow.make(20, 100, 4, {"metadata": 7, "eth_dst": "02:00:00:00:00:01"},
                      actions=[output(3)])
    message = reply([flow_entry(known), entry(UNKNOWN_BODIES[name], 10, 1, 2), flow_entry(known)])
    flows = assert_same(message)
    assert flows[0] == flows[2] == known
    # Only the unknown entry took the slow way (assert_same reads the message twice).
    assert slow == [REPLY.size + len(flow_entry(known))] * 2


@pytest.mark.parametrize("body", [
    match_of(struct.pack("!II", 0xFFFF0000 | (1 << 9) | 8, 0x4F4E4600) + bytes(4)),
    match_of() + apply_actions(set_field_action(tlv("reg0", struct.pack("!I", 1),
                                                    struct.pack("!I", 3)))),
], ids=["experimenter-oxm", "masked-set-field"])
def test_what_os_ken_cannot_parse_raises_value_error(body):
    """os-ken fails on these (the connection used to be closed for them): no Flow is made up."""
    message = reply([entry(body)])
    with pytest.raises(Exception):
        os_ken_flows(message)
    with pytest.raises(ValueError):
        wire_stats.flows(message)


def test_an_unknown_entry_is_not_cached_as_known(monkeypatch):
    calls = []
    monkeypatch.setattr(wire_stats, "_os_ken_entry",
                        lambda buf, offset: calls.append(offset) or Flow.make(0, 0, 0))
    message = reply([entry(UNKNOWN_BODIES["group-action"])])
    wire_stats.flows(message)
    wire_stats.flows(message)
    assert len(calls) == 2


# ---- broken framing ----------------------------------------------------------------------------

GOOD = flow_entry(Flow.make(20, 100, 4, {"metadata": 7, "reg0": 0},
                            actions=[move("eth_src", "eth_dst", 48), output(1)], goto=10))


def with_entry_length(raw: bytes, length: int) -> bytes:
    return struct.pack("!H", length) + raw[2:]


@pytest.mark.parametrize("message", [
    reply([GOOD])[:-8],  # shorter than its header says
    reply([GOOD[:40]]),  # an entry cut before its match
    reply([with_entry_length(GOOD, 0)]),  # a zero length would loop for ever
    reply([with_entry_length(GOOD, len(GOOD) + 8)]),
    reply([GOOD[:48] + struct.pack("!HH", 1, 200) + GOOD[52:]]),  # match longer than entry
    reply([GOOD[:48] + struct.pack("!HH", 1, 2) + GOOD[52:]]),  # match shorter than its header
    reply([entry(match_of() + struct.pack("!HH4x", 4, 16) + struct.pack("!HH", 0, 0) + bytes(4))]),
    reply([entry(match_of() + struct.pack("!HH4x", 4, 0))]),
    reply([entry(match_of() + struct.pack("!HH4x", 4, 32) + struct.pack("!HHIH6x", 0, 16, 1, 0))]),
], ids=["short-message", "cut-entry", "zero-length", "long-entry", "long-match", "short-match",
        "zero-action", "zero-instruction", "actions-past-instruction"])
def test_broken_framing_raises_value_error(message):
    with pytest.raises(ValueError):
        wire_stats.flows(message)


@pytest.mark.parametrize("message,framed", [
    (reply([GOOD]), True), (reply([]), True), (reply([GOOD] * 3), True),
    (reply([GOOD])[:-8], False), (reply([GOOD]) + bytes(8), False), (reply([GOOD[:40]]), False),
    (reply([with_entry_length(GOOD, 0)]), False),
    (reply([GOOD, with_entry_length(GOOD, len(GOOD) - 8)]), False),
    (reply([with_entry_length(GOOD, len(GOOD) + 8)]), False),
    (reply([GOOD[:48] + struct.pack("!HH", 1, 200) + GOOD[52:]]), False),
    (reply([GOOD[:48] + struct.pack("!HH", 1, 2) + GOOD[52:]]), False),
    (struct.pack("!BBHI", 4, ofp.OFPT_BARRIER_REPLY, 8, XID), False),
])
def test_well_framed(message, framed):
    assert wire_stats.well_framed(message) is framed


@pytest.mark.parametrize("message,expected", [
    (reply([GOOD]), (XID, False)),
    (reply([], xid=5, more=True), (5, True)),
    (reply([GOOD])[:15], None),
    (bytes([1]) + reply([GOOD])[1:], None),  # OpenFlow 1.0
    (struct.pack("!BBHI", 4, ofp.OFPT_BARRIER_REPLY, 8, XID), None),
    (REPLY.pack(4, ofp.OFPT_MULTIPART_REPLY, 16, XID, ofp.OFPMP_PORT_DESC, 0), None),
])
def test_reply_info(message, expected):
    assert wire_stats.reply_info(message) == expected


def test_not_a_flow_stats_reply_raises_value_error():
    with pytest.raises(ValueError):
        wire_stats.flows(struct.pack("!BBHI", 4, ofp.OFPT_BARRIER_REPLY, 8, XID))


def test_caches_stay_bounded(monkeypatch):
    monkeypatch.setattr(wire_stats, "_CACHE_LIMIT", 8)
    wire_stats.clear_caches()
    flows = compiled("wide")
    assert assert_same(reply([flow_entry(f) for f in flows])) == flows
    for cache in (wire_stats._tlvs, wire_stats._actions, wire_stats._bodies):
        assert 0 < len(cache) <= 8
    wire_stats.clear_caches()


# ---- random flows ------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(random_flows, min_size=1, max_size=4), st.integers(0, 1 << 32))
def test_random_flows_read_back_as_os_ken_reads_them(flows, counters):
    """Whatever wire.py encodes (CIDR matches become masked pairs, masked values are ANDed),
    both readers agree on it."""
    entries = []
    for flow in flows:
        try:
            entries.append(flow_entry(flow, counters % (1 << 31)))
        except ValueError:  # nothing wire.py encodes, nothing a switch holds from us
            continue
    assert_same(reply(entries))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cts(ports=True), min_size=1, max_size=3))
def test_every_nat_reads_back_as_encoded(actions):
    """os-ken leaves some nat ranges unpadded when it serializes (so test_wire compares those
    bytes with Open vSwitch's reading); what openflow.wire sends, both readers read back as
    the very action tuples it came from."""
    flow = Flow.make(30, 1, 0, {"eth_type": 0x0800}, actions=actions)
    assert assert_same(reply([flow_entry(flow)])) == [flow]
