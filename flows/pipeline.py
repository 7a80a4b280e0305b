"""The pipeline as data: every OpenFlow table, the bits of metadata and registers each
convention owns, the priorities and the cookies. Declared once, here.

A table is declared with the fields its flows may match, the fields they may write, the tables
they may go to and what happens to a packet no flow matches. Tables marked ``reserved`` hold
no flows yet: they keep the ids and bits that routing and policy will use, so that the tables
in use never need renumbering. ``flows.conformance`` checks a flow against this declaration
(in the tests, every flow the compiler emits); ``docs/architecture.md`` shows it, and a test
holds the two equal.

Goto only goes to a higher table id (OpenFlow 1.3), so the order of the ids is the order a
packet meets the tables in.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bits:
    """A range of bits of a packet field (metadata, a register, ct_mark) with one meaning."""

    name: str
    field: str
    start: int
    width: int
    meaning: str
    reserved: bool = False  # no flow sets or matches these bits yet

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.start


# Flows write and match metadata and reg0 whole (metadata=VNI, reg0=0 or 1), which is the
# same thing while every other bit of the field is zero: the router bits are set only between
# router_in and l3_lookup, which writes the whole metadata again. The first flow to use a
# reserved range of a field turns the other flows on that field into masked matches and writes.
NETWORK = Bits("network", "metadata", 0, 24, "the VNI of the network the packet is in")
ROUTER = Bits("router", "metadata", 32, 16,
              "the router (VRF) whose routes the L3 lookup uses (its number)")
FROM_TUNNEL_BIT = Bits("from_tunnel", "reg0", 0, 1,
                       "1: the packet came in through a tunnel, so it never goes back into "
                       "one (split horizon: floods cannot loop)")
FLAGS = Bits("flags", "reg0", 1, 31, "one-bit marks to come, such as routed once",
             reserved=True)
LOGICAL_IN_PORT = Bits("logical_in_port", "reg1", 0, 32,
                       "the endpoint a policy selects that the packet came from (its row "
                       "number), for egress rules")
LOGICAL_OUT_PORT = Bits("logical_out_port", "reg2", 0, 32,
                        "the endpoint a policy selects that the packet goes to (its row "
                        "number), for ingress rules and the delivery")
NEXT_HOP = Bits("next_hop", "reg3", 0, 32,
                "the IPv4 next hop the L3 lookup chose, resolved by the neighbour table")
EGRESS_RULE = Bits("egress_rule", "ct_mark", 0, 32,
                   "the egress rule that let a connection out of its initiator, committed with "
                   "it in the initiator's network zone")
INGRESS_RULE = Bits("ingress_rule", "ct_label", 0, 32,
                    "the ingress rule that let a connection into its responder, committed "
                    "with it in the responder's network zone")
LAYOUT = (NETWORK, ROUTER, FROM_TUNNEL_BIT, FLAGS, LOGICAL_IN_PORT, LOGICAL_OUT_PORT, NEXT_HOP,
          EGRESS_RULE, INGRESS_RULE)
FIELD_WIDTHS = {"metadata": 64, "ct_mark": 32, "ct_label": 128} | {
    f"reg{i}": 32 for i in range(16)}

FROM_TUNNEL_REG = FROM_TUNNEL_BIT.field
FROM_TUNNEL = 1 << FROM_TUNNEL_BIT.start


@dataclass(frozen=True)
class Table:
    """One OpenFlow table of a pipeline."""

    id: int
    name: str
    purpose: str
    matches: frozenset[str]
    writes: frozenset[str]  # fields its flows set or move into, write_metadata as "metadata"
    goes_to: tuple[str, ...]  # the tables its flows may go to, by name
    miss: str | None  # the table a packet no flow matches goes to; None: dropped
    reserved: bool = False  # declared for what is to come: no flow may be installed in it
    # The table's flows may hand packets to the switch's own forwarding (output:NORMAL), and a
    # packet no flow matches meets it: the physical bridge keeps doing what it did for the host.
    normal: bool = False


def _table(id: int, name: str, purpose: str, matches: str = "", writes: str = "",
           goes_to: str = "", miss: str | None = None, reserved: bool = False,
           normal: bool = False) -> Table:
    return Table(id, name, purpose, frozenset(matches.split()), frozenset(writes.split()),
                 tuple(goes_to.split()), miss, reserved, normal)


INGRESS = _table(
    0, "ingress", "port security and network classification; from the physical bridge, "
    "conntrack in the NAT zone: replies un-NATed, published ports DNATed",
    matches="in_port eth_src eth_type ipv4_src arp_spa arp_sha tunnel_id ip_proto ipv4_dst "
    "tcp_dst udp_dst",
    writes="metadata reg0 reg1", goes_to="conntrack arp router_in from_outside")
CONNTRACK = _table(
    2, "conntrack", "what an endpoint a policy selects sends: connection tracking in its "
    "network's zone", matches="metadata eth_type", goes_to="egress_rules")
EGRESS_RULES = _table(
    4, "egress_rules", "what an endpoint a policy selects may send: replies and connections "
    "whose rule still holds pass; a new connection passes a rule that allows it and is "
    "committed with the rule",
    matches="metadata reg1 ct_state ct_mark ct_label conj_id eth_type ip_proto ipv4_dst "
    "tcp_dst udp_dst tcp_flags_nxm", writes="ct_mark", goes_to="router_in")
ARP = _table(
    10, "arp", "ARP responder for known addresses",
    matches="metadata reg0 eth_type arp_op arp_tpa",
    writes="eth_src eth_dst arp_op arp_sha arp_spa arp_tha arp_tpa tunnel_id", miss="l2")
ROUTER_IN = _table(
    11, "router_in", "IPv4 to a network's gateway MAC enters the router the network is on",
    matches="metadata eth_dst eth_type ipv4_dst", writes="metadata",
    goes_to="l3_lookup nat l2", miss="l2")
L3_LOOKUP = _table(
    12, "l3_lookup", "the routes of the router in the metadata, longest prefix first: the "
    "next hop and the network it is in",
    matches="metadata eth_type ipv4_dst", writes="metadata reg3 nw_ttl",
    goes_to="neighbour nat")
NEIGHBOUR = _table(
    14, "neighbour", "the MAC of the next hop, with the router's as the source",
    matches="metadata reg3", writes="eth_src eth_dst", goes_to="nat l2")
NAT = _table(
    16, "nat", "to the outside: the endpoint's source rewritten to its transit address, then "
    "conntrack in the NAT zone (replies of published ports un-NATed)",
    matches="metadata eth_type ipv4_src", writes="ipv4_src", goes_to="outbound")
OUTBOUND = _table(
    17, "outbound", "established connections leave; a new one only from a network with "
    "egress, committed and source-NATed to the host's outside address",
    matches="metadata eth_type ct_state", goes_to="to_outside")
FROM_OUTSIDE = _table(
    18, "from_outside", "from the outside, after conntrack: the transit address back to the "
    "endpoint, delivered in its network",
    matches="eth_type ipv4_dst", writes="ipv4_dst eth_src eth_dst metadata", goes_to="l2")
TO_OUTSIDE = _table(
    19, "to_outside", "into the physical bridge, with its MAC as the source and the next "
    "hop's as the destination", matches="eth_type", writes="eth_src eth_dst")
L2 = _table(
    20, "l2", "forwarding by destination MAC within a network, and flooding",
    matches="metadata reg0 eth_dst eth_type ip_proto ipv4_dst icmpv4_type",
    writes="tunnel_id eth_src eth_dst ipv4_src ipv4_dst icmpv4_type reg2",
    goes_to="ingress_rules")
INGRESS_RULES = _table(
    30, "ingress_rules", "what an endpoint a policy selects may receive, after connection "
    "tracking in its network's zone: as egress_rules, the other way",
    matches="metadata reg2 ct_state ct_mark ct_label conj_id eth_type ip_proto ipv4_src "
    "tcp_dst udp_dst tcp_flags_nxm", writes="ct_label", goes_to="deliver")
DELIVER = _table(
    32, "deliver", "what the ingress rules admitted, to the endpoint's port",
    matches="reg2")

PIPELINE = (INGRESS, CONNTRACK, EGRESS_RULES, ARP, ROUTER_IN, L3_LOOKUP, NEIGHBOUR, NAT,
            OUTBOUND, FROM_OUTSIDE, TO_OUTSIDE, L2, INGRESS_RULES, DELIVER)
DECLARED_BY_NAME = {t.name: t for t in PIPELINE}
TABLES = tuple(t for t in PIPELINE if not t.reserved)  # the tables that hold flows today
TABLE_BY_ID = {t.id: t for t in TABLES}

# The host's physical bridge (br-phy, which holds its underlay address): a pipeline of its own.
# It forwards as it did (NORMAL) except what belongs to the fabric's NAT: what comes from the
# integration bridge leaves by the uplink, and what arrives for the host's outside address goes
# to the integration bridge when it is a published port or a connection the NAT zone knows.
PHY_IN = _table(
    0, "phy_in", "from the integration bridge: out of the uplink; tunnels and the host's own "
    "traffic: as before; published ports: to the integration bridge; the rest for the outside "
    "address: conntrack in the NAT zone; the next hop's ARP replies: to the controller too",
    matches="in_port eth_type ip_proto ipv4_dst tcp_dst udp_dst arp_op arp_spa arp_tpa",
    goes_to="phy_return", normal=True)
PHY_RETURN = _table(
    1, "phy_return", "connections the NAT zone knows go to the integration bridge, the rest "
    "to the host", matches="ct_state", normal=True)
PHYSICAL_PIPELINE = (PHY_IN, PHY_RETURN)
PHYSICAL_BY_NAME = {t.name: t for t in PHYSICAL_PIPELINE}
PHYSICAL_TABLE_BY_ID = {t.id: t for t in PHYSICAL_PIPELINE}

# Egress and published ports: one conntrack zone per host for all of its NAT (the physical
# bridge looks replies up in it too). Overlapping subnets stay apart because each endpoint's
# address is first rewritten, statelessly, to its transit address: TRANSIT_RANGE plus its row
# number, unique in the fabric.
NAT_ZONE = 65000
TRANSIT_RANGE = "100.64.0.0/10"

# Priorities per table, highest first. Priority 0 is each table's miss flow, declared above.
PRIO_PORT_ALLOW = 200  # ingress
PRIO_TUNNEL_IN = 50
PRIO_ARP_REPLY = 100  # arp
PRIO_ARP_TO_OWNER = 10
PRIO_TO_GATEWAY = 150  # router_in: the gateway's own address, answered in l2
PRIO_INTO_ROUTER = 100
# l3_lookup: the longest prefix first; of two as long, the attached network before a static route
PRIO_ROUTE_BASE = 100
# l3_lookup: below every route, a network with egress sends what no route takes to the outside
PRIO_EGRESS_ROUTE = 99
# router_in, a network on no router: its own subnet is not routed; the rest goes out (nat)
PRIO_OWN_SUBNET = 100
PRIO_TO_OUTSIDE = 50
PRIO_NEIGHBOUR = 100  # neighbour
PRIO_PUBLISHED = 120  # ingress, from the physical bridge: a published port, then any reply
PRIO_FROM_OUTSIDE = 110
PRIO_TRANSIT = 100  # nat, from_outside
PRIO_ESTABLISHED = 100  # outbound
PRIO_NEW_EGRESS = 50
PRIO_OUTSIDE = 100  # to_outside
# phy_in
PRIO_PHY_FROM_INTEGRATION = 110
PRIO_PHY_TUNNEL = 105
PRIO_PHY_NEXT_HOP_ARP = 104
PRIO_PHY_PUBLISHED = 102
PRIO_PHY_OUTSIDE_ADDRESS = 100
PRIO_PHY_KNOWN = 100  # phy_return
PRIO_CONNTRACK = 100  # conntrack
# egress_rules and ingress_rules
PRIO_POLICY_INVALID = 1000
PRIO_POLICY_HOLDS = 900  # a known connection whose rule holds
PRIO_POLICY_REVOKED = 800  # a reply whose rule does not
PRIO_RULE = 700  # a rule's decision, once its conjunction matched
PRIO_DENY_DIRECT = 601  # a rule with one clause needs no conjunction
PRIO_DENY = 600  # deny outranks allow
PRIO_ALLOW_DIRECT = 501
PRIO_ALLOW = 500
# a direction no policy of the endpoint governs: a TCP opening, a TCP segment met mid-way,
# anything else
PRIO_UNRESTRICTED_OPENING = 402
PRIO_UNRESTRICTED_MIDWAY = 401
PRIO_UNRESTRICTED = 400
PRIO_DELIVER = 100  # deliver
PRIO_GATEWAY = 150  # l2
PRIO_L2_TRACKED = 101  # IPv4 to a tracked endpoint: through the ingress rules
PRIO_L2_UNICAST = 100
PRIO_FLOOD_TRACKED = 11  # an IPv4 flood in a network with tracked endpoints here
PRIO_FLOOD = 10
PRIO_MISS = 0

# Cookies: the top byte is the owner's kind, the rest the owner's row number in the store.
# Installed flows carry these codes: a code is never reused for another kind.
COOKIE_KIND_SHIFT = 56
COOKIE_ID_MASK = (1 << COOKIE_KIND_SHIFT) - 1
KINDS = {1: "fabric", 3: "network", 4: "endpoint", 5: "router", 6: "host", 7: "policy"}
KIND_CODES = {v: k for k, v in KINDS.items()}


def route_priority(prefix_len: int, attached: bool) -> int:
    return PRIO_ROUTE_BASE + 2 * prefix_len + (1 if attached else 0)


def cookie(kind: str, seq: int = 0) -> int:
    return (KIND_CODES[kind] << COOKIE_KIND_SHIFT) | (seq & COOKIE_ID_MASK)


def decode_cookie(value: int) -> tuple[str, int] | None:
    kind = KINDS.get(value >> COOKIE_KIND_SHIFT)
    return (kind, value & COOKIE_ID_MASK) if kind else None


FABRIC_COOKIE = cookie("fabric")
