"""Whether a state file can be trusted: SQLite's own check, then the model's invariants."""
from __future__ import annotations

import collections
import ipaddress
import json
import sqlite3

from .errors import InvalidRequest
from .labels import parse_labels
from .policy_records import networks_named, policy_from_record


def sqlite_problems(db: sqlite3.Connection) -> list[str]:
    """What SQLite finds wrong with the file's pages and indexes."""
    return [f"sqlite: {row[0]}" for row in db.execute("PRAGMA quick_check") if row[0] != "ok"]


def model_problems(db: sqlite3.Connection) -> list[str]:
    """What breaks the model's invariants in a readable database."""
    found = []
    hosts = {r[0] for r in db.execute("SELECT name FROM hosts")}
    networks = {r[0] for r in db.execute("SELECT id FROM networks")}
    for row in db.execute("SELECT name, ovsdb, tunnel_ip, datapath_type, bridge FROM hosts"):
        if any(field is None for field in row):
            found.append(f"host {row[0]!r} has empty fields")
    used = collections.Counter()
    for ep_id, host, network_id, ip in db.execute(
            "SELECT id, host, network_id, ip FROM endpoints"):
        if host not in hosts:
            found.append(f"endpoint {ep_id} is on host {host!r}, which does not exist")
        if network_id not in networks:
            found.append(f"endpoint {ep_id} is in network {network_id}, which does not exist")
        used[(network_id, ip)] += 1
    for network_id, ip in db.execute("SELECT network_id, ip FROM reservations"):
        if network_id not in networks:
            found.append(f"reservation of {ip} is in network {network_id}, which does not exist")
        used[(network_id, ip)] += 1
    found += [f"address {ip} is used {n} times in network {network_id}"
              for (network_id, ip), n in used.items() if n > 1]
    return (found + _routing_problems(db, networks) + _published_problems(db)
            + _policy_problems(db, networks))


def _routing_problems(db: sqlite3.Connection, networks: set[str]) -> list[str]:
    found = []
    routers = {r[0] for r in db.execute("SELECT id FROM routers")}
    for name, number in db.execute("SELECT name, number FROM routers"):
        if not isinstance(number, int) or not 1 <= number <= 0xFFFF:
            found.append(f"router {name!r} has number {number!r}, outside 1..65535")
    for router_id, network_id in db.execute("SELECT router_id, network_id FROM router_networks"):
        if router_id not in routers:
            found.append(f"network {network_id} is attached to router {router_id}, which does "
                         f"not exist")
        if network_id not in networks:
            found.append(f"router {router_id} has network {network_id}, which does not exist")
    for router_id, a, b in db.execute(
            "SELECT x.router_id, nx.subnet, ny.subnet FROM router_networks x "
            "JOIN router_networks y ON x.router_id = y.router_id AND x.network_id < y.network_id "
            "JOIN networks nx ON nx.id = x.network_id JOIN networks ny ON ny.id = y.network_id"):
        if ipaddress.IPv4Network(a).overlaps(ipaddress.IPv4Network(b)):
            first, second = sorted((a, b))
            found.append(f"router {router_id} has overlapping networks {first} and {second}")
    for router_id, destination in db.execute("SELECT router_id, destination FROM routes"):
        if router_id not in routers:
            found.append(f"route to {destination} is on router {router_id}, which does not "
                         f"exist")
    return found


def _published_problems(db: sqlite3.Connection) -> list[str]:
    found = []
    hosts = dict(db.execute("SELECT id, host FROM endpoints"))
    for endpoint_id, host, protocol, host_port in db.execute(
            "SELECT endpoint_id, host, protocol, host_port FROM published_ports"):
        what = f"published {protocol} port {host_port} on host {host!r}"
        if endpoint_id not in hosts:
            found.append(f"{what} reaches endpoint {endpoint_id}, which does not exist")
        elif hosts[endpoint_id] != host:
            found.append(f"{what} reaches endpoint {endpoint_id}, which is on host "
                         f"{hosts[endpoint_id]!r}")
    return found


def _policy_problems(db: sqlite3.Connection, networks: set[str]) -> list[str]:
    found = []
    for ep_id, labels in db.execute("SELECT id, labels FROM endpoints"):
        try:
            parse_labels(json.loads(labels))
        except (ValueError, InvalidRequest) as exc:
            found.append(f"endpoint {ep_id} has labels {labels!r}: {exc}")
    counter = db.execute("SELECT value FROM meta WHERE key = 'last_rule_id'").fetchone()
    if counter is None:
        return found + ["the last rule id given is not recorded (meta last_rule_id)"]
    last_rule_id = counter[0]
    rule_ids = collections.Counter()
    for seq, policy_id, name, body in db.execute("SELECT seq, id, name, body FROM policies"):
        try:
            policy = policy_from_record(seq, policy_id, name, json.loads(body))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            found.append(f"policy {name!r} cannot be read: {type(exc).__name__} {exc}")
            continue
        found += [f"policy {name!r} names network {n}, which does not exist"
                  for n in sorted(networks_named(policy) - networks)]
        rule_ids.update(r.id for r in policy.rules())
    found += [f"rule id {i} is given {n} times" for i, n in rule_ids.items() if n > 1]
    found += [f"rule id {i} is above the last one given ({last_rule_id})"
              for i in sorted(rule_ids) if i > last_rule_id]
    return found
