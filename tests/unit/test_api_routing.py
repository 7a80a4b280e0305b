"""The REST contract of routers, published ports, network egress and a host's egress address:
every route, every refusal with its JSON error, and nothing changed after one."""
from __future__ import annotations

import pytest

from api.app import create_app
from controller.fabric import Fabric
from model import Store
from security import tokens
from tests.unit.test_api import assert_error, client, populated  # noqa: F401 (fixtures)

TOKEN = "admin-token-for-routing-tests"


@pytest.fixture
def routed(populated):  # noqa: F811
    """h1, h2; red (10.0.0.0/29) and green (10.2.0.0/24) on router r1, blue (10.0.0.0/24) on
    none; endpoint fw in red on h1."""
    c = populated
    assert c.post("/v1/networks", json={"name": "green", "subnet": "10.2.0.0/24"}).status_code == 201
    assert c.post("/v1/networks", json={"name": "blue", "subnet": "10.0.0.0/24"}).status_code == 201
    assert c.post("/v1/routers", json={"name": "r1"}).status_code == 201
    for network in ("red", "green"):
        assert c.post("/v1/routers/r1/networks", json={"network": network}).status_code == 200
    c.fw = c.post("/v1/endpoints", json={"network": "red", "host": "h1", "name": "fw"}).json
    return c


def net_id(c, name: str) -> str:
    return c.get(f"/v1/networks/{name}").json["id"]


def state(c) -> tuple:
    """Everything the routes below may change."""
    return (c.get("/v1/routers").json, c.get("/v1/networks").json,
            c.get(f"/v1/endpoints/{c.fw['id']}/published").json, c.get("/v1/hosts").json)


def test_router_create_list_show_delete(populated):  # noqa: F811
    c = populated
    r = c.post("/v1/routers", json={"name": "edge"})
    assert r.status_code == 201
    router = r.json
    assert router == {"id": router["id"], "name": "edge", "number": 1,
                      "mac": "02:0f:5e:00:00:01", "networks": [], "routes": []}
    assert c.get(f"/v1/routers/{router['id']}").json == router == c.get("/v1/routers/edge").json
    assert c.post("/v1/routers", json={"name": "core"}).json["number"] == 2
    assert [r["name"] for r in c.get("/v1/routers").json] == ["edge", "core"]
    assert c.delete("/v1/routers/edge").status_code == 204
    assert_error(c.get("/v1/routers/edge"), 404, "edge")
    assert_error(c.delete("/v1/routers/edge"), 404, "edge")


BAD_ROUTER_BODIES = [
    ({}, ["name", "Field required"]),
    ({"name": ""}, ["name"]),
    ({"name": "a/b"}, ["name"]),
    ({"name": "r9", "colour": "red"}, ["colour"]),
    ({"name": 5}, ["name"]),
]


def each_refused(c, send, cases, status=400):
    """Every (body, words) case sent is refused with ``status`` naming its words, and
    changes nothing. One fixture for all the cases keeps the suite quick."""
    before = state(c)
    for body, words in cases:
        assert_error(send(body), status, *words)
    assert state(c) == before


def test_bad_router_bodies_are_400(routed):
    each_refused(routed, lambda body: routed.post("/v1/routers", json=body), BAD_ROUTER_BODIES)


def test_router_conflicts(routed):
    before = state(routed)
    assert_error(routed.post("/v1/routers", json={"name": "r1"}), 409, "r1", "already exists")
    assert_error(routed.delete("/v1/routers/r1"), 409, "networks attached")
    assert_error(routed.delete("/v1/networks/green"), 409, "router 'r1'")
    assert state(routed) == before


def test_attach_and_detach(routed):
    c = routed
    r1 = c.get("/v1/routers/r1").json
    assert r1["networks"] == [net_id(c, "red"), net_id(c, "green")]
    # Attaching again is a 200 that changes nothing.
    again = c.post("/v1/routers/r1/networks", json={"network": net_id(c, "red")})
    assert again.status_code == 200 and again.json == r1
    assert c.delete("/v1/routers/r1/networks/green").status_code == 204
    assert c.get("/v1/routers/r1").json["networks"] == [net_id(c, "red")]
    assert c.post("/v1/routers", json={"name": "r2"}).status_code == 201
    assert c.post("/v1/routers/r2/networks", json={"network": "green"}).json["networks"] == \
        [net_id(c, "green")]


def test_attach_and_detach_refusals(routed):
    c = routed
    before = state(c)
    assert_error(c.post("/v1/routers/nope/networks", json={"network": "blue"}), 404, "nope")
    assert_error(c.post("/v1/routers/r1/networks", json={"network": "nope"}), 404, "nope")
    assert_error(c.post("/v1/routers/r1/networks", json={"network": "blue"}), 409, "overlaps")
    assert_error(c.post("/v1/routers/r1/networks", json={}), 400, "network")
    assert_error(c.delete("/v1/routers/r1/networks/blue"), 404, "not attached")
    assert_error(c.delete("/v1/routers/r1/networks/nope"), 404, "nope")
    assert_error(c.delete("/v1/routers/nope/networks/red"), 404, "nope")
    assert c.post("/v1/routers", json={"name": "r2"}).status_code == 201
    assert_error(c.post("/v1/routers/r2/networks", json={"network": "red"}), 409, "'r1'")
    assert c.delete("/v1/routers/r2").status_code == 204
    assert state(c) == before


def test_routes_are_replaced(routed):
    c = routed
    body = [{"destination": "192.168.0.0/16", "nexthop": c.fw["ip"]},
            {"destination": "0.0.0.0/0", "nexthop": c.fw["ip"]}]
    r = c.put("/v1/routers/r1/routes", json=body)
    assert r.status_code == 200 and r.json["routes"] == body
    assert r.json == c.get("/v1/routers/r1").json
    assert_error(c.delete("/v1/routers/r1/networks/red"), 409, "routes through network 'red'")
    assert c.put("/v1/routers/r1/routes", json=[]).json["routes"] == []
    assert c.delete("/v1/routers/r1/networks/red").status_code == 204


BAD_ROUTES = [
    ({"destination": "192.168.0.0/16", "nexthop": "10.0.0.2"}, ["JSON array"]),
    ([{"destination": "192.168.0.1/16", "nexthop": "10.0.0.2"}],
     ["host bits set", "192.168.0.0/16"]),
    ([{"destination": "192.168.0.0/16"}], ["nexthop", "Field required"]),
    ([{"destination": "192.168.0.0/16", "nexthop": "10.0.0.2", "metric": 1}], ["metric"]),
    ([{"destination": "192.168.0.0/16", "nexthop": "10.0.0.3"}], ["10.0.0.3"]),
    ([{"destination": "x", "nexthop": "10.0.0.2"}], ["not an IPv4 CIDR"]),
    ([{"destination": "10.9.0.0/16", "nexthop": "10.0.0.2"}] * 2, ["twice"]),
    ([{"destination": f"10.{i // 256}.{i % 256}.0/24", "nexthop": "10.0.0.2"}
      for i in range(1001)], ["at most 1000"]),
    ("routes", ["JSON array"]),
]


def test_bad_routes_are_400(routed):
    each_refused(routed, lambda body: routed.put("/v1/routers/r1/routes", json=body),
                 BAD_ROUTES)


def test_routes_of_an_unknown_router_are_404(routed):
    assert_error(routed.put("/v1/routers/nope/routes", json=[]), 404, "nope")


def test_published_ports(routed):
    c, fw = routed, routed.fw["id"]
    r = c.post(f"/v1/endpoints/{fw}/published", json={"protocol": "tcp", "port": 80})
    assert r.status_code == 201
    assert r.json == {"protocol": "tcp", "port": 80, "host_port": 49152, "host": "h1",
                      "host_ip": "192.0.2.1"}
    r = c.post(f"/v1/endpoints/{fw}/published",
               json={"protocol": "udp", "port": 53, "host_port": 5353})
    assert r.status_code == 201 and r.json["host_port"] == 5353
    assert [(p["protocol"], p["host_port"]) for p in
            c.get(f"/v1/endpoints/{fw}/published").json] == [("tcp", 49152), ("udp", 5353)]
    assert c.delete(f"/v1/endpoints/{fw}/published/tcp/49152").status_code == 204
    assert [p["host_port"] for p in c.get(f"/v1/endpoints/{fw}/published").json] == [5353]
    # An endpoint deleted takes its published ports along: the host port is free again.
    assert c.delete(f"/v1/endpoints/{fw}").status_code == 204
    other = c.post("/v1/endpoints", json={"network": "red", "host": "h1"}).json["id"]
    assert c.post(f"/v1/endpoints/{other}/published",
                  json={"protocol": "udp", "port": 53, "host_port": 5353}).status_code == 201


BAD_PUBLISHED = [
    ({"protocol": "sctp", "port": 80}, ["protocol"]),
    ({"protocol": "tcp", "port": 0}, ["port"]),
    ({"protocol": "tcp", "port": 65536}, ["port"]),
    ({"protocol": "tcp", "port": 80, "host_port": 0}, ["host_port"]),
    ({"protocol": "tcp", "port": "80"}, ["port"]),
    ({"protocol": "tcp"}, ["port", "Field required"]),
    ({"protocol": "tcp", "port": 80, "ip": "1.2.3.4"}, ["ip"]),
]


def test_bad_published_bodies_are_400(routed):
    path = f"/v1/endpoints/{routed.fw['id']}/published"
    each_refused(routed, lambda body: routed.post(path, json=body), BAD_PUBLISHED)


def test_published_port_refusals(routed):
    c, fw = routed, routed.fw["id"]
    assert c.post(f"/v1/endpoints/{fw}/published",
                  json={"protocol": "tcp", "port": 80, "host_port": 8080}).status_code == 201
    neighbour = c.post("/v1/endpoints", json={"network": "green", "host": "h1"}).json["id"]
    remote = c.post("/v1/endpoints", json={"network": "green", "host": "h2"}).json["id"]
    before = state(c)
    taken = {"protocol": "tcp", "port": 81, "host_port": 8080}
    assert_error(c.post(f"/v1/endpoints/{neighbour}/published", json=taken), 409, "8080", "h1")
    assert_error(c.post("/v1/endpoints/nope/published", json=taken), 404, "nope")
    assert_error(c.get("/v1/endpoints/nope/published"), 404, "nope")
    assert_error(c.delete(f"/v1/endpoints/{fw}/published/tcp/9999"), 404, "9999")
    assert_error(c.delete(f"/v1/endpoints/{fw}/published/udp/8080"), 404, "udp")
    assert_error(c.delete(f"/v1/endpoints/{fw}/published/tcp/http"), 400, "http")
    assert_error(c.delete(f"/v1/endpoints/{fw}/published/icmp/8080"), 400, "icmp")
    assert state(c) == before
    # The same host port on another host is another port.
    assert c.post(f"/v1/endpoints/{remote}/published", json=taken).status_code == 201


def test_network_egress(routed):
    c = routed
    assert c.get("/v1/networks/red").json["egress"] is True
    closed = c.post("/v1/networks", json={"name": "closed", "subnet": "10.3.0.0/24",
                                          "egress": False})
    assert closed.status_code == 201 and closed.json["egress"] is False
    r = c.patch("/v1/networks/closed", json={"egress": True})
    assert r.status_code == 200 and r.json["egress"] is True
    assert c.get("/v1/networks/closed").json == r.json


BAD_NETWORK_PATCHES = [
    ({}, ["egress", "Field required"]),
    ({"egress": "yes"}, ["egress"]),
    ({"egress": 1}, ["egress"]),
    ({"egress": False, "mtu": 1400}, ["mtu"]),
    ({"name": "other"}, ["name"]),
]


def test_bad_network_patches_are_400(routed):
    each_refused(routed, lambda body: routed.patch("/v1/networks/red", json=body),
                 BAD_NETWORK_PATCHES)


def test_network_patch_of_an_unknown_network_is_404(routed):
    assert_error(routed.patch("/v1/networks/nope", json={"egress": False}), 404, "nope")


def test_host_egress_ip(routed):
    c = routed
    assert c.get("/v1/hosts/h1").json["egress_ip"] is None
    body = {"name": "h3", "ovsdb": "unix:/nonexistent/h3", "tunnel_ip": "192.0.2.3",
            "egress_ip": "198.51.100.3"}
    r = c.post("/v1/hosts", json=body)
    assert r.status_code == 201 and r.json["egress_ip"] == "198.51.100.3"
    ep = c.post("/v1/endpoints", json={"network": "green", "host": "h3"}).json["id"]
    published = c.post(f"/v1/endpoints/{ep}/published", json={"protocol": "tcp", "port": 80})
    assert published.json["host_ip"] == "198.51.100.3"
    before = state(c)
    for egress_ip, status, word in (("192.0.2.1", 409, "h1"), ("198.51.100.3", 409, "h3"),
                                    ("300.1.1.1", 400, "egress_ip"),
                                    ("127.0.0.1", 400, "loopback")):
        assert_error(c.post("/v1/hosts", json={**body, "name": "h4", "tunnel_ip": "192.0.2.4",
                                               "egress_ip": egress_ip}), status, word)
    assert state(c) == before


def test_every_new_route_is_documented_with_its_errors(routed):
    paths = routed.get("/v1/openapi.json").json["paths"]
    assert set(paths["/v1/routers/{ref}/routes"]["put"]["responses"]) >= {"200", "400", "404"}
    body = paths["/v1/routers/{ref}/routes"]["put"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["type"] == "array"
    assert "patch" in paths["/v1/networks/{ref}"]
    assert "delete" in paths["/v1/endpoints/{endpoint_id}/published/{protocol}/{host_port}"]


@pytest.fixture
def guarded(tmp_path):
    """The API with a token: the admin's and h1's; h1 and h2 hold an endpoint each in red."""
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    app = create_app(fabric, token=TOKEN).test_client()
    admin = {"Authorization": f"Bearer {TOKEN}"}
    for i in (1, 2):
        app.post("/v1/hosts", headers=admin, json={"name": f"h{i}", "tunnel_ip": f"192.0.2.{i}",
                                                   "ovsdb": f"unix:/nonexistent/h{i}"})
    app.post("/v1/networks", headers=admin, json={"name": "red", "subnet": "10.0.0.0/24"})
    app.eps = [app.post("/v1/endpoints", headers=admin,
                        json={"network": "red", "host": f"h{i}"}).json["id"] for i in (1, 2)]
    app.admin, app.h1 = admin, {"Authorization": f"Bearer {tokens.host_token(TOKEN, 'h1')}"}
    yield app
    store.close()


def test_a_host_token_publishes_its_own_hosts_ports_and_makes_no_router(guarded):
    c, h1 = guarded, guarded.h1
    mine, theirs = guarded.eps
    body = {"protocol": "tcp", "port": 80}
    assert c.post(f"/v1/endpoints/{mine}/published", headers=h1, json=body).status_code == 201
    assert c.delete(f"/v1/endpoints/{mine}/published/tcp/49152", headers=h1).status_code == 204
    assert_error(c.post(f"/v1/endpoints/{theirs}/published", headers=h1, json=body), 403,
                 "published ports")
    assert_error(c.post("/v1/routers", headers=h1, json={"name": "r1"}), 403, "admin token")
    assert c.get("/v1/routers", headers=h1).json == []
    assert c.get(f"/v1/endpoints/{theirs}/published", headers=h1).json == []
    assert c.post("/v1/routers", headers=c.admin, json={"name": "r1"}).status_code == 201
    for refused_call in (lambda: c.post("/v1/routers/r1/networks", headers=h1,
                                        json={"network": "red"}),
                         lambda: c.put("/v1/routers/r1/routes", headers=h1, json=[]),
                         lambda: c.delete("/v1/routers/r1", headers=h1)):
        assert_error(refused_call(), 403, "admin token")
    assert c.get("/v1/routers/r1", headers=h1).json["networks"] == []
