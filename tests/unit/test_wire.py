"""openflow/wire.py against os-ken: the same Flow must give the very same bytes both ways.

Byte identity with os-ken's serialization of openflow.add_message / delete_message (and of
its bundle and barrier messages) is the proof that the struct encoder is right: every flow the
compiler makes over a few topologies, hand-made flows for each field, mask and action, and
random flows. What the encoder does not cover must raise ValueError (the caller then sends the
flow through os-ken).
"""
from __future__ import annotations

import shutil
import socket
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flows import HostPorts, compile_host
from flows.flow import OFPP_IN_PORT, Flow, move, output, set_field
from harness.simfabric import DP, host_ports
from model import Store
from openflow import values, wire
from openflow.actions import conjunction, ct, dec_ttl, nat
from openflow.os_ken import add_message, delete_message
from openflow.vocabulary import FIELDS

FLAGS = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED

# What the compiler uses (flows/compiler.py); test_topologies_use_every_field_and_action
# checks that the topologies below produce all of it, so the identity test covers all of it.
COMPILER_MATCH_FIELDS = {"in_port", "eth_src", "eth_dst", "eth_type", "ip_proto", "ipv4_src",
                         "ipv4_dst", "icmpv4_type", "arp_op", "arp_spa", "arp_tpa", "arp_sha",
                         "tunnel_id", "metadata", "reg0"}
COMPILER_SET_FIELDS = {"tunnel_id", "reg0", "eth_src", "arp_op", "arp_sha", "arp_spa",
                       "ipv4_src", "icmpv4_type"}
COMPILER_MOVES = {("eth_src", "eth_dst", 48), ("arp_sha", "arp_tha", 48),
                  ("arp_spa", "arp_tpa", 32), ("ipv4_src", "ipv4_dst", 32)}


def serialized(msg, xid: int) -> bytes:
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def os_ken_add(flow: Flow, xid: int) -> bytes:
    return serialized(add_message(DP, flow), xid)


def os_ken_delete(flow: Flow, xid: int) -> bytes:
    return serialized(delete_message(DP, flow), xid)


def os_ken_bundle_add(inner, bundle_id: int, flags: int, xid: int) -> bytes:
    return serialized(parser.ONFBundleAddMsg(DP, bundle_id, flags, inner, []), xid)


def assert_identical(flow: Flow, xid: int = 0x80000001, bundle_id: int = 7,
                     flags: int = FLAGS) -> None:
    """Add, delete-strict and both inside a bundle add: wire.py's bytes are os-ken's."""
    add = wire.flow_mod_add(flow, xid)
    assert add == os_ken_add(flow, xid), flow
    delete = wire.flow_mod_delete_strict(flow, xid)
    assert delete == os_ken_delete(flow, xid), flow
    assert wire.bundle_add(add, bundle_id, flags, xid) == \
        os_ken_bundle_add(add_message(DP, flow), bundle_id, flags, xid), flow
    assert wire.bundle_add(delete, bundle_id, flags, xid) == \
        os_ken_bundle_add(delete_message(DP, flow), bundle_id, flags, xid), flow
    # The one-pack forms the reconcile path uses: the same bytes.
    assert wire.Bundle(bundle_id, flags).flow_mod_add(flow, xid) == \
        wire.bundle_add(add, bundle_id, flags, xid), flow
    assert wire.Bundle(bundle_id, flags).flow_mod_delete_strict(flow, xid) == \
        wire.bundle_add(delete, bundle_id, flags, xid), flow


# ---- every flow the compiler makes ----------------------------------------------------------

def overlapping_store() -> Store:
    """tests/unit/test_compiler.py's: red on h1 and h2, blue on h1 and h3, same addresses."""
    store = Store(":memory:")
    for i in range(1, 4):
        store.create_host(f"h{i}", f"unix:/run/h{i}.sock", f"192.0.2.{i}")
    store.create_network("red", "10.0.0.0/24")
    store.create_network("blue", "10.0.0.0/24")
    for network, host in [("red", "h1"), ("red", "h1"), ("red", "h2"),
                          ("blue", "h1"), ("blue", "h3"), ("blue", "h3")]:
        store.create_endpoint(network, host)
    return store


def wide_store() -> Store:
    """5 hosts, 4 networks of different sizes spread unevenly, one host without endpoints."""
    store = Store(":memory:")
    for i in range(5):
        store.create_host(f"h{i}", f"unix:/run/h{i}.sock", f"192.0.2.{i + 1}")
    for n, subnet in enumerate(["10.0.0.0/24", "10.1.0.0/16", "172.16.5.0/28", "10.0.0.0/24"]):
        store.create_network(f"n{n}", subnet)
    for i in range(40):
        store.create_endpoint(f"n{i % 4}", f"h{(i * 7) % 4}")  # h4 holds nothing
    return store


def single_host_store() -> Store:
    store = Store(":memory:")
    store.create_host("solo", "unix:/run/solo.sock", "192.0.2.9")
    store.create_network("only", "192.168.77.0/24")
    for _ in range(3):
        store.create_endpoint("only", "solo")
    return store


def partial_ports(snap) -> dict[str, HostPorts]:
    """Half the endpoints not reported yet (their requested ofport is used), one tunnel missing."""
    result = {}
    for host, ports in host_ports(snap).items():
        endpoints = dict(list(ports.endpoints.items())[::2])
        tunnels = dict(list(ports.tunnels.items())[1:])
        result[host] = HostPorts(endpoints, tunnels)
    return result


TOPOLOGIES = {
    "overlapping": (overlapping_store, host_ports),
    "wide": (wide_store, host_ports),
    "wide-partial-ports": (wide_store, partial_ports),
    "single-host": (single_host_store, host_ports),
}


def compiled(name: str) -> list[Flow]:
    make_store, make_ports = TOPOLOGIES[name]
    snap = make_store().snapshot()
    ports = make_ports(snap)
    return [flow for host in sorted(snap.hosts)
            for flow in compile_host(snap, host, ports[host]).values()]


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_every_compiled_flow_is_byte_identical(topology):
    flows = compiled(topology)
    assert len(flows) > 10
    for xid, flow in enumerate(flows):
        assert_identical(flow, xid=xid)


def test_topologies_use_every_field_and_action():
    flows = [f for name in TOPOLOGIES for f in compiled(name)]
    match_fields = {name for f in flows for name, _ in f.match}
    set_fields = {a[1] for f in flows for a in f.actions if a[0] == "set_field"}
    moves = {a[1:] for f in flows for a in f.actions if a[0] == "move"}
    assert match_fields == COMPILER_MATCH_FIELDS
    assert set_fields == COMPILER_SET_FIELDS
    assert moves == COMPILER_MOVES
    assert any(("output", OFPP_IN_PORT) in f.actions for f in flows)
    assert any(isinstance(v, tuple) for f in flows for _, v in f.match), "a masked field"
    assert any(f.write_metadata is not None for f in flows)
    assert any(f.goto is not None for f in flows)
    assert any(not f.actions and f.goto is None for f in flows), "a drop flow"


def test_a_flow_sent_again_gives_the_same_bytes():
    """The second time comes from the caches: only the header changes with the xid."""
    wire.clear_caches()
    flows = compiled("overlapping")
    first = [wire.flow_mod_add(f, 1) for f in flows]
    again = [wire.flow_mod_add(f, 2) for f in flows]
    assert wire._add_tail.cache_info().hits >= len(flows)
    for a, b, flow in zip(first, again, flows):
        assert a[:4] == b[:4] and a[8:] == b[8:]
        assert struct.unpack("!I", b[4:8]) == (2,)
        assert b == os_ken_add(flow, 2)


# ---- hand-made flows: every field, mask, value form and action ------------------------------

MAC = "02:00:5e:10:00:01"
IP = "10.20.30.40"
PLAIN_MATCHES = [
    {"in_port": 1}, {"in_port": 0xFFFFFF00}, {"metadata": 0}, {"metadata": (1 << 64) - 1},
    {"eth_dst": MAC}, {"eth_src": "FF:FF:FF:FF:FF:FF"}, {"eth_type": 0x86DD},
    {"ip_proto": 255}, {"ipv4_src": IP}, {"ipv4_dst": "255.255.255.255"},
    {"icmpv4_type": 8}, {"arp_op": 2}, {"arp_spa": "0.0.0.0"}, {"arp_tpa": IP},
    {"arp_sha": MAC}, {"arp_tha": MAC}, {"tunnel_id": (1 << 64) - 1}, {"reg0": 0},
    {"reg0": 0xFFFFFFFF},
]
MASKED_MATCHES = [
    {"eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")},
    {"eth_dst": ("ff:ff:ff:ff:ff:ff", "01:00:00:00:00:00")},  # the value is ANDed with its mask
    {"eth_src": (MAC, "ff:ff:ff:ff:ff:ff")},  # an all-ones mask is still sent
    {"eth_src": (MAC, "00:00:00:00:00:00")},
    {"metadata": (0x1234, 0xFF00)}, {"reg0": (3, 1)}, {"tunnel_id": (5, 0xFFFF)},
    {"in_port": (7, 0xF)}, {"eth_type": (0x0800, 0xFF00)}, {"arp_op": (1, 1)},
    {"ip_proto": (17, 0xF0)}, {"icmpv4_type": (8, 8)},
    {"ipv4_src": (IP, "255.255.0.0")}, {"ipv4_dst": (IP, "0.0.0.0")},
    {"arp_spa": (IP, "255.255.255.255")}, {"arp_tpa": ("10.0.0.7", "255.255.255.248")},
    {"arp_sha": (MAC, "ff:ff:ff:00:00:00")}, {"arp_tha": (MAC, "00:00:00:ff:ff:ff")},
    # CIDR, which os-ken reads as (address, netmask)
    {"ipv4_src": "10.0.0.1/24"}, {"ipv4_dst": "10.1.2.3/32"}, {"arp_tpa": "10.1.2.3/0"},
    {"arp_spa": "192.168.1.200/27"},
]
MULTI_FIELD_MATCHES = [
    {},
    # reg0 (NXM_NX_REG0, class 0x0001) sorts before every OpenFlow-basic field
    {"metadata": 5, "reg0": 1, "eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")},
    {"in_port": 3, "eth_src": MAC, "eth_type": 0x0806, "arp_spa": IP, "arp_sha": MAC},
    {"metadata": 9, "eth_dst": MAC, "eth_type": 0x0800, "ip_proto": 1, "ipv4_dst": IP,
     "icmpv4_type": 8, "reg0": 0, "tunnel_id": 9, "ipv4_src": "10.0.0.0/8"},
    {name: value for m in PLAIN_MATCHES for name, value in m.items()},  # every field at once
]


@pytest.mark.parametrize("match", PLAIN_MATCHES + MASKED_MATCHES + MULTI_FIELD_MATCHES,
                         ids=repr)
def test_match_fields(match):
    assert_identical(Flow.make(20, 100, 0x0400000000000001, match, actions=[output(1)]))


ACTIONS = [
    [output(1)], [output(OFPP_IN_PORT)], [output(ofp.OFPP_CONTROLLER)], [output(0xFFFFFF00)],
    [set_field("tunnel_id", 0)], [set_field("tunnel_id", (1 << 64) - 1)],
    [set_field("reg0", 1)], [set_field("eth_src", MAC)], [set_field("eth_dst", MAC)],
    [set_field("arp_op", 2)], [set_field("arp_sha", MAC)], [set_field("arp_tha", MAC)],
    [set_field("arp_spa", IP)], [set_field("arp_tpa", IP)], [set_field("ipv4_src", IP)],
    [set_field("ipv4_dst", IP)], [set_field("icmpv4_type", 0)], [set_field("ip_proto", 6)],
    [set_field("metadata", 0x77)], [set_field("in_port", 4)], [set_field("eth_type", 0x800)],
    [move("eth_src", "eth_dst", 48)], [move("arp_sha", "arp_tha", 48)],
    [move("arp_spa", "arp_tpa", 32)], [move("ipv4_src", "ipv4_dst", 32)],
    [move("reg0", "tunnel_id", 32)], [move("metadata", "reg0", 16)], [move("in_port", "reg0", 1)],
    # The ARP reply and ping answer of the compiler, in order.
    [move("eth_src", "eth_dst", 48), set_field("eth_src", MAC), set_field("arp_op", 2),
     move("arp_sha", "arp_tha", 48), move("arp_spa", "arp_tpa", 32), set_field("arp_sha", MAC),
     set_field("arp_spa", IP), output(OFPP_IN_PORT)],
    [set_field("tunnel_id", 99)] + [output(p) for p in range(1, 200)],  # a big flood
]


@pytest.mark.parametrize("actions", ACTIONS, ids=lambda a: repr(a)[:60])
@pytest.mark.parametrize("write_metadata,goto", [(None, None), (7, None), (None, 20),
                                                 (0, 0), ((1 << 64) - 1, 255)])
def test_actions_and_instructions(actions, write_metadata, goto):
    assert_identical(Flow.make(10, 100, 3, {"metadata": 7, "reg0": 0}, actions=actions,
                               write_metadata=write_metadata, goto=goto))


@pytest.mark.parametrize("write_metadata,goto", [(None, None), (5, None), (None, 10), (5, 20)])
def test_flows_without_actions(write_metadata, goto):
    assert_identical(Flow.make(0, 0, 1, write_metadata=write_metadata, goto=goto))


@pytest.mark.parametrize("table,priority,cookie", [(0, 0, 0), (255, 0xFFFF, (1 << 64) - 1),
                                                   (20, 32768, 0x0300000000000010)])
def test_header_fields(table, priority, cookie):
    assert_identical(Flow.make(table, priority, cookie, {"in_port": 1}, goto=10))


def test_add_and_delete_header_defaults():
    """The fixed fields, spelled out: what os-ken's OFPFlowMod defaults make them."""
    flow = Flow.make(10, 100, 0x0400000000000005, {"in_port": 1}, actions=[output(2)])
    (version, type_, _, xid, cookie, cookie_mask, table, command, idle, hard, priority,
     buffer_id, out_port, out_group, flags) = wire._FLOW_MOD.unpack_from(
        wire.flow_mod_add(flow, 42))
    assert (version, type_, xid, cookie, cookie_mask, table, command) == \
        (4, ofp.OFPT_FLOW_MOD, 42, 0x0400000000000005, 0, 10, ofp.OFPFC_ADD)
    assert (idle, hard, priority, buffer_id, flags) == (0, 0, 100, ofp.OFP_NO_BUFFER, 0)
    assert (out_port, out_group) == (0, 0)  # OFPFlowMod's defaults, not OFPP_ANY
    fields = wire._FLOW_MOD.unpack_from(wire.flow_mod_delete_strict(flow, 42))
    assert fields[4] == 0 and fields[7] == ofp.OFPFC_DELETE_STRICT  # no cookie
    assert fields[12:14] == (ofp.OFPP_ANY, ofp.OFPG_ANY)


def test_reg0_is_the_nxm_field_and_sorts_first():
    """os-ken encodes reg0 as NXM_NX_REG0 (class 0x0001, field 0) and sorts the match by OXM
    type, so reg0 comes before the OpenFlow-basic fields (class 0x8000)."""
    message = wire.flow_mod_add(Flow.make(20, 10, 0, {"metadata": 1, "reg0": 1}), 0)
    match = message[wire._FLOW_MOD.size:]
    assert match[:4] == struct.pack("!HH", ofp.OFPMT_OXM, 4 + 8 + 12)
    assert match[4:12] == struct.pack("!II", 0x00010004, 1)
    assert match[12:16] == struct.pack("!I", ofp.OXM_OF_METADATA)


@pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="needs ovs-ofctl")
def test_tcp_flags_come_after_their_prerequisites():
    """tcp_flags is a Nicira field (class 0x0001) that needs eth_type and ip_proto before it:
    in os-ken's order Open vSwitch refuses the match (OFPBMC_BAD_PREREQ); here it goes last,
    the rest of the match as os-ken orders it."""
    flow = Flow.make(4, 402, 7, {"reg1": 3, "eth_type": 0x0800, "ip_proto": 6,
                                 AFTER_BASIC: (0x002, 0x012)}, actions=[output(1)])
    message = wire.flow_mod_add(flow, 1)
    match = message[wire._FLOW_MOD.size:]
    assert match[4:8] == struct.pack("!I", 0x00010204), "reg1 first, as os-ken has it"
    assert match[18:22] == struct.pack("!I", ofp.OXM_OF_IP_PROTO)
    assert match[23:27] == struct.pack("!I", 0x00014504), "tcp_flags (masked) last"
    printed = subprocess.run(["ovs-ofctl", "ofp-print", message.hex()], check=True,
                             capture_output=True, text=True).stdout
    assert "tcp,reg1=0x3,tcp_flags=+syn-ack" in printed and "decode error" not in printed


# ---- bundles and barriers -------------------------------------------------------------------

@pytest.mark.parametrize("type_", [ofp.ONF_BCT_OPEN_REQUEST, ofp.ONF_BCT_CLOSE_REQUEST,
                                   ofp.ONF_BCT_COMMIT_REQUEST, ofp.ONF_BCT_DISCARD_REQUEST])
@pytest.mark.parametrize("flags", [0, ofp.ONF_BF_ATOMIC, FLAGS])
def test_bundle_ctrl(type_, flags):
    for bundle_id, xid in [(1, 0), (0xFFFFFFFF, 0xFFFFFFFF), (12345, 0x80000007)]:
        assert wire.bundle_ctrl(bundle_id, type_, flags, xid) == serialized(
            parser.ONFBundleCtrlMsg(DP, bundle_id, type_, flags, []), xid)


@pytest.mark.parametrize("xid", [0, 1, 0x80000000, 0xFFFFFFFF])
def test_barrier(xid):
    assert wire.barrier(xid) == serialized(parser.OFPBarrierRequest(DP), xid)


def test_bundle_add_gives_the_inner_message_the_outer_xid():
    flow = Flow.make(0, 200, 4, {"in_port": 1}, write_metadata=3, goto=20)
    inner = wire.flow_mod_add(flow, 111)
    outer = wire.bundle_add(inner, 9, FLAGS, 222)
    assert outer == os_ken_bundle_add(add_message(DP, flow), 9, FLAGS, 222)
    assert struct.unpack_from("!I", outer, 4) == struct.unpack_from("!I", outer, 24 + 4) == (222,)
    assert outer[24:28] == inner[:4] and outer[32:] == inner[8:]


def test_bundle_add_wraps_any_message():
    assert wire.bundle_add(wire.barrier(5), 3, 0, 5) == \
        os_ken_bundle_add(parser.OFPBarrierRequest(DP), 3, 0, 5)


# ---- random flows ---------------------------------------------------------------------------

macs = st.binary(min_size=6, max_size=6).flatmap(
    lambda b: st.sampled_from([":".join(f"{x:02x}" for x in b), ":".join(f"{x:02X}" for x in b)]))
ipv4s = st.binary(min_size=4, max_size=4).map(socket.inet_ntoa)


def plain_values(kind: str, size: int):
    if kind == "mac":
        return macs
    if kind == "ipv4":
        return ipv4s
    return st.integers(0, (1 << (8 * size)) - 1)


def match_values(kind: str, size: int):
    plain = plain_values(kind, size)
    options = [plain, st.tuples(plain, plain)]
    if kind == "ipv4":
        options.append(st.builds(lambda ip, n: f"{ip}/{n}", ipv4s, st.integers(0, 32)))
    return st.one_of(options)


FIELD_KINDS = {name: (f.kind, f.size) for name, f in FIELDS.items()}
field_names = st.sampled_from(sorted(FIELD_KINDS))


# The one field sent out of os-ken's order (after the basic fields): tested on its own below.
AFTER_BASIC = "tcp_flags_nxm"


@st.composite
def matches(draw):
    names = draw(st.lists(field_names.filter(lambda n: n != AFTER_BASIC), unique=True,
                          max_size=8))
    return {name: draw(match_values(*FIELD_KINDS[name])) for name in names}


@st.composite
def set_fields(draw):
    name = draw(field_names)
    return set_field(name, draw(plain_values(*FIELD_KINDS[name])))


u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)


@st.composite
def conjunctions(draw):
    n_clauses = draw(st.integers(1, 64))
    return conjunction(draw(u32), draw(st.integers(1, n_clauses)), n_clauses)


def nats(ports: bool):
    """nat as routing asks for it. With ``ports``, also the port ranges that os-ken leaves
    unpadded (their bytes are compared with Open vSwitch's reading instead)."""
    either = st.tuples(ipv4s, ipv4s | st.none()) if ports else st.tuples(ipv4s, ipv4s)
    port_ranges = st.tuples(u16, u16 | st.none()) if ports else st.nothing()
    return st.builds(nat, st.sampled_from([None, "src", "dst"]), st.none() | either,
                     st.none() | port_ranges)


def cts(ports: bool = False):
    exec_actions = st.lists(st.builds(set_field, st.sampled_from(["ct_mark", "ct_label"]),
                                      st.integers(0, 0xFFFFFFFF)), max_size=2)
    return st.builds(ct, st.booleans(), u16, st.none() | st.integers(0, 254),
                     st.none() | nats(ports), exec_actions)


actions = st.one_of(
    st.builds(output, st.one_of(u32, st.sampled_from([OFPP_IN_PORT, ofp.OFPP_CONTROLLER,
                                                      ofp.OFPP_FLOOD, ofp.OFPP_LOCAL]))),
    set_fields(),
    st.builds(move, field_names, field_names, u16),
    st.just(dec_ttl()),
    conjunctions(),
    cts(),
)
flows = st.builds(
    Flow.make, table=st.integers(0, 255), priority=st.integers(0, 0xFFFF),
    cookie=st.integers(0, (1 << 64) - 1), match=matches(),
    actions=st.lists(actions, max_size=10),
    write_metadata=st.none() | st.integers(0, (1 << 64) - 1),
    goto=st.none() | st.integers(0, 255))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF))
def test_random_flows_are_byte_identical(flow, xid, bundle_id, flags):
    assert_identical(flow, xid=xid, bundle_id=bundle_id, flags=flags)


# ---- what is not encoded here: ValueError, and os-ken takes it ------------------------------

NOT_ENCODED = [
    Flow.make(0, 1, 0, {"vlan_vid": 5}),  # a field the compiler does not use
    Flow.make(0, 1, 0, {"eth_src": "02-00-00-00-00-01"}),  # a MAC spelling netaddr takes
    Flow.make(0, 1, 0, {"eth_src": "2:0:0:0:0:1"}),
    Flow.make(0, 1, 0, {"eth_src": "02:00:00:00:00:0g"}),
    Flow.make(0, 1, 0, {"eth_src": "02:00:00:00:00: 1"}),
    Flow.make(0, 1, 0, {"eth_src": "0200:00:00:00:0:1"}),  # twelve digits, colons astray
    Flow.make(0, 1, 0, {"ipv4_src": "010.0.0.1"}),  # leading zeros
    Flow.make(0, 1, 0, {"ipv4_src": "10.0.0.1/255.255.255.0"}),  # a netmask prefix
    Flow.make(0, 1, 0, {"ipv4_src": "10.0.0.1/33"}),
    Flow.make(0, 1, 0, {"ipv4_src": ("10.0.0.0/8", "255.0.0.0")}),
    Flow.make(0, 1, 0, {"ipv4_src": 0x0A000001}),
    Flow.make(0, 1, 0, {"in_port": "1"}),
    Flow.make(0, 1, 0, {"in_port": 1 << 32}),  # os-ken would keep the low bytes
    Flow.make(0, 1, 0, {"in_port": -1}),
    Flow.make(0, 1, 0, {"metadata": (1, 2, 3)}),
    Flow(0, 1, (("in_port", 1), ("in_port", 2)), 0),  # twice: os-ken would keep one
    Flow(0, 1, (("in_port", [1]),), 0),  # unhashable
    Flow(0, 1, (("in_port",),), 0),
    Flow.make(0, 1, 0, actions=[("group", 1)]),
    Flow.make(0, 1, 0, actions=[("output", 1, 2)]),
    Flow.make(0, 1, 0, actions=[output(-1)]),
    Flow.make(0, 1, 0, actions=[output(1 << 32)]),
    Flow.make(0, 1, 0, actions=[set_field("vlan_vid", 5)]),
    Flow.make(0, 1, 0, actions=[set_field("eth_src", (MAC, MAC))]),  # no mask in set_field
    Flow.make(0, 1, 0, actions=[set_field("ipv4_src", "10.0.0.0/8")]),
    Flow.make(0, 1, 0, actions=[set_field("reg0", 1 << 32)]),
    Flow.make(0, 1, 0, actions=[move("eth_src", "vlan_vid", 12)]),
    Flow.make(0, 1, 0, actions=[move("eth_src", "eth_dst", 1 << 16)]),
    Flow.make(0, 1, 0, actions=["output"]),
    Flow.make(0, 1, 0, write_metadata=(1, 0xFF)),
    Flow.make(0, 1, 0, write_metadata=1 << 64),
    Flow.make(0, 1, 0, goto=256),
    Flow.make(256, 1, 0),
    Flow.make(0, 1 << 16, 0),
    Flow.make(0, 1, 1 << 64),
    Flow.make(0, 1, 0, actions=[output(p) for p in range(5000)]),  # longer than 64 KiB
]


@pytest.mark.parametrize("flow", NOT_ENCODED, ids=lambda f: repr(f)[:90])
def test_what_is_not_encoded_raises_value_error(flow):
    with pytest.raises(ValueError):
        wire.flow_mod_add(flow, 1)
    with pytest.raises(ValueError):
        wire.Bundle(1, FLAGS).flow_mod_add(flow, 1)


@pytest.mark.parametrize("call", [
    lambda: wire.flow_mod_add(Flow.make(0, 1, 0), 1 << 32),
    lambda: wire.flow_mod_delete_strict(Flow.make(0, 1, 0), -1),
    lambda: wire.bundle_add(b"\x04\x0e", 1, 0, 1),
    lambda: wire.bundle_add(wire.barrier(1), 1 << 32, 0, 1),
    lambda: wire.bundle_add(wire.flow_mod_add(Flow.make(0, 1, 0, actions=[
        output(p) for p in range(4093)]), 1), 1, 0, 1),  # fits alone, not wrapped
    lambda: wire.Bundle(1, 0).flow_mod_add(Flow.make(0, 1, 0, actions=[
        output(p) for p in range(4093)]), 1),  # fits alone, not wrapped
    lambda: wire.Bundle(1 << 32, 0).flow_mod_add(Flow.make(0, 1, 0), 1),
    lambda: wire.Bundle(1, 1 << 16).flow_mod_delete_strict(Flow.make(0, 1, 0), 1),
    lambda: wire.bundle_ctrl(1, 1 << 16, 0, 1),
    lambda: wire.barrier(1 << 32),
], ids=["add-xid", "delete-xid", "short-inner", "bundle-id", "bundle-too-long",
        "bundled-add-too-long", "bundled-add-bundle-id", "bundled-delete-flags", "ctrl-type",
        "barrier-xid"])
def test_out_of_range_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_caches_stay_bounded(monkeypatch):
    monkeypatch.setattr(wire, "_CACHE_LIMIT", 16)
    monkeypatch.setattr(values, "CACHE_LIMIT", 16)
    wire.clear_caches()
    for i in range(200):
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"
        flow = Flow.make(0, 1, 0, {"in_port": i, "eth_src": mac, "ipv4_src": f"10.0.0.{i}"},
                         actions=[set_field("eth_dst", mac), output(i)])
        assert wire.flow_mod_add(flow, i) == os_ken_add(flow, i)
    for cache in (values._macs, values._ipv4s, wire._tlvs, wire._actions):
        assert 0 < len(cache) <= 16
    assert wire._add_tail.cache_info().maxsize is not None
    wire.clear_caches()


# ---- Open vSwitch reads them ----------------------------------------------------------------

@pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="needs ovs-ofctl")
def test_ovs_ofctl_decodes_the_messages():
    arp_reply = next(f for f in compiled("overlapping")
                     if ("move", "arp_sha", "arp_tha", 48) in f.actions)
    add = wire.flow_mod_add(arp_reply, 5)
    printed = {
        "add": wire.bundle_add(add, 1, FLAGS, 5),
        "delete": wire.flow_mod_delete_strict(arp_reply, 6),
        "flood": wire.flow_mod_add(Flow.make(20, 10, 1, {"reg0": 0, "metadata": 7,
                                                         "eth_dst": ("01:00:00:00:00:00",
                                                                     "01:00:00:00:00:00")},
                                             actions=[output(1), set_field("tunnel_id", 7),
                                                      output(100)]), 7),
        "commit": wire.bundle_ctrl(1, ofp.ONF_BCT_COMMIT_REQUEST, FLAGS, 8),
        "barrier": wire.barrier(9),
    }
    out = {name: subprocess.run(["ovs-ofctl", "ofp-print", message.hex()], check=True,
                                capture_output=True, text=True).stdout
           for name, message in printed.items()}
    assert "ONFT_BUNDLE_ADD_MESSAGE" in out["add"] and "flags=atomic ordered" in out["add"]
    assert "ADD table:10 priority=100" in out["add"]
    assert "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]" in out["add"] and "IN_PORT" in out["add"]
    assert "DEL_STRICT table:10 priority=100" in out["delete"]
    assert "reg0=0" in out["flood"] and "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00" \
        in out["flood"] and "set_field:0x7->tun_id" in out["flood"]
    assert "ONFT_BUNDLE_CONTROL" in out["commit"] and "COMMIT_REQUEST" in out["commit"]
    assert "OFPT_BARRIER_REQUEST" in out["barrier"]
    assert not any("decode error" in text or "***" in text for text in out.values()), out
