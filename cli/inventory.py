"""`hosts`, `networks`, `endpoints`: list, show, create, delete."""
from __future__ import annotations

import argparse

from api.client import FabricClient

from .labels import changed_labels, label_text, parse_label_list
from .lookup import endpoint_id, network_names
from .parsers import action, resource
from .render import confirm, details, print_json, table, yes_no


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    actions = resource(commands, common, "hosts", "Open vSwitch hosts of the fabric")
    action(actions, common, "list", list_hosts, "hosts, connected or not")
    action(actions, common, "show", show_host, "one host").add_argument("name")
    p = action(actions, common, "create", create_host, "register a host")
    p.add_argument("name")
    p.add_argument("--ovsdb", required=True, metavar="TARGET",
                   help="the host's ovsdb-server: unix:PATH or tcp:IP:PORT")
    p.add_argument("--tunnel-ip", required=True, metavar="IP", help="VXLAN endpoint address")
    p.add_argument("--datapath-type", choices=("system", "netdev"))
    p.add_argument("--bridge", metavar="B", help="integration bridge (default br-int)")
    p.add_argument("--egress-ip", metavar="IP", help="the address its containers leave the "
                   "fabric from and its published ports answer on (default: the tunnel ip)")
    action(actions, common, "delete", delete_host, "remove a host").add_argument("name")

    actions = resource(commands, common, "networks", "overlay networks")
    action(actions, common, "list", list_networks, "networks")
    action(actions, common, "show", show_network, "one network").add_argument(
        "ref", metavar="REF", help="id or name")
    p = action(actions, common, "create", create_network, "create a network")
    p.add_argument("name")
    p.add_argument("--subnet", required=True, metavar="CIDR")
    p.add_argument("--gateway", metavar="IP", help="default: the subnet's first address")
    p.add_argument("--vni", type=int, metavar="N", help="default: the next free from 100")
    p.add_argument("--mtu", type=int, metavar="N", help="default: 1450")
    p.add_argument("--no-egress", dest="egress", action="store_false", default=None,
                   help="its containers reach nothing outside the fabric")
    p = action(actions, common, "egress", set_network_egress,
                "whether a network's containers reach the outside")
    p.add_argument("ref", metavar="REF", help="id or name")
    p.add_argument("state", choices=("on", "off"))
    action(actions, common, "delete", delete_network, "delete a network").add_argument(
        "ref", metavar="REF", help="id or name")

    actions = resource(commands, common, "endpoints", "endpoints (ports) in networks")
    p = action(actions, common, "list", list_endpoints, "endpoints")
    p.add_argument("--network", metavar="N", help="only this network (id or name)")
    p.add_argument("--host", metavar="H", help="only this host")
    action(actions, common, "show", show_endpoint, "one endpoint").add_argument(
        "ref", metavar="ID", help="id (or unique name)")
    p = action(actions, common, "create", create_endpoint, "create an endpoint")
    p.add_argument("--network", required=True, metavar="N", help="id or name")
    p.add_argument("--host", required=True, metavar="H")
    p.add_argument("--port", metavar="P", help="existing interface on the host to attach; "
                   "without it the endpoint binds to the port with its iface-id")
    p.add_argument("--ip", metavar="IP", help="default: the next free address")
    p.add_argument("--mac", metavar="MAC", help="default: allocated")
    p.add_argument("--name", metavar="NAME")
    p.add_argument("--labels", metavar="K=V,...",
                   help="what security policies select it by, e.g. app=web,tier=front")
    p = action(actions, common, "label", label_endpoint,
               "set (KEY=VALUE) or remove (KEY-) labels of an endpoint, keeping the others")
    p.add_argument("ref", metavar="ENDPOINT", help="id (or unique name)")
    p.add_argument("changes", nargs="+", metavar="KEY=VALUE|KEY-")
    action(actions, common, "delete", delete_endpoint, "delete an endpoint").add_argument(
        "ref", metavar="ID", help="id (or unique name)")


def _given(**fields) -> dict:
    """Only the options given: the API applies its own defaults to the rest."""
    return {k: v for k, v in fields.items() if v is not None}


# ---- hosts ---------------------------------------------------------------------------------

def list_hosts(client: FabricClient, args) -> int:
    hosts = client.hosts()
    if args.json:
        print_json(hosts)
    elif not hosts:
        print("no hosts")
    else:
        print(table(("NAME", "CONNECTED", "DPID", "TUNNEL IP", "OVSDB", "DATAPATH", "BRIDGE",
                     "FLOWS"),
                    [(h["name"], yes_no(h["connected"]), h["dpid"], h["tunnel_ip"], h["ovsdb"],
                      h["datapath_type"], h["bridge"], h.get("flows")) for h in hosts],
                    right=("FLOWS",)))
    return 0


def _print_host(host: dict, as_json: bool) -> None:
    if as_json:
        print_json(host)
        return
    print(details([
        ("name", host["name"]), ("connected", yes_no(host["connected"])),
        ("ovsdb", f"{host['ovsdb']} (connected: {yes_no(host.get('ovsdb_connected'))})"),
        ("openflow connected", yes_no(host.get("openflow_connected"))),
        ("dpid", host["dpid"]), ("tunnel ip", host["tunnel_ip"]),
        ("egress ip", host.get("egress_ip") or f"{host['tunnel_ip']} (the tunnel ip)"),
        ("datapath type", host["datapath_type"]), ("bridge", host["bridge"]),
        ("flows", host.get("flows")), ("flow mods sent", host.get("flow_mods_sent")),
        ("error", host.get("error"))]))


def show_host(client: FabricClient, args) -> int:
    _print_host(client.host(args.name), args.json)
    return 0


def create_host(client: FabricClient, args) -> int:
    host = client.create_host(args.name, args.ovsdb, args.tunnel_ip,
                              **_given(datapath_type=args.datapath_type, bridge=args.bridge,
                                       egress_ip=args.egress_ip))
    _print_host(host, args.json)
    return 0


def delete_host(client: FabricClient, args) -> int:
    client.delete_host(args.name)
    return confirm(args.json, f"deleted host {args.name}")


# ---- networks ------------------------------------------------------------------------------

def list_networks(client: FabricClient, args) -> int:
    networks = client.networks()
    if args.json:
        print_json(networks)
    elif not networks:
        print("no networks")
    else:
        print(table(("NAME", "SUBNET", "GATEWAY", "VNI", "MTU", "EGRESS", "ID"),
                    [(n["name"], n["subnet"], n["gateway"], n["vni"], n["mtu"], n["egress"],
                      n["id"]) for n in networks], right=("VNI", "MTU")))
    return 0


def _print_network(net: dict, as_json: bool) -> None:
    if as_json:
        print_json(net)
    else:
        print(details([("name", net["name"]), ("id", net["id"]), ("subnet", net["subnet"]),
                       ("gateway", net["gateway"]), ("vni", net["vni"]), ("mtu", net["mtu"]),
                       ("egress", net["egress"]), ("owner", net.get("owner") or "an admin")]))


def show_network(client: FabricClient, args) -> int:
    _print_network(client.network(args.ref), args.json)
    return 0


def create_network(client: FabricClient, args) -> int:
    net = client.create_network(args.name, args.subnet,
                                **_given(gateway=args.gateway, vni=args.vni, mtu=args.mtu,
                                         egress=args.egress))
    _print_network(net, args.json)
    return 0


def set_network_egress(client: FabricClient, args) -> int:
    _print_network(client.set_network_egress(args.ref, args.state == "on"), args.json)
    return 0


def delete_network(client: FabricClient, args) -> int:
    client.delete_network(args.ref)
    return confirm(args.json, f"deleted network {args.ref}")


# ---- endpoints -----------------------------------------------------------------------------

def list_endpoints(client: FabricClient, args) -> int:
    endpoints = client.endpoints(network=args.network, host=args.host)
    if args.json:
        print_json(endpoints)
    elif not endpoints:
        print("no endpoints")
    else:
        names = network_names(client)
        print(table(("NAME", "NETWORK", "HOST", "PORT", "IP", "MAC", "LABELS", "ID"),
                    [(e["name"], names.get(e["network"], e["network"]), e["host"], e["port"],
                      f"{e['ip']}/{e['prefix_len']}", e["mac"], label_text(e["labels"]) or None,
                      e["id"]) for e in endpoints]))
    return 0


def _print_endpoint(client: FabricClient, ep: dict, as_json: bool) -> None:
    if as_json:
        print_json(ep)
        return
    network = network_names(client).get(ep["network"])
    print(details([
        ("name", ep["name"]), ("id", ep["id"]),
        ("network", f"{network} ({ep['network']})" if network else ep["network"]),
        ("host", ep["host"]), ("port", ep["port"]), ("ip", f"{ep['ip']}/{ep['prefix_len']}"),
        ("mac", ep["mac"]), ("gateway", ep["gateway"]), ("mtu", ep["mtu"]),
        ("labels", label_text(ep["labels"]) or None)]))


def show_endpoint(client: FabricClient, args) -> int:
    _print_endpoint(client, client.endpoint(endpoint_id(client, args.ref)), args.json)
    return 0


def create_endpoint(client: FabricClient, args) -> int:
    ep = client.create_endpoint(args.network, args.host, port=args.port, ip=args.ip,
                                mac=args.mac, name=args.name,
                                labels=parse_label_list(args.labels) if args.labels else None)
    _print_endpoint(client, ep, args.json)
    return 0


def label_endpoint(client: FabricClient, args) -> int:
    """Merged here: the API replaces the whole set."""
    ep = client.endpoint(endpoint_id(client, args.ref))
    ep = client.set_endpoint_labels(ep["id"], changed_labels(ep["labels"], args.changes))
    _print_endpoint(client, ep, args.json)
    return 0


def delete_endpoint(client: FabricClient, args) -> int:
    client.delete_endpoint(endpoint_id(client, args.ref))
    return confirm(args.json, f"deleted endpoint {args.ref}")
