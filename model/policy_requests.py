"""A security policy as asked for (request JSON) turned into the model's objects, checked
whole before anything is kept. Pure: networks are resolved through the lookup the caller
gives. Every refusal names the field it is about, e.g. ``ingress[0].ports[1].end_port``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .entities import Network
from .errors import InvalidRequest, NotFound
from .labels import parse_labels
from .policy import (ALLOW, DENY, DIRECTIONS, EGRESS, INGRESS, PROTOCOLS, Peer, Policy,
                     PortRange, Rule, Selector)
from .publishing import PORT_MAX, PORT_MIN
from .routing import parse_destination

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ACTIONS = (ALLOW, DENY)

NetworkLookup = Callable[[str], Network]  # by id, name or alias; NotFound if there is none


@dataclass(frozen=True)
class RuleDraft:
    peers: tuple[Peer, ...]
    ports: tuple[PortRange, ...]
    action: str


@dataclass(frozen=True)
class PolicyDraft:
    """A checked policy whose rules have no ids yet: the store numbers them as it keeps it."""

    name: str
    applies_to: Selector
    ingress: tuple[RuleDraft, ...] | None
    egress: tuple[RuleDraft, ...] | None

    @property
    def rule_count(self) -> int:
        return len(self.ingress or ()) + len(self.egress or ())

    def numbered(self, seq: int, policy_id: str, rule_ids: Iterator[int]) -> Policy:
        """The policy, its rules given ids from ``rule_ids`` in order (ingress first)."""
        def rules(direction: str, drafts: tuple[RuleDraft, ...] | None):
            if drafts is None:
                return None
            return tuple(Rule(next(rule_ids), direction, index, d.peers, d.ports, d.action)
                         for index, d in enumerate(drafts))
        return Policy(seq, policy_id, self.name, self.applies_to,
                      rules(INGRESS, self.ingress), rules(EGRESS, self.egress))


def parse_policy(body: Any, network_of: NetworkLookup) -> PolicyDraft:
    """``{name, applies_to, ingress?, egress?}``: a direction given (even as []) is governed,
    one left out is not."""
    body = _object(body, "", ("name", "applies_to") + DIRECTIONS, ("name", "applies_to"))
    name = body["name"]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidRequest(f"name {name!r} is not 1 to 64 of A-Z a-z 0-9 _ . - starting "
                             f"with a letter or digit")
    selector = _selector(body["applies_to"], "applies_to", network_of)
    ingress, egress = (_rules(body[d], d, network_of) if d in body else None
                       for d in DIRECTIONS)
    return PolicyDraft(name, selector, ingress, egress)


def _rules(value: Any, field: str, network_of: NetworkLookup) -> tuple[RuleDraft, ...]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{field} must be a list of rules (an empty one denies "
                             f"everything; leave {field} out not to govern it)")
    return tuple(_rule(rule, f"{field}[{i}]", network_of) for i, rule in enumerate(value))


def _rule(value: Any, field: str, network_of: NetworkLookup) -> RuleDraft:
    rule = _object(value, field, ("peers", "ports", "action"), ("peers",))
    peers = rule["peers"]
    if not isinstance(peers, list) or not peers:
        raise InvalidRequest(f"{field}.peers must be a non-empty list (anyone: "
                             f'[{{"cidr": "0.0.0.0/0"}}])')
    ports = rule.get("ports", [])
    if not isinstance(ports, list):
        raise InvalidRequest(f"{field}.ports must be a list (none: every protocol and port)")
    action = rule.get("action", ALLOW)
    if action not in ACTIONS:
        raise InvalidRequest(f"{field}.action {action!r} is not one of {', '.join(ACTIONS)}")
    return RuleDraft(tuple(_peer(p, f"{field}.peers[{i}]", network_of)
                           for i, p in enumerate(peers)),
                     tuple(_port_range(p, f"{field}.ports[{i}]") for i, p in enumerate(ports)),
                     action)


def _peer(value: Any, field: str, network_of: NetworkLookup) -> Peer:
    peer = _object(value, field, ("selector", "network", "cidr"))
    if ("cidr" in peer) == ("selector" in peer):
        raise InvalidRequest(f"{field} must have either selector (with network, optionally) "
                             f"or cidr")
    if "cidr" in peer:
        if "network" in peer:
            raise InvalidRequest(f"{field}: network goes with a selector, not a cidr")
        return Peer(cidr=parse_destination(peer["cidr"], f"{field}.cidr"))
    return Peer(selector=_selector(peer, field, network_of))


def _selector(value: Any, field: str, network_of: NetworkLookup) -> Selector:
    """``{selector: {labels}, network?}``: the endpoints carrying every label (none: all), of
    the network given or of every network."""
    outer = _object(value, field, ("selector", "network", "cidr"), ("selector",))
    if "cidr" in outer:
        raise InvalidRequest(f"{field} selects endpoints: a cidr has no place here")
    inner = _object(outer["selector"], f"{field}.selector", ("labels",))
    labels = parse_labels(inner.get("labels", {}), f"{field}.selector.labels")
    network = None
    if "network" in outer:
        ref = outer["network"]
        if not isinstance(ref, str):
            raise InvalidRequest(f"{field}.network {ref!r} is not a network id or name")
        try:
            network = network_of(ref).id
        except NotFound as exc:
            raise NotFound(f"{field}.network: {exc}") from None
    return Selector(labels, network)


def _port_range(value: Any, field: str) -> PortRange:
    ports = _object(value, field, ("protocol", "port", "end_port"), ("protocol",))
    protocol = ports["protocol"]
    if protocol not in PROTOCOLS:
        raise InvalidRequest(f"{field}.protocol {protocol!r} is not one of "
                             f"{', '.join(PROTOCOLS)}")
    port, end_port = ports.get("port"), ports.get("end_port")
    if protocol == "icmp" and (port is not None or end_port is not None):
        raise InvalidRequest(f"{field}: icmp has no ports")
    for name, number in (("port", port), ("end_port", end_port)):
        if number is not None and (isinstance(number, bool) or not isinstance(number, int)
                                   or not PORT_MIN <= number <= PORT_MAX):
            raise InvalidRequest(f"{field}.{name} {number!r} is not in {PORT_MIN}..{PORT_MAX}")
    if end_port is not None:
        if port is None:
            raise InvalidRequest(f"{field}.end_port needs port, the first of the range")
        if end_port < port:
            raise InvalidRequest(f"{field}.end_port {end_port} is below port {port}")
    return PortRange(protocol, port, end_port)


def _object(value: Any, field: str, known: tuple[str, ...],
            required: tuple[str, ...] = ()) -> dict:
    where = field or "the body"
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be a JSON object")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise InvalidRequest(f"{where} has unknown field {unknown[0]!r} (known: "
                             f"{', '.join(known)})")
    missing = [name for name in required if name not in value]
    if missing:
        raise InvalidRequest(f"{f'{field}.' if field else ''}{missing[0]} is required")
    return value
