"""`cluster`: the controller's replicas and which one leads."""
from __future__ import annotations

import argparse

from api.client import FabricClient

from .render import print_json, table, yes_no


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "cluster", parents=[common], help="the controller's replicas and their leader",
        description="The replicas as the one answering (--api) sees them: their names, APIs "
        "and OpenFlow targets, which one leads (programs the switches), and the store "
        "revision it has seen. A single process (SQLite) is its own leader.")
    p.set_defaults(handler=show_cluster)


def show_cluster(client: FabricClient, args) -> int:
    cluster = client.cluster()
    if args.json:
        print_json(cluster)
        return 0
    leader = cluster.get("leader")
    print(f"leader: {leader if leader else 'none known'}, revision {cluster.get('revision')}")
    members = cluster.get("members") or []
    if not members:
        print("no members")
        return 0
    print(table(("NAME", "LEADER", "API", "ADVERTISE"),
                [(m["name"], yes_no(m["leader"]), m["api"], m["advertise"]) for m in members]))
    return 0
