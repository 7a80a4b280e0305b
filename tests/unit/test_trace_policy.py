"""The trace through security policies, over tables as the switches would report them: it
follows a new connection through conntrack and names the policy and the rule that allowed or
dropped it, or says that no rule allowed it."""
from __future__ import annotations

import pytest

from flows import compile_host
from harness.simfabric import flow_stats, host_ports
from inspection.trace import LiveHost, trace
from model.policy import DENY, INGRESS, Peer, Policy, Rule
from tests.unit.policy_fabric import db_policy, labelled, named, policy_store, selector, \
    with_policies


@pytest.fixture
def snap():
    snap = labelled(policy_store().snapshot())
    web_only = Policy(2, "id-no-other", "no-other", selector(snap, "app", role="web"),
                      ingress=(Rule(5, INGRESS, 0, (Peer(cidr="0.0.0.0/0"),)),
                               Rule(6, INGRESS, 1, (Peer(selector(snap, role="other")),), (),
                                    DENY)))
    return with_policies(snap, db_policy(snap), web_only)


def live(snap):
    ports = host_ports(snap)
    return {h: LiveHost(flow_stats(compile_host(snap, h, ports[h])), ports[h])
            for h in snap.hosts}


def test_an_allowed_connection_names_its_policy_and_rule(snap):
    web, db = named(snap, "web"), named(snap, "db")
    verdict = trace(snap, web.id, db.name, "tcp", 5432, live(snap))["verdict"]
    assert verdict["result"] == "delivered" and verdict["endpoints"] == [db.id]
    [taken] = verdict["policies"]
    assert taken | {"policy_id": None} == {
        "policy": "db", "policy_id": None, "rule": 1, "direction": "ingress", "index": 0,
        "action": "allow", "verdict": "allowed", "established": False, "host": "h2"}
    assert "allowed by policy db (ingress rule 0, allow) on h2" in verdict["reason"]


def test_no_rule_allowing_it_is_said_with_the_policies_that_select(snap):
    other, db = named(snap, "other"), named(snap, "db")
    verdict = trace(snap, other.id, db.name, "tcp", 5432, live(snap))["verdict"]
    assert verdict["result"] == "dropped" and verdict["table_name"] == "ingress_rules"
    assert verdict["host"] == "h2"
    assert verdict["reason"].startswith("no rule of the policies selecting db (db) allows it")
    verdict = trace(snap, db.id, other.name, "tcp", 80, live(snap))["verdict"]
    assert verdict["table_name"] == "egress_rules" and verdict["host"] == "h2"
    assert "selecting db (db)" in verdict["reason"] and "to send" in verdict["reason"]


def test_a_deny_rule_is_named(snap):
    other, web = named(snap, "other"), named(snap, "web")
    verdict = trace(snap, other.id, web.name, "udp", 53, live(snap))["verdict"]
    assert verdict["result"] == "dropped"
    assert verdict["reason"] == "denied by policy no-other (ingress rule 1, deny) on h1"
    assert verdict["policies"][0]["rule"] == 6
    verdict = trace(snap, named(snap, "db").id, web.name, "udp", 53, live(snap))["verdict"]
    assert verdict["result"] == "dropped", "db may send nothing: its egress list is empty"
    verdict = trace(snap, named(snap, "web2").id, web.name, "udp", 53, live(snap))["verdict"]
    assert verdict["result"] == "delivered" and "no-other (ingress rule 0" in verdict["reason"]


def test_the_status_counts_a_policys_flows_per_host_and_its_rules_counters(snap):
    from inspection.policy_status import HostTables, policy_status
    from model.policy_hosts import policy_hosts
    policy = snap.policies["id-db"]
    assert policy_hosts(snap, [policy]) == {"h2"}
    ports = host_ports(snap)
    desired = compile_host(snap, "h2", ports["h2"])
    stats = flow_stats(desired)
    for s in stats:
        if s.cookie >> 56 == 7 and s.cookie & 0xFFFFFFFF == 1:
            s.packet_count, s.byte_count = 3, 300
    status = policy_status(policy, {"h2": HostTables(desired, dict(desired), stats)})
    flows = [f for f in desired.values() if f.cookie >> 56 == 7 and f.cookie & 0xFFFF == 1]
    assert status["hosts"] == [{"host": "h2", "realized": True, "flows": len(flows)}]
    assert len(flows) >= 5, "web2 and web as clauses, two ports, a decision, two holds"
    [rule] = status["rules"]
    assert rule == {"id": 1, "direction": "ingress", "index": 0, "action": "allow",
                    "packets": 3 * len(flows), "bytes": 300 * len(flows)}
    missing = dict(desired)
    del missing[flows[0].key]
    status = policy_status(policy, {"h2": HostTables(desired, missing, None),
                                    "h3": HostTables(None, None, None)})
    assert [h["realized"] for h in status["hosts"]] == [False, False]
