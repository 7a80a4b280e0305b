"""`policies`: security policies listed, shown, created and replaced from JSON files, deleted,
and where each is realized with what its rules matched."""
from __future__ import annotations

import argparse
import json
import sys

from api.client import FabricClient

from .labels import label_text
from .lookup import CommandError
from .parsers import action, resource
from .render import confirm, details, human_bytes, human_count, print_json, table, yes_no

# `policies status` exits 1 while a host has not realized the policy, as `audit` does for a
# host out of sync.
EXIT_NOT_REALIZED = 1


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    actions = resource(commands, common, "policies",
                       "security policies: what selected endpoints may send and receive")
    action(actions, common, "list", list_policies, "policies")
    action(actions, common, "show", show_policy, "one policy and its rules").add_argument(
        "ref", metavar="REF", help="id or name")
    p = action(actions, common, "create", create_policy, "create a policy from a JSON file")
    p.add_argument("--file", required=True, metavar="F",
                   help="the policy as the API takes it (docs/api.md); - reads stdin")
    p = action(actions, common, "replace", replace_policy,
               "replace a policy by the one in a JSON file (its rules get new ids)")
    p.add_argument("ref", metavar="REF", help="id or name")
    p.add_argument("--file", required=True, metavar="F", help="as for create")
    action(actions, common, "delete", delete_policy, "delete a policy").add_argument(
        "ref", metavar="REF", help="id or name")
    action(actions, common, "status", policy_status, "where a policy is realized and what "
           "its rules matched (exit 1 while a host has not realized it)").add_argument(
        "ref", metavar="REF", help="id or name")


def read_policy_file(path: str) -> dict:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path} is not JSON: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}") from None


def selector_text(selector: dict) -> str:
    """``app=web in red``, ``every endpoint``: what a selector (or a peer) selects."""
    if "cidr" in selector:
        return selector["cidr"]
    labels = selector["selector"]["labels"]
    chosen = label_text(labels) if labels else "every endpoint"
    return f"{chosen} in {selector['network']}" if selector.get("network") else chosen


def ports_text(ports: list[dict]) -> str:
    """``tcp/80, udp/5000-5010, icmp``; none: every protocol and port."""
    if not ports:
        return "any"
    return ", ".join(p["protocol"] + (f"/{p['port']}" if "port" in p else "")
                     + (f"-{p['end_port']}" if "end_port" in p else "") for p in ports)


def _governed(policy: dict, direction: str) -> str:
    """The direction's rule count; '-' where the policy does not govern it."""
    return str(len(policy[direction])) if direction in policy else "-"


def list_policies(client: FabricClient, args) -> int:
    policies = client.policies()
    if args.json:
        print_json(policies)
    elif not policies:
        print("no policies")
    else:
        print(table(("NAME", "APPLIES TO", "INGRESS", "EGRESS", "ID"),
                    [(p["name"], selector_text(p["applies_to"]), _governed(p, "ingress"),
                      _governed(p, "egress"), p["id"]) for p in policies],
                    right=("INGRESS", "EGRESS")))
    return 0


def _print_policy(policy: dict, as_json: bool) -> None:
    if as_json:
        print_json(policy)
        return
    governs = [d for d in ("ingress", "egress") if d in policy]
    print(details([("name", policy["name"]), ("id", policy["id"]),
                   ("applies to", selector_text(policy["applies_to"])),
                   ("governs", " and ".join(governs) or "nothing")]))
    rows = [(r["id"], direction, r["action"], "; ".join(selector_text(p) for p in r["peers"]),
             ports_text(r["ports"])) for direction in governs for r in policy[direction]]
    if rows:
        print()
        print(table(("RULE", "DIRECTION", "ACTION", "PEERS", "PORTS"), rows, right=("RULE",)))


def show_policy(client: FabricClient, args) -> int:
    _print_policy(client.policy(args.ref), args.json)
    return 0


def create_policy(client: FabricClient, args) -> int:
    _print_policy(client.create_policy(read_policy_file(args.file)), args.json)
    return 0


def replace_policy(client: FabricClient, args) -> int:
    _print_policy(client.replace_policy(args.ref, read_policy_file(args.file)), args.json)
    return 0


def delete_policy(client: FabricClient, args) -> int:
    client.delete_policy(args.ref)
    return confirm(args.json, f"deleted policy {args.ref}")


def policy_status(client: FabricClient, args) -> int:
    status = client.policy_status(args.ref)
    realized = all(h["realized"] for h in status["hosts"])
    if args.json:
        print_json(status)
    else:
        policy, hosts = status["policy"], status["hosts"]
        missing = [h["host"] for h in hosts if not h["realized"]]
        print(f"policy {policy['name']} ({policy['id']}): realized on "
              f"{len(hosts) - len(missing)} of {len(hosts)} hosts"
              + (f"; not on {', '.join(missing)}" if missing else ""))
        if hosts:
            print()
            print(table(("HOST", "REALIZED", "FLOWS"),
                        [(h["host"], yes_no(h["realized"]), h["flows"]) for h in hosts],
                        right=("FLOWS",)))
        if status["rules"]:
            print()
            print(table(("RULE", "DIRECTION", "INDEX", "ACTION", "PACKETS", "BYTES"),
                        [(r["id"], r["direction"], r["index"], r["action"],
                          human_count(r["packets"]), human_bytes(r["bytes"]))
                         for r in status["rules"]],
                        right=("RULE", "INDEX", "PACKETS", "BYTES")))
    return 0 if realized else EXIT_NOT_REALIZED
