"""Where a security policy is in force and what its rules have done. Pure: the tables are
passed in.

A host concerns a policy while an endpoint the policy selects lives there. The policy is
*realized* on a host when every flow of its rules that the host should hold is installed as
it should be (the switch confirmed it: the session's copy of the installed table is what the
switch acknowledged); its cost there is the number of those flows. A clause flow that two
rules share is counted once, for the first of them. A rule's packets and bytes are the
counters of its flows on every host: a conjunction's clauses count nothing, its decision and
the flows that pass its established connections count what the rule allowed or denied.
"""
from __future__ import annotations

from dataclasses import dataclass

from flows.pipeline import decode_cookie
from model.policy import Policy


@dataclass
class HostTables:
    desired: dict | None  # None: the host's view is not ready (not connected)
    installed: dict | None  # what the switch confirmed; None: not connected
    stats: list | None  # OFPFlowStats read from the switch; None: not readable


def _rule_of(cookie: int, rule_ids: set[int]) -> int | None:
    decoded = decode_cookie(cookie)
    if decoded is None or decoded[0] != "policy" or decoded[1] not in rule_ids:
        return None
    return decoded[1]


def policy_status(policy: Policy, tables: dict[str, HostTables]) -> dict:
    rule_ids = {r.id for r in policy.rules()}
    counters = {rule_id: [0, 0] for rule_id in rule_ids}
    hosts = []
    for host in sorted(tables):
        t = tables[host]
        mine = {} if t.desired is None else \
            {k: f for k, f in t.desired.items() if _rule_of(f.cookie, rule_ids) is not None}
        realized = t.desired is not None and t.installed is not None and all(
            t.installed.get(k) is not None and t.installed[k].body == f.body
            for k, f in mine.items())
        hosts.append({"host": host, "realized": realized, "flows": len(mine)})
        for s in t.stats or ():
            rule_id = _rule_of(s.cookie, rule_ids)
            if rule_id is not None:
                counters[rule_id][0] += s.packet_count
                counters[rule_id][1] += s.byte_count
    rules = [{"id": r.id, "direction": r.direction, "index": r.index, "action": r.action,
              "packets": counters[r.id][0], "bytes": counters[r.id][1]}
             for r in policy.rules()]
    return {"policy": {"id": policy.id, "name": policy.name}, "hosts": hosts, "rules": rules}
