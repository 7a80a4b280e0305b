"""Flows as operators read them: ovs-ofctl notation, table names, owners by name."""
from __future__ import annotations

from flows import Flow
from openflow.notation import format_actions, format_match
from flows.pipeline import TABLE_BY_ID, decode_cookie
from model import Snapshot


class Owners:
    """Cookie -> owner, looked up in one snapshot of the store."""

    def __init__(self, snap: Snapshot):
        self.networks = {n.seq: n for n in snap.networks.values()}
        self.endpoints = {e.seq: e for e in snap.endpoints.values()}
        self.routers = {r.seq: r for r in snap.routers.values()}
        self.hosts = {h.seq: h for h in snap.hosts.values()}
        self.rules = snap.policy_index.rule_policy if snap.policy_index is not None else {}

    def of(self, cookie: int) -> dict:
        decoded = decode_cookie(cookie)
        if decoded is None:
            return {"kind": "unknown", "id": None, "name": None}
        kind, seq = decoded
        if kind == "policy":
            return self._rule(seq)
        owner = {"network": self.networks, "endpoint": self.endpoints,
                 "router": self.routers, "host": self.hosts}.get(kind, {}).get(seq)
        # A host is known by its name alone.
        return {"kind": kind, "id": getattr(owner, "id", owner.name) if owner else None,
                "name": owner.name if owner else None}

    def _rule(self, rule_id: int) -> dict:
        """A policy flow's owner: the policy, and the rule of it the flow is of."""
        policy, rule = self.rules.get(rule_id, (None, None))
        if policy is None:
            return {"kind": "policy", "id": None, "name": None,
                    "rule": None}
        return {"kind": "policy", "id": policy.id, "name": policy.name,
                "rule": {"id": rule.id, "direction": rule.direction, "index": rule.index,
                         "action": rule.action}}


def table_name(table_id: int) -> str:
    table = TABLE_BY_ID.get(table_id)
    return table.name if table else f"table{table_id}"


def flow_view(host: str, flow: Flow, owners: Owners, stats=None) -> dict:
    """One flow; ``stats`` (an OFPFlowStats) adds the switch's counters."""
    view = {"host": host, "table": flow.table, "table_name": table_name(flow.table),
            "priority": flow.priority, "match": format_match(flow),
            "actions": format_actions(flow), "cookie": hex(flow.cookie),
            "owner": owners.of(flow.cookie), "idle_timeout": 0, "hard_timeout": 0}
    if stats is not None:
        view |= {"packets": stats.packet_count, "bytes": stats.byte_count,
                 "duration_s": round(stats.duration_sec + stats.duration_nsec / 1e9, 3),
                 "idle_timeout": stats.idle_timeout, "hard_timeout": stats.hard_timeout}
    return view
