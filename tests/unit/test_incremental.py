"""The incremental path (flows.host_flows) against the whole-table compiler, over random histories:
after every update a host's table, and the installed table its diffs produce, must equal what
compile_host gives, while only the hosts and units the fabric would name are recompiled."""
from __future__ import annotations

from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from flows import HostFlows, HostPorts, compile_host
from flows.egress import PhysicalBridge
from flows.host_flows import concerned_hosts, touched_units
from model import Store
from model.entities import EVERYTHING

HOSTS = ("h1", "h2", "h3")
NETWORKS = ("red", "blue")

operations = st.lists(st.one_of(
    st.tuples(st.just("create"), st.sampled_from(NETWORKS), st.sampled_from(HOSTS),
              st.booleans()),
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("bind"), st.integers(0, 50), st.integers(1, 5000)),  # OVS reports a port
    st.tuples(st.just("unbind"), st.integers(0, 50)),
    st.tuples(st.just("tunnel"), st.sampled_from(HOSTS), st.sampled_from(HOSTS)),
    st.tuples(st.just("converge"), st.sampled_from(HOSTS)),
    # the physical bridge patched in or not, its next hop resolved or not
    st.tuples(st.just("physical"), st.sampled_from(HOSTS),
              st.sampled_from([None, "02:aa:00:00:00:01", "02:aa:00:00:00:02", "none"])),
), max_size=40)


class Harness:
    """The store and one HostFlows per host, wired the way controller.fabric wires them."""

    def __init__(self):
        self.store = Store(":memory:")
        for i, host in enumerate(HOSTS, 1):
            self.store.create_host(host, f"unix:/run/{host}.sock", f"192.0.2.{i}")
        for name in NETWORKS:
            self.store.create_network(name, "10.0.0.0/24")
        self.previous = self.store.snapshot()
        self.store.subscribe(self.changed)
        # Tunnels to h2 and h3 from h1 only at first: some appear later.
        self.ports = {h: HostPorts({}, {}) for h in HOSTS}
        self.ports["h1"] = HostPorts({}, {"h2": 10, "h3": 11},
                                     physical=PhysicalBridge(90, 1, 2, "02:99:00:00:00:01"))
        self.dirty: dict[str, set | None] = dict.fromkeys(HOSTS)
        self.tables = {h: HostFlows() for h in HOSTS}
        self.installed: dict[str, dict] = {h: {} for h in HOSTS}

    def changed(self, snap, change=EVERYTHING):
        for host in concerned_hosts(self.previous, snap, change):
            if self.dirty.get(host, set()) is not None:
                self.dirty.setdefault(host, set()).update(touched_units(change))
        self.previous = snap

    def converge(self, host: str) -> None:
        snap = self.store.snapshot()
        view = self.tables[host].view_for(snap, host, self.ports[host])
        units = self.dirty.pop(host, set())
        table, installed = self.tables[host], self.installed[host]
        changes = None if units is None else table.update(snap, view, units)
        if changes is None:
            table.rebuild(snap, view)
            installed.clear()
            installed.update(table.flows)
        else:
            assert not {f.key for f in changes.add} & {f.key for f in changes.delete}
            for flow in changes.add:
                installed[flow.key] = flow
            for flow in changes.delete:
                del installed[flow.key]
        expected = compile_host(snap, host, self.ports[host])
        assert table.flows == expected
        assert installed == expected

    def set_ports(self, host: str, **changes) -> None:
        self.ports[host] = replace(self.ports[host], **changes)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_incremental_tables_equal_the_whole_compile(ops):
    h = Harness()
    for host in HOSTS:
        h.converge(host)
    endpoints: list = []
    for op in ops:
        kind = op[0]
        if kind == "create":
            _, network, host, with_port = op
            ep = h.store.create_endpoint(network, host, port=f"p{len(endpoints)}"
                                         if with_port else None)
            endpoints.append(ep)
        elif kind in ("delete", "bind", "unbind") and endpoints:
            ep = endpoints[op[1] % len(endpoints)]
            if kind == "delete":
                if ep.id in h.store.snapshot().endpoints:
                    h.store.delete_endpoint(ep.id)
            else:
                bound = dict(h.ports[ep.host].endpoints)
                if kind == "bind":
                    bound[ep.id] = op[2]
                else:
                    bound.pop(ep.id, None)
                h.set_ports(ep.host, endpoints=bound)
        elif kind == "tunnel" and op[1] != op[2]:
            _, host, peer = op
            h.set_ports(host, tunnels={**h.ports[host].tunnels, peer: 20 + HOSTS.index(peer)})
        elif kind == "converge":
            h.converge(op[1])
        elif kind == "physical":
            _, host, next_hop_mac = op
            bridge = None if next_hop_mac == "none" else \
                PhysicalBridge(90, 1, 2, "02:99:00:00:00:01", next_hop_mac)
            h.set_ports(host, physical=bridge)
    for host in HOSTS:
        h.converge(host)


def test_a_new_endpoint_recompiles_only_its_units():
    h = Harness()
    for host in HOSTS:
        h.set_ports(host, tunnels={p: 20 + i for i, p in enumerate(HOSTS) if p != host})
    for i in range(30):
        h.store.create_endpoint("red", HOSTS[i % 3], port=f"p{i}")
    for host in HOSTS:
        h.converge(host)
    ep = h.store.create_endpoint("red", "h2", port="new")
    snap = h.store.snapshot()
    assert set(h.dirty) == set(HOSTS)
    view = h.tables["h1"].view_for(snap, "h1", h.ports["h1"])
    changes = h.tables["h1"].update(snap, view, h.dirty.pop("h1"))
    # h1 gets one flow into the tunnel to h2, and the flood lists stay as they are.
    assert [f.cookie & 0xFFFF for f in changes.add] == [ep.seq] and not changes.delete


# Policies and labels: a small pool, so that histories select, unselect and reselect.
ROLES = ("web", "db", "")


def _policies(snap, chosen: tuple[int, ...], generation: int) -> dict:
    from model.policy import ALLOW, DENY, EGRESS, INGRESS, Peer, Policy, PortRange, Rule, \
        Selector
    networks = {n.name: n.id for n in snap.networks.values()}
    web, db = Selector((("role", "web"),)), Selector((("role", "db"),), networks["red"])
    pool = [
        lambda rid: Policy(1, "p-db", "db", db, ingress=(
            Rule(rid, INGRESS, 0, (Peer(web),), (PortRange("tcp", 5432),)),), egress=()),
        lambda rid: Policy(2, "p-web", "web", web, egress=(
            Rule(rid, EGRESS, 0, (Peer(cidr="10.0.0.0/25"),), (), ALLOW),
            Rule(rid + 1, EGRESS, 1, (Peer(db),), (PortRange("udp", 53, 60),), DENY))),
        lambda rid: Policy(3, "p-all", "all", Selector(), ingress=(
            Rule(rid, INGRESS, 0, (Peer(Selector()),)),)),
    ]
    return {p.id: p for p in (pool[i](10 * generation + 2 * i + 1) for i in sorted(set(chosen)))}


policy_operations = st.lists(st.one_of(
    st.tuples(st.just("create"), st.sampled_from(NETWORKS), st.sampled_from(HOSTS),
              st.just(True)),
    st.tuples(st.just("delete"), st.integers(0, 30)),
    st.tuples(st.just("bind"), st.integers(0, 30), st.integers(1, 5000)),
    st.tuples(st.just("label"), st.integers(0, 30), st.sampled_from(ROLES)),
    st.tuples(st.just("policies"), st.lists(st.integers(0, 2), min_size=1, max_size=3)),
    st.tuples(st.just("converge"), st.sampled_from(HOSTS + ("all",))),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(policy_operations)
# A policy coming to endpoints whose flows are in: their flows must change with it.
@example([("create", "red", "h1", True), ("converge", "h1"), ("policies", [2]),
          ("converge", "h1"), ("label", 0, "db"), ("policies", [0, 1]), ("converge", "all")])
# A network leaving a host and coming back between two of its updates: what changed in the
# network meanwhile is in the host's table too.
@example([("create", "red", "h2", True), ("converge", "h2"), ("delete", 0),
          ("create", "red", "h1", True), ("create", "red", "h2", True)])
@example([("create", "red", "h3", True), ("create", "blue", "h1", True),
          ("create", "red", "h1", True), ("converge", "h1"), ("delete", 2), ("delete", 0),
          ("create", "red", "h1", True)])
# Peers coming and going under the rules of another host: its policy flows must follow.
@example([("create", "red", "h1", True), ("label", 0, "db"), ("policies", [0]),
          ("create", "red", "h2", True), ("converge", "all"), ("label", 1, "web"),
          ("converge", "all"), ("label", 1, ""), ("converge", "all"), ("label", 1, "web"),
          ("converge", "all"), ("delete", 1), ("converge", "all")])
def test_incremental_tables_equal_the_whole_compile_with_policies(ops):
    from model.entities import Change
    h = Harness()
    for host in HOSTS:
        h.set_ports(host, tunnels={p: 20 + i for i, p in enumerate(HOSTS) if p != host})
        h.converge(host)
    endpoints: list = []
    generation = 0
    for op in ops:
        kind = op[0]
        snap = h.store.snapshot()
        if kind == "create":
            _, network, host, with_port = op
            endpoints.append(h.store.create_endpoint(
                network, host, port=f"p{len(endpoints)}" if with_port else None))
        elif kind in ("delete", "bind", "label") and endpoints:
            ep = snap.endpoints.get(endpoints[op[1] % len(endpoints)].id)
            if ep is None:
                continue
            if kind == "delete":
                h.store.delete_endpoint(ep.id)
            elif kind == "bind":
                h.set_ports(ep.host, endpoints={**h.ports[ep.host].endpoints, ep.id: op[2]})
            else:
                labels = (("role", op[2]),) if op[2] else ()
                _publish(h.store, snap.relabelled(ep, labels), Change(
                    frozenset({ep.network_id}), endpoints=frozenset({ep.id})))
        elif kind == "policies":
            generation += 1
            policies = _policies(snap, tuple(op[1]), generation)
            _publish(h.store, snap.with_policies(policies),
                             Change(policies=frozenset(policies) | frozenset(snap.policies)))
        elif kind == "converge":
            for host in HOSTS if op[1] == "all" else (op[1],):
                h.converge(host)
    for host in HOSTS:
        h.converge(host)


def _publish(store, snap, change) -> None:
    """``snap`` published as the store's next one, as if a write had made it (for states the
    store's own writes do not reach, e.g. policies with made-up rule ids)."""
    store._state.snapshot = replace(snap, revision=snap.revision + 1)
    store._notify(change)
