"""The flows of a host's physical bridge (br-phy), compiled from the same snapshot as the
integration bridge's, in a pipeline of their own (flows.pipeline.PHYSICAL_PIPELINE). Pure.

The bridge holds the host's underlay address and carries its tunnels: it keeps forwarding as
before (NORMAL), so the host never loses its network, and takes from it only what the fabric's
NAT needs: what the integration bridge sends out goes straight to the uplink (NORMAL would
learn the bridge's own MAC on the patch port and send the host's own traffic into the fabric),
published ports go to the integration bridge, and so does whatever else arrives for the outside
address that the NAT zone knows (replies); the rest is the host's own.

Few flows, all rebuilt on every change: ``PhysicalFlows`` gives the switch session the same
interface as ``HostFlows`` and never attempts an incremental update.
"""
from __future__ import annotations

from model.entities import Snapshot
from openflow.actions import OFPP_CONTROLLER, ct

from . import pipeline as p
from .compiler import HostPorts
from .conformance import OFPP_NORMAL, check_physical
from .egress import ESTABLISHED, IP_PROTOCOLS, RELATED, ct_state
from .flow import Flow, FlowDiff, output, table_of
from .routing import ETH_IPV4

VXLAN_PORT = 4789
IPPROTO_UDP = 17
ETH_ARP = 0x0806
ARP_REPLY = 2

check_flows = False  # the tests turn it on, as flows.compiler.check_flows


def compile_physical(snap: Snapshot, host: str, ports: HostPorts) -> dict[tuple, Flow]:
    """The physical bridge's whole table; only its miss flows while the patch is missing."""
    flows = physical_flows(snap, host, ports)
    if check_flows:
        for flow in flows:
            check_physical(flow)
    return table_of(flows)


def physical_flows(snap: Snapshot, host_name: str, ports: HostPorts) -> list[Flow]:
    host = snap.hosts.get(host_name)
    if host is None:
        return []
    c = p.cookie("host", host.seq)
    normal = [output(OFPP_NORMAL)]
    flows = [Flow.make(p.PHY_IN.id, p.PRIO_MISS, c, actions=normal),
             Flow.make(p.PHY_RETURN.id, p.PRIO_MISS, c, actions=normal)]
    bridge = ports.physical
    if bridge is None:
        return flows
    address = host.outside_ip
    to_integration = [output(bridge.peer_patch)]
    flows += [
        Flow.make(p.PHY_IN.id, p.PRIO_PHY_FROM_INTEGRATION, c, {"in_port": bridge.peer_patch},
                  actions=[output(bridge.uplink)]),
        # Tunnels stay as they are, whatever their outer addresses.
        Flow.make(p.PHY_IN.id, p.PRIO_PHY_TUNNEL, c,
                  {"eth_type": ETH_IPV4, "ip_proto": IPPROTO_UDP, "udp_dst": VXLAN_PORT},
                  actions=normal),
        Flow.make(p.PHY_IN.id, p.PRIO_PHY_OUTSIDE_ADDRESS, c,
                  {"eth_type": ETH_IPV4, "ipv4_dst": address},
                  actions=[ct(zone=p.NAT_ZONE, table=p.PHY_RETURN.id)]),
        *(Flow.make(p.PHY_RETURN.id, p.PRIO_PHY_KNOWN, c, {"ct_state": ct_state(flag)},
                    actions=to_integration) for flag in (ESTABLISHED, RELATED)),
    ]
    if bridge.next_hop is not None:
        # The controller learns the next hop's MAC from its replies to the requests it sends
        # from the host's address; the host's own stack still sees them.
        flows.append(Flow.make(
            p.PHY_IN.id, p.PRIO_PHY_NEXT_HOP_ARP, c,
            {"eth_type": ETH_ARP, "arp_op": ARP_REPLY, "arp_spa": bridge.next_hop,
             "arp_tpa": host.tunnel_ip},
            actions=[output(OFPP_CONTROLLER), *normal]))
    for ep in snap.host_endpoints(host_name):
        for port in snap.published.get(ep.id, ()):
            proto, dst_field = IP_PROTOCOLS[port.protocol]
            flows.append(Flow.make(
                p.PHY_IN.id, p.PRIO_PHY_PUBLISHED, p.cookie("endpoint", ep.seq),
                {"eth_type": ETH_IPV4, "ip_proto": proto, "ipv4_dst": address,
                 dst_field: port.host_port}, actions=to_integration))
    return flows


class PhysicalFlows:
    """The desired table of a physical bridge, with HostFlows' interface for the switch
    session: every change rebuilds it (a handful of flows)."""

    def __init__(self) -> None:
        self.flows: dict[tuple, Flow] = {}

    def view_for(self, snap: Snapshot, host: str, ports: HostPorts) -> tuple:
        return (host, ports)

    def rebuild(self, snap: Snapshot, view: tuple) -> dict[tuple, Flow]:
        self.flows = compile_physical(snap, *view)
        return self.flows

    def update(self, snap: Snapshot, view: tuple, units: set) -> FlowDiff | None:
        return None
