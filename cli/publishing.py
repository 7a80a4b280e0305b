"""`publish`: an endpoint's published ports listed, added and deleted."""
from __future__ import annotations

import argparse

from api.client import FabricClient

from .parsers import action, resource
from .lookup import endpoint_id
from .render import confirm, print_json, table

PROTOCOLS = ("tcp", "udp")


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    actions = resource(commands, common, "publish",
                       "ports of endpoints published on their host's outside address")
    action(actions, common, "list", list_published, "an endpoint's published ports"
           ).add_argument("endpoint", metavar="ENDPOINT", help="id (or unique name)")
    p = action(actions, common, "add", add_published, "publish a port of an endpoint")
    p.add_argument("endpoint", metavar="ENDPOINT", help="id (or unique name)")
    p.add_argument("protocol", choices=PROTOCOLS)
    p.add_argument("port", type=int, metavar="PORT", help="the endpoint's port")
    p.add_argument("host_port", type=int, nargs="?", metavar="HOST_PORT",
                   help="the port on the host (default: the lowest free from 49152)")
    p = action(actions, common, "delete", delete_published, "unpublish a port")
    p.add_argument("endpoint", metavar="ENDPOINT", help="id (or unique name)")
    p.add_argument("protocol", choices=PROTOCOLS)
    p.add_argument("host_port", type=int, metavar="HOST_PORT")


def _outside(published: dict) -> str:
    return f"{published['host_ip']}:{published['host_port']}"


def list_published(client: FabricClient, args) -> int:
    published = client.published(endpoint_id(client, args.endpoint))
    if args.json:
        print_json(published)
    elif not published:
        print(f"endpoint {args.endpoint} publishes no ports")
    else:
        print(table(("PROTOCOL", "HOST", "OUTSIDE", "PORT"),
                    [(p["protocol"], p["host"], _outside(p), p["port"]) for p in published],
                    right=("PORT",)))
    return 0


def add_published(client: FabricClient, args) -> int:
    published = client.publish(endpoint_id(client, args.endpoint), args.protocol, args.port,
                               args.host_port)
    if args.json:
        print_json(published)
    else:
        print(f"published {published['protocol']} {_outside(published)} (host "
              f"{published['host']}) -> endpoint {args.endpoint} port {published['port']}")
    return 0


def delete_published(client: FabricClient, args) -> int:
    client.unpublish(endpoint_id(client, args.endpoint), args.protocol, args.host_port)
    return confirm(args.json, f"unpublished {args.protocol} host port {args.host_port} of "
                              f"endpoint {args.endpoint}")
