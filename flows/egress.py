"""The way out of the fabric and the way in, on the integration bridge. Pure.

A container reaches the outside through its own host. What no route takes (a network on a
router: the lowest route of l3_lookup; on no router: router_in) goes to ``nat``, where the
endpoint's address is rewritten, statelessly, to its transit address (unique in the fabric, so
that networks with overlapping subnets never share a conntrack tuple) and tracked in the host's
NAT zone. ``outbound`` lets established connections leave and, for a network with egress,
commits a new one source-NATed to the host's outside address; ``to_outside`` hands it to the
physical bridge through the patch port. Coming back, ingress sends what the physical bridge
passes through conntrack (un-NAT, or DNAT for a published port), and ``from_outside`` turns the
transit address back into the endpoint's and delivers it in its network through l2. The NAT
state lives in the datapath: a controller restart loses no connection.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from model.entities import Endpoint, Network, PublishedPort, Router
from openflow.actions import ct, dec_ttl, nat

from . import pipeline as p
from .flow import Flow, output, set_field
from .routing import ETH_IPV4, prefix_match, router_metadata

IP_PROTOCOLS = {"tcp": (6, "tcp_dst"), "udp": (17, "udp_dst")}
TRACKED = 1 << 5  # ct_state bits, as the vocabulary numbers them
NEW, ESTABLISHED, RELATED = 1 << 0, 1 << 1, 1 << 2
_TRANSIT = ipaddress.IPv4Network(p.TRANSIT_RANGE)


@dataclass(frozen=True)
class PhysicalBridge:
    """The host's physical bridge as OVSDB reports it, and the patch joining it to the
    integration bridge."""

    patch: int  # the patch port's number on the integration bridge
    peer_patch: int  # its peer's number on the physical bridge
    uplink: int  # the physical bridge's port to the underlay
    mac: str  # the physical bridge's own MAC: the source of what leaves
    next_hop_mac: str | None = None  # where what leaves is sent; None: not known yet
    next_hop: str | None = None  # the address whose MAC that is, as the host names it


@dataclass(frozen=True)
class Outside:
    """What the integration bridge's NAT flows need of the host."""

    address: str  # the host's outside address: sources are NATed to it, ports published on it
    patch: int
    bridge_mac: str
    next_hop_mac: str | None


def transit_address(ep: Endpoint) -> str:
    """The endpoint's address inside the NAT zone: the transit range plus its row number."""
    if not 0 < ep.seq < _TRANSIT.num_addresses - 1:
        raise ValueError(f"endpoint row {ep.seq} has no transit address in {_TRANSIT}")
    return str(_TRANSIT.network_address + ep.seq)


def ct_state(*flags: int) -> tuple[int, int]:
    """A match on ct_state with ``flags`` set (and tracked)."""
    bits = TRACKED
    for flag in flags:
        bits |= flag
    return (bits, bits)


def in_network(network: Network) -> tuple[int, int]:
    """The network's bits of the metadata, whatever router bits ride along."""
    return (network.vni, p.NETWORK.mask)


def outside_flows(host_seq: int, outside: Outside) -> list[Flow]:
    """The host's flows of the way out, whatever its networks."""
    c = p.cookie("host", host_seq)
    flows = [
        # A reply from the outside (or what is not one: it keeps the outside address and
        # from_outside drops it).
        Flow.make(p.INGRESS.id, p.PRIO_FROM_OUTSIDE, c,
                  {"in_port": outside.patch, "eth_type": ETH_IPV4,
                   "ipv4_dst": outside.address},
                  actions=[ct(zone=p.NAT_ZONE, table=p.FROM_OUTSIDE.id, nat=nat())]),
        *(Flow.make(p.OUTBOUND.id, p.PRIO_ESTABLISHED, c,
                    {"eth_type": ETH_IPV4, "ct_state": ct_state(flag)}, goto=p.TO_OUTSIDE.id)
          for flag in (ESTABLISHED, RELATED)),
    ]
    if outside.next_hop_mac is not None:
        flows.append(Flow.make(p.TO_OUTSIDE.id, p.PRIO_OUTSIDE, c, {"eth_type": ETH_IPV4},
                               actions=[set_field("eth_src", outside.bridge_mac),
                                        set_field("eth_dst", outside.next_hop_mac),
                                        output(outside.patch)]))
    return flows


def network_egress_flows(network: Network, router: Router | None,
                         outside: Outside) -> list[Flow]:
    """The network's way to ``nat`` for what no route takes, and, with egress, the commit of
    new connections. Without egress the way stays: replies of published ports take it."""
    c = p.cookie("network", network.seq)
    if router is None:
        to_gateway = {"metadata": network.vni, "eth_dst": network.gateway_mac,
                      "eth_type": ETH_IPV4}
        flows = [
            # The gateway's own address is answered in l2; the subnet is not routed.
            Flow.make(p.ROUTER_IN.id, p.PRIO_TO_GATEWAY, c,
                      to_gateway | {"ipv4_dst": network.gateway}, goto=p.L2.id),
            Flow.make(p.ROUTER_IN.id, p.PRIO_OWN_SUBNET, c,
                      to_gateway | prefix_match(network.subnet), goto=p.L2.id),
            Flow.make(p.ROUTER_IN.id, p.PRIO_TO_OUTSIDE, c, to_gateway, goto=p.NAT.id),
        ]
    else:
        flows = [Flow.make(p.L3_LOOKUP.id, p.PRIO_EGRESS_ROUTE, c,
                           {"metadata": network.vni | router_metadata(router),
                            "eth_type": ETH_IPV4},
                           actions=[dec_ttl()], goto=p.NAT.id)]
    if network.egress:
        flows.append(Flow.make(
            p.OUTBOUND.id, p.PRIO_NEW_EGRESS, c,
            {"metadata": in_network(network), "eth_type": ETH_IPV4, "ct_state": ct_state(NEW)},
            actions=[ct(commit=True, zone=p.NAT_ZONE, table=p.TO_OUTSIDE.id,
                        nat=nat("src", (outside.address, outside.address)))]))
    return flows


def endpoint_egress_flows(ep: Endpoint, network: Network, outside: Outside,
                          published: tuple[PublishedPort, ...] = ()) -> list[Flow]:
    """A local endpoint's transit rewrite both ways, and its published ports."""
    c = p.cookie("endpoint", ep.seq)
    transit = transit_address(ep)
    flows = [
        Flow.make(p.NAT.id, p.PRIO_TRANSIT, c,
                  {"metadata": in_network(network), "eth_type": ETH_IPV4, "ipv4_src": ep.ip},
                  actions=[set_field("ipv4_src", transit),
                           ct(zone=p.NAT_ZONE, table=p.OUTBOUND.id, nat=nat())]),
        Flow.make(p.FROM_OUTSIDE.id, p.PRIO_TRANSIT, c,
                  {"eth_type": ETH_IPV4, "ipv4_dst": transit},
                  actions=[set_field("ipv4_dst", ep.ip),
                           set_field("eth_src", network.gateway_mac),
                           set_field("eth_dst", ep.mac)],
                  write_metadata=network.vni, goto=p.L2.id),
    ]
    for port in published:
        proto, dst_field = IP_PROTOCOLS[port.protocol]
        flows.append(Flow.make(
            p.INGRESS.id, p.PRIO_PUBLISHED, c,
            {"in_port": outside.patch, "eth_type": ETH_IPV4, "ip_proto": proto,
             "ipv4_dst": outside.address, dst_field: port.host_port},
            actions=[ct(commit=True, zone=p.NAT_ZONE, table=p.FROM_OUTSIDE.id,
                        nat=nat("dst", (transit, transit), (port.port, port.port)))]))
    return flows
