"""The store's memory: the snapshot the compiler and the API read, and the indexes allocation
needs (free addresses and MACs per network, aliases, counters), moved on by applying writes.

The replica that made a write and every other replica apply the same operations here, so
they all hold the same state at the same revision.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from .addressing import AddressPool
from .entities import EVERYTHING, Change, Snapshot
from .records import (ALIAS, COUNTER, ENDPOINT, HOST, KINDS, NETWORK, POLICY, PUBLISHED,
                      RESERVATION, ROUTER, Alias, Counter, Delete, Op, Published, Put)
from .routing import router_change

# What flows and the API's answers do not depend on: writing only these publishes nothing.
UNPUBLISHED = frozenset({ALIAS, COUNTER})


# The kinds of record the snapshot keeps by their id alone, and where.
_BY_ID = {HOST: "hosts", NETWORK: "networks", ENDPOINT: "endpoints", ROUTER: "routers",
          POLICY: "policies"}


class State:
    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.pools: dict[str, AddressPool] = {}  # network id -> its addresses
        self.macs: dict[str, set[str]] = {}  # network id -> MACs in use
        # alias -> network id; copied on write, so that readers outside the lock see a whole map
        self.aliases: dict[str, str] = {}
        self.counters: dict[str, int] = {}
        # guard name -> the revision it was last written at (model/guards.py), where the
        # backend tells it
        self.guards: dict[str, int] = {}

    @classmethod
    def loaded(cls, records: Iterable, revision: int,
               guards: dict[str, int] | None = None) -> "State":
        """The state holding ``records`` (in any order), at ``revision``."""
        state = cls()
        state.guards = dict(guards or {})
        by_kind: dict[str, list] = {kind: [] for kind in KINDS}
        for record in records:
            by_kind[Put(record).kind].append(record)
        for kind in KINDS:
            for record in sorted(by_kind[kind], key=_load_order):
                state._put(record)
        state.snapshot = replace(state.snapshot, revision=revision)
        return state

    def counter(self, name: str) -> int:
        return self.counters.get(name, 0)

    def records(self) -> list:
        """Every record the state holds, in load order (for a copy to another store)."""
        snap = self.snapshot
        published = [Published(e, snap.endpoints[e].host, ports)
                     for e, ports in snap.published.items()]
        return [*snap.hosts.values(), *snap.networks.values(),
                *(Alias(a, n) for a, n in self.aliases.items()), *snap.reservations.values(),
                *sorted(snap.endpoints.values(), key=_load_order), *snap.routers.values(),
                *published, *snap.policies.values(),
                *(Counter(n, v) for n, v in self.counters.items())]

    def holds(self, ops: list[Op]) -> bool:
        """Whether the state is as ``ops`` leave it (a write whose commit went unanswered)."""
        return all(self._find(op.kind, op.key) == (op.record if isinstance(op, Put) else None)
                   for op in ops)

    def _find(self, kind: str, key: tuple[str, ...]):
        snap = self.snapshot
        if kind in _BY_ID:
            return getattr(snap, _BY_ID[kind]).get(key[0])
        if kind == RESERVATION:
            return snap.reservations.get(key)
        if kind == ALIAS:
            network_id = self.aliases.get(key[0])
            return Alias(key[0], network_id) if network_id else None
        if kind == PUBLISHED:
            ports = snap.published.get(key[0])
            return Published(key[0], snap.endpoints[key[0]].host, ports) if ports else None
        value = self.counters.get(key[0])
        return Counter(key[0], value) if value is not None else None

    def apply(self, ops: list[Op], revision: int,
              guards: Iterable[str] = ()) -> Change | None:
        """Applies one write's operations at ``revision`` (and the guards it wrote); what it
        changed, or None if it changed nothing that is published (the snapshot then keeps
        its revision)."""
        for guard in guards:
            self.guards[guard] = revision
        changes = []
        for op in ops:
            if isinstance(op, Put):
                changes.append(self._put(op.record))
            else:
                changes.append(self._delete(op))
        changes = [c for c in changes if c is not None]
        if not changes:
            return None
        self.snapshot = replace(self.snapshot, revision=revision)
        return merged(changes)

    # ---- one record --------------------------------------------------------------------

    def _put(self, record) -> Change | None:
        snap = self.snapshot
        kind = Put(record).kind
        if kind == HOST:
            self.snapshot = replace(snap, hosts={**snap.hosts, record.name: record})
            return EVERYTHING
        if kind == NETWORK:
            if record.id not in snap.networks:
                self.pools[record.id] = AddressPool(record.subnet, record.gateway)
                self.macs[record.id] = set()
            self.snapshot = replace(snap, networks={**snap.networks, record.id: record})
            return Change(frozenset({record.id}))
        if kind == ALIAS:
            self.aliases = {**self.aliases, record.alias: record.network_id}
            return None
        if kind == RESERVATION:
            self.pools[record.network_id].take(record.ip)
            self.snapshot = replace(snap, reservations={
                **snap.reservations, (record.network_id, record.ip): record})
            return Change()
        if kind == ENDPOINT:
            old = snap.endpoints.get(record.id)
            if old is not None:
                snap = self._forget_endpoint(snap, old)
            self.pools[record.network_id].take(record.ip)
            self.macs[record.network_id].add(record.mac)
            self.snapshot = snap.with_endpoint(record)
            return Change(frozenset({record.network_id}), endpoints=frozenset({record.id}))
        if kind == ROUTER:
            self.snapshot = snap.with_router(record)
            return router_change(snap.routers.get(record.id), record)
        if kind == PUBLISHED:
            self.snapshot = snap.with_published(record.endpoint_id, record.ports)
            return _published_change(snap, record.endpoint_id)
        if kind == POLICY:
            self.snapshot = snap.with_policies({**snap.policies, record.id: record})
            return Change(policies=frozenset({record.id}))
        self.counters[record.name] = record.value
        return None

    def _delete(self, op: Delete) -> Change | None:
        snap = self.snapshot
        kind, key = op.kind, op.key
        if kind == HOST:
            self.snapshot = replace(snap, hosts={n: h for n, h in snap.hosts.items()
                                                 if n != key[0]})
            return EVERYTHING
        if kind == NETWORK:
            self.pools.pop(key[0], None)
            self.macs.pop(key[0], None)
            self.snapshot = replace(snap, networks={i: n for i, n in snap.networks.items()
                                                    if i != key[0]})
            return Change(frozenset({key[0]}))
        if kind == ALIAS:
            self.aliases = {a: n for a, n in self.aliases.items() if a != key[0]}
            return None
        if kind == RESERVATION:
            if key in snap.reservations:
                self.pools[key[0]].release(key[1])
            self.snapshot = replace(snap, reservations={k: r for k, r in snap.reservations.items()
                                                        if k != key})
            return Change()
        if kind == ENDPOINT:
            ep = snap.endpoints[key[0]]
            self.snapshot = self._forget_endpoint(snap, ep)
            return Change(frozenset({ep.network_id}), endpoints=frozenset({ep.id}))
        if kind == ROUTER:
            self.snapshot = snap.without_router(key[0])
            return router_change(snap.routers[key[0]], None)
        if kind == PUBLISHED:
            self.snapshot = snap.with_published(key[0], ())
            return _published_change(snap, key[0])
        if kind == POLICY:
            self.snapshot = snap.with_policies({i: p for i, p in snap.policies.items()
                                                if i != key[0]})
            return Change(policies=frozenset({key[0]}))
        self.counters.pop(key[0], None)
        return None

    def _forget_endpoint(self, snap: Snapshot, ep) -> Snapshot:
        self.pools[ep.network_id].release(ep.ip)
        self.macs[ep.network_id].discard(ep.mac)
        return snap.without_endpoint(ep)


def _published_change(snap: Snapshot, endpoint_id: str) -> Change:
    return Change(frozenset({snap.endpoints[endpoint_id].network_id}),
                  published=frozenset({endpoint_id}))


def _load_order(record) -> int:
    return getattr(record, "seq", 0)


def merged(changes: list[Change]) -> Change:
    if len(changes) == 1:
        return changes[0]
    return Change(networks=frozenset().union(*(c.networks for c in changes)),
                  hosts=any(c.hosts for c in changes),
                  endpoints=frozenset().union(*(c.endpoints for c in changes)),
                  routers=frozenset().union(*(c.routers for c in changes)),
                  published=frozenset().union(*(c.published for c in changes)),
                  policies=frozenset().union(*(c.policies for c in changes)))

