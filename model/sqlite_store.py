"""The SQLite backend: the store's records as rows of one file's tables.

Every write is one transaction, durable when it returns (WAL, synchronous=FULL), so a
``kill -9`` loses nothing that was acknowledged. One process owns the file (model/lockfile.py):
there is nobody else's write to lose a race against.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import contextmanager

from . import integrity, migrations
from .entities import Endpoint, Host, Network, PublishedPort, Reservation, Route, Router
from .errors import Conflict, StoreDamaged, StoreFull, Unavailable
from .policy import labels_of
from .policy_records import policy_from_record, record_of
from .records import (ALIAS, ENDPOINT, HOST, LAST_RULE_ID, NETWORK, POLICY, PUBLISHED,
                      RESERVATION, ROUTER, SEQUENCED, Alias, Counter, Delete, Op, Published, Put,
                      seq_counter)
from .state import UNPUBLISHED

LOG = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    ovsdb TEXT NOT NULL,
    tunnel_ip TEXT NOT NULL UNIQUE,
    datapath_type TEXT NOT NULL,
    bridge TEXT NOT NULL,
    egress_ip TEXT
);
CREATE TABLE IF NOT EXISTS networks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    vni INTEGER NOT NULL UNIQUE,
    mtu INTEGER NOT NULL,
    owner TEXT,
    egress INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS endpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks(id),
    host TEXT NOT NULL REFERENCES hosts(name),
    port TEXT,
    ip TEXT NOT NULL,
    mac TEXT NOT NULL,
    ofport INTEGER,
    labels TEXT NOT NULL DEFAULT '{}',  -- JSON {key: value}
    UNIQUE (network_id, ip),
    UNIQUE (network_id, mac),
    UNIQUE (host, port),
    UNIQUE (host, ofport)
);
CREATE TABLE IF NOT EXISTS reservations (
    network_id TEXT NOT NULL REFERENCES networks(id),
    ip TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (network_id, ip)
);
-- Other names a network answers to (e.g. a Docker network id on a host); no flow depends
-- on them, so they are written without a revision.
CREATE TABLE IF NOT EXISTS aliases (
    alias TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS routers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    number INTEGER NOT NULL UNIQUE CHECK (number BETWEEN 1 AND 65535)
);
CREATE TABLE IF NOT EXISTS router_networks (
    router_id TEXT NOT NULL REFERENCES routers(id),
    network_id TEXT NOT NULL UNIQUE REFERENCES networks(id),
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS routes (
    router_id TEXT NOT NULL REFERENCES routers(id),
    position INTEGER NOT NULL,
    destination TEXT NOT NULL,
    nexthop TEXT NOT NULL,
    UNIQUE (router_id, destination)
);
-- host is the endpoint's, kept here so that SQLite holds a host port to one endpoint.
CREATE TABLE IF NOT EXISTS published_ports (
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    host TEXT NOT NULL,
    protocol TEXT NOT NULL,
    port INTEGER NOT NULL,
    host_port INTEGER NOT NULL,
    UNIQUE (host, protocol, host_port)
);
-- body: JSON of the policy's selectors (networks by id) and rules with their ids
-- (model/policy_records.py).
CREATE TABLE IF NOT EXISTS policies (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0);
-- The last rule id given: rule ids mark connections, so one is never given twice, even
-- after its policy is deleted.
INSERT OR IGNORE INTO meta VALUES ('last_rule_id', 0);
"""


# Deleting a record: its rows, children first.
_DELETES = {
    HOST: ["DELETE FROM hosts WHERE name = ?"],
    NETWORK: ["DELETE FROM networks WHERE id = ?"],
    ALIAS: ["DELETE FROM aliases WHERE alias = ?"],
    RESERVATION: ["DELETE FROM reservations WHERE network_id = ? AND ip = ?"],
    ENDPOINT: ["DELETE FROM endpoints WHERE id = ?"],
    ROUTER: ["DELETE FROM routes WHERE router_id = ?",
             "DELETE FROM router_networks WHERE router_id = ?",
             "DELETE FROM routers WHERE id = ?"],
    PUBLISHED: ["DELETE FROM published_ports WHERE endpoint_id = ?"],
    POLICY: ["DELETE FROM policies WHERE id = ?"],
}


class SqliteBackend:
    follows_own_writes = False  # nobody else writes: a write is applied as it commits
    seq_block = 1
    spread = 1

    def __init__(self, path: str):
        """Opens (or creates) the state file, bringing an older one to the current schema; a
        damaged one, or one a later release wrote, is refused (StoreDamaged) and left as it
        is."""
        self.path = path
        migrations.refuse_newer(path)  # before this connection writes anything to it
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._refuse_if(integrity.sqlite_problems(self._db))
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            migrations.upgrade(self._db, path, SCHEMA,
                               check=lambda: self._refuse_if(integrity.model_problems(self._db)))
        except sqlite3.DatabaseError as exc:  # garbage, truncated
            self._db.close()
            raise StoreDamaged(f"state file {path} cannot be read: {exc}") from None
        except StoreDamaged:
            self._db.close()
            raise

    def __str__(self) -> str:
        return self.path

    def _refuse_if(self, problems: list[str]) -> None:
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise StoreDamaged(f"state file {self.path} is damaged: "
                               f"{'; '.join(problems[:5])}{more}")

    # ---- reading ---------------------------------------------------------------------------

    def stored_revision(self) -> int:
        """The revision the file holds, read from it now (Unavailable if it cannot be read)."""
        try:
            return self._db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0]
        except sqlite3.Error as exc:
            raise Unavailable(f"the state store cannot be read: {exc}") from None

    def load(self) -> tuple[list, int, dict]:
        """Every record the file holds, and its revision (one writer: no guards)."""
        db = self._db
        records: list = [Host(*r) for r in db.execute(
            "SELECT seq, name, ovsdb, tunnel_ip, datapath_type, bridge, egress_ip FROM hosts")]
        records += [Network(*r[:-1], egress=bool(r[-1])) for r in db.execute(
            "SELECT seq, id, name, subnet, gateway, vni, mtu, owner, egress FROM networks")]
        records += [Alias(*r) for r in db.execute("SELECT alias, network_id FROM aliases")]
        records += [Reservation(*r) for r in db.execute(
            "SELECT network_id, ip, owner FROM reservations")]
        # Labels were checked before loading (integrity.py).
        records += [Endpoint(*r[:-1], labels=labels_of(json.loads(r[-1]))) for r in db.execute(
            "SELECT seq, id, name, network_id, host, port, ip, mac, ofport, labels "
            "FROM endpoints")]
        records += _load_routers(db)
        records += _load_published(db)
        records += [policy_from_record(*r[:-1], json.loads(r[-1])) for r in db.execute(
            "SELECT seq, id, name, body FROM policies")]
        records.append(Counter(LAST_RULE_ID, db.execute(
            "SELECT value FROM meta WHERE key = 'last_rule_id'").fetchone()[0]))
        sequences = dict(db.execute("SELECT name, seq FROM sqlite_sequence"))
        records += [Counter(seq_counter(kind), sequences.get(table, 0))
                    for kind, table in SEQUENCED.items()]
        return records, self.stored_revision(), {}

    # ---- writing ---------------------------------------------------------------------------

    def commit(self, ops: list[Op], revision: int, compare=None,
               conditions=None) -> tuple[int, int]:
        """The operations in one transaction; the revision they make (the same one if they
        change nothing published), after ``revision``, the one they were planned at: the only
        writer needs no guards."""
        bump = any(op.kind not in UNPUBLISHED for op in ops)
        with self._transaction() as cur:
            for op in ops:
                for statement in (_put(op.record) if isinstance(op, Put) else _delete(op)):
                    cur.execute(*statement)
            if bump:
                cur.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
        return (revision + 1 if bump else revision), revision

    def follow(self, apply, reload) -> None:
        """Nobody else writes the file: there is nothing to follow."""

    def resync(self) -> None:
        pass

    @contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE ... COMMIT; on failure the cause is raised, as a model error
        where there is one, whatever the rollback says."""
        cur = self._db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            yield cur
            cur.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:  # SQLite may have rolled back already (disk full)
                try:
                    cur.execute("ROLLBACK")
                except sqlite3.Error as rollback:
                    LOG.warning("rollback after %r failed: %s", exc, rollback)
            if isinstance(exc, sqlite3.IntegrityError):
                raise Conflict(f"conflicts with existing state: {exc}") from None
            if isinstance(exc, sqlite3.OperationalError) and \
                    getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
                raise StoreFull(f"the state store is full: {exc}; free space where "
                                f"{self.path} lives (reads are still served)") from None
            raise

    def close(self) -> None:
        self._db.close()


def _put(record) -> list[tuple]:
    """The statements that write ``record``: inserted, or its row updated if it has one."""
    if isinstance(record, Host):
        return [("INSERT INTO hosts (seq, name, ovsdb, tunnel_ip, datapath_type, bridge, "
                 "egress_ip) VALUES (?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET "
                 "ovsdb=excluded.ovsdb, tunnel_ip=excluded.tunnel_ip, "
                 "datapath_type=excluded.datapath_type, bridge=excluded.bridge, "
                 "egress_ip=excluded.egress_ip",
                 (record.seq, record.name, record.ovsdb, record.tunnel_ip, record.datapath_type,
                  record.bridge, record.egress_ip))]
    if isinstance(record, Network):
        return [("INSERT INTO networks (seq, id, name, subnet, gateway, vni, mtu, owner, egress) "
                 "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
                 "name=excluded.name, mtu=excluded.mtu, owner=excluded.owner, "
                 "egress=excluded.egress",
                 (record.seq, record.id, record.name, record.subnet, record.gateway, record.vni,
                  record.mtu, record.owner, int(record.egress)))]
    if isinstance(record, Alias):
        return [("INSERT INTO aliases (alias, network_id) VALUES (?,?) ON CONFLICT (alias) "
                 "DO UPDATE SET network_id=excluded.network_id",
                 (record.alias, record.network_id))]
    if isinstance(record, Reservation):
        return [("INSERT INTO reservations (network_id, ip, owner) VALUES (?,?,?) "
                 "ON CONFLICT (network_id, ip) DO UPDATE SET owner=excluded.owner",
                 (record.network_id, record.ip, record.owner))]
    if isinstance(record, Endpoint):
        return [("INSERT INTO endpoints (seq, id, name, network_id, host, port, ip, mac, ofport, "
                 "labels) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
                 "name=excluded.name, labels=excluded.labels",
                 (record.seq, record.id, record.name, record.network_id, record.host,
                  record.port, record.ip, record.mac, record.ofport,
                  json.dumps(dict(record.labels))))]
    if isinstance(record, Router):
        return [("INSERT INTO routers (seq, id, name, number) VALUES (?,?,?,?) "
                 "ON CONFLICT (id) DO UPDATE SET name=excluded.name",
                 (record.seq, record.id, record.name, record.number)),
                *_delete(Delete(ROUTER, (record.id,)))[:2],
                *(("INSERT INTO router_networks (router_id, network_id, position) "
                   "VALUES (?,?,?)", (record.id, network_id, position))
                  for position, network_id in enumerate(record.networks, 1)),
                *(("INSERT INTO routes (router_id, position, destination, nexthop) "
                   "VALUES (?,?,?,?)", (record.id, position, r.destination, r.nexthop))
                  for position, r in enumerate(record.routes))]
    if isinstance(record, Published):
        return [*_delete(Delete(PUBLISHED, (record.endpoint_id,))),
                *(("INSERT INTO published_ports (endpoint_id, host, protocol, port, host_port) "
                   "VALUES (?,?,?,?,?)",
                   (record.endpoint_id, record.host, p.protocol, p.port, p.host_port))
                  for p in record.ports)]
    if isinstance(record, Counter):
        # The seq counters are SQLite's own (sqlite_sequence follows the seqs inserted).
        return [("UPDATE meta SET value = ? WHERE key = ?", (record.value, record.name))] \
            if record.name == LAST_RULE_ID else []
    return [("INSERT INTO policies (seq, id, name, body) VALUES (?,?,?,?) "
             "ON CONFLICT (id) DO UPDATE SET name=excluded.name, body=excluded.body",
             (record.seq, record.id, record.name, json.dumps(record_of(record))))]


def _delete(op: Delete) -> list[tuple]:
    return [(sql, op.key) for sql in _DELETES.get(op.kind, ())]


def _load_routers(db: sqlite3.Connection) -> list[Router]:
    networks: dict[str, list[str]] = {}
    for router_id, network_id in db.execute(
            "SELECT router_id, network_id FROM router_networks ORDER BY position"):
        networks.setdefault(router_id, []).append(network_id)
    routes: dict[str, list[Route]] = {}
    for router_id, destination, nexthop in db.execute(
            "SELECT router_id, destination, nexthop FROM routes ORDER BY position"):
        routes.setdefault(router_id, []).append(Route(destination, nexthop))
    return [Router(seq, router_id, name, number, tuple(networks.get(router_id, ())),
                   tuple(routes.get(router_id, ())))
            for seq, router_id, name, number in db.execute(
                "SELECT seq, id, name, number FROM routers")]


def _load_published(db: sqlite3.Connection) -> list[Published]:
    ports: dict[tuple[str, str], list[PublishedPort]] = {}
    for endpoint_id, host, protocol, port, host_port in db.execute(
            "SELECT endpoint_id, host, protocol, port, host_port FROM published_ports"):
        ports.setdefault((endpoint_id, host), []).append(
            PublishedPort(endpoint_id, protocol, port, host_port))
    return [Published(endpoint_id, host, tuple(p)) for (endpoint_id, host), p in ports.items()]
