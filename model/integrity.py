"""Whether a state file can be trusted: SQLite's own check, then the model's invariants."""
from __future__ import annotations

import collections
import sqlite3


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
    return found
