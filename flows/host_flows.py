"""One host's desired flows, kept by unit so that a change costs only what it touched.

``rebuild`` compiles every unit of the host (a switch connecting, hosts coming or going, the
periodic safety check). ``update`` recompiles only the units a store change named, plus those
that the host's wiring makes stale: an endpoint whose OpenFlow port changed, every unit of a
network that appeared on or left the host (or whose local endpoints were all replaced), the
rules whose endpoints here or whose peers changed. It returns the net difference, so that a key
moving from one unit to another within one update is rewritten, never added then deleted.
Pure: no I/O; ``update`` always leaves ``flows`` equal to what ``compile_host`` gives.
"""
from __future__ import annotations

from model.entities import Change, Snapshot

from model.policy_hosts import policy_hosts

from .compiler import (POLICY_UNIT, HostPorts, HostWiring, Unit, compile_unit, endpoint_unit,
                       host_wiring, network_unit, rule_unit, units_of, units_of_network)
from .policy import merged, names_as_peer, rule_peer_ids
from .flow import Flow, FlowDiff

_ABSENT = object()


def concerned_hosts(previous: Snapshot, snap: Snapshot, change: Change) -> set[str]:
    """The hosts whose flows a change can alter: where a changed network lives, or a network
    routed with it, before or after the change, and where a changed policy selects endpoints
    (every host when hosts came or went)."""
    if change.hosts:
        return set(snap.hosts)
    networks = set(change.networks)
    for state in (previous, snap):
        for network_id in change.networks:
            router = state.router_of(network_id)
            if router is not None:
                networks.update(router.networks)
        for router_id in change.routers:
            if router_id in state.routers:
                networks.update(state.routers[router_id].networks)
    hosts: set[str] = set()
    for network_id in networks:
        hosts |= previous.hosts_of_network(network_id) | snap.hosts_of_network(network_id)
    for endpoint_id in change.published:  # published ports are flows on their host only
        for state in (previous, snap):
            ep = state.endpoints.get(endpoint_id)
            if ep is not None:
                hosts.add(ep.host)
    for state in (previous, snap):
        hosts |= policy_hosts(state, filter(None, map(state.policies.get, change.policies)))
    return hosts & snap.hosts.keys()


def touched_units(change: Change) -> set[Unit]:
    return ({network_unit(n) for n in change.networks}
            | {endpoint_unit(e) for e in change.endpoints | change.published})


class HostFlows:
    """The desired flows of one host (``flows``), with the units that own them."""

    def __init__(self) -> None:
        self.flows: dict[tuple, Flow] = {}
        self.view: HostWiring | None = None
        self._units: dict[Unit, dict[tuple, Flow]] = {}
        self._network_units: dict[str, set[Unit]] = {}  # network id -> its units here
        self._unit_network: dict[Unit, str] = {}  # the reverse, for units with flows
        # Rule units' flows by key and unit: two rules may share a key (a clause flow).
        self._rule_flows: dict[tuple, dict[Unit, Flow]] = {}
        self._rule_peers: dict[int, set[str]] = {}  # rule id -> the endpoints it names
        self._peer_rules: dict[str, set[int]] = {}  # the reverse
        # what the host's view was made from (its endpoints, ports, the routers), and the view
        self._view_cache: tuple = (None, None, None, None)

    def view_for(self, snap: Snapshot, host: str, ports: HostPorts) -> HostWiring:
        """The host's view, reused while neither its endpoints (a persistent map: the same
        object until one of them changes), its ports, the routers nor the hosts (their outside
        addresses) changed, so that a change
        elsewhere in a network costs this host no walk over its own endpoints."""
        endpoints, cached_ports, routers, view = self._view_cache
        here = snap.endpoints_by_host.get(host)
        shared = (snap.routers, snap.network_router, snap.hosts, snap.policies)
        if (view is None or here is not endpoints or ports is not cached_ports
                or shared != routers):
            view = host_wiring(snap, host, ports)
            self._view_cache = (here, ports, shared, view)
        return view

    def rebuild(self, snap: Snapshot, view: HostWiring) -> dict[tuple, Flow]:
        self.flows, self._units, self._network_units, self._unit_network = {}, {}, {}, {}
        self._rule_flows, self._rule_peers, self._peer_rules = {}, {}, {}
        for unit in units_of(snap, view):
            self._replace(snap, view, unit, {})
        self.view = view
        return self.flows

    def update(self, snap: Snapshot, view: HostWiring, units: set[Unit]) -> FlowDiff | None:
        """The difference that ``units`` changing makes; None when only a rebuild will do
        (never built, the host's tunnels changed, which touches every remote endpoint, the
        routers it routes for, which touch every endpoint of their networks, or its way out,
        which touches every local endpoint)."""
        old = self.view
        if old is not None and (old.rules or view.rules):
            units = units | self._stale_rules(snap, old, view, units)
        if old is view:
            return self._recompile(snap, view, units)
        if (old is None or view.tunnels != old.tunnels or view.routers != old.routers
                or view.routed != old.routed or view.outside != old.outside):
            return None
        stale = set(units)
        for network_id in old.networks.keys() - view.networks.keys():
            stale |= self._network_units.get(network_id, set())
        for network_id in view.networks.keys() - old.networks.keys():
            stale.update(units_of_network(snap, network_id))
        for network_id in view.networks.keys() & old.networks.keys():
            if view.members[network_id].isdisjoint(old.members[network_id]):
                # Every local endpoint of the network went and others came: it may have
                # left the host meanwhile, and missed what changed in it then.
                stale |= self._network_units.get(network_id, set())
                stale.update(units_of_network(snap, network_id))
        if view.local != old.local:
            for endpoint_id in old.local.keys() | view.local.keys():
                if old.local.get(endpoint_id) != view.local.get(endpoint_id):
                    stale.add(endpoint_unit(endpoint_id))
            for network_id in old.networks.keys() & view.networks.keys():
                if old.networks[network_id] != view.networks[network_id]:
                    stale.add(network_unit(network_id))
        if view.tracked != old.tracked:
            for endpoint_id in old.tracked.keys() | view.tracked.keys():
                if old.tracked.get(endpoint_id) != view.tracked.get(endpoint_id):
                    stale.add(endpoint_unit(endpoint_id))
                    ep = snap.endpoints.get(endpoint_id)  # gone: its network's ports changed
                    if ep is not None:
                        stale.add(network_unit(ep.network_id))
        self.view = view
        return self._recompile(snap, view, stale)

    def _stale_rules(self, snap: Snapshot, old: HostWiring, view: HostWiring,
                     units: set[Unit]) -> set[Unit]:
        """The rule units to recompile: rules that came, went or judge other endpoints here,
        and those a changed endpoint is, or becomes, a peer of; the rules tables' own flows
        when the host gains or loses tracked endpoints."""
        stale = {rule_unit(r) for r in old.rules.keys() | view.rules.keys()
                 if old.rules.get(r) != view.rules.get(r)}
        if bool(old.tracked) != bool(view.tracked):
            stale.add(POLICY_UNIT)
        changed = [ident for kind, ident in units if kind == "endpoint"]
        rule_policy = snap.policy_index.rule_policy if snap.policy_index is not None else {}
        for ident in changed:
            stale.update(rule_unit(r) for r in self._peer_rules.get(ident, ()))
            ep = snap.endpoints.get(ident)
            if ep is not None:
                stale.update(rule_unit(r) for r in view.rules
                             if r in rule_policy and names_as_peer(rule_policy[r][1], ep))
        return stale

    def _recompile(self, snap: Snapshot, view: HostWiring, units: set[Unit]) -> FlowDiff:
        before: dict[tuple, object] = {}
        for unit in units:
            self._replace(snap, view, unit, before)
        changes = FlowDiff()
        for key, was in before.items():
            now = self.flows.get(key)
            if now is None:
                changes.delete.append(was)
            elif was is _ABSENT or was.body != now.body:
                changes.add.append(now)
        return changes

    def _replace(self, snap: Snapshot, view: HostWiring, unit: Unit,
                 before: dict[tuple, object]) -> None:
        """Recompiles ``unit``, recording in ``before`` the prior value of every key touched."""
        old = self._units.pop(unit, {})
        new = {f.key: f for f in compile_unit(snap, view, unit)}
        if unit[0] == "rule":
            self._replace_rule(snap, unit, old, new, before)
            return
        for key, flow in old.items():
            if key not in new and self.flows.get(key) is flow:
                before.setdefault(key, flow)
                del self.flows[key]
        for key, flow in new.items():
            before.setdefault(key, self.flows.get(key, _ABSENT))
            self.flows[key] = flow
        if new:
            self._units[unit] = new
            network_id = _network_of(snap, unit)
            if network_id is not None:
                self._unit_network[unit] = network_id
                self._network_units.setdefault(network_id, set()).add(unit)
        else:
            network_id = self._unit_network.pop(unit, None)
            if network_id is not None:
                self._network_units[network_id].discard(unit)


    def _replace_rule(self, snap: Snapshot, unit: Unit, old: dict, new: dict,
                      before: dict[tuple, object]) -> None:
        """A rule unit's flows, merged with those of other rules on shared keys."""
        for key in old.keys() | new.keys():
            before.setdefault(key, self.flows.get(key, _ABSENT))
            shares = self._rule_flows.setdefault(key, {})
            if key in new:
                shares[unit] = new[key]
            else:
                shares.pop(unit, None)
            if shares:
                self.flows[key] = merged(shares.values())
            else:
                del self._rule_flows[key]
                self.flows.pop(key, None)
        rule_id = unit[1]
        for ident in self._rule_peers.pop(rule_id, ()):
            self._peer_rules[ident].discard(rule_id)
        if new:
            self._units[unit] = new
            peers = rule_peer_ids(snap, snap.policy_index.rule_policy[rule_id][1])
            self._rule_peers[rule_id] = peers
            for ident in peers:
                self._peer_rules.setdefault(ident, set()).add(rule_id)


def _network_of(snap: Snapshot, unit: Unit) -> str | None:
    kind, ident = unit
    if kind == "network":
        return ident
    if kind == "endpoint":
        return snap.endpoints[ident].network_id  # a unit with flows exists in the snapshot
    return None
