"""Compiles the desired state of one host into its flow table. Pure: no I/O, no clock.

The cost of compiling a host grows with the endpoints of the networks present on that host,
not with the size of the fabric.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from model.entities import Endpoint, Network, Snapshot

from . import pipeline as p
from .flow import OFPP_IN_PORT, Flow, move, output, set_field, table_of

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ARP_REQUEST = 1
ARP_REPLY = 2
IPPROTO_ICMP = 1
ICMP_ECHO = 8
ICMP_ECHO_REPLY = 0
# Broadcast and multicast: the group bit of the destination MAC. Unicast to a MAC that no
# endpoint of the network has is dropped: the controller knows every address.
MULTICAST = ("01:00:00:00:00:00", "01:00:00:00:00:00")


@dataclass(frozen=True)
class HostPorts:
    """What the host's switch has: OpenFlow port numbers, as OVSDB reports them."""

    endpoints: Mapping[str, int] = field(default_factory=dict)  # endpoint id -> ofport
    tunnels: Mapping[str, int] = field(default_factory=dict)  # peer host name -> ofport


def compile_host(snap: Snapshot, host: str, ports: HostPorts) -> dict[tuple, Flow]:
    flows = fixed_flows()
    local = local_ofports(snap, host, ports)
    for network_id in sorted({snap.endpoints[e].network_id for e in local}):
        network = snap.networks[network_id]
        members = snap.network_endpoints(network_id)
        flows += network_flows(network, host, members, local, ports.tunnels)
    for endpoint_id, ofport in local.items():
        ep = snap.endpoints[endpoint_id]
        flows += port_security_flows(ep, snap.networks[ep.network_id], ofport)
    return table_of(flows)


def local_ofports(snap: Snapshot, host: str, ports: HostPorts) -> dict[str, int]:
    """Endpoint id -> OpenFlow port for the host's endpoints that have one.

    The number OVS reports wins; a port the controller is still adding has the number it
    asked for, so that its flows are in place when the port appears.
    """
    local = {}
    for ep in snap.host_endpoints(host):
        ofport = ports.endpoints.get(ep.id, ep.ofport)
        if ofport is not None:
            local[ep.id] = ofport
    return local


def fixed_flows() -> list[Flow]:
    c = p.FABRIC_COOKIE
    return [
        Flow.make(p.INGRESS.id, p.PRIO_DEFAULT, c),  # unknown port or VNI: drop
        Flow.make(p.ARP.id, p.PRIO_DEFAULT, c, goto=p.L2.id),  # not ours to answer: forward
        Flow.make(p.L2.id, p.PRIO_DEFAULT, c),
    ]


def port_security_flows(ep: Endpoint, network: Network, ofport: int) -> list[Flow]:
    """A local port may send IPv4 and ARP only with its endpoint's own MAC and IP."""
    c = p.cookie("endpoint", ep.seq)
    return [
        Flow.make(p.INGRESS.id, p.PRIO_PORT_ALLOW, c,
                  {"in_port": ofport, "eth_src": ep.mac, "eth_type": ETH_IPV4, "ipv4_src": ep.ip},
                  write_metadata=network.vni, goto=p.L2.id),
        Flow.make(p.INGRESS.id, p.PRIO_PORT_ALLOW, c,
                  {"in_port": ofport, "eth_src": ep.mac, "eth_type": ETH_ARP,
                   "arp_spa": ep.ip, "arp_sha": ep.mac},
                  write_metadata=network.vni, goto=p.ARP.id),
        Flow.make(p.INGRESS.id, p.PRIO_PORT_DROP, c, {"in_port": ofport}),
    ]


def network_flows(network: Network, host: str, members: list[Endpoint],
                  local: Mapping[str, int], tunnels: Mapping[str, int]) -> list[Flow]:
    vni = network.vni
    net_cookie = p.cookie("network", network.seq)
    local_ports = sorted(local[ep.id] for ep in members if ep.id in local)
    remote_hosts = sorted({ep.host for ep in members if ep.host != host} & tunnels.keys())
    to_tunnels = [set_field("tunnel_id", vni)] + [output(tunnels[h]) for h in remote_hosts]

    flows = [
        Flow.make(p.INGRESS.id, p.PRIO_TUNNEL_IN, net_cookie, {"tunnel_id": vni},
                  actions=[set_field(p.FROM_TUNNEL_REG, p.FROM_TUNNEL)],
                  write_metadata=vni, goto=p.L2.id),
        Flow.make(p.L2.id, p.PRIO_FLOOD, net_cookie,
                  {"metadata": vni, p.FROM_TUNNEL_REG: 0, "eth_dst": MULTICAST},
                  actions=[output(port) for port in local_ports]
                  + (to_tunnels if remote_hosts else [])),
        Flow.make(p.L2.id, p.PRIO_FLOOD, net_cookie,
                  {"metadata": vni, p.FROM_TUNNEL_REG: p.FROM_TUNNEL, "eth_dst": MULTICAST},
                  actions=[output(port) for port in local_ports]),
    ]
    flows += gateway_flows(network, net_cookie)
    for ep in members:
        c = p.cookie("endpoint", ep.seq)
        flows.append(arp_reply_flow(vni, ep.ip, ep.mac, c))
        if ep.host == host:
            if ep.id in local:
                flows.append(Flow.make(p.L2.id, p.PRIO_L2_UNICAST, c,
                                       {"metadata": vni, "eth_dst": ep.mac},
                                       actions=[output(local[ep.id])]))
        elif ep.host in tunnels:
            # Only traffic from local ports goes into a tunnel (split horizon).
            flows.append(Flow.make(p.L2.id, p.PRIO_L2_UNICAST, c,
                                   {"metadata": vni, p.FROM_TUNNEL_REG: 0, "eth_dst": ep.mac},
                                   actions=[set_field("tunnel_id", vni),
                                            output(tunnels[ep.host])]))
    return flows


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
