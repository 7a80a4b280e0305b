"""Security policies: who may talk to whom. The domain objects and which endpoints a selector
selects. Pure; the store validates requests into these and keeps them.

A policy selects endpoints by labels (``applies_to``) and, for each direction it has a rule
list for (``ingress``, ``egress``; an empty list denies everything), allows or denies what its
rules match. An endpoint no policy selects is unrestricted. Each rule has an ``id`` unique in
the fabric and never reused: it is written into the connections the rule admits (ct_mark for
egress, ct_label for ingress), so that a rule's counters and its revocation are its own.
Replacing a policy gives its rules new ids: connections they admitted are looked at again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from immutables import Map

from .entities import Endpoint

INGRESS = "ingress"
EGRESS = "egress"
DIRECTIONS = (INGRESS, EGRESS)
ALLOW = "allow"
DENY = "deny"
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}

Labels = tuple  # tuple[tuple[str, str], ...], sorted by key: hashable and comparable


def labels_of(mapping: Mapping[str, str] | None) -> Labels:
    return tuple(sorted((mapping or {}).items()))


@dataclass(frozen=True)
class Selector:
    """Endpoints carrying all of ``labels`` (none: every endpoint), in ``network`` (a network
    id) or, with None, in every network."""

    labels: Labels = ()
    network: str | None = None

    def selects(self, ep: Endpoint) -> bool:
        if self.network is not None and ep.network_id != self.network:
            return False
        have = dict(ep.labels)
        return all(have.get(k) == v for k, v in self.labels)


@dataclass(frozen=True)
class PortRange:
    protocol: str  # "tcp", "udp" or "icmp"
    port: int | None = None  # None: every port of the protocol (always None for icmp)
    end_port: int | None = None  # None: just ``port``

    @property
    def last(self) -> int | None:
        return self.end_port if self.end_port is not None else self.port


@dataclass(frozen=True)
class Peer:
    """The other end of a connection: endpoints a selector selects, or addresses (a CIDR)."""

    selector: Selector | None = None
    cidr: str | None = None


@dataclass(frozen=True)
class Rule:
    id: int  # unique in the fabric, never reused; 1 .. MAX_RULE_ID
    direction: str  # INGRESS or EGRESS
    index: int  # its place in its policy's list for the direction, from 0
    peers: tuple[Peer, ...]
    ports: tuple[PortRange, ...] = ()  # none: every protocol and port
    action: str = ALLOW


# Rule ids go into 32-bit conntrack marks and conjunction ids; the top value is kept for
# connections of an endpoint whose direction no policy restricts.
MAX_RULE_ID = 0xFFFFFFFE


@dataclass(frozen=True)
class Policy:
    seq: int
    id: str
    name: str
    applies_to: Selector
    ingress: tuple[Rule, ...] | None = None  # None: the policy does not govern ingress
    egress: tuple[Rule, ...] | None = None

    def rules(self, direction: str | None = None) -> tuple[Rule, ...]:
        if direction is None:
            return (self.ingress or ()) + (self.egress or ())
        return (self.ingress if direction == INGRESS else self.egress) or ()

    def governs(self, direction: str) -> bool:
        return (self.ingress if direction == INGRESS else self.egress) is not None


@dataclass(frozen=True)
class Guard:
    """What the policies selecting one endpoint make of it: the directions they govern (a
    governed direction denies what no rule allows) and the policies, by id."""

    ingress: bool
    egress: bool
    policies: tuple[str, ...]


class PolicyIndex:
    """Which policies select which endpoints, and which endpoints a peer selects, over one
    snapshot. Built once per set of policies (policies are few next to endpoints): policies
    are indexed by one label of their selector, so that finding an endpoint's policies does
    not walk every policy."""

    def __init__(self, policies: Mapping[str, Policy]):
        self.policies = policies
        self._by_label: dict[tuple[str, str], list[Policy]] = {}
        self._any_label: list[Policy] = []
        self.rule_policy: dict[int, tuple[Policy, Rule]] = {}
        for policy in policies.values():
            labels = policy.applies_to.labels
            if labels:
                self._by_label.setdefault(labels[0], []).append(policy)
            else:
                self._any_label.append(policy)
            for rule in policy.rules():
                self.rule_policy[rule.id] = (policy, rule)

    def selecting(self, ep: Endpoint) -> list[Policy]:
        """The policies whose ``applies_to`` selects ``ep``, by name."""
        candidates = list(self._any_label)
        for pair in ep.labels:
            candidates.extend(self._by_label.get(pair, ()))
        return sorted((p for p in candidates if p.applies_to.selects(ep)), key=lambda p: p.name)

    def guard(self, ep: Endpoint) -> Guard | None:
        """None: no policy selects the endpoint, it is unrestricted."""
        policies = self.selecting(ep)
        if not policies:
            return None
        return Guard(any(p.governs(INGRESS) for p in policies),
                     any(p.governs(EGRESS) for p in policies),
                     tuple(p.id for p in policies))


def selected_endpoints(selector: Selector, endpoints: Map, by_label: Map,
                       by_network: Map) -> Iterable[Endpoint]:
    """The endpoints ``selector`` selects. ``by_label``: (key, value) -> Map(id -> Endpoint);
    the smallest of its label sets is walked, not the fabric."""
    if selector.labels:
        sets = [by_label.get(pair) for pair in selector.labels]
        if any(s is None for s in sets):
            return []
        pool = min(sets, key=len).values()
    elif selector.network is not None:
        pool = by_network.get(selector.network, Map()).values()
    else:
        pool = endpoints.values()
    return [ep for ep in pool if selector.selects(ep)]
