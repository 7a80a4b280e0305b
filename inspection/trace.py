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
from flows.pipeline import (ARP, EGRESS_RULES, INGRESS, INGRESS_RULES, L2, L3_LOOKUP,
                            NEIGHBOUR, OUTBOUND, PRIO_POLICY_INVALID, PRIO_POLICY_REVOKED,
                            TO_OUTSIDE, decode_cookie)
from flowsim import Packet, SimFabric, SimSwitch, TtlEvent
from model import Endpoint, InvalidRequest, NotFound, Snapshot

from .views import Owners, flow_view, table_name

TRACE_SRC_PORT = 40000
OUTSIDE = "outside@"  # the name the trace gives a host's patch to its physical bridge


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


def hosts_to_read(snap: Snapshot, src: Endpoint) -> set[str]:
    """The hosts a packet from ``src`` can cross: those of its network, and of the networks
    its router routes to."""
    router = snap.router_of(src.network_id)
    networks = router.networks if router is not None else (src.network_id,)
    return {h for n in networks for h in snap.hosts_of_network(n)}


def trace(snap: Snapshot, src_ref: str, to: str, protocol: str, dst_port: int | None,
          live: dict[str, LiveHost]) -> dict:
    src = resolve_endpoint(snap, src_ref)
    dst, dst_ip, dst_mac = _destination(snap, src, to)
    if src.host not in live or src.id not in live[src.host].ports.endpoints:
        raise InvalidRequest(f"endpoint {src.name} is not attached to a port on {src.host} "
                             "that the controller can see, so nothing can be traced from it")
    packet = build_packet(src, dst_ip, dst_mac, protocol, dst_port)
    owners = Owners(snap)
    fabric, tables = _simulate(live)
    arrived = fabric.send(src.id, packet)
    delivered = [(ep, p) for ep, p in arrived if not ep.startswith(OUTSIDE)]
    left = [(ep.removeprefix(OUTSIDE), p) for ep, p in arrived if ep.startswith(OUTSIDE)]
    hops = _hops(snap, fabric, live, tables, owners)
    hops += [{"host": snap.endpoints[ep].host, "step": "deliver", "endpoint": ep,
              "port": live[snap.endpoints[ep].host].ports.endpoints.get(ep)}
             for ep, _ in delivered]
    hops += [{"host": host, "step": "leave", "port": live[host].ports.physical.patch}
             for host, _ in left]
    verdict = _leaving(left) if left and not delivered else \
        _verdict(snap, src, dst, packet, delivered, hops)
    for hop in hops:
        hop.pop("_flow", None)
    return {"packet": {f.name: getattr(packet, f.name) for f in dataclasses.fields(packet)
                       if getattr(packet, f.name) not in (None, 0)},
            "hops": hops, "verdict": verdict}


def _leaving(left: list[tuple[str, Packet]]) -> dict:
    """The packet left the fabric: from which host, NATed to which address, to which MAC."""
    host, out = left[0]
    port = out.tcp_src if out.tcp_src is not None else out.udp_src
    address = out.ipv4_src + (f":{port}" if port is not None else "")
    return {"result": "leaves", "endpoints": [], "host": host,
            "outside": {"host": host, "address": out.ipv4_src, "port": port,
                        "next_hop_mac": out.eth_dst},
            "reason": f"leaves the fabric from host {host} as {address} (source NAT), to "
                      f"{out.ipv4_dst} through the next hop {out.eth_dst}"}


def _destination(snap: Snapshot, src: Endpoint,
                 to: str) -> tuple[Endpoint | None, str, str | None]:
    """The endpoint meant (if any), its address, and the MAC the sender puts on the packet:
    the destination's own on the sender's subnet (None, an ARP request, for an address no
    endpoint there has), its gateway's for an address off the subnet, as a container does."""
    network = snap.networks[src.network_id]
    try:
        ip = str(ipaddress.IPv4Address(to))
        dst = None
    except ValueError:
        dst = resolve_endpoint(snap, to, prefer_network=src.network_id)
        ip = dst.ip
    if ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(network.subnet):
        # An endpoint named is sent to at its MAC, whichever network it is in; an address,
        # at the MAC of its endpoint in the sender's network (none: the ARP request).
        if dst is None:
            dst = next((e for e in snap.network_endpoints(src.network_id) if e.ip == ip), None)
        return dst, ip, dst.mac if dst is not None else None
    if dst is None:
        router = snap.router_of(src.network_id)
        routed = router.networks if router is not None else ()
        dst = next((e for n in routed for e in snap.network_endpoints(n) if e.ip == ip), None)
    return dst, ip, network.gateway_mac


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
        if data.ports.physical is not None:
            fabric.attach(OUTSIDE + host, (host, data.ports.physical.patch))
    return fabric, tables


def _hops(snap: Snapshot, fabric: SimFabric, live, tables, owners: Owners) -> list[dict]:
    hops = []
    for index, (host, in_port, steps) in enumerate(fabric.last_path):
        if index > 0:
            peer = next((p for p, port in live[host].ports.tunnels.items() if port == in_port),
                        None)
            if peer is not None:
                # The far end's first lookup is the tunnel's classification, by the VNI.
                arrived = steps[0].entry.match if steps and steps[0].entry is not None else {}
                hops.append({"host": peer, "step": "tunnel", "vni": arrived.get("tunnel_id"),
                             "remote_host": host, "port": live[peer].ports.tunnels[host]})
        for step in steps:
            hop = {"host": host, "step": "table", "table": step.table_id,
                   "table_name": table_name(step.table_id), "flow": None}
            if step.entry is not None:
                flow = flow_from_stats(step.entry)
                hop["flow"] = flow_view(host, flow, owners, tables[host].get(flow.key))
                hop["_flow"] = flow
                if flow.table == L3_LOOKUP.id and flow.goto is not None:
                    hop["route"] = _route_taken(snap, flow, step.events)
                if flow.table in RULE_TABLES and hop["flow"]["owner"]["kind"] == "policy":
                    hop["policy"] = _policy_taken(hop["flow"]["owner"], flow)
            hops.append(hop)
    return hops


def _route_taken(snap: Snapshot, flow: Flow, events: list) -> dict:
    """Which router routed the packet, by which route, and what became of its TTL."""
    kind, seq = decode_cookie(flow.cookie) or ("", 0)
    router = next((r for r in snap.routers.values() if kind == "router" and r.seq == seq), None)
    destination = dict(flow.match).get("ipv4_dst", "0.0.0.0/0")
    if isinstance(destination, tuple):
        destination = str(ipaddress.IPv4Network("/".join(destination)))
    network = next((n for n in snap.networks.values() if n.vni == flow.write_metadata), None)
    nexthop = next((str(ipaddress.IPv4Address(a[2])) for a in flow.actions
                    if a[0] == "set_field" and a[1] == "reg3"), None)
    ttl = next((e for e in events if isinstance(e, TtlEvent)), None)
    return {"router": router.name if router else None, "destination": destination,
            "nexthop": nexthop, "network": network.name if network else None,
            "ttl": None if ttl is None else
            {"before": ttl.ttl_before, "after": None if ttl.expired else ttl.ttl_before - 1}}


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
        routes = [h["route"] for h in hops if "route" in h]
        if routes:
            reason += "; " + "; ".join(_describe(r) for r in routes)
        policies = [h["policy"] | {"host": h["host"]} for h in hops if "policy" in h]
        if policies:
            reason += "; " + "; ".join(_describe_policy(p) for p in policies)
        result = {"result": "delivered", "endpoints": reached, "reason": reason}
        if routes:
            result["routes"] = routes
        if policies:
            result["policies"] = policies
    else:
        last = next((h for h in reversed(hops) if h["step"] == "table"), None)
        result = {"result": "dropped", "endpoints": [], "reason": "no hop was taken"}
        if last is not None:
            result |= {"host": last["host"], "table": last["table"],
                       "table_name": last["table_name"], "flow": last["flow"],
                       "reason": _why_dropped(snap, src, packet, last)}
            if "policy" in last:
                result["policies"] = [last["policy"] | {"host": last["host"]}]
    return result


RULE_TABLES = (EGRESS_RULES.id, INGRESS_RULES.id)


def _policy_taken(owner: dict, flow: Flow) -> dict:
    """The policy and rule a packet met in a rules table, and what the rule made of it."""
    rule = owner["rule"] or {}
    decided = "allowed" if flow.goto is not None else "denied"
    return {"policy": owner["name"], "policy_id": owner["id"], "rule": rule.get("id"),
            "direction": rule.get("direction"), "index": rule.get("index"),
            "action": rule.get("action"), "verdict": decided,
            "established": any(name == "ct_state" for name, _ in flow.match)}


def _describe_policy(taken: dict) -> str:
    what = "an established connection of" if taken["established"] else taken["verdict"] + " by"
    return (f"{what} policy {taken['policy']} ({taken['direction']} rule {taken['index']}, "
            f"{taken['action']}) on {taken['host']}")


def _describe(route: dict) -> str:
    via = (f"next hop {route['nexthop']} in {route['network']}" if route["nexthop"]
           else f"attached network {route['network']}")
    text = f"routed by {route['router']} (route {route['destination']}, {via})"
    if route["ttl"] is not None:
        text += f", TTL {route['ttl']['before']} -> {route['ttl']['after']}"
    return text


def _why_dropped(snap, src: Endpoint, packet: Packet, hop: dict) -> str:
    flow: Flow | None = hop.get("_flow")
    network = snap.networks[src.network_id]
    if flow is None:
        return f"no flow in table {hop['table']} ({hop['table_name']}) matches: table miss"
    ttl = hop.get("route", {}).get("ttl")
    if ttl is not None and ttl["after"] is None:
        return f"its TTL ({ttl['before']}) expired at router {hop['route']['router']}"
    if flow.actions:
        return ("the last flow sent it to a port with no endpoint or connected host behind it "
                f"({hop['flow']['actions']})")
    if flow.table == INGRESS.id:
        return "no flow admits this packet at ingress: unknown port or VNI"
    if flow.table in RULE_TABLES:
        return _why_refused(snap, src, packet, hop, flow)
    router = snap.router_of(src.network_id)
    if flow.table == L3_LOOKUP.id:
        return f"router {router.name if router else '?'} has no route to {packet.ipv4_dst}"
    if flow.table == NEIGHBOUR.id:
        return (f"no endpoint has the next hop address of the route to {packet.ipv4_dst}: "
                "nothing to deliver it to")
    if flow.table == L2.id and packet.eth_dst == network.gateway_mac and router is None:
        return (f"network {network.name} is on no router: its gateway routes nothing, and "
                f"{packet.ipv4_dst} is off its subnet")
    if flow.table == L2.id:
        return (f"no endpoint of network {network.name} has destination MAC {packet.eth_dst}: "
                "networks are isolated")
    if flow.table == ARP.id and packet.arp_op == 1:
        return (f"no endpoint of network {network.name} has address {packet.arp_tpa}: "
                "ARP requests for unknown addresses are dropped")
    if flow.table == ARP.id:
        return "the ARP table dropped it"
    if flow.table == OUTBOUND.id:
        return (f"network {network.name} has no egress: nothing new leaves the fabric from "
                "it (replies of its published ports do)")
    if flow.table == TO_OUTSIDE.id:
        return (f"the next hop of host {hop['host']} is not resolved yet: nothing leaves "
                "until it is")
    return "dropped by this flow"


def _why_refused(snap, src: Endpoint, packet: Packet, hop: dict, flow: Flow) -> str:
    """Why a rules table dropped the packet: a deny rule, no rule (default deny), a revoked
    rule or an invalid packet."""
    if "policy" in hop:
        return _describe_policy(hop["policy"] | {"host": hop["host"]})
    if flow.priority == PRIO_POLICY_INVALID:
        return "connection tracking found the packet invalid"
    if flow.priority == PRIO_POLICY_REVOKED:
        return "a reply of a connection whose rule no longer holds: revoked"
    egress = flow.table == EGRESS_RULES.id
    ep = src if egress else next(
        (e for e in snap.network_endpoints(src.network_id) if e.ip == packet.ipv4_dst), None)
    if ep is None:  # routed: the destination is in another network
        ep = next((e for e in snap.endpoints.values() if e.ip == packet.ipv4_dst
                   and e.host == hop["host"] and snap.guard_of(e) is not None), None)
    names = ", ".join(p.name for p in snap.policies_selecting(ep)) if ep else "?"
    who = ep.name if ep else "the destination"
    direction = "send" if egress else "receive"
    return (f"no rule of the policies selecting {who} ({names}) allows it to {direction} "
            f"this: what a policy selects is denied unless a rule allows it")
