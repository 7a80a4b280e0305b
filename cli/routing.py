"""`routers`: list, show, create, delete, attach and detach networks, static routes."""
from __future__ import annotations

import argparse

from api.client import FabricClient

from .parsers import action, resource
from .lookup import CommandError, network_names
from .render import confirm, details, print_json, table


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    actions = resource(commands, common, "routers", "routers between networks")
    action(actions, common, "list", list_routers, "routers")
    action(actions, common, "show", show_router, "one router and its routes").add_argument(
        "ref", metavar="REF", help="id or name")
    action(actions, common, "create", create_router, "create a router").add_argument("name")
    action(actions, common, "delete", delete_router,
           "delete a router (no networks attached)").add_argument(
        "ref", metavar="REF", help="id or name")
    for name, handler, text in (("attach", attach_network, "attach a network to a router"),
                                ("detach", detach_network, "detach a network from a router")):
        p = action(actions, common, name, handler, text)
        p.add_argument("ref", metavar="REF", help="router id or name")
        p.add_argument("network", metavar="NETWORK", help="network id or name")
    p = action(actions, common, "routes", routes,
               "a router's static routes: shown, or replaced by those given")
    p.add_argument("ref", metavar="REF", help="id or name")
    p.add_argument("routes", nargs="*", metavar="DEST=NEXTHOP",
                   help="e.g. 192.168.0.0/16=10.0.0.5 (replaces all the router's routes)")
    p.add_argument("--clear", action="store_true", help="remove every route")


def list_routers(client: FabricClient, args) -> int:
    routers = client.routers()
    if args.json:
        print_json(routers)
    elif not routers:
        print("no routers")
    else:
        names = network_names(client)
        print(table(("NAME", "NUMBER", "MAC", "NETWORKS", "ROUTES", "ID"),
                    [(r["name"], r["number"], r["mac"], _networks(r, names) or None,
                      len(r["routes"]), r["id"]) for r in routers],
                    right=("NUMBER", "ROUTES")))
    return 0


def _networks(router: dict, names: dict[str, str]) -> str:
    return ", ".join(names.get(n, n) for n in router["networks"])


def _print_router(client: FabricClient, router: dict, as_json: bool) -> None:
    if as_json:
        print_json(router)
        return
    print(details([("name", router["name"]), ("id", router["id"]),
                   ("number", router["number"]), ("mac", router["mac"]),
                   ("networks", _networks(router, network_names(client)) or None),
                   ("routes", len(router["routes"]))]))
    if router["routes"]:
        print()
        print(_routes_table(router))


def _routes_table(router: dict) -> str:
    return table(("DESTINATION", "NEXTHOP"),
                 [(r["destination"], r["nexthop"]) for r in router["routes"]])


def show_router(client: FabricClient, args) -> int:
    _print_router(client, client.router(args.ref), args.json)
    return 0


def create_router(client: FabricClient, args) -> int:
    _print_router(client, client.create_router(args.name), args.json)
    return 0


def delete_router(client: FabricClient, args) -> int:
    client.delete_router(args.ref)
    return confirm(args.json, f"deleted router {args.ref}")


def attach_network(client: FabricClient, args) -> int:
    _print_router(client, client.attach_network(args.ref, args.network), args.json)
    return 0


def detach_network(client: FabricClient, args) -> int:
    client.detach_network(args.ref, args.network)
    return confirm(args.json, f"detached network {args.network} from router {args.ref}")


def parse_route(text: str) -> dict:
    destination, sep, nexthop = text.partition("=")
    if not sep or not destination or not nexthop:
        raise CommandError(f"route {text!r} is not DEST=NEXTHOP, e.g. 192.168.0.0/16=10.0.0.5")
    return {"destination": destination, "nexthop": nexthop}


def routes(client: FabricClient, args) -> int:
    if args.clear and args.routes:
        raise CommandError("give routes or --clear, not both")
    if args.clear or args.routes:
        router = client.set_routes(args.ref, [parse_route(r) for r in args.routes])
    else:
        router = client.router(args.ref)
    if args.json:
        print_json(router["routes"])
    elif not router["routes"]:
        print(f"router {router['name']} has no routes")
    else:
        print(_routes_table(router))
    return 0
