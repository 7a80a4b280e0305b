"""The flows of routers: packets between the networks of one router are routed on the sending
host and carried in the destination network's VNI straight to the destination's host. Pure.

A container sends to its gateway's MAC (the network's, unchanged by attaching it to a router, so
that no ARP cache goes stale); ``router_in`` puts the router's number into the metadata;
``l3_lookup`` picks the longest matching prefix among the router's networks and static routes,
decrements the TTL and names the next hop (``reg3``) and the network it is in (the metadata
again, whole); ``neighbour`` gives the next hop's MAC and the router's as the source, and l2
delivers in the destination network as it does any of its packets.

A router's flows are on the hosts where one of its networks has an endpoint (the senders); the
endpoints of its other networks are then known there too, each with its neighbour flow and its
way into the tunnel (``HostWiring.routed``).
"""
from __future__ import annotations

import ipaddress

from model.entities import Endpoint, Network, Router, Snapshot
from openflow.actions import dec_ttl

from . import pipeline as p
from .flow import Flow, move, set_field

ETH_IPV4 = 0x0800


def ipv4_int(address: str) -> int:
    return int(ipaddress.IPv4Address(address))


def prefix_match(cidr: str, field: str = "ipv4_dst") -> dict:
    """``field`` matching a prefix, spelled as the switch reports it back: a plain address for
    a /32, (address, netmask) otherwise, and no match at all for /0."""
    net = ipaddress.IPv4Network(cidr)
    if net.prefixlen == 0:
        return {}
    if net.prefixlen == 32:
        return {field: str(net.network_address)}
    return {field: (str(net.network_address), str(net.netmask))}


def router_metadata(router: Router) -> int:
    return router.number << p.ROUTER.start


def router_flows(snap: Snapshot, router: Router, local_networks) -> list[Flow]:
    """The router's flows on a host where ``local_networks`` (ids) have endpoints."""
    c = p.cookie("router", router.seq)
    flows: list[Flow] = []
    in_router = {"metadata": (router_metadata(router), p.ROUTER.mask), "eth_type": ETH_IPV4}
    networks = [snap.networks[n] for n in router.networks]
    for network in networks:
        if network.id in local_networks:
            flows += router_in_flows(network, router, c)
        flows.append(Flow.make(
            p.L3_LOOKUP.id, p.route_priority(network.prefix_len, attached=True), c,
            in_router | prefix_match(network.subnet),
            actions=[dec_ttl(), move("ipv4_dst", p.NEXT_HOP.field, 32)],
            write_metadata=network.vni, goto=p.NEIGHBOUR.id))
    for route in router.routes:
        via = network_holding(networks, route.nexthop)
        if via is None:
            continue
        flows.append(Flow.make(
            p.L3_LOOKUP.id, p.route_priority(ipaddress.IPv4Network(route.destination).prefixlen,
                                             attached=False), c,
            in_router | prefix_match(route.destination),
            actions=[dec_ttl(), set_field(p.NEXT_HOP.field, ipv4_int(route.nexthop))],
            write_metadata=via.vni, goto=p.NEIGHBOUR.id))
    return flows


def router_in_flows(network: Network, router: Router, owner_cookie: int) -> list[Flow]:
    to_gateway = {"metadata": network.vni, "eth_dst": network.gateway_mac, "eth_type": ETH_IPV4}
    return [
        # The gateway's own address is answered in l2, as on a network with no router.
        Flow.make(p.ROUTER_IN.id, p.PRIO_TO_GATEWAY, owner_cookie,
                  to_gateway | {"ipv4_dst": network.gateway}, goto=p.L2.id),
        Flow.make(p.ROUTER_IN.id, p.PRIO_INTO_ROUTER, owner_cookie, to_gateway,
                  write_metadata=network.vni | router_metadata(router), goto=p.L3_LOOKUP.id),
    ]


def network_holding(networks: list[Network], address: str) -> Network | None:
    ip = ipaddress.IPv4Address(address)
    for network in networks:
        if ip in ipaddress.IPv4Network(network.subnet):
            return network
    return None


def neighbour_flow(ep: Endpoint, network: Network, router: Router) -> Flow:
    """A packet routed to ``ep``'s address leaves the router with ``ep``'s MAC."""
    return Flow.make(p.NEIGHBOUR.id, p.PRIO_NEIGHBOUR, p.cookie("endpoint", ep.seq),
                     {"metadata": network.vni, p.NEXT_HOP.field: ipv4_int(ep.ip)},
                     actions=[set_field("eth_src", router.mac), set_field("eth_dst", ep.mac)],
                     goto=p.L2.id)


def forwarded_sources(ep: Endpoint, router: Router | None) -> list[str]:
    """The prefixes an appliance forwards for: the destinations of the routes through it,
    which it may send from (as it forwards their replies) besides its own address."""
    if router is None:
        return []
    return [route.destination for route in router.routes if route.nexthop == ep.ip]
