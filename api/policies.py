"""Security policies over HTTP: each view turns a request into a call of the fabric's
service, with the token's scope, and its answer into JSON. Writes need the admin token."""
from __future__ import annotations

from typing import Mapping

from controller.service import FabricService
from model import Network
from model.policy import DIRECTIONS, Peer, Policy, PortRange, Rule, Selector

from . import scopes
from .schemas import PolicyCreate, PolicyView
from .spec import Api


def policy_json(policy: Policy, networks: Mapping[str, Network]) -> dict:
    """As asked for, normalized: networks by name, every rule with its id, action and ports;
    a direction the policy does not govern is absent."""
    out = {"id": policy.id, "name": policy.name,
           "applies_to": _selector_json(policy.applies_to, networks)}
    for direction in DIRECTIONS:
        if policy.governs(direction):
            out[direction] = [_rule_json(r, networks) for r in policy.rules(direction)]
    return out


def _rule_json(rule: Rule, networks: Mapping[str, Network]) -> dict:
    return {"id": rule.id, "action": rule.action,
            "peers": [_peer_json(p, networks) for p in rule.peers],
            "ports": [_port_json(p) for p in rule.ports]}


def _peer_json(peer: Peer, networks: Mapping[str, Network]) -> dict:
    if peer.cidr is not None:
        return {"cidr": peer.cidr}
    return _selector_json(peer.selector, networks)


def _selector_json(selector: Selector, networks: Mapping[str, Network]) -> dict:
    out: dict = {"selector": {"labels": dict(selector.labels)}}
    if selector.network is not None:
        out["network"] = networks[selector.network].name
    return out


def _port_json(ports: PortRange) -> dict:
    fields = (("protocol", ports.protocol), ("port", ports.port), ("end_port", ports.end_port))
    return {name: value for name, value in fields if value is not None}


def _request(body: PolicyCreate) -> dict:
    """The body as sent: a direction left out stays out (it is not governed)."""
    return body.model_dump(exclude_unset=True)


def register(api: Api, service: FabricService) -> None:
    store = service.store

    def answer(policy: Policy) -> dict:
        return policy_json(policy, store.snapshot().networks)

    @api.route("POST", "/v1/policies", summary="Create a security policy; answers once the "
               "hosts of the endpoints it selects have confirmed (at most 5 s)",
               tag="policies", body=PolicyCreate, response=PolicyView, status=201,
               errors=(404, 409))
    def create_policy(body: PolicyCreate):
        return answer(service.create_policy(scopes.current(), _request(body)))

    @api.route("GET", "/v1/policies", summary="List security policies, in the order made",
               tag="policies", response=list[PolicyView])
    def list_policies():
        networks = store.snapshot().networks
        return [policy_json(p, networks) for p in service.policies()]

    @api.route("GET", "/v1/policies/{ref}", summary="One security policy, by id or name",
               tag="policies", response=PolicyView, errors=(404,))
    def get_policy(ref):
        return answer(service.policy(ref))

    @api.route("PUT", "/v1/policies/{ref}", summary="Replace a security policy (same body as "
               "POST); every rule gets a new id", tag="policies", body=PolicyCreate,
               response=PolicyView, errors=(404, 409))
    def replace_policy(ref, body: PolicyCreate):
        return answer(service.replace_policy(scopes.current(), ref, _request(body)))

    @api.route("DELETE", "/v1/policies/{ref}", summary="Delete a security policy",
               tag="policies", status=204, errors=(404,))
    def delete_policy(ref):
        service.delete_policy(scopes.current(), ref)
