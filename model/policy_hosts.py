"""Which hosts a security policy write or a relabel concerns: those where the endpoints whose
policing changes live. Pure, over one snapshot; the service waits for these hosts."""
from __future__ import annotations

from typing import Iterable

from .entities import Endpoint, Snapshot
from .policy import Policy, Selector, selected_endpoints


def policy_hosts(snap: Snapshot, policies: Iterable[Policy]) -> set[str]:
    """The hosts of the endpoints the policies select (a policy as it was and as it is: its
    endpoints before and after the write)."""
    return {ep.host for p in policies for ep in _selected(snap, p.applies_to)}


def relabel_hosts(snap: Snapshot, before: Endpoint, after: Endpoint) -> set[str]:
    """The endpoint's own host, and the hosts of the endpoints selected by every policy that
    selects it, or has it as a peer, with its old labels or its new ones."""
    def concerns(policy: Policy) -> bool:
        selectors = [policy.applies_to] + [peer.selector for rule in policy.rules()
                                           for peer in rule.peers if peer.selector is not None]
        return any(s.selects(ep) for s in selectors for ep in (before, after))
    return {after.host} | policy_hosts(snap, filter(concerns, snap.policies.values()))


def _selected(snap: Snapshot, selector: Selector) -> Iterable[Endpoint]:
    return selected_endpoints(selector, snap.endpoints, snap.endpoints_by_label,
                              snap.endpoints_by_network)
