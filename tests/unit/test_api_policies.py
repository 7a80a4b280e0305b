"""The REST contract of security policies and endpoint labels: every route, the JSON out, every
refusal with its JSON error, and nothing changed after one."""
from __future__ import annotations

import pytest

from api.schemas import EndpointView, PolicyView
from tests.unit.test_api import assert_error, client, populated  # noqa: F401 (fixtures)
from tests.unit.test_api_routing import guarded  # noqa: F401 (fixture)

WEB = {"selector": {"labels": {"app": "web"}}}


def web_policy(name="web", **directions) -> dict:
    return {"name": name, "applies_to": WEB, **directions}


@pytest.fixture
def labelled(populated):  # noqa: F811
    """h1, h2; red (10.0.0.0/29) and blue; web (red, h1, app=web) and db (red, h2)."""
    c = populated
    assert c.post("/v1/networks", json={"name": "blue", "subnet": "10.1.0.0/24"}).status_code \
        == 201
    c.web = c.post("/v1/endpoints", json={"network": "red", "host": "h1", "name": "web",
                                          "labels": {"app": "web"}}).json
    c.db = c.post("/v1/endpoints", json={"network": "red", "host": "h2", "name": "db"}).json
    return c


def state(c) -> tuple:
    return c.get("/v1/policies").json, c.get("/v1/endpoints").json


def test_endpoint_labels_in_and_out(labelled):
    c = labelled
    assert c.web["labels"] == {"app": "web"} and c.db["labels"] == {}
    assert EndpointView.model_validate(c.web).model_dump() == c.web
    r = c.patch(f"/v1/endpoints/{c.db['id']}", json={"labels": {"app": "db", "tier": "back"}})
    assert r.status_code == 200 and r.json == {**c.db, "labels": {"app": "db", "tier": "back"}}
    assert c.get(f"/v1/endpoints/{c.db['id']}").json == r.json
    r = c.patch(f"/v1/endpoints/{c.db['id']}", json={"labels": {"tier": "front"}})
    assert r.json["labels"] == {"tier": "front"}, "the whole set is replaced"
    assert [e["labels"] for e in c.get("/v1/endpoints").json] == [{"app": "web"},
                                                                  {"tier": "front"}]


def test_bad_labels_are_refused_and_change_nothing(labelled):
    c = labelled
    before = state(c)
    for labels, words in (({"-app": "x"}, ["labels key '-app'"]), ({"app": 5}, ["labels.app"]),
                          ({"app": "a b"}, ["labels.app value 'a b'"]), ([], ["labels"])):
        assert_error(c.patch(f"/v1/endpoints/{c.db['id']}", json={"labels": labels}), 400,
                     *words)
        assert_error(c.post("/v1/endpoints", json={"network": "red", "host": "h1",
                                                   "labels": labels}), 400, *words)
    assert_error(c.patch(f"/v1/endpoints/{c.db['id']}", json={}), 400, "labels")
    assert_error(c.patch(f"/v1/endpoints/{c.db['id']}", json={"labels": {}, "name": "x"}), 400,
                 "name")
    assert_error(c.patch("/v1/endpoints/nope", json={"labels": {}}), 404, "nope")
    assert state(c) == before


def test_policy_create_show_list_replace_delete(labelled):
    c = labelled
    body = web_policy(
        applies_to={**WEB, "network": "red"},
        ingress=[{"peers": [{"selector": {"labels": {"app": "db"}}, "network": "red"},
                            {"cidr": "192.0.2.0/24"}],
                  "ports": [{"protocol": "tcp", "port": 80},
                            {"protocol": "udp", "port": 5000, "end_port": 5010},
                            {"protocol": "icmp"}]}],
        egress=[])
    r = c.post("/v1/policies", json=body)
    assert r.status_code == 201, r.json
    policy = r.json
    assert policy == {
        "id": policy["id"], "name": "web", "applies_to": {**WEB, "network": "red"},
        "ingress": [{"id": 1, "action": "allow",
                     "peers": [{"selector": {"labels": {"app": "db"}}, "network": "red"},
                               {"cidr": "192.0.2.0/24"}],
                     "ports": body["ingress"][0]["ports"]}],
        "egress": []}
    assert PolicyView.model_validate(policy).model_dump(exclude_unset=True) == policy
    assert c.get(f"/v1/policies/{policy['id']}").json == policy == c.get("/v1/policies/web").json
    assert c.get("/v1/policies").json == [policy]

    r = c.put("/v1/policies/web", json={"name": "front", "applies_to": {"selector": {}},
                                        "egress": [{"peers": [{"cidr": "0.0.0.0/0"}],
                                                    "action": "deny"}]})
    assert r.status_code == 200
    assert r.json == {"id": policy["id"], "name": "front",
                      "applies_to": {"selector": {"labels": {}}},
                      "egress": [{"id": 2, "action": "deny", "peers": [{"cidr": "0.0.0.0/0"}],
                                  "ports": []}]}
    assert_error(c.get("/v1/policies/web"), 404, "policy 'web' does not exist")
    assert c.delete(f"/v1/policies/{policy['id']}").status_code == 204
    assert c.get("/v1/policies").json == []
    assert_error(c.delete("/v1/policies/front"), 404, "front")


BAD_POLICIES = [
    ({}, 400, ["name", "Field required"]),
    (web_policy(colour="red"), 400, ["colour"]),
    (web_policy(name="a b"), 400, ["name 'a b'"]),
    ({"name": "x", "applies_to": {"selector": {"labels": {"app": 5}}}}, 400,
     ["applies_to.selector.labels.app"]),
    (web_policy(ingress=None), 400, ["ingress"]),
    (web_policy(ingress=[{"peers": []}]), 400, ["ingress[0].peers must be a non-empty list"]),
    (web_policy(egress=[{"peers": [{"cidr": "10.0.0.1/8"}]}]), 400,
     ["egress[0].peers[0].cidr 10.0.0.1/8 has host bits set: write 10.0.0.0/8"]),
    (web_policy(ingress=[{"peers": [{"cidr": "0.0.0.0/0"}],
                          "ports": [{"protocol": "tcp", "port": 80, "end_port": 70000}]}]), 400,
     ["ingress[0].ports[0].end_port 70000 is not in 1..65535"]),
    (web_policy(ingress=[{"peers": [{"cidr": "0.0.0.0/0"}], "ports": [{"protocol": "gre"}]}]),
     400, ["protocol"]),
    (web_policy(ingress=[{"peers": [{"cidr": "0.0.0.0/0"}], "action": "drop"}]), 400,
     ["action"]),
    ({"name": "x", "applies_to": {**WEB, "network": "nope"}}, 404,
     ["applies_to.network: network 'nope' does not exist"]),
    (web_policy(egress=[{"peers": [{"selector": {}, "network": "nope"}]}]), 404,
     ["egress[0].peers[0].network", "'nope'"]),
    (web_policy("taken"), 409, ["policy 'taken' already exists"]),
]


def test_bad_policies_are_refused_and_change_nothing(labelled):
    c = labelled
    taken = c.post("/v1/policies", json=web_policy("taken")).json
    c.post("/v1/policies", json=web_policy("other"))
    before = state(c)
    for body, status, words in BAD_POLICIES:
        assert_error(c.post("/v1/policies", json=body), status, *words)
        assert_error(c.put("/v1/policies/other", json=body), status, *words)
    assert_error(c.put("/v1/policies/nope", json=web_policy("nope")), 404, "policy 'nope'")
    assert_error(c.post("/v1/policies", data="{}"), 415)
    assert state(c) == before
    # Rule ids refused requests did not use are the next ones given.
    r = c.put(f"/v1/policies/{taken['id']}", json=web_policy("taken", egress=[
        {"peers": [{"cidr": "0.0.0.0/0"}]}]))
    assert r.json["egress"][0]["id"] == 1


def test_a_network_a_policy_names_is_not_deleted(labelled):
    c = labelled
    c.post("/v1/policies", json={"name": "p", "applies_to": {"selector": {}, "network": "blue"}})
    assert_error(c.delete("/v1/networks/blue"), 409, "named by policies p")
    assert c.delete("/v1/policies/p").status_code == 204
    assert c.delete("/v1/networks/blue").status_code == 204


def test_a_host_token_labels_its_own_endpoints_and_writes_no_policy(guarded):  # noqa: F811
    c, h1 = guarded, guarded.h1
    mine, theirs = guarded.eps
    r = c.patch(f"/v1/endpoints/{mine}", headers=h1, json={"labels": {"app": "web"}})
    assert r.status_code == 200 and r.json["labels"] == {"app": "web"}
    assert_error(c.patch(f"/v1/endpoints/{theirs}", headers=h1, json={"labels": {}}), 403,
                 "host h1")
    for refused in (lambda: c.post("/v1/policies", headers=h1, json=web_policy()),
                    lambda: c.put("/v1/policies/web", headers=h1, json=web_policy()),
                    lambda: c.delete("/v1/policies/web", headers=h1)):
        assert_error(refused(), 403, "admin token")
    assert c.post("/v1/policies", headers=c.admin, json=web_policy()).status_code == 201
    assert [p["name"] for p in c.get("/v1/policies", headers=h1).json] == ["web"]
    assert c.get("/v1/policies/web", headers=h1).status_code == 200


def test_the_openapi_document_has_the_policy_routes(client):  # noqa: F811
    paths = client.get("/v1/openapi.json").json["paths"]
    assert set(paths["/v1/policies"]) == {"get", "post"}
    assert set(paths["/v1/policies/{ref}"]) == {"get", "put", "delete"}
    assert "patch" in paths["/v1/endpoints/{endpoint_id}"]
