"""Policy requests checked into the model's objects: every refusal names the field at fault."""
from __future__ import annotations

import itertools

import pytest

from model import InvalidRequest, NotFound
from model.entities import Network
from model.policy import Peer, PortRange, Selector
from model.policy_requests import parse_policy

RED = Network(1, "net-red", "red", "10.0.0.0/24", "10.0.0.1", 100, 1450)


def network_of(ref: str) -> Network:
    if ref in ("red", "net-red"):
        return RED
    raise NotFound(f"network {ref!r} does not exist")


def parse(body):
    return parse_policy(body, network_of)


def policy(**fields):
    return {"name": "p", "applies_to": {"selector": {"labels": {"app": "web"}}}, **fields}


def rule(**fields):
    return {"peers": [{"cidr": "0.0.0.0/0"}], **fields}


def test_a_full_policy_is_read_and_numbered_ingress_first():
    draft = parse(policy(
        applies_to={"selector": {"labels": {"b": "2", "a": "1"}}, "network": "red"},
        egress=[rule(action="deny", ports=[{"protocol": "icmp"}])],
        ingress=[{"peers": [{"selector": {}}, {"selector": {"labels": {"x": ""}},
                                                "network": "net-red"}],
                  "ports": [{"protocol": "udp", "port": 53},
                            {"protocol": "tcp", "port": 1, "end_port": 65535}]}]))
    assert draft.applies_to == Selector((("a", "1"), ("b", "2")), "net-red")
    p = draft.numbered(7, "pid", itertools.count(40))
    assert (p.seq, p.id, p.name) == (7, "pid", "p")
    ingress, = p.ingress
    assert (ingress.id, ingress.direction, ingress.index, ingress.action) == \
        (40, "ingress", 0, "allow")
    assert ingress.peers == (Peer(selector=Selector((), None)),
                             Peer(selector=Selector((("x", ""),), "net-red")))
    assert ingress.ports == (PortRange("udp", 53), PortRange("tcp", 1, 65535))
    egress, = p.egress
    assert (egress.id, egress.action, egress.ports) == (41, "deny", (PortRange("icmp"),))


def test_directions_left_out_are_none_empty_ones_are_empty():
    assert (parse(policy()).ingress, parse(policy()).egress) == (None, None)
    draft = parse(policy(ingress=[], egress=[rule()]))
    assert draft.ingress == () and len(draft.egress) == 1 and draft.rule_count == 1
    assert parse(policy(ingress=[rule(ports=[])])).ingress[0].ports == ()


@pytest.mark.parametrize("body, message", [
    ([], "the body must be a JSON object"),
    ({"applies_to": {"selector": {}}}, "name is required"),
    (policy(name="-x"), "name '-x' is not 1 to 64"),
    (policy(name="x" * 65), "is not 1 to 64"),
    (policy(colour="red"), "the body has unknown field 'colour'"),
    ({"name": "p"}, "applies_to is required"),
    (policy(applies_to={}), "applies_to.selector is required"),
    (policy(applies_to={"selector": {"labels": {"app": "a b"}}}),
     "applies_to.selector.labels.app value 'a b'"),
    (policy(applies_to={"selector": {"labels": ["app"]}}),
     "applies_to.selector.labels must be a JSON object"),
    (policy(applies_to={"selector": {"label": {}}}),
     "applies_to.selector has unknown field 'label'"),
    (policy(applies_to={"selector": {}, "cidr": "10.0.0.0/8"}), "applies_to selects endpoints"),
    (policy(applies_to={"selector": {}, "network": 5}), "applies_to.network 5 is not"),
    (policy(ingress={}), "ingress must be a list of rules"),
    (policy(egress=None), "egress must be a list of rules"),
    (policy(ingress=["x"]), "ingress[0] must be a JSON object"),
    (policy(ingress=[{}]), "ingress[0].peers is required"),
    (policy(ingress=[{"peers": []}]), "ingress[0].peers must be a non-empty list"),
    (policy(egress=[rule(), rule(action="reject")]),
     "egress[1].action 'reject' is not one of allow, deny"),
    (policy(egress=[rule(ports={})]), "egress[0].ports must be a list"),
    (policy(ingress=[{"peers": [{}]}]), "ingress[0].peers[0] must have either selector"),
    (policy(ingress=[{"peers": [{"cidr": "10.0.0.0/8", "selector": {}}]}]),
     "ingress[0].peers[0] must have either"),
    (policy(ingress=[{"peers": [{"cidr": "10.0.0.0/8", "network": "red"}]}]),
     "ingress[0].peers[0]: network goes with a selector"),
    (policy(ingress=[{"peers": [{"cidr": "10.0.0.1/8"}]}]),
     "ingress[0].peers[0].cidr 10.0.0.1/8 has host bits set: write 10.0.0.0/8"),
    (policy(ingress=[{"peers": [{"cidr": "10.0.0.1"}]}]),
     "ingress[0].peers[0].cidr '10.0.0.1' has no prefix length"),
    (policy(ingress=[{"peers": [{"cidr": "fe80::/64"}]}]), "is not an IPv4 CIDR"),
    (policy(ingress=[{"peers": [{"cidr": 10}]}]), "cidr 10 is not an IPv4 CIDR"),
    (policy(ingress=[{"peers": [{"cidr": "0.0.0.0/0"}, {"selector": {"labels": {"": ""}}}]}]),
     "ingress[0].peers[1].selector.labels key ''"),
    (policy(ingress=[rule(ports=[{"port": 80}])]), "ingress[0].ports[0].protocol is required"),
    (policy(ingress=[rule(ports=[{"protocol": "sctp"}])]),
     "ingress[0].ports[0].protocol 'sctp' is not one of tcp, udp, icmp"),
    (policy(ingress=[rule(ports=[{"protocol": "tcp", "port": 80},
                                 {"protocol": "tcp", "port": 80, "end_port": 70000}])]),
     "ingress[0].ports[1].end_port 70000 is not in 1..65535"),
    (policy(ingress=[rule(ports=[{"protocol": "udp", "port": 0}])]),
     "ingress[0].ports[0].port 0 is not in 1..65535"),
    (policy(ingress=[rule(ports=[{"protocol": "udp", "port": True}])]),
     "ingress[0].ports[0].port True is not in 1..65535"),
    (policy(ingress=[rule(ports=[{"protocol": "udp", "port": "53"}])]),
     "ingress[0].ports[0].port '53' is not in"),
    (policy(ingress=[rule(ports=[{"protocol": "tcp", "end_port": 90}])]),
     "ingress[0].ports[0].end_port needs port"),
    (policy(ingress=[rule(ports=[{"protocol": "tcp", "port": 90, "end_port": 80}])]),
     "ingress[0].ports[0].end_port 80 is below port 90"),
    (policy(ingress=[rule(ports=[{"protocol": "icmp", "port": 8}])]),
     "ingress[0].ports[0]: icmp has no ports"),
    (policy(ingress=[rule(ports=[{"protocol": "tcp", "to": 8}])]),
     "ingress[0].ports[0] has unknown field 'to'"),
])
def test_each_mistake_is_refused_naming_its_field(body, message):
    with pytest.raises(InvalidRequest) as raised:
        parse(body)
    assert message in str(raised.value)


@pytest.mark.parametrize("body, message", [
    (policy(applies_to={"selector": {}, "network": "blue"}),
     "applies_to.network: network 'blue' does not exist"),
    (policy(egress=[rule(), {"peers": [{"selector": {}, "network": "blue"}]}]),
     "egress[1].peers[0].network: network 'blue' does not exist"),
])
def test_an_unknown_network_is_not_found(body, message):
    with pytest.raises(NotFound) as raised:
        parse(body)
    assert str(raised.value) == message
