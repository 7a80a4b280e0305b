"""The embedded SQLite store: the single source of truth for hosts, networks, endpoints,
routers, published ports and security policies.

Every write runs under one lock in one SQLite transaction and is durable when it returns
(WAL, synchronous=FULL), so a ``kill -9`` loses nothing that was acknowledged. The store keeps
an in-memory copy for the controller's compiler, published as immutable snapshots; allocation
of VNIs, addresses and MACs happens under the same lock, so parallel requests never get the same
one twice.
"""
from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Mapping

from .addressing import (
    DEFAULT_MTU,
    AddressPool,
    check_vni,
    lowest_free,
    lowest_free_ofport,
    lowest_free_vni,
    normalize_mac,
    parse_ip_in,
    parse_subnet,
    random_mac,
)
from .entities import (EVERYTHING, GATEWAY_MAC_PREFIX, ROUTER_MAC_PREFIX, Change, Endpoint,
                       Host, Network, PublishedPort, Reservation, Route, Router, Snapshot)
from . import integrity, migrations, policy_requests, publishing, routing
from .errors import (Conflict, Forbidden, InvalidRequest, NotFound, StoreDamaged, StoreFull,
                     Unavailable)
from .labels import parse_labels
from .policy import MAX_RULE_ID, Labels, Policy, labels_of
from .policy_records import networks_named, policy_from_record, record_of
from .ownership import host_share

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

Listener = Callable[[Snapshot, Change], None]


class Store:
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
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._load()

    # ---- reading -------------------------------------------------------------------------

    def _refuse_if(self, problems: list[str]) -> None:
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise StoreDamaged(f"state file {self.path} is damaged: "
                               f"{'; '.join(problems[:5])}{more}")

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def stored_revision(self) -> int:
        """The revision the state file holds, read from it now (Unavailable if it cannot be
        read): that the store answers, and what the served snapshot should be at."""
        with self._lock:
            try:
                return self._db.execute(
                    "SELECT value FROM meta WHERE key='revision'").fetchone()[0]
            except sqlite3.Error as exc:
                raise Unavailable(f"the state store cannot be read: {exc}") from None

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(snapshot, change)`` after every committed change (keep it quick)."""
        self._listeners.append(listener)

    def get_host(self, name: str) -> Host:
        host = self._snapshot.hosts.get(name)
        if host is None:
            raise NotFound(f"host {name!r} does not exist")
        return host

    def get_network(self, ref: str) -> Network:
        """A network by id, name or alias."""
        snap = self._snapshot
        net = snap.networks.get(ref)
        if net is None:
            net = next((n for n in snap.networks.values() if n.name == ref), None)
        if net is None:
            net = snap.networks.get(self._aliases.get(ref, ""))
        if net is None:
            raise NotFound(f"network {ref!r} does not exist")
        return net

    def get_endpoint(self, endpoint_id: str) -> Endpoint:
        ep = self._snapshot.endpoints.get(endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {endpoint_id!r} does not exist")
        return ep

    # ---- hosts ---------------------------------------------------------------------------

    def create_host(self, name: str, ovsdb: str, tunnel_ip: str, datapath_type: str = "system",
                    bridge: str = "br-int", egress_ip: str | None = None) -> Host:
        with self._lock:
            snap = self._snapshot
            if name in snap.hosts:
                raise Conflict(f"host {name!r} already exists")
            # A host's addresses are told apart by the fabric: tunnels, NAT and published
            # ports each need the one host an address is.
            used = {ip: h.name for h in snap.hosts.values()
                    for ip in (h.tunnel_ip, h.egress_ip) if ip}
            for field_name, ip in (("tunnel_ip", tunnel_ip), ("egress_ip", egress_ip)):
                if ip in used:
                    raise Conflict(f"{field_name} {ip} is already used by host {used[ip]!r}")
            seq = self._write(
                "INSERT INTO hosts (name, ovsdb, tunnel_ip, datapath_type, bridge, egress_ip) "
                "VALUES (?,?,?,?,?,?)", (name, ovsdb, tunnel_ip, datapath_type, bridge, egress_ip))
            host = Host(seq, name, ovsdb, tunnel_ip, datapath_type, bridge, egress_ip)
            hosts = dict(snap.hosts)
            hosts[name] = host
            self._publish(replace(snap, hosts=hosts), EVERYTHING)
            return host

    def delete_host(self, name: str) -> Host:
        with self._lock:
            snap = self._snapshot
            host = self.get_host(name)
            if snap.endpoints_by_host.get(name):
                raise Conflict(f"host {name!r} still has endpoints; delete them first")
            self._write("DELETE FROM hosts WHERE name = ?", (name,))
            hosts = dict(snap.hosts)
            del hosts[name]
            self._publish(replace(snap, hosts=hosts), EVERYTHING)
            return host

    # ---- networks ------------------------------------------------------------------------

    def create_network(self, name: str, subnet: str, gateway: str | None = None,
                       vni: int | None = None, mtu: int | None = None,
                       owner: str | None = None, egress: bool = True) -> Network:
        net = parse_subnet(subnet)
        gw = parse_ip_in(net, gateway, "gateway") if gateway else net.network_address + 1
        mtu = DEFAULT_MTU if mtu is None else mtu
        with self._lock:
            snap = self._snapshot
            if any(n.name == name for n in snap.networks.values()):
                raise Conflict(f"network {name!r} already exists")
            if name in self._aliases:
                raise Conflict(f"{name!r} is an alias of another network")
            used_vnis = {n.vni for n in snap.networks.values()}
            if vni is None:
                vni = lowest_free_vni(used_vnis)
            elif check_vni(vni) in used_vnis:
                raise Conflict(f"vni {vni} is already used by another network")
            network_id = uuid.uuid4().hex
            seq = self._write(
                "INSERT INTO networks (id, name, subnet, gateway, vni, mtu, owner, egress) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (network_id, name, str(net), str(gw), vni, mtu, owner, int(egress)))
            network = Network(seq, network_id, name, str(net), str(gw), vni, mtu, owner, egress)
            self._pools[network_id] = AddressPool(network.subnet, network.gateway)
            self._macs[network_id] = set()
            self._publish(replace(snap, networks={**snap.networks, network_id: network}),
                          Change(frozenset({network_id})))
            return network

    def delete_network(self, ref: str) -> Network:
        with self._lock:
            snap = self._snapshot
            network = self.get_network(ref)
            if snap.endpoints_by_network.get(network.id):
                raise Conflict(f"network {network.name!r} still has endpoints")
            if (router := snap.router_of(network.id)) is not None:
                raise Conflict(f"network {network.name!r} is attached to router "
                               f"{router.name!r}; detach it first")
            naming = sorted(p.name for p in snap.policies.values()
                            if network.id in networks_named(p))
            if naming:
                raise Conflict(f"network {network.name!r} is named by policies "
                               f"{', '.join(naming)}; replace or delete them first")
            self._write("DELETE FROM networks WHERE id = ?", (network.id,),
                        before=("DELETE FROM reservations WHERE network_id = ?", (network.id,)))
            networks = dict(snap.networks)
            del networks[network.id]
            self._pools.pop(network.id, None)
            self._macs.pop(network.id, None)
            self._aliases = {a: n for a, n in self._aliases.items() if n != network.id}
            reservations = {k: r for k, r in snap.reservations.items() if k[0] != network.id}
            self._publish(replace(snap, networks=networks, reservations=reservations),
                          Change(frozenset({network.id})))
            return network

    def set_network_egress(self, ref: str, egress: bool) -> Network:
        """Whether the network's containers reach the outside; the same value again is fine."""
        with self._lock:
            snap = self._snapshot
            network = self.get_network(ref)
            if network.egress == egress:
                return network
            self._write("UPDATE networks SET egress = ? WHERE id = ?", (int(egress), network.id))
            network = replace(network, egress=egress)
            self._publish(replace(snap, networks={**snap.networks, network.id: network}),
                          Change(frozenset({network.id})))
            return network

    # ---- address reservations ------------------------------------------------------------

    def reserve_address(self, network: str, owner: str, ip: str | None = None,
                        share_of: str | None = None) -> Reservation:
        """Holds an address for ``owner``; asking again for what it already holds (or what an
        endpoint on host ``owner`` uses) is answered as already yours. With ``share_of`` (a
        host token's request), a new address is refused once that host holds its share."""
        with self._lock:
            snap = self._snapshot
            net = self.get_network(network)
            pool = self._pools[net.id]
            if ip is None:
                self._check_share(snap, net, share_of)
                ip = pool.allocate()
            else:
                ip = _asked_address(net, ip)
                held = _reservation_of(snap, net, ip, owner)
                if held is not None:
                    return held
                user = next((e for e in snap.network_endpoints(net.id) if e.ip == ip), None)
                if user is not None:
                    if user.host == owner:
                        return Reservation(net.id, ip, owner)
                    raise Conflict(f"ip {ip} is already used in network {net.name!r}")
                self._check_share(snap, net, share_of)
            reservation = Reservation(net.id, ip, owner)
            self._write("INSERT INTO reservations (network_id, ip, owner) VALUES (?,?,?)",
                        (net.id, ip, owner))
            pool.take(ip)
            self._publish(replace(snap, reservations={**snap.reservations,
                                                      (net.id, ip): reservation}), Change())
            return reservation

    def release_address(self, network: str, ip: str, owner: str | None = None) -> None:
        """Frees a reserved address; an address that is already free is fine (idempotent).
        With ``owner``, only a reservation that owner holds is freed: anything else is left."""
        with self._lock:
            snap = self._snapshot
            net = self.get_network(network)
            held = snap.reservations.get((net.id, ip))
            if owner is not None and (held is None or held.owner != owner):
                return
            if any(e.ip == ip for e in snap.network_endpoints(net.id)):
                raise Conflict(f"ip {ip} is used by an endpoint: delete the endpoint")
            if (net.id, ip) not in snap.reservations:
                return
            self._write("DELETE FROM reservations WHERE network_id = ? AND ip = ?", (net.id, ip))
            self._pools[net.id].release(ip)
            reservations = dict(snap.reservations)
            del reservations[(net.id, ip)]
            self._publish(replace(snap, reservations=reservations), Change())

    # ---- aliases -------------------------------------------------------------------------

    def aliases_of(self, network_id: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == network_id)

    def add_alias(self, network: str, alias: str) -> Network:
        """Lets ``alias`` name the network too; adding it again is fine (idempotent)."""
        with self._lock:
            net = self.get_network(network)
            held = self._aliases.get(alias)
            if held == net.id:
                return net
            if held is not None or alias in self._snapshot.networks or any(
                    n.name == alias for n in self._snapshot.networks.values()):
                raise Conflict(f"{alias!r} already names another network")
            self._write("INSERT INTO aliases (alias, network_id) VALUES (?,?)", (alias, net.id),
                        revision=False)
            self._aliases = {**self._aliases, alias: net.id}
            return net

    def remove_alias(self, network: str, alias: str) -> None:
        """An alias the network does not have is fine (idempotent)."""
        with self._lock:
            net = self.get_network(network)
            held = self._aliases.get(alias)
            if held is None:
                return
            if held != net.id:
                raise Conflict(f"{alias!r} is an alias of another network")
            self._write("DELETE FROM aliases WHERE alias = ?", (alias,), revision=False)
            self._aliases = {a: n for a, n in self._aliases.items() if a != alias}

    # ---- endpoints -----------------------------------------------------------------------

    def create_endpoint(self, network: str, host: str, port: str | None = None,
                        ip: str | None = None, mac: str | None = None,
                        name: str | None = None, bounded: bool = False,
                        labels: Mapping[str, str] | None = None) -> Endpoint:
        """``bounded`` (a host token's request): a new address is refused once the host holds
        its share of the network; one it reserved is taken over."""
        mac = normalize_mac(mac) if mac else None
        labels = parse_labels(labels or {})
        with self._lock:
            snap = self._snapshot
            net = self.get_network(network)
            bridge = self.get_host(host).bridge
            if port == bridge:  # OVS would take the bridge's own interface for an endpoint's
                raise InvalidRequest(f"port {port!r} is the own interface of bridge {bridge} "
                                     f"on host {host!r}, not an endpoint's")
            pool = self._pools[net.id]
            reserved = None
            if ip is not None:
                ip = _asked_address(net, ip)
                # A reserved address is taken over by the endpoint its owner (a host) makes.
                reserved = _reservation_of(snap, net, ip, host)
                if reserved is None and not pool.is_free(ip):
                    raise Conflict(f"ip {ip} is already used in network {net.name!r}")
            if reserved is None and bounded:
                self._check_share(snap, net, host)
            if ip is None:
                ip = pool.allocate()
            macs = self._macs[net.id]
            if mac is not None and mac in macs:
                raise Conflict(f"mac {mac} is already used in network {net.name!r}")
            if mac is not None and mac.startswith(GATEWAY_MAC_PREFIX):
                raise Conflict(f"mac {mac} is in the range the fabric keeps for gateways")
            if mac is not None and mac.startswith(ROUTER_MAC_PREFIX):
                raise InvalidRequest(f"mac {mac} is in the range the fabric keeps for routers "
                                     f"({ROUTER_MAC_PREFIX}:...)")
            while mac is None or mac in macs:
                mac = random_mac()
            ofport = None
            if port is not None:
                local = snap.host_endpoints(host)
                if any(e.port == port for e in local):
                    raise Conflict(f"port {port!r} on host {host!r} already belongs to an endpoint")
                ofport = lowest_free_ofport({e.ofport for e in local})
            endpoint_id = uuid.uuid4().hex
            name = name or f"ep-{endpoint_id[:8]}"
            seq = self._write(
                "INSERT INTO endpoints (id, name, network_id, host, port, ip, mac, ofport, "
                "labels) VALUES (?,?,?,?,?,?,?,?,?)",
                (endpoint_id, name, net.id, host, port, ip, mac, ofport, _labels_json(labels)),
                before=("DELETE FROM reservations WHERE network_id = ? AND ip = ?",
                        (net.id, ip)) if reserved else None)
            ep = Endpoint(seq, endpoint_id, name, net.id, host, port, ip, mac, ofport, labels)
            pool.take(ip)
            macs.add(mac)
            snap = snap.with_endpoint(ep)
            if reserved:
                reservations = dict(snap.reservations)
                del reservations[(net.id, ip)]
                snap = replace(snap, reservations=reservations)
            self._publish(snap, Change(frozenset({net.id}), endpoints=frozenset({ep.id})))
            return ep

    def set_endpoint_labels(self, endpoint_id: str, labels: Mapping[str, str]) -> Endpoint:
        """Replaces the endpoint's labels with ``labels``; the same ones again change
        nothing."""
        labels = parse_labels(labels)
        with self._lock:
            snap = self._snapshot
            ep = self.get_endpoint(endpoint_id)
            if ep.labels == labels:
                return ep
            self._write("UPDATE endpoints SET labels = ? WHERE id = ?",
                        (_labels_json(labels), ep.id))
            self._publish(snap.relabelled(ep, labels),
                          Change(frozenset({ep.network_id}), endpoints=frozenset({ep.id})))
            return replace(ep, labels=labels)

    def delete_endpoint(self, endpoint_id: str) -> Endpoint:
        with self._lock:
            snap = self._snapshot
            ep = self.get_endpoint(endpoint_id)
            self._write("DELETE FROM endpoints WHERE id = ?", (endpoint_id,),
                        before=("DELETE FROM published_ports WHERE endpoint_id = ?",
                                (endpoint_id,)))
            self._pools[ep.network_id].release(ep.ip)
            self._macs[ep.network_id].discard(ep.mac)
            published = frozenset({ep.id}) if ep.id in snap.published else frozenset()
            self._publish(snap.with_published(ep.id, ()).without_endpoint(ep),
                          Change(frozenset({ep.network_id}), endpoints=frozenset({ep.id}),
                                 published=published))
            return ep

    # ---- routers -------------------------------------------------------------------------

    def get_router(self, ref: str) -> Router:
        """A router by id or name."""
        routers = self._snapshot.routers
        router = routers.get(ref) or next((r for r in routers.values() if r.name == ref), None)
        if router is None:
            raise NotFound(f"router {ref!r} does not exist")
        return router

    def create_router(self, name: str) -> Router:
        with self._lock:
            snap = self._snapshot
            if any(r.name == name for r in snap.routers.values()):
                raise Conflict(f"router {name!r} already exists")
            number = lowest_free({r.number for r in snap.routers.values()},
                                 routing.ROUTER_NUMBER_MIN, routing.ROUTER_NUMBER_MAX,
                                 "router number")
            router_id = uuid.uuid4().hex
            seq = self._write("INSERT INTO routers (id, name, number) VALUES (?,?,?)",
                              (router_id, name, number))
            router = Router(seq, router_id, name, number)
            self._publish(snap.with_router(router), routing.router_change(None, router))
            return router

    def delete_router(self, ref: str) -> Router:
        with self._lock:
            snap = self._snapshot
            router = self.get_router(ref)
            if router.networks:
                raise Conflict(f"router {router.name!r} still has networks attached; "
                               f"detach them first")
            self._write("DELETE FROM routers WHERE id = ?", (router.id,),
                        before=("DELETE FROM routes WHERE router_id = ?", (router.id,)))
            self._publish(snap.without_router(router.id), routing.router_change(router, None))
            return router

    def attach_network(self, ref: str, network: str) -> Router:
        """Attaching a network the router has already changes nothing."""
        with self._lock:
            snap = self._snapshot
            router, net = self.get_router(ref), self.get_network(network)
            if not routing.check_attach(snap, router, net):
                return router
            self._write("INSERT INTO router_networks (router_id, network_id, position) "
                        "VALUES (?,?,(SELECT COALESCE(MAX(position), 0) + 1 FROM "
                        "router_networks WHERE router_id = ?))", (router.id, net.id, router.id))
            return self._router_changed(snap, router,
                                        replace(router, networks=router.networks + (net.id,)))

    def detach_network(self, ref: str, network: str) -> Router:
        with self._lock:
            snap = self._snapshot
            router, net = self.get_router(ref), self.get_network(network)
            if net.id not in router.networks:
                raise NotFound(f"network {net.name!r} is not attached to router "
                               f"{router.name!r}")
            routing.check_detach(snap, router, net)
            self._write("DELETE FROM router_networks WHERE network_id = ?", (net.id,))
            return self._router_changed(snap, router, replace(
                router, networks=tuple(n for n in router.networks if n != net.id)))

    def set_routes(self, ref: str, routes: list[tuple[str, str]]) -> Router:
        """Replaces the router's static routes with ``routes`` (destination, nexthop)."""
        with self._lock:
            snap = self._snapshot
            router = self.get_router(ref)
            parsed = routing.parse_routes(snap, router, routes)
            self._write_all([("DELETE FROM routes WHERE router_id = ?", (router.id,))] + [
                ("INSERT INTO routes (router_id, position, destination, nexthop) "
                 "VALUES (?,?,?,?)", (router.id, position, r.destination, r.nexthop))
                for position, r in enumerate(parsed)])
            return self._router_changed(snap, router, replace(router, routes=parsed))

    def _router_changed(self, snap: Snapshot, before: Router, after: Router) -> Router:
        self._publish(snap.with_router(after), routing.router_change(before, after))
        return after

    # ---- published ports -----------------------------------------------------------------

    def publish_port(self, endpoint_id: str, protocol: str, port: int,
                     host_port: int | None = None) -> PublishedPort:
        """Without ``host_port``, the lowest free one from 49152 on the endpoint's host."""
        with self._lock:
            snap = self._snapshot
            ep = self.get_endpoint(endpoint_id)
            published = publishing.new_published(snap, ep, protocol, port, host_port)
            self._write("INSERT INTO published_ports (endpoint_id, host, protocol, port, "
                        "host_port) VALUES (?,?,?,?,?)",
                        (ep.id, ep.host, published.protocol, published.port,
                         published.host_port))
            self._published_changed(snap, ep, snap.published.get(ep.id, ()) + (published,))
            return published

    def unpublish_port(self, endpoint_id: str, protocol: str, host_port: int) -> PublishedPort:
        with self._lock:
            snap = self._snapshot
            ep = self.get_endpoint(endpoint_id)
            published = publishing.find_published(snap, ep, protocol, host_port)
            self._write("DELETE FROM published_ports WHERE endpoint_id = ? AND protocol = ? "
                        "AND host_port = ?", (ep.id, protocol, host_port))
            self._published_changed(snap, ep, tuple(
                p for p in snap.published[ep.id] if p != published))
            return published

    def _published_changed(self, snap: Snapshot, ep: Endpoint,
                           ports: tuple[PublishedPort, ...]) -> None:
        self._publish(snap.with_published(ep.id, ports),
                      Change(frozenset({ep.network_id}), published=frozenset({ep.id})))

    # ---- security policies ---------------------------------------------------------------

    def policies(self) -> list[Policy]:
        """In the order they were made."""
        return sorted(self._snapshot.policies.values(), key=lambda p: p.seq)

    def get_policy(self, ref: str) -> Policy:
        """A policy by id or name."""
        policies = self._snapshot.policies
        policy = policies.get(ref) or next((p for p in policies.values() if p.name == ref), None)
        if policy is None:
            raise NotFound(f"policy {ref!r} does not exist")
        return policy

    def create_policy(self, body: Any) -> Policy:
        """``body`` as the API takes it (model/policy_requests.py); its rules get new ids."""
        with self._lock:
            draft = policy_requests.parse_policy(body, self.get_network)
            self._check_policy_name(draft.name, None)
            policy_id = uuid.uuid4().hex
            policy, rule_ids = self._numbered(draft, 0, policy_id)
            seq = self._write_all([rule_ids, (
                "INSERT INTO policies (id, name, body) VALUES (?,?,?)",
                (policy_id, policy.name, json.dumps(record_of(policy))))])
            return self._policy_written(replace(policy, seq=seq))

    def replace_policy(self, ref: str, body: Any) -> Policy:
        """The policy ``ref`` made anew from ``body``, keeping its id: every rule gets a new
        id, so the connections the old rules admitted are not taken for the new ones'."""
        with self._lock:
            old = self.get_policy(ref)
            draft = policy_requests.parse_policy(body, self.get_network)
            self._check_policy_name(draft.name, old.id)
            policy, rule_ids = self._numbered(draft, old.seq, old.id)
            self._write_all([rule_ids, ("UPDATE policies SET name = ?, body = ? WHERE id = ?",
                                        (policy.name, json.dumps(record_of(policy)), old.id))])
            return self._policy_written(policy)

    def delete_policy(self, ref: str) -> Policy:
        with self._lock:
            policy = self.get_policy(ref)
            self._write("DELETE FROM policies WHERE id = ?", (policy.id,))
            policies = {i: p for i, p in self._snapshot.policies.items() if i != policy.id}
            self._publish(self._snapshot.with_policies(policies),
                          Change(policies=frozenset({policy.id})))
            return policy

    def _check_policy_name(self, name: str, policy_id: str | None) -> None:
        if any(p.name == name and p.id != policy_id for p in self._snapshot.policies.values()):
            raise Conflict(f"policy {name!r} already exists")

    def _numbered(self, draft: policy_requests.PolicyDraft, seq: int,
                  policy_id: str) -> tuple[Policy, tuple]:
        """The policy with its rules' new ids, and the statement that records them as
        given; the ids are taken once it commits."""
        first = self._last_rule_id + 1
        last = self._last_rule_id + draft.rule_count
        if last > MAX_RULE_ID:
            raise Conflict(f"the fabric has given all {MAX_RULE_ID} rule ids")
        policy = draft.numbered(seq, policy_id, itertools.count(first))
        return policy, ("UPDATE meta SET value = ? WHERE key = 'last_rule_id'", (last,))

    def _policy_written(self, policy: Policy) -> Policy:
        self._last_rule_id += len(policy.rules())
        snap = self._snapshot
        self._publish(snap.with_policies({**snap.policies, policy.id: policy}),
                      Change(policies=frozenset({policy.id})))
        return policy

    # ---- internals -----------------------------------------------------------------------

    def _check_share(self, snap: Snapshot, net: Network, host: str | None) -> None:
        if host is None:
            return
        capacity = self._pools[net.id].capacity
        held, share = snap.held_by_host(net.id, host), host_share(capacity)
        if held >= share:
            raise Forbidden(f"host {host!r} holds {held} of the {capacity} addresses of network "
                            f"{net.name!r}; a host token may hold at most half ({share}): "
                            f"release some, or ask with the admin token")

    def _write(self, sql: str, args: tuple, before: tuple | None = None,
               revision: bool = True) -> int:
        """One statement (after an optional other one) and the revision's bump, atomically;
        returns the row id. Without ``revision``, for what no flow depends on (aliases)."""
        return self._write_all(([before] if before else []) + [(sql, args)], revision)

    def _write_all(self, statements: list[tuple], revision: bool = True) -> int:
        """The statements and the revision's bump, atomically; returns the last row id."""
        with self._transaction() as cur:
            for statement in statements:
                cur.execute(*statement)
            rowid = cur.lastrowid
            if revision:
                cur.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
        return rowid

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

    def _publish(self, snap: Snapshot, change: Change) -> None:
        self._snapshot = replace(snap, revision=snap.revision + 1)
        for listener in self._listeners:
            listener(self._snapshot, change)

    def _load(self) -> None:
        db = self._db
        revision = db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0]
        hosts = {r[1]: Host(*r) for r in db.execute(
            "SELECT seq, name, ovsdb, tunnel_ip, datapath_type, bridge, egress_ip FROM hosts "
            "ORDER BY seq")}
        networks = {r[1]: Network(*r[:-1], egress=bool(r[-1])) for r in db.execute(
            "SELECT seq, id, name, subnet, gateway, vni, mtu, owner, egress FROM networks "
            "ORDER BY seq")}
        endpoints = [Endpoint(*r[:-1], labels=_labels_from_json(r[-1])) for r in db.execute(
            "SELECT seq, id, name, network_id, host, port, ip, mac, ofport, labels "
            "FROM endpoints ORDER BY seq")]
        self._pools = {n.id: AddressPool(n.subnet, n.gateway) for n in networks.values()}
        # Copied on write, so that readers outside the lock see a whole map.
        self._aliases = dict(db.execute("SELECT alias, network_id FROM aliases"))
        reservations = {}
        for network_id, ip, owner in db.execute(
                "SELECT network_id, ip, owner FROM reservations"):
            reservations[(network_id, ip)] = Reservation(network_id, ip, owner)
            self._pools[network_id].take(ip)
        self._macs = {n: set() for n in networks}
        snap = Snapshot(revision=revision, hosts=hosts, networks=networks,
                        reservations=reservations)
        for ep in endpoints:
            self._pools[ep.network_id].take(ep.ip)
            self._macs[ep.network_id].add(ep.mac)
            snap = snap.with_endpoint(ep)
        for router in _load_routers(db):
            snap = snap.with_router(router)
        for endpoint_id, ports in _load_published(db).items():
            snap = snap.with_published(endpoint_id, ports)
        policies = {r[1]: policy_from_record(*r[:-1], json.loads(r[-1])) for r in db.execute(
            "SELECT seq, id, name, body FROM policies ORDER BY seq")}
        if policies:
            snap = snap.with_policies(policies)
        self._last_rule_id = db.execute(
            "SELECT value FROM meta WHERE key = 'last_rule_id'").fetchone()[0]
        self._snapshot = snap

    def close(self) -> None:
        self._db.close()


def _labels_json(labels: Labels) -> str:
    return json.dumps(dict(labels))


def _labels_from_json(text: str) -> Labels:
    return labels_of(json.loads(text))  # checked before loading (integrity.py)


def _asked_address(net: Network, ip: str) -> str:
    """``ip`` as the network writes it, if it is one of its addresses other than the
    gateway."""
    ip = str(parse_ip_in(ipaddress.IPv4Network(net.subnet), ip, "ip"))
    if ip == net.gateway:
        raise Conflict(f"ip {ip} is the gateway of network {net.name!r}")
    return ip


def _reservation_of(snap: Snapshot, net: Network, ip: str, owner: str) -> Reservation | None:
    """The reservation of ``ip`` if ``owner`` holds it, None if nobody does (Conflict if
    another owner does)."""
    held = snap.reservations.get((net.id, ip))
    if held is not None and held.owner != owner:
        raise Conflict(f"ip {ip} is reserved by {held.owner!r}")
    return held


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
                "SELECT seq, id, name, number FROM routers ORDER BY seq")]


def _load_published(db: sqlite3.Connection) -> dict[str, tuple[PublishedPort, ...]]:
    published: dict[str, tuple[PublishedPort, ...]] = {}
    for row in db.execute("SELECT endpoint_id, protocol, port, host_port FROM published_ports"):
        published[row[0]] = published.get(row[0], ()) + (PublishedPort(*row),)
    return published
