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
