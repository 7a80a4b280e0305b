"""Compiles the desired state of one host into flow entries. Pure: no I/O, no clock.

A host's flows are the union of the flows of its *units*: the fabric's fixed flows, each
network present on the host, and each endpoint of those networks. A unit's flows depend only
on the unit itself and on what the host has (its wiring), so that a change recompiles only
the units it touched (see flows.host_flows) and the work per new endpoint grows with the
hosts of its network, not with the size of the network or of the fabric.

Flows per host: 11 fixed (each table's miss flow, and ARP from a tunnel), 6 per network
present, 4 per local endpoint (2 anti-spoofing, ARP reply, delivery) and 1 per remote endpoint
(into its host's tunnel). ARP requests for a remote address are answered by the responder on
the address's own host, reached through the tunnel: a remote endpoint needs no ARP flow, and no
endpoint ever sees an ARP request.
With a physical bridge patched in, the way out (flows.egress) adds 4 per host, 1 to 4 per
network (its way to nat: 1 on a router, 3 on none; 1 more with egress), 2 per local endpoint
and 1 per published port. Security policies (flows.policy) add, on a host with endpoints they
select: 10 for the rules tables, 3 per network of those endpoints, 2 per such endpoint (4 more
per direction its policies do not govern), and per rule its clause flows, a decision per
network and 2 flows that pass its connections.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from model.entities import Endpoint, Network, Router, Snapshot

from . import pipeline as p
from .conformance import check
from .egress import (Outside, PhysicalBridge, endpoint_egress_flows, network_egress_flows,
                     outside_flows)
from .flow import OFPP_IN_PORT, Flow, move, output, set_field
from .policy import (MULTICAST, host_rules, merged, policy_fixed_flows, rule_flows,
                     tracked_endpoint_flows, tracked_network_flows, tracked_port_actions)
from .routing import forwarded_sources, neighbour_flow, prefix_match, router_flows

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ARP_REQUEST = 1
ARP_REPLY = 2
IPPROTO_ICMP = 1
ICMP_ECHO = 8
ICMP_ECHO_REPLY = 0

# The tests turn this on. Off in service: the flows come from the few templates below, which the
# tests hold to the declaration, and checking each one would slow the incremental path.
check_flows = False

# ("fabric", "") | ("outside", "") | ("network", network id) | ("endpoint", endpoint id)
# | ("router", router id) | ("policy", "") | ("rule", rule id)
Unit = tuple
FABRIC_UNIT: Unit = ("fabric", "")
OUTSIDE_UNIT: Unit = ("outside", "")  # the host's way out, whatever its networks
POLICY_UNIT: Unit = ("policy", "")  # the rules tables' own flows, on a host with tracked ones


def network_unit(network_id: str) -> Unit:
    return ("network", network_id)


def endpoint_unit(endpoint_id: str) -> Unit:
    return ("endpoint", endpoint_id)


def router_unit(router_id: str) -> Unit:
    return ("router", router_id)


def rule_unit(rule_id: int) -> Unit:
    """A policy rule's flows on the host. Rules may share a clause flow: the only units whose
    flows may have one key, merged into one flow (flows.policy.merged)."""
    return ("rule", rule_id)


@dataclass(frozen=True)
class HostPorts:
    """What the host's switch has: OpenFlow port numbers, as OVSDB reports them."""

    endpoints: Mapping[str, int] = field(default_factory=dict)  # endpoint id -> ofport
    tunnels: Mapping[str, int] = field(default_factory=dict)  # peer host name -> ofport
    # endpoint id -> why OVS could not attach its port (Interface.error), e.g. no such device
    errors: Mapping[str, str] = field(default_factory=dict)
    # the host's physical bridge and the patch to it; None: not there (yet): no way out
    physical: PhysicalBridge | None = None


@dataclass(frozen=True)
class HostWiring:
    """One host's wiring as the compiler sees it.

    ``local``: the host's endpoints that have an OpenFlow port. The number OVS reports wins; a
    port the controller is still adding has the number it asked for, so that its flows are in
    place when the port appears. ``networks``: the networks present on the host (those with a
    local endpoint), each with its local ports, sorted. ``routers``: the routers of those
    networks, which route here what the host's endpoints send; ``routed``: the other networks
    of those routers, whose endpoints the host must know to route to them. ``outside``: the
    host's way out (None while it has no physical bridge patched in). ``tracked``: the local
    endpoints that policies select, each with what the policies make of it (model.policy.Guard);
    ``rules``: the rules that judge them, each with the ids of the endpoints it judges here.
    """

    host: str
    local: Mapping[str, int]
    networks: Mapping[str, tuple[int, ...]]
    tunnels: Mapping[str, int]
    routers: frozenset[str] = frozenset()
    routed: frozenset[str] = frozenset()
    outside: Outside | None = None
    tracked: Mapping = field(default_factory=dict)
    rules: Mapping = field(default_factory=dict)
    members: Mapping = field(default_factory=dict)  # network id -> its local endpoints' ids


def host_wiring(snap: Snapshot, host: str, ports: HostPorts) -> HostWiring:
    local: dict[str, int] = {}
    by_network: dict[str, list[int]] = {}
    tracked = {}
    members: dict[str, set[str]] = {}
    for ep in snap.host_endpoints(host):
        ofport = ports.endpoints.get(ep.id, ep.ofport)
        if ofport is not None:
            local[ep.id] = ofport
            by_network.setdefault(ep.network_id, []).append(ofport)
            members.setdefault(ep.network_id, set()).add(ep.id)
            guard = snap.guard_of(ep)
            if guard is not None:
                tracked[ep.id] = guard
    networks = {n: tuple(sorted(ofports)) for n, ofports in by_network.items()}
    routers = frozenset(snap.network_router[n] for n in networks if n in snap.network_router)
    routed = frozenset(n for r in routers for n in snap.routers[r].networks) - networks.keys()
    bridge, outside = ports.physical, None
    if bridge is not None and host in snap.hosts:
        outside = Outside(snap.hosts[host].outside_ip, bridge.patch, bridge.mac,
                          bridge.next_hop_mac)
    return HostWiring(host, local, networks, dict(ports.tunnels), routers, routed, outside,
                      tracked, host_rules(snap, tracked) if tracked else {},
                      {n: frozenset(ids) for n, ids in members.items()})


def units_of(snap: Snapshot, view: HostWiring) -> Iterable[Unit]:
    yield FABRIC_UNIT
    yield OUTSIDE_UNIT
    for network_id in view.networks:
        yield from units_of_network(snap, network_id)
    for network_id in view.routed:
        for endpoint_id in snap.endpoints_by_network.get(network_id, ()):
            yield endpoint_unit(endpoint_id)
    for router_id in view.routers:
        yield router_unit(router_id)
    yield POLICY_UNIT
    for rule_id in view.rules:
        yield rule_unit(rule_id)


def units_of_network(snap: Snapshot, network_id: str) -> Iterable[Unit]:
    yield network_unit(network_id)
    for endpoint_id in snap.endpoints_by_network.get(network_id, ()):
        yield endpoint_unit(endpoint_id)


def compile_host(snap: Snapshot, host: str, ports: HostPorts) -> dict[tuple, Flow]:
    """All of the host's flows: the reference the incremental path must always equal."""
    view = host_wiring(snap, host, ports)
    table: dict[tuple, Flow] = {}
    shared: dict[tuple, list[Flow]] = {}  # keys that several rules' flows have
    for unit in units_of(snap, view):
        for flow in compile_unit(snap, view, unit):
            held = table.setdefault(flow.key, flow)
            if held is not flow:
                shared.setdefault(flow.key, [held]).append(flow)
    for key, flows in shared.items():
        table[key] = merged(flows)
    return table


def compile_unit(snap: Snapshot, view: HostWiring, unit: Unit) -> list[Flow]:
    """The flows ``unit`` owns on the host; none if it does not exist or is not present.
    With ``check_flows``, a flow that breaks the declared pipeline raises PipelineViolation."""
    flows = unit_flows(snap, view, unit)
    if check_flows:
        for flow in flows:
            check(flow)
    return flows


def unit_flows(snap: Snapshot, view: HostWiring, unit: Unit) -> list[Flow]:
    kind, ident = unit
    if kind == "endpoint":
        ep = snap.endpoints.get(ident)
        if ep is None or not (ep.network_id in view.networks or ep.network_id in view.routed):
            return []
        return endpoint_flows(ep, snap.networks[ep.network_id], view,
                              snap.router_of(ep.network_id), snap.published.get(ep.id, ()))
    if kind == "router":
        router = snap.routers.get(ident)
        if router is None or ident not in view.routers:
            return []
        return router_flows(snap, router, view.networks)
    if kind == "network":
        network = snap.networks.get(ident)
        if network is None or ident not in view.networks:
            return []
        remote_hosts = sorted((snap.hosts_of_network(ident) - {view.host}) & view.tunnels.keys())
        flows = network_flows(network, view.networks[ident],
                              [view.tunnels[h] for h in remote_hosts])
        tracked = [view.local[e] for e in view.members[ident] if e in view.tracked]
        if tracked:
            untracked = [port for port in view.networks[ident] if port not in tracked]
            flows += tracked_network_flows(network, p.cookie("network", network.seq),
                                           untracked, [view.tunnels[h] for h in remote_hosts])
        if view.outside is not None:
            flows += network_egress_flows(network, snap.router_of(ident), view.outside)
        return flows
    if kind == "outside":
        host = snap.hosts.get(view.host)
        if host is None or view.outside is None:
            return []
        return outside_flows(host.seq, view.outside)
    if kind == "policy":
        return policy_fixed_flows() if view.tracked else []
    if kind == "rule":
        members = view.rules.get(ident)
        if members is None:
            return []
        return rule_flows(snap, snap.policy_index.rule_policy[ident][1], members)
    return fixed_flows()


def fixed_flows() -> list[Flow]:
    return [
        miss_flow(p.INGRESS),  # unknown port or VNI: drop
        miss_flow(p.ARP),  # not ours to answer: forward
        miss_flow(p.ROUTER_IN),  # to a network on no router, or to another MAC: switch it
        miss_flow(p.L3_LOOKUP),  # no route: drop
        miss_flow(p.NEIGHBOUR),  # a next hop no endpoint has: drop
        miss_flow(p.NAT),  # from an address that has no transit address: drop
        miss_flow(p.OUTBOUND),  # new, from a network without egress, or invalid: drop
        miss_flow(p.FROM_OUTSIDE),  # to no transit address (conntrack knew nothing): drop
        miss_flow(p.TO_OUTSIDE),  # the next hop is not known yet: drop (TCP retries)
        # An ARP request that came through a tunnel was sent to the host of its address;
        # when no responder here took it, the address is nobody's.
        Flow.make(p.ARP.id, p.PRIO_ARP_TO_OWNER, p.FABRIC_COOKIE,
                  {p.FROM_TUNNEL_REG: p.FROM_TUNNEL, "eth_type": ETH_ARP,
                   "arp_op": ARP_REQUEST}),
        miss_flow(p.L2),
    ]


def miss_flow(table: p.Table) -> Flow:
    """What the declaration says a packet no flow of ``table`` matches meets."""
    goto = p.DECLARED_BY_NAME[table.miss].id if table.miss else None
    return Flow.make(table.id, p.PRIO_MISS, p.FABRIC_COOKIE, goto=goto)


def endpoint_flows(ep: Endpoint, network: Network, view: HostWiring,
                   router: Router | None, published: tuple = ()) -> list[Flow]:
    vni = network.vni
    c = p.cookie("endpoint", ep.seq)
    routing = [neighbour_flow(ep, network, router)] if router is not None else []
    if ep.host != view.host:
        tunnel = view.tunnels.get(ep.host)
        if tunnel is None:
            return []
        # Only traffic from local ports goes into a tunnel (split horizon).
        return [Flow.make(p.L2.id, p.PRIO_L2_UNICAST, c,
                          {"metadata": vni, p.FROM_TUNNEL_REG: 0, "eth_dst": ep.mac},
                          actions=[set_field("tunnel_id", vni), output(tunnel)]),
                *routing]
    ofport = view.local.get(ep.id)
    if ofport is None:
        return []
    egress = ([] if view.outside is None else
              endpoint_egress_flows(ep, network, view.outside, published))
    guard = view.tracked.get(ep.id)
    policy = [] if guard is None else tracked_endpoint_flows(ep, network, ofport, guard)
    return [*port_security_flows(ep, network, ofport, forwarded_sources(ep, router),
                                 tracked=guard is not None),
            arp_reply_flow(vni, ep.ip, ep.mac, c),
            Flow.make(p.L2.id, p.PRIO_L2_UNICAST, c, {"metadata": vni, "eth_dst": ep.mac},
                      actions=[output(ofport)]),
            *routing, *egress, *policy]


def port_security_flows(ep: Endpoint, network: Network, ofport: int,
                        forwarded: list[str] = (), tracked: bool = False) -> list[Flow]:
    """A local port may send IPv4 and ARP only with its endpoint's own MAC and IP (and, for an
    appliance that routes lead through, IPv4 from the prefixes it forwards for); anything else
    from it meets the ingress table's miss: a drop. A tracked endpoint's IPv4 goes through
    conntrack and its egress rules first."""
    c = p.cookie("endpoint", ep.seq)
    from_port = {"in_port": ofport, "eth_src": ep.mac}
    ipv4_sources = [{"ipv4_src": ep.ip}] + [prefix_match(cidr, "ipv4_src") for cidr in forwarded]
    actions, onward = (tracked_port_actions(ep), p.CONNTRACK) if tracked else ([], p.ROUTER_IN)
    return [
        *(Flow.make(p.INGRESS.id, p.PRIO_PORT_ALLOW, c, from_port | {"eth_type": ETH_IPV4} | src,
                    actions=actions, write_metadata=network.vni, goto=onward.id)
          for src in ipv4_sources),
        Flow.make(p.INGRESS.id, p.PRIO_PORT_ALLOW, c,
                  from_port | {"eth_type": ETH_ARP, "arp_spa": ep.ip, "arp_sha": ep.mac},
                  write_metadata=network.vni, goto=p.ARP.id),
    ]


def network_flows(network: Network, local_ports: tuple[int, ...],
                  remote_tunnels: list[int]) -> list[Flow]:
    vni = network.vni
    c = p.cookie("network", network.seq)
    to_tunnels = ([set_field("tunnel_id", vni)] + [output(t) for t in remote_tunnels]
                  if remote_tunnels else [])
    return [
        # Tunnel packets pass the ARP table: requests for this host's addresses are answered.
        Flow.make(p.INGRESS.id, p.PRIO_TUNNEL_IN, c, {"tunnel_id": vni},
                  actions=[set_field(p.FROM_TUNNEL_REG, p.FROM_TUNNEL)],
                  write_metadata=vni, goto=p.ARP.id),
        # A local request for an address this host does not answer goes to the network's
        # other hosts, where the address's own host answers it.
        Flow.make(p.ARP.id, p.PRIO_ARP_TO_OWNER, c,
                  {"metadata": vni, p.FROM_TUNNEL_REG: 0, "eth_type": ETH_ARP,
                   "arp_op": ARP_REQUEST},
                  actions=to_tunnels),
        Flow.make(p.L2.id, p.PRIO_FLOOD, c,
                  {"metadata": vni, p.FROM_TUNNEL_REG: 0, "eth_dst": MULTICAST},
                  actions=[output(port) for port in local_ports] + to_tunnels),
        Flow.make(p.L2.id, p.PRIO_FLOOD, c,
                  {"metadata": vni, p.FROM_TUNNEL_REG: p.FROM_TUNNEL, "eth_dst": MULTICAST},
                  actions=[output(port) for port in local_ports]),
        *gateway_flows(network, c),
    ]


def arp_reply_flow(vni: int, ip: str, mac: str, owner_cookie: int) -> Flow:
    """Turns an ARP request for ``ip`` into the reply, sent back where it came from."""
    return Flow.make(
        p.ARP.id, p.PRIO_ARP_REPLY, owner_cookie,
        {"metadata": vni, "eth_type": ETH_ARP, "arp_op": ARP_REQUEST, "arp_tpa": ip},
        actions=[
            move("eth_src", "eth_dst", 48),
            set_field("eth_src", mac),
            set_field("arp_op", ARP_REPLY),
            move("arp_sha", "arp_tha", 48),
            move("arp_spa", "arp_tpa", 32),
            set_field("arp_sha", mac),
            set_field("arp_spa", ip),
            output(OFPP_IN_PORT),
        ])


def gateway_flows(network: Network, owner_cookie: int) -> list[Flow]:
    """The gateway address answers ARP and ping on every host of the network (it routes
    nothing: containers get a working default gateway, and a ping to check it)."""
    gw_ip, gw_mac = network.gateway, network.gateway_mac
    return [
        arp_reply_flow(network.vni, gw_ip, gw_mac, owner_cookie),
        Flow.make(p.L2.id, p.PRIO_GATEWAY, owner_cookie,
                  {"metadata": network.vni, "eth_dst": gw_mac, "eth_type": ETH_IPV4,
                   "ip_proto": IPPROTO_ICMP, "ipv4_dst": gw_ip, "icmpv4_type": ICMP_ECHO},
                  actions=[
                      move("eth_src", "eth_dst", 48),
                      set_field("eth_src", gw_mac),
                      move("ipv4_src", "ipv4_dst", 32),
                      set_field("ipv4_src", gw_ip),
                      set_field("icmpv4_type", ICMP_ECHO_REPLY),
                      output(OFPP_IN_PORT),
                  ]),
    ]
