"""The declared pipeline (flows.pipeline): consistent in itself, enforced on flows
(flows.conformance), kept to by the compiler, and shown as it is in docs/architecture.md."""
from __future__ import annotations

import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flows.compiler
from flows import compile_host
from flows import pipeline as p
from flows.conformance import OFPP_NORMAL, PipelineViolation, check, check_physical
from flows.flow import Flow, move, output, set_field
from openflow.actions import ct
from harness.simfabric import host_ports
from model import Store
from tests.helpers import ROOT

ARCHITECTURE = pathlib.Path(ROOT) / "docs" / "architecture.md"
C = p.FABRIC_COOKIE


@pytest.mark.parametrize("flow, complaint", [
    (Flow.make(p.L2.id, p.PRIO_L2_UNICAST, C, {"in_port": 1}, actions=[output(2)]),
     "does not match in_port"),
    (Flow.make(p.INGRESS.id, p.PRIO_PORT_ALLOW, C, {"in_port": 1}, goto=p.INGRESS_RULES.id),
     "may not go to table 30"),
    (Flow.make(p.ARP.id, p.PRIO_ARP_REPLY, C, {"arp_op": 1}, goto=p.CONNTRACK.id),
     "may not go to table 2"),  # only what a port sends is tracked
    (Flow.make(p.INGRESS_RULES.id, p.PRIO_ALLOW, C, {"ipv4_dst": "10.0.0.1"}),
     "does not match ipv4_dst"),  # ingress rules judge where a packet comes from
    (Flow.make(p.EGRESS_RULES.id, p.PRIO_ALLOW, C, {"reg1": 1}, goto=p.DELIVER.id),
     "may not go to table 32"),  # what an endpoint sends is routed and switched first
    (Flow.make(p.ARP.id, p.PRIO_ARP_REPLY, C, {"arp_op": 1}, goto=p.INGRESS.id),
     "may not go to table 0"),
    (Flow.make(p.ARP.id, p.PRIO_ARP_REPLY, C, {"arp_op": 1}, goto=15), "may not go to table 15"),
    (Flow.make(15, 1, C, {"in_port": 1}), "table 15 holds no flows"),
    (Flow.make(p.NAT.id, p.PRIO_TRANSIT, C, {"ipv4_src": "10.0.0.1"},
               actions=[ct(table=p.L2.id)]), "may not go to table 20"),  # ct recirculates
    (Flow.make(p.TO_OUTSIDE.id, p.PRIO_OUTSIDE, C, actions=[output(OFPP_NORMAL)]),
     "does not hand packets to NORMAL"),
    (Flow.make(p.INGRESS.id, p.PRIO_PORT_ALLOW, C, {"in_port": 1},
               write_metadata=1 << 56, goto=p.ROUTER_IN.id), "metadata bits"),
    (Flow.make(p.INGRESS.id, p.PRIO_PORT_ALLOW, C, {"in_port": 1}, goto=p.L2.id),
     "may not go to table 20"),  # IPv4 from a port meets router_in first
    (Flow.make(p.L3_LOOKUP.id, 120, C, {"metadata": (1 << 32, p.ROUTER.mask)},
               actions=[set_field("eth_dst", "02:00:00:00:00:01")], goto=p.NEIGHBOUR.id),
     "does not write eth_dst"),
    (Flow.make(p.ARP.id, p.PRIO_ARP_REPLY, C, {"reg0": 2}), "reg0 bits 0x2"),
    (Flow.make(p.ARP.id, p.PRIO_ARP_REPLY, C, {"metadata": (1 << 50, 1 << 50)}),
     "metadata bits"),
    (Flow.make(p.INGRESS.id, p.PRIO_TUNNEL_IN, C, {"tunnel_id": 5},
               actions=[set_field("reg2", 7)], goto=p.ARP.id), "does not write reg2"),
    (Flow.make(p.L2.id, p.PRIO_L2_UNICAST, C, {"eth_dst": "02:00:00:00:00:01"},
               actions=[move("arp_sha", "arp_tha", 48)]), "does not write arp_tha"),
    (Flow.make(p.L2.id, p.PRIO_L2_UNICAST, C, {"metadata": 5}, write_metadata=5),
     "does not write metadata"),
    (Flow.make(p.L2.id, p.PRIO_MISS, C, actions=[output(1)]), "miss flow of table l2"),
    (Flow.make(p.ARP.id, p.PRIO_MISS, C), "miss flow of table arp"),
])
def test_a_flow_that_breaks_the_declaration_is_refused(flow, complaint):
    with pytest.raises(PipelineViolation, match=re.escape(complaint)):
        check(flow)


def test_the_declared_miss_flows_pass():
    for table in p.TABLES:
        check(flows.compiler.miss_flow(table))


def test_the_physical_bridge_misses_to_normal_and_only_that():
    check_physical(Flow.make(p.PHY_IN.id, p.PRIO_MISS, C, actions=[output(OFPP_NORMAL)]))
    with pytest.raises(PipelineViolation, match="miss flow of table phy_in"):
        check_physical(Flow.make(p.PHY_IN.id, p.PRIO_MISS, C))
    with pytest.raises(PipelineViolation, match="table 2 holds no flows"):
        check_physical(Flow.make(2, 1, C, {"in_port": 1}))


def test_the_compiler_checks_every_flow_in_the_tests():
    assert flows.compiler.check_flows, "tests/conftest.py turns the check on"


@st.composite
def fabrics(draw):
    """A store with random hosts, networks (overlapping subnets allowed) and endpoints."""
    store = Store(":memory:")
    n_hosts = draw(st.integers(1, 4))
    for i in range(n_hosts):
        store.create_host(f"h{i}", f"unix:/run/h{i}.sock", f"192.0.2.{i + 1}")
    n_networks = draw(st.integers(1, 3))
    for n in range(n_networks):
        store.create_network(f"n{n}", f"10.{draw(st.integers(0, 1))}.{n}.0/24")
    for network, host in draw(st.lists(st.tuples(st.integers(0, n_networks - 1),
                                                 st.integers(0, n_hosts - 1)), max_size=12)):
        store.create_endpoint(f"n{network}", f"h{host}")
    return store


@settings(max_examples=40, deadline=None)
@given(fabrics())
def test_every_flow_the_compiler_emits_keeps_to_the_declaration(store):
    snap = store.snapshot()
    for host, ports in host_ports(snap).items():
        for flow in compile_host(snap, host, ports).values():
            check(flow)


# ---- the declaration itself --------------------------------------------------------------------

def test_tables_are_declared_once_in_the_order_a_packet_meets_them():
    for pipeline, by_name in [(p.PIPELINE, p.DECLARED_BY_NAME),
                              (p.PHYSICAL_PIPELINE, p.PHYSICAL_BY_NAME)]:
        ids = [t.id for t in pipeline]
        assert ids == sorted(set(ids))
        assert len(by_name) == len(pipeline)
    assert p.TABLES == tuple(t for t in p.PIPELINE if not t.reserved)


def test_every_next_table_is_declared_and_further_on():
    """OpenFlow 1.3 goto only goes forward, so the pipeline cannot loop."""
    for pipeline, by_name in [(p.PIPELINE, p.DECLARED_BY_NAME),
                              (p.PHYSICAL_PIPELINE, p.PHYSICAL_BY_NAME)]:
        for table in pipeline:
            for name in table.goes_to + ((table.miss,) if table.miss else ()):
                assert by_name[name].id > table.id, (table.name, name)


def test_the_layout_has_no_overlaps_and_fits_its_fields():
    for field in {b.field for b in p.LAYOUT}:
        ranges = sorted((b.start, b.start + b.width) for b in p.LAYOUT if b.field == field)
        assert all(end <= start for (_, end), (start, _) in zip(ranges, ranges[1:])), field
        assert ranges[-1][1] <= p.FIELD_WIDTHS[field], field
    assert len({b.name for b in p.LAYOUT}) == len(p.LAYOUT)


def test_the_tables_use_only_layout_fields_they_may_match():
    """A register or metadata field a table matches or writes has a meaning in the layout."""
    layout_fields = {b.field for b in p.LAYOUT}
    for table in p.PIPELINE:
        for name in table.matches | table.writes:
            if name == "metadata" or name.startswith("reg") or name == "ct_mark":
                assert name in layout_fields, (table.name, name)


# ---- the documentation -------------------------------------------------------------------------

def _table_row(table: p.Table, by_name=p.DECLARED_BY_NAME) -> str:
    def ref(name):
        return f"{name} ({by_name[name].id})"
    miss = f"to {ref(table.miss)}" if table.miss else "NORMAL" if table.normal else "drop"
    return (f"| {table.id} | {table.name} | {'reserved' if table.reserved else 'in use'} | "
            f"{table.purpose} | {', '.join(sorted(table.matches))} | "
            f"{', '.join(sorted(table.writes)) or '-'} | "
            f"{', '.join(ref(n) for n in table.goes_to) or '-'} | {miss} |")


def _bits_row(bits: p.Bits) -> str:
    last = bits.start + bits.width - 1
    span = f"{bits.start}-{last}" if last > bits.start else str(bits.start)
    return (f"| {bits.field} | {span} | {bits.name} | "
            f"{'reserved' if bits.reserved else 'in use'} | {bits.meaning} |")


def rendered(name: str) -> str:
    if name == "pipeline":
        header = ("| id | name | now | purpose | matches | writes | goes to | on a miss |\n"
                  "|---|---|---|---|---|---|---|---|")
        return "\n".join([header] + [_table_row(t) for t in p.PIPELINE])
    if name == "physical":
        header = ("| id | name | now | purpose | matches | writes | goes to | on a miss |\n"
                  "|---|---|---|---|---|---|---|---|")
        return "\n".join([header] + [_table_row(t, p.PHYSICAL_BY_NAME)
                                      for t in p.PHYSICAL_PIPELINE])
    header = "| field | bits | name | now | meaning |\n|---|---|---|---|---|"
    return "\n".join([header] + [_bits_row(b) for b in p.LAYOUT])


@pytest.mark.parametrize("name", ["pipeline", "physical", "layout"])
def test_the_documented_declaration_is_the_declaration(name):
    text = ARCHITECTURE.read_text()
    found = re.search(rf"<!-- {name}: generated[^>]*-->\n(.*?)\n<!-- /{name} -->", text, re.S)
    assert found, f"docs/architecture.md has no {name} section"
    assert found.group(1) == rendered(name), \
        f"paste this into docs/architecture.md:\n{rendered(name)}"
