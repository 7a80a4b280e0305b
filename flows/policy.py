"""The flows of security policies: allow-lists over connection tracking. Pure.

An endpoint a policy selects is *tracked*: what it sends is looked up in its network's
conntrack zone (``conntrack``) and judged by ``egress_rules``; what it is sent, by
``ingress_rules`` after the same lookup on its own host, before ``deliver`` hands it to its
port. Both directions are tracked even when a policy governs only one, so that replies are
known as replies. ARP never meets a rule.

In a rules table, for a tracked packet:
  invalid                                       dropped
  established or related, its rule still holds  passes (the rule's id is in the connection:
                                                ct_mark for the egress rule that let it out of
                                                its initiator, ct_label for the ingress rule
                                                that let it into its responder)
  a reply whose rule no longer holds            dropped: revoking a rule ends its connections
  anything else (new, or an original-direction packet whose rule is gone)
                                                judged by the rules again: a deny rule drops, an
                                                allow rule commits it with its own id and
                                                passes, nothing drops (default deny), and a
                                                direction no policy governs commits it as
                                                unrestricted and passes.

A rule is one conjunctive match over up to three clauses: the selected endpoints here (their
reg1 or reg2), the peers (addresses within the metadata of the selected endpoints' networks)
and the ports, so that it costs about N + M + K flows on a host, not N x M x K. Rules sharing a
clause's flow share the flow (one flow, one conjunction action per rule). A host's policy flows
are one unit per rule; two rules' clause flows with one key are merged into one.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from model.entities import Endpoint, Network, Snapshot
from model.policy import (ALLOW, EGRESS, INGRESS, PROTOCOLS, Guard, Peer, PortRange, Rule,
                          selected_endpoints)
from openflow.actions import conjunction, ct

from . import pipeline as p
from .flow import Flow, output, set_field
from .routing import ETH_IPV4, prefix_match

# ct_state bits, as the vocabulary numbers them (est is bit 1, rel bit 2)
NEW, REPLY, INVALID, TRACKED = 1 << 0, 1 << 3, 1 << 4, 1 << 5
# established or related, not new nor invalid, in one direction or the other
_KNOWN = (TRACKED, NEW | INVALID | TRACKED | REPLY)
_KNOWN_REPLY = (TRACKED | REPLY, NEW | INVALID | TRACKED | REPLY)
_INVALID = (INVALID | TRACKED, INVALID | TRACKED)
_REPLY = (REPLY | TRACKED, REPLY | TRACKED)

# Broadcast and multicast: the group bit of the destination MAC. Unicast to a MAC that no
# endpoint of the network has is dropped: the controller knows every address.
MULTICAST = ("01:00:00:00:00:00", "01:00:00:00:00:00")

# The rule id of a connection a direction no policy governs let through.
UNRESTRICTED = 0xFFFFFFFF
IPPROTO_TCP = 6
TCP_SYN, TCP_ACK = 0x002, 0x010
_OPENING = (TCP_SYN, TCP_SYN | TCP_ACK)  # a SYN without ACK: what opens a TCP connection


class Side:
    """One direction of the rules: the table, the register naming the selected endpoint, the
    address field of the peer, the conntrack field of its rules and the way on."""

    def __init__(self, direction: str, table: p.Table, register: str, peer_field: str,
                 rule_field: str, other_field: str, onward: p.Table):
        self.direction = direction
        self.table = table
        self.register = register
        self.peer_field = peer_field
        self.rule_field = rule_field  # where this direction's rules are committed
        self.other_field = other_field  # where the other direction's are
        self.onward = onward


EGRESS_SIDE = Side(EGRESS, p.EGRESS_RULES, p.LOGICAL_IN_PORT.field, "ipv4_dst",
                   p.EGRESS_RULE.field, p.INGRESS_RULE.field, p.ROUTER_IN)
INGRESS_SIDE = Side(INGRESS, p.INGRESS_RULES, p.LOGICAL_OUT_PORT.field, "ipv4_src",
                    p.INGRESS_RULE.field, p.EGRESS_RULE.field, p.DELIVER)
SIDES = {EGRESS: EGRESS_SIDE, INGRESS: INGRESS_SIDE}


def conntrack_zone(network: Network) -> int:
    """The network's conntrack zone: its row number (subnets overlap; zones keep them apart).
    The NAT zone is above every row number a fabric reaches."""
    return network.seq


def rule_cookie(rule_id: int) -> int:
    return p.cookie("policy", rule_id)


def commit(network: Network, side: Side, rule_id: int) -> list:
    return [ct(commit=True, zone=conntrack_zone(network),
               exec_actions=[set_field(side.rule_field, rule_id)])]


# ---- what a tracked endpoint's own flows become ---------------------------------------------

def tracked_port_actions(ep: Endpoint) -> list:
    """What a tracked endpoint's IPv4 port security flows do before going to ``conntrack``."""
    return [set_field(EGRESS_SIDE.register, ep.seq)]


def tracked_endpoint_flows(ep: Endpoint, network: Network, ofport: int,
                           guard: Guard) -> list[Flow]:
    """Delivery through the ingress rules, and an unrestricted direction's commit."""
    c = p.cookie("endpoint", ep.seq)
    flows = [
        Flow.make(p.L2.id, p.PRIO_L2_TRACKED, c,
                  {"metadata": network.vni, "eth_dst": ep.mac, "eth_type": ETH_IPV4},
                  actions=[set_field(INGRESS_SIDE.register, ep.seq),
                           ct(zone=conntrack_zone(network), table=p.INGRESS_RULES.id)]),
        Flow.make(p.DELIVER.id, p.PRIO_DELIVER, c, {INGRESS_SIDE.register: ep.seq},
                  actions=[output(ofport)]),
    ]
    for side, governed in ((EGRESS_SIDE, guard.egress), (INGRESS_SIDE, guard.ingress)):
        if not governed:
            flows += unrestricted_flows(ep, network, side, c)
    return flows


def unrestricted_flows(ep: Endpoint, network: Network, side: Side, c: int) -> list[Flow]:
    """A direction no policy of the endpoint governs: what it opens is committed as
    unrestricted, so that the answers are known as replies at the other end's rules. A TCP
    segment that opens nothing (conntrack met the connection mid-way, as when a policy comes
    to running connections) passes uncommitted: the connection is then judged, and committed,
    by the rules of the direction that is governed, whoever speaks first."""
    this = {side.register: ep.seq, "eth_type": ETH_IPV4}
    return [
        Flow.make(side.table.id, p.PRIO_POLICY_HOLDS, c,
                  {"ct_state": _KNOWN, side.register: ep.seq, side.rule_field: UNRESTRICTED},
                  goto=side.onward.id),
        Flow.make(side.table.id, p.PRIO_UNRESTRICTED_OPENING, c,
                  this | {"ip_proto": IPPROTO_TCP, "tcp_flags_nxm": _OPENING},
                  actions=commit(network, side, UNRESTRICTED), goto=side.onward.id),
        Flow.make(side.table.id, p.PRIO_UNRESTRICTED_MIDWAY, c,
                  this | {"ip_proto": IPPROTO_TCP}, goto=side.onward.id),
        Flow.make(side.table.id, p.PRIO_UNRESTRICTED, c, this,
                  actions=commit(network, side, UNRESTRICTED), goto=side.onward.id),
    ]


def tracked_network_flows(network: Network, owner_cookie: int, untracked_ports: list[int],
                          remote_tunnels: list[int]) -> list[Flow]:
    """What the network's tracked endpoints here send is looked up in its zone; IPv4 floods
    (broadcast, multicast) reach only its untracked ports: no rule admits a flood."""
    vni = network.vni
    to_tunnels = [set_field("tunnel_id", vni)] + [output(t) for t in remote_tunnels] \
        if remote_tunnels else []
    to_ports = [output(port) for port in untracked_ports]
    flood = {"metadata": vni, "eth_dst": MULTICAST, "eth_type": ETH_IPV4}
    return [
        Flow.make(p.CONNTRACK.id, p.PRIO_CONNTRACK, owner_cookie,
                  {"metadata": vni, "eth_type": ETH_IPV4},
                  actions=[ct(zone=conntrack_zone(network), table=p.EGRESS_RULES.id)]),
        Flow.make(p.L2.id, p.PRIO_FLOOD_TRACKED, owner_cookie,
                  flood | {p.FROM_TUNNEL_REG: 0}, actions=to_ports + to_tunnels),
        Flow.make(p.L2.id, p.PRIO_FLOOD_TRACKED, owner_cookie,
                  flood | {p.FROM_TUNNEL_REG: p.FROM_TUNNEL}, actions=to_ports),
    ]


# ---- the host's policy flows ----------------------------------------------------------------

def policy_fixed_flows() -> list[Flow]:
    flows = []
    for side in (EGRESS_SIDE, INGRESS_SIDE):
        t, onward = side.table.id, side.onward.id
        flows += [
            Flow.make(t, p.PRIO_POLICY_INVALID, p.FABRIC_COOKIE, {"ct_state": _INVALID}),
            # A reply to what a direction no policy governed let out (or in) passes.
            Flow.make(t, p.PRIO_POLICY_HOLDS, p.FABRIC_COOKIE,
                      {"ct_state": _KNOWN_REPLY, side.other_field: UNRESTRICTED},
                      goto=onward),
            Flow.make(t, p.PRIO_POLICY_REVOKED, p.FABRIC_COOKIE, {"ct_state": _REPLY}),
        ]
    return flows + [_miss(p.CONNTRACK), _miss(p.EGRESS_RULES), _miss(p.INGRESS_RULES),
                    _miss(p.DELIVER)]


def _miss(table: p.Table) -> Flow:
    return Flow.make(table.id, p.PRIO_MISS, p.FABRIC_COOKIE)


def host_rules(snap: Snapshot, tracked: Mapping[str, Guard]) -> dict[int, tuple[str, ...]]:
    """The rules that judge the host's tracked endpoints (id -> Guard), each with the ids of
    those endpoints in the order they were made."""
    rules: dict[int, list[str]] = {}
    for endpoint_id in sorted(tracked, key=lambda e: snap.endpoints[e].seq):
        for policy_id in tracked[endpoint_id].policies:
            for rule in snap.policies[policy_id].rules():
                rules.setdefault(rule.id, []).append(endpoint_id)
    return {rule_id: tuple(members) for rule_id, members in rules.items()}


def rule_flows(snap: Snapshot, rule: Rule, member_ids: Iterable[str]) -> list[Flow]:
    """The flows of one rule on a host where it judges ``member_ids``."""
    out: dict[tuple, Flow] = {}
    for flow in _rule_flows(snap, rule, [snap.endpoints[e] for e in member_ids]):
        out.setdefault(flow.key, flow)  # two peers with one address: one clause flow
    return list(out.values())


def rule_peer_ids(snap: Snapshot, rule: Rule) -> set[str]:
    """The endpoints a rule names as peers, wherever they are."""
    return {ep.id for peer in rule.peers if peer.selector is not None
            for ep in selected_endpoints(peer.selector, snap.endpoints,
                                         snap.endpoints_by_label, snap.endpoints_by_network)}


def names_as_peer(rule: Rule, ep: Endpoint) -> bool:
    return any(peer.selector is not None and peer.selector.selects(ep) for peer in rule.peers)


def merged(flows: Iterable[Flow]) -> Flow:
    """One flow for the flows of several rules with one key: a clause flow gets every rule's
    conjunction action; of equal decisions, the oldest rule's stays. The same whatever the
    order, so that an incremental table equals a whole compile."""
    flows = sorted(flows, key=lambda f: f.cookie)
    first = flows[0]
    if len(flows) == 1 or not first.actions or first.actions[0][0] != "conjunction":
        return first
    actions = tuple(sorted({a for f in flows for a in f.actions}, key=lambda a: a[1]))
    return Flow(first.table, first.priority, first.match, first.cookie, actions, None, None)


def _rule_flows(snap: Snapshot, rule: Rule, selected: list[Endpoint]) -> Iterable[Flow]:
    side = SIDES[rule.direction]
    c = rule_cookie(rule.id)
    t = side.table.id
    networks = {ep.network_id: snap.networks[ep.network_id] for ep in selected}
    who = [{side.register: ep.seq} for ep in selected]
    peers = [m for network in networks.values()
             for m in _peer_matches(snap, network, rule.peers, side.peer_field)]
    if not peers:
        return  # no peer this host's selected endpoints can reach: it admits nothing here
    if any(m is None for m in peers):
        peers = []  # someone is anyone: no clause
    ports = [m for r in rule.ports for m in _port_matches(r)] if rule.ports else []
    if rule.action == ALLOW:
        # A connection the rule admitted holds while the rule does (and its replies pass).
        yield Flow.make(t, p.PRIO_POLICY_HOLDS, c, {"ct_state": _KNOWN, side.rule_field: rule.id},
                        goto=side.onward.id)
        other = SIDES[EGRESS if side is INGRESS_SIDE else INGRESS]
        yield Flow.make(other.table.id, p.PRIO_POLICY_HOLDS, c,
                        {"ct_state": _KNOWN_REPLY, side.rule_field: rule.id},
                        goto=other.onward.id)
    deny = rule.action != ALLOW
    clauses = [who] + [clause for clause in (peers, ports) if clause]
    if len(clauses) == 1:
        priority = p.PRIO_DENY_DIRECT if deny else p.PRIO_ALLOW_DIRECT
        for ep in selected:
            yield _decision(t, priority, c, {side.register: ep.seq, "eth_type": ETH_IPV4},
                            rule, side, networks[ep.network_id])
        return
    priority = p.PRIO_DENY if deny else p.PRIO_ALLOW
    for k, clause in enumerate(clauses, start=1):
        for match in clause:
            yield Flow.make(t, priority, c, match,
                            actions=[conjunction(rule.id, k, len(clauses))])
    for network in networks.values():
        yield _decision(t, p.PRIO_RULE, c, {"conj_id": rule.id, "metadata": network.vni,
                                            "eth_type": ETH_IPV4}, rule, side, network)


def _decision(table: int, priority: int, cookie: int, match: dict, rule: Rule, side: Side,
              network: Network) -> Flow:
    if rule.action != ALLOW:
        return Flow.make(table, priority, cookie, match)
    return Flow.make(table, priority, cookie, match, actions=commit(network, side, rule.id),
                     goto=side.onward.id)


def _peer_matches(snap: Snapshot, network: Network, peers: Iterable[Peer],
                  field: str) -> list[dict | None]:
    """The peers as seen from ``network``: its own endpoints and those of the networks routed
    with it, by address; CIDRs as they are. None: every address."""
    router = snap.network_router.get(network.id)
    matches: list[dict | None] = []
    for peer in peers:
        if peer.cidr is not None:
            match = prefix_match(peer.cidr, field)
            matches.append({"eth_type": ETH_IPV4, "metadata": network.vni, **match}
                           if match else None)
            continue
        for ep in selected_endpoints(peer.selector, snap.endpoints, snap.endpoints_by_label,
                                     snap.endpoints_by_network):
            if ep.network_id == network.id or (
                    router is not None and snap.network_router.get(ep.network_id) == router):
                matches.append({"eth_type": ETH_IPV4, "metadata": network.vni, field: ep.ip})
    return matches


def _port_matches(ports: PortRange) -> list[dict]:
    proto = PROTOCOLS[ports.protocol]
    base = {"eth_type": ETH_IPV4, "ip_proto": proto}
    if ports.port is None:
        return [base]
    field = f"{ports.protocol}_dst"
    return [base | {field: value if mask == 0xFFFF else (value, mask)}
            for value, mask in port_prefixes(ports.port, ports.last)]


def port_prefixes(first: int, last: int) -> list[tuple[int, int]]:
    """The range first..last as (value, mask) prefixes of 16-bit ports, fewest first."""
    out = []
    while first <= last:
        size = first & -first if first else 1 << 16
        while size > last - first + 1:
            size >>= 1
        out.append((first, 0xFFFF & ~(size - 1)))
        first += size
    return out
