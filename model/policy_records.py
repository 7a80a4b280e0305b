"""A policy as the store keeps it: JSON of its selectors (networks by id) and its rules with
their ids, read back whole. Its seq, id and name are columns of their own."""
from __future__ import annotations

from typing import Any

from .policy import DIRECTIONS, Peer, Policy, PortRange, Rule, Selector, labels_of


def record_of(policy: Policy) -> dict:
    record: dict[str, Any] = {"applies_to": _selector(policy.applies_to)}
    for direction in DIRECTIONS:
        if policy.governs(direction):
            record[direction] = [_rule(r) for r in policy.rules(direction)]
    return record


def policy_from_record(seq: int, policy_id: str, name: str, record: dict) -> Policy:
    rules = {direction: tuple(
        Rule(r["id"], direction, index, tuple(_peer_from(p) for p in r["peers"]),
             tuple(PortRange(*p) for p in r["ports"]), r["action"])
        for index, r in enumerate(record[direction]))
        for direction in DIRECTIONS if direction in record}
    return Policy(seq, policy_id, name, _selector_from(record["applies_to"]), **rules)


def networks_named(policy: Policy) -> set[str]:
    """The ids of the networks the policy's selectors name."""
    selectors = [policy.applies_to] + [p.selector for r in policy.rules() for p in r.peers]
    return {s.network for s in selectors if s is not None and s.network is not None}


def _selector(selector: Selector) -> dict:
    return {"labels": dict(selector.labels), "network": selector.network}


def _selector_from(record: dict) -> Selector:
    return Selector(labels_of(record["labels"]), record["network"])


def _rule(rule: Rule) -> dict:
    return {"id": rule.id, "action": rule.action,
            "peers": [{"cidr": p.cidr} if p.cidr is not None else _selector(p.selector)
                      for p in rule.peers],
            "ports": [[p.protocol, p.port, p.end_port] for p in rule.ports]}


def _peer_from(record: dict) -> Peer:
    if "cidr" in record:
        return Peer(cidr=record["cidr"])
    return Peer(selector=_selector_from(record))
