"""The incremental path (flows.host_flows) against the whole-table compiler, over random histories:
after every update a host's table, and the installed table its diffs produce, must equal what
compile_host gives, while only the hosts and units the fabric would name are recompiled."""
from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
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
