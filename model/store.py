"""The store: the single source of truth for hosts, networks, endpoints, routers, published
ports and security policies, behind one interface whatever keeps it.

A write checks the request against the state in memory and allocates what it needs there
(VNIs, addresses, MACs, port numbers, seqs), then commits the records it puts and deletes
(model/records.py) to the backend in one transaction: the SQLite file (model/sqlite_store.py)
or etcd, shared by replicas (cluster/etcd_store.py). A backend refuses a write planned on a
revision that is no longer the latest (another replica wrote since): the write is planned
again once this replica has caught up, so no value is ever handed out twice. The state
applied (model/state.py) is published to the compiler as immutable snapshots.
"""
from __future__ import annotations

import ipaddress
import itertools
import logging
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping, Protocol

from .addressing import (
    DEFAULT_MTU,
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
                       Host, Network, PublishedPort, Reservation, Router, Snapshot)
from . import guards, policy_requests, publishing, routing
from .errors import Conflict, Forbidden, InvalidRequest, NotFound, Unavailable
from .labels import parse_labels
from .policy import MAX_RULE_ID, Policy
from .policy_records import networks_named
from .ownership import host_share
from .guards import NETWORKS, POLICIES, ROUTERS
from .records import (ENDPOINT, HOST, LAST_RULE_ID, NETWORK, POLICY, ROUTER, Alias, Counter, Op,
                      Published, Put, delete, seq_counter)
from .state import State

LOG = logging.getLogger(__name__)

Listener = Callable[[Snapshot, Change], None]
# How long a write waits for this replica to catch up with one another replica made first.
CATCH_UP_S = 10.0
# Waiting that long for the backend to deliver a write means it is stuck following.
RESYNC_AFTER_S = 1.0


class Stale(Exception):
    """The write did not commit: another one came first, up to ``revision``. ``undecided``:
    whether it committed is not known, but it is in the state at ``revision``, or never
    will be."""

    def __init__(self, revision: int, undecided: bool = False):
        super().__init__(f"the store is at revision {revision}")
        self.revision = revision
        self.undecided = undecided


NOT_FOUND = object()  # a plan found something missing


class _NeedSeqs(Exception):
    """The write needs a seq of ``kind`` and this replica holds none left."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


class Backend(Protocol):
    # Whether the backend delivers this replica's own writes through follow() too (a shared
    # one, in revision order with the others'); if not, they are applied as they commit.
    follows_own_writes: bool
    # How many seqs a replica takes for itself at once: one write in so many, not every one,
    # then takes the counter every replica's writes would otherwise conflict on.
    seq_block: int
    # How many free values an allocation chooses among at random: one, for a store only
    # this process writes; more where replicas allocate at once.
    spread: int

    def load(self) -> tuple[list, int, dict[str, int]]: ...  # records, revision, guards
    # Commits the ops if no guard in ``compare`` moved from the revision given there and the
    # other conditions hold (model/guards.py): the revision they make, and that of the write
    # just before them (None: not known). Stale if not.
    def commit(self, ops: list[Op], revision: int, compare: dict[str, int],
               conditions: guards.Conditions) -> tuple[int, int | None]: ...
    def stored_revision(self) -> int: ...
    # apply(ops, revision, guards) for every write as it comes; reload(records, revision,
    # guards) when they cannot be followed one by one.
    def follow(self, apply, reload) -> None: ...
    def resync(self) -> None: ...  # following seems stuck: follow again, from elsewhere
    def close(self) -> None: ...


class Store:
    def __init__(self, backend: str | Backend):
        """``backend``: a SQLite file's path, or a backend object (etcd's)."""
        if isinstance(backend, str):
            from .sqlite_store import SqliteBackend
            backend = SqliteBackend(backend)
        self.backend = backend
        self.path = getattr(backend, "path", None)
        self._lock = threading.Lock()  # the state: planning on it, applying to it
        self._caught_up = threading.Condition(self._lock)
        self._writing = threading.Lock()  # one write at a time, where it is the only writer
        self._listeners: list[Listener] = []
        records, revision, guards = backend.load()
        self._state = State.loaded(records, revision, guards)
        self._revision = revision  # of the last write applied, published or not
        self._seq_blocks: dict[str, tuple[int, int]] = {}  # kind -> (next, last) held
        backend.follow(self._apply_followed, self._reload)

    # ---- reading -------------------------------------------------------------------------

    @property
    def _snapshot(self) -> Snapshot:
        return self._state.snapshot

    @property
    def _pools(self):
        return self._state.pools

    def snapshot(self) -> Snapshot:
        return self._state.snapshot

    def served_revision(self) -> int:
        """The revision of the last write this replica applied."""
        return self._revision

    def stored_revision(self) -> int:
        """The revision the backend holds, read from it now (Unavailable if it cannot be
        read): that the store answers, and what the served state should be at."""
        with self._lock:
            return self.backend.stored_revision()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(snapshot, change)`` after every committed change (keep it quick)."""
        self._listeners.append(listener)

    def records(self) -> list:
        """Every record the store holds (what `store copy` carries)."""
        with self._lock:
            return self._state.records()

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
            net = snap.networks.get(self._state.aliases.get(ref, ""))
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
        def plan():
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
            seq, counted = self._next_seq(HOST)
            host = Host(seq, name, ovsdb, tunnel_ip, datapath_type, bridge, egress_ip)
            return [*counted, Put(host)], host
        return self._commit(plan)

    def delete_host(self, name: str) -> Host:
        def plan():
            host = self.get_host(name)
            if self._snapshot.endpoints_by_host.get(name):
                raise Conflict(f"host {name!r} still has endpoints; delete them first")
            return [delete(host)], host
        return self._commit(plan)

    # ---- networks ------------------------------------------------------------------------

    def create_network(self, name: str, subnet: str, gateway: str | None = None,
                       vni: int | None = None, mtu: int | None = None,
                       owner: str | None = None, egress: bool = True) -> Network:
        net = parse_subnet(subnet)
        gw = parse_ip_in(net, gateway, "gateway") if gateway else net.network_address + 1
        mtu = DEFAULT_MTU if mtu is None else mtu

        def plan():
            snap = self._snapshot
            if any(n.name == name for n in snap.networks.values()):
                raise Conflict(f"network {name!r} already exists")
            if name in self._state.aliases:
                raise Conflict(f"{name!r} is an alias of another network")
            used_vnis = {n.vni for n in snap.networks.values()}
            if vni is None:
                given = lowest_free_vni(used_vnis)
            elif check_vni(vni) in used_vnis:
                raise Conflict(f"vni {vni} is already used by another network")
            else:
                given = vni
            seq, counted = self._next_seq(NETWORK)
            network = Network(seq, uuid.uuid4().hex, name, str(net), str(gw), given, mtu, owner,
                              egress)
            return [*counted, Put(network)], network
        return self._commit(plan)

    def delete_network(self, ref: str) -> Network:
        def plan():
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
            aliases = [delete(Alias(a, n)) for a, n in self._state.aliases.items()
                       if n == network.id]
            reservations = [delete(r) for (n, _), r in snap.reservations.items()
                            if n == network.id]
            return [*aliases, *reservations, delete(network)], network, {ROUTERS, POLICIES}
        return self._commit(plan)

    def set_network_egress(self, ref: str, egress: bool) -> Network:
        """Whether the network's containers reach the outside; the same value again is fine."""
        def plan():
            network = self.get_network(ref)
            if network.egress == egress:
                return [], network
            network = replace(network, egress=egress)
            return [Put(network)], network
        return self._commit(plan)

    # ---- address reservations ------------------------------------------------------------

    def reserve_address(self, network: str, owner: str, ip: str | None = None,
                        share_of: str | None = None) -> Reservation:
        """Holds an address for ``owner``; asking again for what it already holds (or what an
        endpoint on host ``owner`` uses) is answered as already yours. With ``share_of`` (a
        host token's request), a new address is refused once that host holds its share."""
        def plan():
            snap = self._snapshot
            net = self.get_network(network)
            pool = self._pools[net.id]
            if ip is None:
                self._check_share(snap, net, share_of)
                asked = pool.allocate(self.backend.spread)
            else:
                asked = _asked_address(net, ip)
                held = _reservation_of(snap, net, asked, owner)
                if held is not None:
                    return [], held
                user = next((e for e in snap.network_endpoints(net.id) if e.ip == asked), None)
                if user is not None:
                    if user.host == owner:
                        return [], Reservation(net.id, asked, owner)
                    raise Conflict(f"ip {asked} is already used in network {net.name!r}")
                self._check_share(snap, net, share_of)
            reservation = Reservation(net.id, asked, owner)
            return [Put(reservation)], reservation, set(), _holdings(net, share_of)
        return self._commit(plan)

    def release_address(self, network: str, ip: str, owner: str | None = None) -> None:
        """Frees a reserved address; an address that is already free is fine (idempotent).
        With ``owner``, only a reservation that owner holds is freed: anything else is left."""
        def plan():
            snap = self._snapshot
            net = self.get_network(network)
            held = snap.reservations.get((net.id, ip))
            if owner is not None and (held is None or held.owner != owner):
                return [], None
            if any(e.ip == ip for e in snap.network_endpoints(net.id)):
                raise Conflict(f"ip {ip} is used by an endpoint: delete the endpoint")
            if held is None:
                return [], None
            return [delete(held)], None
        self._commit(plan)

    # ---- aliases -------------------------------------------------------------------------

    def aliases_of(self, network_id: str) -> list[str]:
        return sorted(a for a, n in self._state.aliases.items() if n == network_id)

    def add_alias(self, network: str, alias: str) -> Network:
        """Lets ``alias`` name the network too; adding it again is fine (idempotent)."""
        def plan():
            net = self.get_network(network)
            held = self._state.aliases.get(alias)
            if held == net.id:
                return [], net
            if held is not None or alias in self._snapshot.networks or any(
                    n.name == alias for n in self._snapshot.networks.values()):
                raise Conflict(f"{alias!r} already names another network")
            return [Put(Alias(alias, net.id))], net
        return self._commit(plan)

    def remove_alias(self, network: str, alias: str) -> None:
        """An alias the network does not have is fine (idempotent)."""
        def plan():
            net = self.get_network(network)
            held = self._state.aliases.get(alias)
            if held is None:
                return [], None
            if held != net.id:
                raise Conflict(f"{alias!r} is an alias of another network")
            return [delete(Alias(alias, held))], None
        self._commit(plan)

    # ---- endpoints -----------------------------------------------------------------------

    def create_endpoint(self, network: str, host: str, port: str | None = None,
                        ip: str | None = None, mac: str | None = None,
                        name: str | None = None, bounded: bool = False,
                        labels: Mapping[str, str] | None = None) -> Endpoint:
        """``bounded`` (a host token's request): a new address is refused once the host holds
        its share of the network; one it reserved is taken over."""
        asked_mac = normalize_mac(mac) if mac else None
        labels = parse_labels(labels or {})

        def plan():
            snap = self._snapshot
            net = self.get_network(network)
            bridge = self.get_host(host).bridge
            if port == bridge:  # OVS would take the bridge's own interface for an endpoint's
                raise InvalidRequest(f"port {port!r} is the own interface of bridge {bridge} "
                                     f"on host {host!r}, not an endpoint's")
            pool = self._pools[net.id]
            reserved = None
            address = ip
            if address is not None:
                address = _asked_address(net, address)
                # A reserved address is taken over by the endpoint its owner (a host) makes.
                reserved = _reservation_of(snap, net, address, host)
                if reserved is None and not pool.is_free(address):
                    raise Conflict(f"ip {address} is already used in network {net.name!r}")
            if reserved is None and bounded:
                self._check_share(snap, net, host)
            if address is None:
                address = pool.allocate(self.backend.spread)
            macs = self._state.macs[net.id]
            given_mac = asked_mac
            if given_mac is not None and given_mac in macs:
                raise Conflict(f"mac {given_mac} is already used in network {net.name!r}")
            if given_mac is not None and given_mac.startswith(GATEWAY_MAC_PREFIX):
                raise Conflict(f"mac {given_mac} is in the range the fabric keeps for gateways")
            if given_mac is not None and given_mac.startswith(ROUTER_MAC_PREFIX):
                raise InvalidRequest(f"mac {given_mac} is in the range the fabric keeps for "
                                     f"routers ({ROUTER_MAC_PREFIX}:...)")
            while given_mac is None or given_mac in macs:
                given_mac = random_mac()
            ofport = None
            if port is not None:
                local = snap.host_endpoints(host)
                if any(e.port == port for e in local):
                    raise Conflict(f"port {port!r} on host {host!r} already belongs to an endpoint")
                ofport = lowest_free_ofport({e.ofport for e in local}, self.backend.spread)
            endpoint_id = uuid.uuid4().hex
            seq, counted = self._next_seq(ENDPOINT)
            ep = Endpoint(seq, endpoint_id, name or f"ep-{endpoint_id[:8]}", net.id, host, port,
                          address, given_mac, ofport, labels)
            return ([*([delete(reserved)] if reserved else []), *counted, Put(ep)], ep, set(),
                    _holdings(net, host if bounded else None))
        return self._commit(plan)

    def set_endpoint_labels(self, endpoint_id: str, labels: Mapping[str, str]) -> Endpoint:
        """Replaces the endpoint's labels with ``labels``; the same ones again change
        nothing."""
        labels = parse_labels(labels)

        def plan():
            ep = self.get_endpoint(endpoint_id)
            if ep.labels == labels:
                return [], ep
            ep = replace(ep, labels=labels)
            return [Put(ep)], ep
        return self._commit(plan)

    def delete_endpoint(self, endpoint_id: str) -> Endpoint:
        def plan():
            ep = self.get_endpoint(endpoint_id)
            published = self._snapshot.published.get(ep.id)
            return [*([delete(Published(ep.id, ep.host, published))] if published else []),
                    delete(ep)], ep
        return self._commit(plan)

    # ---- routers -------------------------------------------------------------------------

    def get_router(self, ref: str) -> Router:
        """A router by id or name."""
        routers = self._snapshot.routers
        router = routers.get(ref) or next((r for r in routers.values() if r.name == ref), None)
        if router is None:
            raise NotFound(f"router {ref!r} does not exist")
        return router

    def create_router(self, name: str) -> Router:
        def plan():
            snap = self._snapshot
            if any(r.name == name for r in snap.routers.values()):
                raise Conflict(f"router {name!r} already exists")
            number = lowest_free({r.number for r in snap.routers.values()},
                                 routing.ROUTER_NUMBER_MIN, routing.ROUTER_NUMBER_MAX,
                                 "router number")
            seq, counted = self._next_seq(ROUTER)
            router = Router(seq, uuid.uuid4().hex, name, number)
            return [*counted, Put(router)], router
        return self._commit(plan)

    def delete_router(self, ref: str) -> Router:
        def plan():
            router = self.get_router(ref)
            if router.networks:
                raise Conflict(f"router {router.name!r} still has networks attached; "
                               f"detach them first")
            return [delete(router)], router
        return self._commit(plan)

    def attach_network(self, ref: str, network: str) -> Router:
        """Attaching a network the router has already changes nothing."""
        def plan():
            router, net = self.get_router(ref), self.get_network(network)
            if not routing.check_attach(self._snapshot, router, net):
                return [], router
            router = replace(router, networks=router.networks + (net.id,))
            return [Put(router)], router, {guards.network(net.id)}
        return self._commit(plan)

    def detach_network(self, ref: str, network: str) -> Router:
        def plan():
            router, net = self.get_router(ref), self.get_network(network)
            if net.id not in router.networks:
                raise NotFound(f"network {net.name!r} is not attached to router "
                               f"{router.name!r}")
            routing.check_detach(self._snapshot, router, net)
            router = replace(router, networks=tuple(n for n in router.networks if n != net.id))
            return [Put(router)], router
        return self._commit(plan)

    def set_routes(self, ref: str, routes: list[tuple[str, str]]) -> Router:
        """Replaces the router's static routes with ``routes`` (destination, nexthop)."""
        def plan():
            router = self.get_router(ref)
            router = replace(router, routes=routing.parse_routes(self._snapshot, router, routes))
            return [Put(router)], router, {guards.network(n) for n in router.networks}
        return self._commit(plan)

    # ---- published ports -----------------------------------------------------------------

    def publish_port(self, endpoint_id: str, protocol: str, port: int,
                     host_port: int | None = None) -> PublishedPort:
        """Without ``host_port``, the lowest free one from 49152 on the endpoint's host."""
        def plan():
            snap = self._snapshot
            ep = self.get_endpoint(endpoint_id)
            published = publishing.new_published(snap, ep, protocol, port, host_port)
            ports = sorted(snap.published.get(ep.id, ()) + (published,),
                           key=lambda p: (p.protocol, p.host_port))  # as the snapshot has them
            return [Put(Published(ep.id, ep.host, tuple(ports)))], published
        return self._commit(plan)

    def unpublish_port(self, endpoint_id: str, protocol: str, host_port: int) -> PublishedPort:
        def plan():
            snap = self._snapshot
            ep = self.get_endpoint(endpoint_id)
            published = publishing.find_published(snap, ep, protocol, host_port)
            left = tuple(p for p in snap.published[ep.id] if p != published)
            record = Published(ep.id, ep.host, left)
            return [Put(record) if left else delete(record)], published
        return self._commit(plan)

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
        def plan():
            draft = policy_requests.parse_policy(body, self.get_network)
            self._check_policy_name(draft.name, None)
            seq, counted = self._next_seq(POLICY)
            policy, rule_ids = self._numbered(draft, seq, uuid.uuid4().hex)
            return [*counted, rule_ids, Put(policy)], policy, {NETWORKS}
        return self._commit(plan)

    def replace_policy(self, ref: str, body: Any) -> Policy:
        """The policy ``ref`` made anew from ``body``, keeping its id: every rule gets a new
        id, so the connections the old rules admitted are not taken for the new ones'."""
        def plan():
            old = self.get_policy(ref)
            draft = policy_requests.parse_policy(body, self.get_network)
            self._check_policy_name(draft.name, old.id)
            policy, rule_ids = self._numbered(draft, old.seq, old.id)
            return [rule_ids, Put(policy)], policy, {NETWORKS}
        return self._commit(plan)

    def delete_policy(self, ref: str) -> Policy:
        def plan():
            policy = self.get_policy(ref)
            return [delete(policy)], policy
        return self._commit(plan)

    def _check_policy_name(self, name: str, policy_id: str | None) -> None:
        if any(p.name == name and p.id != policy_id for p in self._snapshot.policies.values()):
            raise Conflict(f"policy {name!r} already exists")

    def _numbered(self, draft: policy_requests.PolicyDraft, seq: int,
                  policy_id: str) -> tuple[Policy, Put]:
        """The policy with its rules' new ids, and the counter that records them as given;
        the ids are taken once it commits."""
        last_given = self._state.counter(LAST_RULE_ID)
        last = last_given + draft.rule_count
        if last > MAX_RULE_ID:
            raise Conflict(f"the fabric has given all {MAX_RULE_ID} rule ids")
        policy = draft.numbered(seq, policy_id, itertools.count(last_given + 1))
        return policy, Put(Counter(LAST_RULE_ID, last))

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

    def apply_copied(self, ops: list[Op]) -> None:
        """Writes records copied from another store as they are (their checks were that
        store's)."""
        self._commit(lambda: (ops, None))

    def _next_seq(self, kind: str) -> tuple[int, list[Op]]:
        """The next seq of ``kind``, and the counter that records it as given if this write
        must (seqs are never given twice). Where replicas write at once, each takes a block
        of seqs for itself in a write of its own and gives them from it: writes do not all
        conflict on the counter (the seqs of a block left when a replica stops are never
        given at all)."""
        name = seq_counter(kind)
        if not self.backend.follows_own_writes:  # the only writer, one write at a time
            seq = self._state.counter(name) + 1
            return seq, [Put(Counter(name, seq))]
        following, last = self._seq_blocks.get(kind, (1, 0))
        if following > last:
            raise _NeedSeqs(kind)
        self._seq_blocks[kind] = (following + 1, last)  # given, whether the write commits
        return following, []

    def _take_seqs(self, kind: str) -> None:
        name = seq_counter(kind)

        def plan():
            if self._seq_blocks.get(kind, (1, 0))[0] <= self._seq_blocks.get(kind, (1, 0))[1]:
                return [], None  # another write of this replica took a block meanwhile
            first = self._state.counter(name) + 1
            last = first + self.backend.seq_block - 1
            return [Put(Counter(name, last))], (first, last)
        block = self._commit(plan)
        if block is not None:
            with self._lock:
                self._seq_blocks[kind] = block

    def _commit(self, plan: Callable[[], tuple]) -> Any:
        """Runs ``plan`` (the checks and allocations, on the state as this replica has it:
        ``(ops, result[, guards read[, guards written]])``, guards besides the ops' own) and
        commits its operations; planned again, once caught up, when another replica (or
        another write of this one) wrote first what the plan depends on. Returns the plan's
        result once this replica has applied it."""
        if self.backend.follows_own_writes:  # writes go side by side; etcd orders them
            return self._commit_planned(plan)
        with self._writing:
            return self._commit_planned(plan)

    def _commit_planned(self, plan: Callable[[], tuple]) -> Any:
        caught_up = not self.backend.follows_own_writes  # the only writer is never behind
        while True:
            with self._lock:
                try:
                    ops, result, *extra = plan()
                except NotFound:
                    if caught_up:
                        raise
                    kind = NOT_FOUND
                except _NeedSeqs as needed:
                    kind = needed.kind
                else:
                    kind = None
                    if not ops:
                        return result
                    wanted = guards.conditions(ops, self._snapshot, *extra)
                    known = self._state.guards
                    compare = {g: known.get(g, 0) for g in wanted.guards}
                    planned_on = self._revision
            if kind is NOT_FOUND:
                # Perhaps made through another replica a moment ago: not found once this one
                # has what the store held when the request came, it does not exist.
                latest, caught_up = self.backend.stored_revision(), True
                with self._lock:
                    self._wait_until(latest)
                continue
            if kind is not None:
                self._take_seqs(kind)
                continue
            try:
                revision, after = self.backend.commit(ops, planned_on, compare, wanted)
            except Stale as stale:
                if stale.revision <= planned_on and not stale.undecided:
                    # Nobody wrote since: its conditions can never hold.
                    raise Unavailable(f"the state store {self.backend} refuses a write "
                                      f"whose conditions this replica's state says "
                                      f"hold: its claims and records disagree") from None
                with self._lock:
                    self._wait_until(stale.revision)
                    if stale.undecided and self._state.holds(ops):
                        return result  # it did commit
                continue
            with self._lock:
                if not self.backend.follows_own_writes or after == self._revision:
                    # Every write before it is applied already: so is this one, now (the
                    # backend's delivery of it is then passed over).
                    self._applied(ops, revision, wanted.writes)
                else:
                    self._wait_until(revision)
            return result

    def _wait_until(self, revision: int) -> None:
        """Waits (the lock held, released while waiting) until this replica has applied
        ``revision``."""
        deadline = time.monotonic() + CATCH_UP_S
        while self._revision < revision:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable(f"this replica has not caught up with the store's revision "
                                  f"{revision} (it is at {self._revision}): try again")
            if not self._caught_up.wait(min(left, RESYNC_AFTER_S)):
                self.backend.resync()

    def _applied(self, ops: list[Op], revision: int, written: Iterable[str] = ()) -> None:
        change = self._state.apply(ops, revision, written)
        self._revision = revision
        self._caught_up.notify_all()
        if change is not None:
            self._notify(change)

    def _apply_followed(self, ops: list[Op], revision: int, written: Iterable[str]) -> None:
        """A write as the backend follows them (every replica's, in revision order)."""
        with self._lock:
            if revision > self._revision:
                self._applied(ops, revision, written)

    def _reload(self, records: list, revision: int, guards_at: dict[str, int]) -> None:
        """The whole state anew, when the backend could not follow the writes one by one."""
        with self._lock:
            self._state = State.loaded(records, revision, guards_at)
            self._revision = revision
            self._caught_up.notify_all()
            self._notify(EVERYTHING)

    def _notify(self, change: Change) -> None:
        for listener in self._listeners:
            listener(self._state.snapshot, change)

    def close(self) -> None:
        self.backend.close()


def _holdings(net: Network, host: str | None) -> set[str]:
    """The guard a host token's write counts its share of the network on (none for an
    admin's: a host's count races only against an admin's writes for it)."""
    return {guards.holdings(net.id, host)} if host else set()


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
