"""Security policy flows, followed packet by packet through the flow-table simulator (conntrack
included) across the hosts of tests.unit.policy_fabric: who reaches whom, replies, revocation,
deny over allow, unrestricted directions, and what a rule costs in flows."""
from __future__ import annotations

import pytest

from flows import compile_host
from flows.pipeline import decode_cookie
from flows.policy import port_prefixes
from flowsim import Packet
from flows.policy import TCP_ACK as ACK, TCP_SYN as SYN
from harness.simfabric import build, diff_messages, host_ports
from model.entities import Endpoint
from model.policy import DENY, labels_of
from tests.unit.policy_fabric import (EGRESS, INGRESS, Peer, Policy, PortRange, Rule, db_policy,
                                      labelled, named, policy_store, selector, with_policies)


@pytest.fixture
def snap():
    return labelled(policy_store().snapshot())


class Fabric:
    """The simulated fabric of a snapshot; ``program`` moves it to another snapshot's flows
    keeping every switch's connections, as flow mods on a live switch do."""

    def __init__(self, snap):
        self.snap = snap
        self.sim, self.tables = build(snap)

    def program(self, snap) -> None:
        ports = host_ports(snap)
        for host, switch in self.sim.switches.items():
            desired = compile_host(snap, host, ports[host])
            switch.apply_all(diff_messages(desired, self.tables[host]))
            self.tables[host] = desired
        self.snap = snap

    def tcp(self, src: str, dst: str, sport: int, dport: int, flags: int = SYN) -> list[str]:
        """Names of the endpoints a TCP packet from src to dst reaches."""
        a, b = named(self.snap, src), named(self.snap, dst)
        return self._send(a, Packet.tcp(a.mac, b.mac, a.ip, b.ip, sport, dport,
                                        tcp_flags_nxm=flags))

    def udp(self, src: str, dst: str, sport: int, dport: int) -> list[str]:
        a, b = named(self.snap, src), named(self.snap, dst)
        return self._send(a, Packet.udp(a.mac, b.mac, a.ip, b.ip, sport, dport))

    def ping(self, src: str, dst: str) -> list[str]:
        a, b = named(self.snap, src), named(self.snap, dst)
        return self._send(a, Packet.icmp(a.mac, b.mac, a.ip, b.ip))

    def _send(self, src: Endpoint, pkt: Packet) -> list[str]:
        return [self.snap.endpoints[e].name for e, _ in self.sim.send(src.id, pkt)]


def test_only_what_a_rule_allows_reaches_a_selected_endpoint_and_replies_pass(snap):
    f = Fabric(with_policies(snap, db_policy(snap)))
    assert f.tcp("web", "db", 40000, 5432) == ["db"], "web may reach db:5432 (another host)"
    assert f.tcp("db", "web", 5432, 40000) == ["web"], "and db's reply passes"
    assert f.tcp("web2", "db", 40001, 5432) == ["db"], "on db's own host too"
    assert f.tcp("db", "web2", 5432, 40001) == ["web2"]
    assert f.udp("web", "db", 40002, 5432) == ["db"], "the rule's second port range"
    assert f.tcp("other", "db", 40003, 5432) == [], "other is no peer of the rule"
    assert f.tcp("web", "db", 40004, 22) == [], "22 is no port of the rule"
    assert f.ping("web", "db") == [], "nor is ICMP"
    assert f.tcp("db", "web", 5000, 80) == [], "db may open nothing: its egress list is empty"
    assert f.tcp("other", "web", 40005, 80) == ["web"], "web is no policy's: unrestricted"


def test_the_same_addresses_in_another_network_are_unaffected(snap):
    f = Fabric(with_policies(snap, db_policy(snap)))
    assert f.tcp("twin-other", "twin-db", 40000, 5432) == ["twin-db"]
    assert f.tcp("twin-db", "twin-other", 5000, 80) == ["twin-other"]
    assert f.tcp("other", "db", 40000, 5432) == [], "while the same tuple in app is refused"


def test_arp_is_never_blocked(snap):
    f = Fabric(with_policies(snap, db_policy(snap)))
    other, db = named(f.snap, "other"), named(f.snap, "db")
    [(who, reply)] = f.sim.send(other.id, Packet.arp_request(other.mac, other.ip, db.ip))
    assert who == other.id and reply.arp_op == 2 and reply.arp_sha == db.mac


def test_a_policy_added_under_a_running_connection_cuts_what_it_forbids_only(snap):
    f = Fabric(snap)
    assert f.tcp("web", "db", 40000, 5432) == ["db"] and f.tcp("db", "web", 5432, 40000)
    assert f.tcp("other", "db", 40001, 5432) == ["db"] and f.tcp("db", "other", 5432, 40001)
    f.program(with_policies(snap, db_policy(snap)))
    assert f.tcp("web", "db", 40000, 5432) == ["db"], "the allowed connection runs on"
    assert f.tcp("db", "web", 5432, 40000) == ["web"]
    assert f.tcp("other", "db", 40001, 5432) == [], "the forbidden one is cut"
    assert f.tcp("db", "other", 5432, 40001) == [], "both ways"


def test_a_connection_met_mid_way_is_judged_whoever_speaks_first(snap):
    """A policy comes to running connections: conntrack meets them mid-way. db's egress is
    governed by no policy of the ingress-only one here; db's segment to other passes, but
    opens nothing, so other's next segment is judged by db's ingress rules."""
    ingress_only = db_policy(snap)
    ingress_only = Policy(1, "id-db", "db", ingress_only.applies_to,
                          ingress=ingress_only.ingress)
    f = Fabric(snap)
    assert f.tcp("other", "db", 40001, 5432) == ["db"]
    f.program(with_policies(snap, ingress_only))
    assert f.tcp("db", "other", 5432, 40001, flags=ACK) == ["other"], "db speaks first"
    assert f.tcp("other", "db", 40001, 5432, flags=ACK) == [], "other is still refused"
    assert f.tcp("web", "db", 40002, 5432, flags=ACK) == ["db"], "web, met mid-way, allowed"
    assert f.tcp("db", "web", 5432, 40002, flags=ACK) == ["web"]
    assert f.tcp("db", "other", 5000, 80) == ["other"], "what db opens is its own"
    assert f.tcp("other", "db", 80, 5000, flags=SYN | ACK) == ["db"], "and answered"


def test_narrowing_the_rule_ends_its_connections_and_an_equal_rule_keeps_them(snap):
    f = Fabric(with_policies(snap, db_policy(snap)))
    assert f.tcp("web", "db", 40000, 5432) == ["db"] and f.tcp("db", "web", 5432, 40000)
    # Replaced by an equal rule (a replace gives new rule ids): judged again, it passes.
    f.program(with_policies(snap, db_policy(snap, first_rule_id=2)))
    assert f.tcp("web", "db", 40000, 5432) == ["db"]
    assert f.tcp("db", "web", 5432, 40000) == ["web"]
    # Narrowed to another port: its next packets are dropped, the replies too.
    f.program(with_policies(snap, db_policy(snap, first_rule_id=3,
                                            ports=(PortRange("tcp", 5433),))))
    assert f.tcp("db", "web", 5432, 40000) == [], "a reply whose rule is gone"
    assert f.tcp("web", "db", 40000, 5432) == []
    assert f.tcp("web", "db", 40001, 5433) == ["db"], "what the narrowed rule allows"


def test_a_deleted_policy_leaves_the_endpoint_unrestricted_and_no_flow_behind(snap):
    before = {h: compile_host(snap, h, p) for h, p in host_ports(snap).items()}
    f = Fabric(with_policies(snap, db_policy(snap)))
    assert f.tcp("other", "db", 40000, 5432) == []
    f.program(with_policies(snap))
    assert f.tcp("other", "db", 40000, 5432) == ["db"]
    assert f.tables == before


def test_deny_outranks_allow_and_a_direction_no_policy_governs_stays_open(snap):
    everyone = Peer(cidr="0.0.0.0/0")
    open_db = Policy(1, "id-open", "open", selector(snap, "app", role="db"), ingress=(
        Rule(1, INGRESS, 0, (everyone,)),
        Rule(2, INGRESS, 1, (Peer(selector(snap, role="other")),), (), DENY)))
    f = Fabric(with_policies(snap, open_db))
    assert f.tcp("web", "db", 40000, 22) == ["db"], "anyone, on any port"
    assert f.tcp("other", "db", 40001, 22) == [], "but other: deny wins"
    assert f.tcp("db", "other", 5000, 80) == ["other"], "db's egress is governed by no policy"
    assert f.tcp("other", "db", 80, 5000) == ["db"], "and the reply comes back in"


def test_egress_rules_hold_on_what_the_selected_endpoint_sends(snap):
    web_out = Policy(1, "id-web", "web-out", selector(snap, "app", role="web"), egress=(
        Rule(7, EGRESS, 0, (Peer(cidr="10.0.0.11/32"),), (PortRange("tcp", 5000, 5500),)),))
    f = Fabric(with_policies(snap, web_out))
    assert named(f.snap, "db").ip == "10.0.0.11"
    assert f.tcp("web", "db", 40000, 5432) == ["db"], "in the port range, to the CIDR"
    assert f.tcp("db", "web", 5432, 40000) == ["web"], "the reply comes back in"
    assert f.tcp("web", "db", 40001, 5501) == [], "past end_port"
    assert f.tcp("web", "other", 40002, 5432) == [], "another address"
    assert f.tcp("other", "web", 40003, 80) == ["web"], "ingress no policy governs"


def test_a_new_selected_endpoint_comes_with_its_policy_flows_in_one_update(snap):
    from flows import HostFlows
    from flows.host_flows import touched_units
    from model.entities import Change
    base = with_policies(snap, db_policy(snap))
    host = "h2"
    table = HostFlows()
    ports = host_ports(base)
    table.rebuild(base, table.view_for(base, host, ports[host]))
    ep = Endpoint(99, "new-db", "db2", named(base, "db").network_id, host, "p99", "10.0.0.99",
                  "02:00:00:00:00:99", labels=labels_of({"role": "db"}))
    after = base.with_endpoint(ep)
    ports = host_ports(after)
    change = Change(frozenset({ep.network_id}), endpoints=frozenset({ep.id}))
    diff = table.update(after, table.view_for(after, host, ports[host]), touched_units(change))
    ofport = ports[host].endpoints[ep.id]
    added = {(f.table, f.priority): f for f in diff.add if dict(f.match).get("eth_dst") ==
             ep.mac or dict(f.match).get("reg2") == ep.seq}
    assert (20, 101) in added, "IPv4 to it goes through the ingress rules"
    assert added[(32, 100)].actions == (("output", ofport),)
    assert any(dict(f.match).get("reg2") == ep.seq and f.table == 30 for f in diff.add), \
        "and its rule's clause is in the same update"
    assert table.flows == compile_host(after, host, ports[host])


def test_a_rule_between_groups_costs_their_sum_not_their_product():
    """200 endpoints of one group, 200 of another, all on one host, and one rule with 3 ports:
    the conjunction costs N + M + K clause flows (and a few of the rule's own)."""
    from model import Store
    store = Store(":memory:")
    store.create_host("h1", "unix:/run/h1.sock", "192.0.2.1")
    store.create_network("big", "10.9.0.0/16")
    for group in ("a", "b"):
        for i in range(200):
            store.create_endpoint("big", "h1", name=f"{group}{i}")
    snap = store.snapshot()
    for ep in list(snap.endpoints.values()):
        snap = snap.relabelled(ep, labels_of({"app": ep.name[0]}))
    ports = tuple(PortRange("tcp", port) for port in (80, 443, 8080))
    policy = Policy(1, "id-a", "a", selector(snap, app="a"), ingress=(
        Rule(1, INGRESS, 0, (Peer(selector(snap, app="b")),), ports),))
    f = Fabric(snap.with_policies({policy.id: policy}))
    policy_flows = _policy_flow_count(f.tables["h1"])
    assert policy_flows == 200 + 200 + 3 + 3, "clauses, its decision and its two holds"
    assert policy_flows <= 500 < 200 * 200 * 3
    assert f.tcp("b17", "a5", 40000, 443) == ["a5"]
    assert f.tcp("b17", "a5", 40001, 22) == []
    assert f.tcp("a6", "a5", 40002, 443) == [], "a is no peer of its own rule"


def test_port_ranges_become_the_fewest_prefixes():
    assert port_prefixes(5432, 5432) == [(5432, 0xFFFF)]
    assert port_prefixes(8000, 8080) == [(8000, 0xFFC0), (8064, 0xFFF0), (8080, 0xFFFF)]
    covered = {v for value, mask in port_prefixes(1000, 2999)
               for v in range(value, value + (~mask & 0xFFFF) + 1)}
    assert covered == set(range(1000, 3000))


def _policy_flow_count(table) -> int:
    return sum(1 for f in table.values() if (decode_cookie(f.cookie) or ("",))[0] == "policy")



def test_an_ipv4_broadcast_reaches_no_tracked_endpoint(snap):
    f = Fabric(with_policies(snap, db_policy(snap)))
    other = named(f.snap, "other")
    bcast = Packet.udp(other.mac, "ff:ff:ff:ff:ff:ff", other.ip, "10.0.0.255", 5000, 5432)
    reached = f._send(other, bcast)
    assert "db" not in reached, "no rule admits a flood"
    assert {"web", "web2"} <= set(reached), "the untracked endpoints still get it"


def test_policy_holds_on_routed_traffic():
    """db in `back` admits web of `front`, a network routed with it; front's other endpoint,
    and the same address in a network of another router, are refused."""
    from tests.unit.routed_fabric import eps, net, routed_store, with_routers
    snap = with_routers(routed_store().snapshot())
    fa, fb = eps(snap, "front")
    ba = eps(snap, "back")[0]
    snap = snap.relabelled(fa, labels_of({"role": "web"}))
    snap = snap.relabelled(ba, labels_of({"role": "db"}))
    policy = Policy(1, "id-db", "db", selector(snap, "back", role="db"), ingress=(
        Rule(1, INGRESS, 0, (Peer(selector(snap, role="web")),), (PortRange("tcp", 5432),)),))
    snap = with_policies(snap, policy)
    sim, _ = build(snap)
    ba = snap.endpoints[ba.id]

    def routed(src, sport):
        gateway = net(snap, snap.networks[src.network_id].name).gateway_mac
        return [e for e, _ in sim.send(src.id, Packet.tcp(src.mac, gateway, src.ip, ba.ip,
                                                          sport, 5432))]
    assert routed(snap.endpoints[fa.id], 40000) == [ba.id], "web, routed from front"
    assert routed(snap.endpoints[fb.id], 40001) == [], "front's other endpoint"
    reply = Packet.tcp(ba.mac, net(snap, "back").gateway_mac, ba.ip, fa.ip, 5432, 40000,
                       tcp_flags_nxm=SYN | ACK)
    assert [e for e, _ in sim.send(ba.id, reply)] == [fa.id], "the routed reply"
