"""Packet trace across hosts, computed from the flows the switches hold right now.

The controller has no shell on the hosts: it reads each switch's live table over OpenFlow,
loads it into the flow-table simulator, joins the simulated switches by the same tunnels the
hosts have, and follows one packet through. Pure: the live tables are passed in.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flows import Flow, HostPorts
from openflow.os_ken import flow_from_stats
from flows.pipeline import ARP, INGRESS, L2
from flowsim import Packet, SimFabric, SimSwitch
from model import Endpoint, InvalidRequest, NotFound, Snapshot

from .views import Owners, flow_view, table_name

TRACE_SRC_PORT = 40000


class _Datapath:
    """What os-ken needs to build messages for the simulator."""

    ofproto = ofp
    ofproto_parser = parser


@dataclass
class LiveHost:
    stats: list  # OFPFlowStats entries read from the switch
    ports: HostPorts  # OpenFlow port numbers as the host's OVSDB reports them


def resolve_endpoint(snap: Snapshot, ref: str, prefer_network: str | None = None) -> Endpoint:
    if ref in snap.endpoints:
        return snap.endpoints[ref]
    named = [e for e in snap.endpoints.values() if e.name == ref]
    named.sort(key=lambda e: e.network_id != prefer_network)
    if not named:
        raise NotFound(f"endpoint {ref!r} does not exist")
    return named[0]


def build_packet(src: Endpoint, dst_ip: str, dst_mac: str | None, protocol: str,
                 dst_port: int | None) -> Packet:
    if protocol == "arp" or dst_mac is None:
        return Packet.arp_request(src.mac, src.ip, dst_ip)
    if protocol == "icmp":
        return Packet.icmp(src.mac, dst_mac, src.ip, dst_ip)
    maker = Packet.tcp if protocol == "tcp" else Packet.udp
    return maker(src.mac, dst_mac, src.ip, dst_ip, TRACE_SRC_PORT, dst_port or 80)


def trace(snap: Snapshot, src_ref: str, to: str, protocol: str, dst_port: int | None,
          live: dict[str, LiveHost]) -> dict:
    src = resolve_endpoint(snap, src_ref)
    dst, dst_ip = _destination(snap, src, to)
    if src.host not in live or src.id not in live[src.host].ports.endpoints:
        raise InvalidRequest(f"endpoint {src.name} is not attached to a port on {src.host} "
                             "that the controller can see, so nothing can be traced from it")
    packet = build_packet(src, dst_ip, dst.mac if dst else None, protocol, dst_port)
    owners = Owners(snap)
    fabric, tables = _simulate(live)
    delivered = fabric.send(src.id, packet)
    hops = _hops(fabric, live, tables, owners, snap.networks[src.network_id].vni)
    hops += [{"host": snap.endpoints[ep].host, "step": "deliver", "endpoint": ep,
              "port": live[snap.endpoints[ep].host].ports.endpoints.get(ep)}
             for ep, _ in delivered]
    return {"packet": {f.name: getattr(packet, f.name) for f in dataclasses.fields(packet)
                       if getattr(packet, f.name) not in (None, 0)},
            "hops": hops,
            "verdict": _verdict(snap, src, dst, packet, delivered, hops)}


def _destination(snap: Snapshot, src: Endpoint, to: str) -> tuple[Endpoint | None, str]:
    try:
        ip = str(ipaddress.IPv4Address(to))
    except ValueError:
        dst = resolve_endpoint(snap, to, prefer_network=src.network_id)
        return dst, dst.ip
    same_net = [e for e in snap.network_endpoints(src.network_id) if e.ip == ip]
    # An address no endpoint of the network has: the sender's ARP request is what is sent.
    return (same_net[0] if same_net else None), ip


def _simulate(live: dict[str, LiveHost]):
    fabric = SimFabric()
    tables: dict[str, dict[tuple, object]] = {}
    for host, data in live.items():
        switch = SimSwitch()
        switch.apply_all(parser.OFPFlowMod(
            _Datapath, cookie=s.cookie, table_id=s.table_id, priority=s.priority,
            command=ofp.OFPFC_ADD, match=s.match, instructions=s.instructions)
            for s in data.stats)
        fabric.add_switch(host, switch)
        tables[host] = {flow_from_stats(s).key: s for s in data.stats}
    for host, data in live.items():
        for peer, port in data.ports.tunnels.items():
            if peer in live and host in live[peer].ports.tunnels:
                fabric.link_tunnel((host, port), (peer, live[peer].ports.tunnels[host]),
                                   both_ways=False)
        for endpoint_id, port in data.ports.endpoints.items():
            fabric.attach(endpoint_id, (host, port))
    return fabric, tables


def _hops(fabric: SimFabric, live, tables, owners: Owners, vni: int) -> list[dict]:
    hops = []
    for index, (host, in_port, steps) in enumerate(fabric.last_path):
        if index > 0:
            peer = next((p for p, port in live[host].ports.tunnels.items() if port == in_port),
                        None)
            if peer is not None:
                hops.append({"host": peer, "step": "tunnel", "vni": vni, "remote_host": host,
                             "port": live[peer].ports.tunnels[host]})
        for step in steps:
            hop = {"host": host, "step": "table", "table": step.table_id,
                   "table_name": table_name(step.table_id), "flow": None}
            if step.entry is not None:
                flow = flow_from_stats(step.entry)
                hop["flow"] = flow_view(host, flow, owners, tables[host].get(flow.key))
                hop["_flow"] = flow
            hops.append(hop)
    return hops


def _verdict(snap, src: Endpoint, dst: Endpoint | None, packet: Packet, delivered, hops) -> dict:
    reached = [ep for ep, _ in delivered]
    if reached:
        if reached == [src.id] and packet.arp_op == 1:
            reason = f"ARP request for {packet.arp_tpa} answered by the fabric"
        else:
            names = ", ".join(snap.endpoints[e].name for e in reached)
            reason = f"delivered to {names}"
            if dst is not None and dst.id not in reached:
                reason += f" but not to {dst.name}"
        result = {"result": "delivered", "endpoints": reached, "reason": reason}
    else:
        last = next((h for h in reversed(hops) if h["step"] == "table"), None)
        result = {"result": "dropped", "endpoints": [], "reason": "no hop was taken"}
        if last is not None:
            result |= {"host": last["host"], "table": last["table"],
                       "table_name": last["table_name"], "flow": last["flow"],
                       "reason": _why_dropped(snap, src, packet, last)}
    for hop in hops:
        hop.pop("_flow", None)
    return result


def _why_dropped(snap, src: Endpoint, packet: Packet, hop: dict) -> str:
    flow: Flow | None = hop.get("_flow")
    network = snap.networks[src.network_id]
    if flow is None:
        return f"no flow in table {hop['table']} ({hop['table_name']}) matches: table miss"
    if flow.actions:
        return ("the last flow sent it to a port with no endpoint or connected host behind it "
                f"({hop['flow']['actions']})")
    if flow.table == INGRESS.id:
        return "no flow admits this packet at ingress: unknown port or VNI"
    if flow.table == L2.id:
        return (f"no endpoint of network {network.name} has destination MAC {packet.eth_dst}: "
                "networks are isolated")
    if flow.table == ARP.id and packet.arp_op == 1:
        return (f"no endpoint of network {network.name} has address {packet.arp_tpa}: "
                "ARP requests for unknown addresses are dropped")
    if flow.table == ARP.id:
        return "the ARP table dropped it"
    return "dropped by this flow"
