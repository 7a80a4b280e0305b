"""`flows`, `trace`, `audit`: what the switches hold and where a packet goes."""
from __future__ import annotations

import argparse
import json

from api.client import ApiError, FabricClient

from .lookup import CommandError, endpoint_id, endpoint_names
from .render import flow_label, flow_table, owner_label, print_json, table_label

NOT_CONNECTED = 503


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "flows", parents=[common], help="flows of a host, or of a network or endpoint on "
        "every host", description="Flows with their owners and counters. Without HOST, "
        "--network, --endpoint or --router gives their flows on every host.")
    p.add_argument("host", nargs="?", metavar="HOST")
    p.add_argument("--network", metavar="N", help="only this network's flows (id or name)")
    p.add_argument("--router", metavar="R", help="a router's flows on every host (id or name)")
    p.add_argument("--endpoint", metavar="E", help="only this endpoint's flows (id or name)")
    p.add_argument("--table", metavar="T", help="only this table, by number or name "
                   "(0 ingress, 10 arp, 11 router_in, 12 l3_lookup, 14 neighbour, 20 l2)")
    p.set_defaults(handler=flows)

    p = commands.add_parser(
        "trace", parents=[common], help="follow a packet through the fabric's tables",
        description="The tables, flows and tunnels a packet from FROM to TO goes through, and "
        "whether it is delivered. A dropped packet is a result, not an error: exit status 0.")
    p.add_argument("source", metavar="FROM", help="endpoint id or name")
    p.add_argument("destination", metavar="TO",
                   help="endpoint id or name, or an IPv4 address")
    p.add_argument("--protocol", choices=("icmp", "tcp", "udp", "arp"),
                   help="default: icmp")
    p.add_argument("--port", type=int, metavar="N", help="destination port (tcp, udp)")
    p.set_defaults(handler=trace)

    p = commands.add_parser(
        "audit", parents=[common], help="compare every host's flows with the model",
        description="Compares every host's installed flows with the desired ones. Exit status "
        "1 when a host is out of sync or not connected, 0 when all are in sync.")
    p.set_defaults(handler=audit)


# ---- flows ---------------------------------------------------------------------------------

def _in_table(flow: dict, wanted: str) -> bool:
    if wanted.isdigit():
        return flow["table"] == int(wanted)
    return flow.get("table_name") == wanted


def flows(client: FabricClient, args) -> int:
    endpoint = endpoint_id(client, args.endpoint) if args.endpoint else None
    if args.router and (args.host or endpoint or args.network):
        raise CommandError("--router takes no HOST, --network or --endpoint")
    if args.router:
        found = client.router_flows(args.router)
    elif args.host:
        found = client.host_flows(args.host, network=args.network, endpoint=endpoint,
                                  table=args.table)
    elif endpoint:  # an endpoint is in one network: --network adds nothing to it
        found = client.endpoint_flows(endpoint)
    elif args.network:
        found = client.network_flows(args.network)
    else:
        raise CommandError("flows needs a HOST, or --network, --endpoint or --router for "
                           "every host")
    if args.table and not args.host:  # the cross-host calls take no table: filtered here
        found = [f for f in found if _in_table(f, args.table)]
    if args.json:
        print_json(found)
    elif not found:
        print("no flows")
    else:
        print(flow_table(found))
    return 0


# ---- trace ---------------------------------------------------------------------------------

def trace(client: FabricClient, args) -> int:
    if args.port is not None and args.protocol not in ("tcp", "udp"):
        raise CommandError("--port needs --protocol tcp or udp")
    result = client.trace(args.source, args.destination, args.protocol, args.port)
    if args.json:
        print_json(result)
        return 0
    ids = [h["endpoint"] for h in result["hops"] if h.get("endpoint")]
    ids += result["verdict"].get("endpoints") or []
    names = endpoint_names(client) if ids else {}
    for line in trace_lines(result, names):
        print(line)
    return 0


def trace_lines(result: dict, names: dict[str, str]) -> list[str]:
    hops = result["hops"]
    lines = [f"packet  {_headers(result.get('packet') or {})}"]
    host_width = max((len(h["host"]) for h in hops), default=0)
    labels = {id(h): "table " + table_label(h.get("table"), h.get("table_name"))
              for h in hops if h["step"] == "table"}
    label_width = max(map(len, labels.values()), default=0)
    # Matches padded too, so the hops' actions line up and the path reads down one column.
    match_width = max((len(h["flow"]["match"] or "(any)") for h in hops if h.get("flow")),
                      default=0)
    for hop in hops:
        host = hop["host"].ljust(host_width)
        if hop["step"] == "table":
            label, flow = labels[id(hop)].ljust(label_width), hop.get("flow")
            if flow is None:
                lines.append(f"{host}  {label}  miss: no flow matched")
            else:
                lines.append(f"{host}  {label}  prio {flow['priority']:<3}  "
                             f"{flow['match'] or '(any)':<{match_width}}  -> {flow['actions']}   "
                             f"[{owner_label(flow.get('owner'))}]")
            if hop.get("route"):
                lines.append(f"{host}  {' ' * label_width}  {_route_text(hop['route'])}")
        elif hop["step"] == "tunnel":
            lines.append(f"{host}  tunnel  VNI {hop.get('vni')} -> {hop.get('remote_host')} "
                         f"(port {hop.get('port')})")
        elif hop["step"] == "leave":
            lines.append(f"{host}  leave the fabric (port {hop.get('port')}, to the physical "
                         "bridge)")
        else:
            who = names.get(hop.get("endpoint"), hop.get("endpoint"))
            lines.append(f"{host}  deliver to endpoint {who} (port {hop.get('port')})")
    lines.append(verdict_line(result["verdict"], names))
    return lines


def _route_text(route: dict) -> str:
    via = f"via {route['nexthop']}" if route.get("nexthop") else "attached"
    text = (f"routed by {route.get('router')}: {route['destination']} {via}, into "
            f"{route.get('network')}")
    ttl = route.get("ttl")
    if ttl:
        after = ttl["after"] if ttl["after"] is not None else "expired"
        text += f", TTL {ttl['before']} -> {after}"
    return text


def _headers(packet: dict) -> str:
    return ",".join(f"{k}={v if not isinstance(v, (dict, list)) else json.dumps(v)}"
                    for k, v in packet.items())


def verdict_line(verdict: dict, names: dict[str, str]) -> str:
    reason = verdict.get("reason")
    if verdict["result"] == "delivered":
        reached = ", ".join(names.get(e, e) for e in verdict.get("endpoints") or [])
        text = f"DELIVERED to {reached}" if reached else "DELIVERED"
        # The reason matters when it says more than who got it (an ARP reply, a missed one).
        return text if reason in (None, f"delivered to {reached}") else f"{text}: {reason}"
    if verdict["result"] == "leaves":
        return f"LEAVES from {verdict['host']}: {reason}"
    text = "DROPPED"
    if verdict.get("host"):
        text += f" on {verdict['host']}"
    if verdict.get("table") is not None:
        text += f" at table {verdict['table']}"
        if verdict.get("table_name"):
            text += f" ({verdict['table_name']})"
    if verdict.get("flow"):
        text += " by " + flow_label(verdict["flow"])
    elif verdict.get("table") is not None:
        text += " by table miss"
    return f"{text}: {reason}"


# ---- audit ---------------------------------------------------------------------------------

def audit(client: FabricClient, args) -> int:
    results = []
    for host in client.hosts():
        try:
            results.append(client.audit(host["name"]))
        except ApiError as exc:
            if exc.status != NOT_CONNECTED:
                raise
            # Nothing can be compared, so nothing can be said to be in sync.
            results.append({"host": host["name"], "in_sync": False, "error": exc.message})
    if args.json:
        print_json(results)
    elif not results:
        print("no hosts")
    else:
        for line in audit_lines(results):
            print(line)
    return 0 if all(r["in_sync"] for r in results) else 1


def audit_lines(results: list[dict]) -> list[str]:
    width = max(len(r["host"]) for r in results)
    lines = []
    for r in results:
        host = r["host"].ljust(width)
        if "error" in r:
            lines.append(f"{host}  NOT CONNECTED  {r['error']}")
        elif r["in_sync"]:
            lines.append(f"{host}  in sync  {r['installed']} flows")
        else:
            kinds = ("missing", "extra", "different")
            lines.append(f"{host}  OUT OF SYNC  "
                         + ", ".join(f"{len(r[k])} {k}" for k in kinds))
            differing = [(k, f) for k in kinds for f in r[k]]
            if differing:
                lines.append(flow_table([f for _, f in differing], indent="    ",
                                        first=("STATUS", [k for k, _ in differing])))
    return lines
