"""Builds a flowsim fabric from the model: each host's compiled flows, as os-ken flow mods
(whose bytes the controller's wire codec reproduces exactly), into a simulated switch; tunnels
joined pairwise."""
from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from flows import HostPorts, compile_host, diff
from openflow.os_ken import add_message, delete_message
from flowsim import SimFabric, SimSwitch
from model import Snapshot

TUNNEL_BASE = 100


class FakeDatapath:
    """Just enough of an os-ken Datapath to build messages."""

    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser


DP = FakeDatapath()


def host_ports(snap: Snapshot) -> dict[str, HostPorts]:
    """Every endpoint bound, ports numbered 1.. per host; tunnel to peer i on TUNNEL_BASE+i."""
    names = sorted(snap.hosts)
    result = {}
    for host in names:
        eps = {ep.id: n + 1 for n, ep in enumerate(snap.host_endpoints(host))}
        tunnels = {peer: TUNNEL_BASE + i for i, peer in enumerate(names) if peer != host}
        result[host] = HostPorts(eps, tunnels)
    return result


def messages_for(flows: dict) -> list:
    return [add_message(DP, f) for f in flows.values()]


def build(snap: Snapshot, ports: dict[str, HostPorts] | None = None):
    """Returns (fabric, tables): the simulated fabric and each host's compiled table."""
    ports = ports or host_ports(snap)
    fabric = SimFabric()
    tables = {}
    for host in snap.hosts:
        switch = SimSwitch(dpid=snap.hosts[host].dpid)
        tables[host] = compile_host(snap, host, ports[host])
        switch.apply_all(messages_for(tables[host]))
        fabric.add_switch(host, switch)
    for host, hp in ports.items():
        for peer, port in hp.tunnels.items():
            fabric.link_tunnel((host, port), (peer, ports[peer].tunnels[host]), both_ways=False)
        for endpoint_id, port in hp.endpoints.items():
            fabric.attach(endpoint_id, (host, port))
    return fabric, tables


def diff_messages(desired: dict, installed: dict) -> list:
    changes = diff(desired, installed)
    return [add_message(DP, f) for f in changes.add] + \
        [delete_message(DP, f) for f in changes.delete]


def flow_stats(flows: dict) -> list:
    """The compiled flows as the switch reports them (OFPFlowStats), zero counters."""
    stats = []
    for flow in flows.values():
        mod = add_message(DP, flow)
        stats.append(ofproto_v1_3_parser.OFPFlowStats(
            table_id=flow.table, duration_sec=0, duration_nsec=0, priority=flow.priority,
            idle_timeout=0, hard_timeout=0, flags=0, cookie=flow.cookie, packet_count=0,
            byte_count=0, match=mod.match, instructions=mod.instructions))
    return stats


# The physical bridge of every host in the fabric build_outside makes: the patch on both sides,
# the uplink, the bridge's MAC and the next hop's, and where the outside is attached.
PATCH = 90  # on the integration bridge
PEER_PATCH, UPLINK = 1, 2  # on the physical bridge
PHY_MAC = "02:99:00:00:00:01"
NEXT_HOP_MAC = "02:99:00:00:00:fe"


def outside_name(host: str) -> str:
    """The endpoint that stands for the underlay behind ``host``'s uplink."""
    return f"outside@{host}"


def physical_name(host: str) -> str:
    return f"{host}/phy"


def with_physical(ports: dict[str, HostPorts], next_hop_mac: str | None = NEXT_HOP_MAC
                  ) -> dict[str, HostPorts]:
    """``ports`` with every host's physical bridge patched in."""
    from dataclasses import replace

    from flows.egress import PhysicalBridge
    bridge = PhysicalBridge(PATCH, PEER_PATCH, UPLINK, PHY_MAC, next_hop_mac)
    return {host: replace(hp, physical=bridge) for host, hp in ports.items()}


def build_outside(snap: Snapshot, ports: dict[str, HostPorts] | None = None):
    """As build, with each host's physical bridge: a second switch sharing the integration
    bridge's conntrack (one datapath), joined by the patch, the outside on its uplink.
    Returns (fabric, integration tables, physical tables)."""
    from flows.physical import compile_physical
    ports = ports or with_physical(host_ports(snap))
    fabric, tables = build(snap, ports)
    physical = {}
    for host in snap.hosts:
        switch = SimSwitch(dpid=snap.hosts[host].dpid)
        switch.conntrack = fabric.switches[host].conntrack
        physical[host] = compile_physical(snap, host, ports[host])
        switch.apply_all(messages_for(physical[host]))
        name = physical_name(host)
        fabric.add_switch(name, switch)
        bridge = ports[host].physical
        if bridge is not None:
            fabric.link_tunnel((host, bridge.patch), (name, bridge.peer_patch))
            fabric.attach(outside_name(host), (name, bridge.uplink))
    return fabric, tables, physical
