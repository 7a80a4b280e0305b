"""The REST API's contract and validation, in-process, with no switch (hosts unreachable)."""
from __future__ import annotations

import pytest

from api.app import create_app
from controller.fabric import Fabric
from model import Store


@pytest.fixture
def client(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    fabric.start()
    app = create_app(fabric)
    app.store = store  # for tests that step between snapshots
    yield app.test_client()
    fabric.stop()
    store.close()


@pytest.fixture
def populated(client):
    for i in (1, 2):
        r = client.post("/v1/hosts", json={"name": f"h{i}", "ovsdb": f"unix:/nonexistent/h{i}",
                                           "tunnel_ip": f"192.0.2.{i}"})
        assert r.status_code == 201, r.json
    r = client.post("/v1/networks", json={"name": "red", "subnet": "10.0.0.0/29"})
    assert r.status_code == 201
    return client


def assert_error(response, status, *words):
    assert response.status_code == status, response.json
    assert set(response.json) == {"error"}
    for word in words:
        assert word in response.json["error"]


def test_host_defaults_and_status(populated):
    host = populated.get("/v1/hosts/h1").json
    assert host["datapath_type"] == "system" and host["bridge"] == "br-int"
    assert host["connected"] is False
    assert len(host["dpid"]) == 16
    assert [h["name"] for h in populated.get("/v1/hosts").json] == ["h1", "h2"]


@pytest.mark.parametrize("body, words", [
    ({"name": "h9", "ovsdb": "http://x", "tunnel_ip": "192.0.2.9"}, ["ovsdb"]),
    ({"name": "h9", "ovsdb": "unix:/x", "tunnel_ip": "300.0.0.1"}, ["tunnel_ip"]),
    ({"name": "h9", "ovsdb": "unix:/x", "tunnel_ip": "192.0.2.9", "datapath_type": "dpdk"},
     ["datapath_type"]),
    ({"name": "h9", "ovsdb": "unix:/x", "tunnel_ip": "192.0.2.9", "bridge": "a-very-long-bridge"},
     ["bridge"]),
    ({"name": "", "ovsdb": "unix:/x", "tunnel_ip": "192.0.2.9"}, ["name"]),
    ({"ovsdb": "unix:/x", "tunnel_ip": "192.0.2.9"}, ["name", "Field required"]),
    ({"name": "h9", "ovsdb": "unix:/x", "tunnel_ip": "192.0.2.9", "colour": "red"}, ["colour"]),
    ({"name": "h9", "ovsdb": "unix:/x", "tunnel_ip": "0.0.0.0"}, ["this network"]),
    ({"name": "h9", "ovsdb": "unix:/x", "tunnel_ip": "255.255.255.255"}, ["broadcast"]),
    ({"name": "h9", "ovsdb": "unix:/x", "tunnel_ip": "224.0.0.1"}, ["multicast"]),
    ({"name": "h9", "ovsdb": "unix:/x", "tunnel_ip": "127.0.0.1"}, ["loopback"]),
    ({"name": "h9", "ovsdb": "tcp:999.1.1.1:6640", "tunnel_ip": "192.0.2.9"}, ["999.1.1.1"]),
    ({"name": "h9", "ovsdb": "tcp:192.0.2.9:99999", "tunnel_ip": "192.0.2.9"}, ["1 to 65535"]),
    ({"name": "h9", "ovsdb": "tcp:192.0.2.9:0", "tunnel_ip": "192.0.2.9"}, ["1 to 65535"]),
    ({"name": "h9", "ovsdb": "unix:/x", "tunnel_ip": "192.0.2.9", "bridge": ".."}, ["bridge"]),
])
def test_bad_host_requests_are_400(populated, body, words):
    assert_error(populated.post("/v1/hosts", json=body), 400, *words)
    assert len(populated.get("/v1/hosts").json) == 2


def test_host_conflicts(populated):
    body = {"name": "h1", "ovsdb": "unix:/x", "tunnel_ip": "192.0.2.50"}
    assert_error(populated.post("/v1/hosts", json=body), 409, "h1")
    body = {"name": "h3", "ovsdb": "unix:/x", "tunnel_ip": "192.0.2.1"}
    assert_error(populated.post("/v1/hosts", json=body), 409, "tunnel_ip")
    assert_error(populated.get("/v1/hosts/nope"), 404, "nope")


def test_not_json_is_400(populated):
    r = populated.post("/v1/networks", data="{not json", content_type="application/json")
    assert_error(r, 400, "JSON")
    assert_error(populated.post("/v1/networks", json=[1, 2]), 400, "JSON object")


def test_oversized_body_is_413(populated):
    r = populated.post("/v1/networks", json={"name": "x" * 100_000, "subnet": "10.1.0.0/24"})
    assert_error(r, 413)


def test_network_defaults_and_lookup(populated):
    net = populated.get("/v1/networks/red").json
    assert net["gateway"] == "10.0.0.1" and net["mtu"] == 1450 and net["vni"] >= 1
    assert populated.get(f"/v1/networks/{net['id']}").json == net
    second = populated.post("/v1/networks", json={"name": "blue", "subnet": "10.0.0.0/29"}).json
    assert second["vni"] != net["vni"]


@pytest.mark.parametrize("body, status, words", [
    ({"name": "n", "subnet": "10.0.0.1/24"}, 400, ["host bits"]),
    ({"name": "n", "subnet": "0.0.0.0/0"}, 400, ["/8 to a /30"]),
    ({"name": "n", "subnet": "224.0.0.0/24"}, 400, ["multicast"]),
    ({"name": "n", "subnet": "127.0.0.0/8"}, 400, ["loopback"]),
    ({"name": "n", "subnet": "169.254.0.0/16"}, 400, ["link-local"]),
    ({"name": "n", "subnet": "240.0.0.0/24"}, 400, ["reserved"]),
    ({"name": "n", "subnet": "0.1.0.0/16"}, 400, ["this network"]),
    ({"name": "n", "subnet": "10.2.5.0/024"}, 400, ["canonical", "10.2.5.0/24"]),
    ({"name": "n", "subnet": "fd00::/64"}, 400, ["IPv4"]),
    ({"name": "n", "subnet": "10.2.0.0/24", "gateway": "10.3.0.1"}, 400, ["outside"]),
    ({"name": "n", "subnet": "10.2.0.0/24", "vni": 0}, 400, ["vni"]),
    ({"name": "n", "subnet": "10.2.0.0/24", "mtu": 100}, 400, ["mtu"]),
    ({"name": "red", "subnet": "10.2.0.0/24"}, 409, ["red"]),
])
def test_bad_network_requests(populated, body, status, words):
    assert_error(populated.post("/v1/networks", json=body), status, *words)
    assert len(populated.get("/v1/networks").json) == 1


def test_vni_taken_is_409(populated):
    vni = populated.get("/v1/networks/red").json["vni"]
    r = populated.post("/v1/networks", json={"name": "n", "subnet": "10.2.0.0/24", "vni": vni})
    assert_error(r, 409, "vni")


def test_endpoint_allocation_and_shape(populated):
    ep = populated.post("/v1/endpoints", json={"network": "red", "host": "h1"}).json
    assert set(ep) == {"id", "name", "network", "host", "port", "ip", "prefix_len", "mac",
                       "gateway", "mtu", "labels"}
    assert ep["ip"] == "10.0.0.2" and ep["prefix_len"] == 29 and ep["gateway"] == "10.0.0.1"
    assert int(ep["mac"].split(":")[0], 16) & 0b11 == 0b10, "locally administered unicast"
    assert populated.get(f"/v1/endpoints/{ep['id']}").json == ep


def test_subnet_exhaustion_is_409(populated):
    ips = [populated.post("/v1/endpoints", json={"network": "red", "host": "h1"}).json["ip"]
           for _ in range(5)]
    assert len(set(ips)) == 5 and "10.0.0.1" not in ips
    assert_error(populated.post("/v1/endpoints", json={"network": "red", "host": "h1"}),
                 409, "no address")


@pytest.mark.parametrize("body, status, words", [
    ({"network": "nope", "host": "h1"}, 404, ["nope"]),
    ({"network": "red", "host": "nope"}, 404, ["nope"]),
    ({"network": "red", "host": "h1", "ip": "10.0.0.300"}, 400, ["ip"]),
    ({"network": "red", "host": "h1", "ip": "10.9.0.2"}, 400, ["outside"]),
    ({"network": "red", "host": "h1", "ip": "10.0.0.7"}, 400, ["broadcast"]),
    ({"network": "red", "host": "h1", "ip": "10.0.0.1"}, 409, ["gateway"]),
    ({"network": "red", "host": "h1", "mac": "zz:00:00:00:00:01"}, 400, ["mac"]),
    ({"network": "red", "host": "h1", "mac": "01:00:00:00:00:01"}, 400, ["multicast"]),
    ({"network": "red", "host": "h1", "port": "no/slash"}, 400, ["port"]),
])
def test_bad_endpoint_requests(populated, body, status, words):
    assert_error(populated.post("/v1/endpoints", json=body), status, *words)
    assert populated.get("/v1/endpoints").json == []


def test_endpoint_duplicates_are_409(populated):
    first = populated.post("/v1/endpoints", json={"network": "red", "host": "h1", "port": "p1",
                                                  "mac": "02:00:00:00:00:01"}).json
    for body, word in [({"ip": first["ip"]}, "ip"), ({"mac": "02:00:00:00:00:01"}, "mac"),
                       ({"port": "p1"}, "port")]:
        r = populated.post("/v1/endpoints", json={"network": "red", "host": "h1", **body})
        assert_error(r, 409, word)
    assert len(populated.get("/v1/endpoints").json) == 1


def test_endpoint_filters_and_delete(populated):
    a = populated.post("/v1/endpoints", json={"network": "red", "host": "h1"}).json
    b = populated.post("/v1/endpoints", json={"network": "red", "host": "h2"}).json
    assert [e["id"] for e in populated.get("/v1/endpoints?host=h2").json] == [b["id"]]
    assert len(populated.get("/v1/endpoints?network=red").json) == 2
    assert_error(populated.get("/v1/endpoints?network=nope"), 404)
    assert_error(populated.delete("/v1/networks/red"), 409, "endpoints")
    assert_error(populated.delete("/v1/hosts/h1"), 409, "endpoints")
    assert populated.delete(f"/v1/endpoints/{a['id']}").status_code == 204
    assert_error(populated.get(f"/v1/endpoints/{a['id']}"), 404)
    assert_error(populated.delete(f"/v1/endpoints/{a['id']}"), 404)
    again = populated.post("/v1/endpoints",
                           json={"network": "red", "host": "h1", "ip": a["ip"]})
    assert again.status_code == 201, "a freed address can be taken again"


def test_metrics_count_requests_and_endpoints(populated):
    populated.post("/v1/endpoints", json={"network": "red", "host": "h1"})
    populated.post("/v1/endpoints", json={"network": "nope", "host": "h1"})
    text = populated.get("/metrics").data.decode()
    assert 'ovsfabric_http_requests_total{method="POST",route="/v1/endpoints",status="201"} 1.0' \
        in text
    assert 'ovsfabric_http_requests_total{method="POST",route="/v1/endpoints",status="404"} 1.0' \
        in text
    assert 'ovsfabric_endpoints{network="red"} 1.0' in text
    assert 'ovsfabric_host_connected{host="h1"} 0.0' in text


def test_address_reservations(populated):
    r = populated.post("/v1/networks/red/addresses", json={"owner": "h1"})
    assert r.status_code == 201 and r.json["owner"] == "h1" and r.json["prefix_len"] == 29
    ip = r.json["ip"]
    again = populated.post("/v1/networks/red/addresses", json={"owner": "h1", "ip": ip})
    assert again.status_code == 201 and again.json["ip"] == ip, "already yours"
    assert_error(populated.post("/v1/networks/red/addresses", json={"owner": "h2", "ip": ip}),
                 409, "reserved")
    # Allocation skips it; an endpoint asking for it takes it over.
    other = populated.post("/v1/endpoints", json={"network": "red", "host": "h2"}).json
    assert other["ip"] != ip
    ep = populated.post("/v1/endpoints", json={"network": "red", "host": "h1", "ip": ip}).json
    assert ep["ip"] == ip and populated.get("/v1/networks/red/addresses").json == []
    # The endpoint's host asking again (a Docker daemon replaying) is answered as its own.
    replay = populated.post("/v1/networks/red/addresses", json={"owner": "h1", "ip": ip})
    assert replay.status_code == 201
    assert_error(populated.delete(f"/v1/networks/red/addresses/{ip}"), 409, "endpoint")
    populated.delete(f"/v1/endpoints/{ep['id']}")
    assert populated.delete(f"/v1/networks/red/addresses/{ip}").status_code == 204
    free = populated.post("/v1/networks/red/addresses", json={"owner": "h2", "ip": ip})
    assert free.status_code == 201 and free.json["owner"] == "h2"
    assert populated.delete(f"/v1/networks/red/addresses/{ip}").status_code == 204
    assert populated.delete(f"/v1/networks/red/addresses/{ip}").status_code == 204, "idempotent"
    assert_error(populated.post("/v1/networks/red/addresses", json={"owner": "h1",
                                                                    "ip": "10.0.0.1"}),
                 409, "gateway")


def test_reservations_survive_restart(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    store.create_network("n", "10.0.0.0/24")
    held = store.reserve_address("n", "h1")
    store.close()
    again = Store(str(tmp_path / "r.db"))
    assert list(again.snapshot().reservations.values()) == [held]
    assert again.reserve_address("n", "h2").ip != held.ip


def test_network_aliases(populated):
    r = populated.post("/v1/networks/red/aliases", json={"alias": "docker:h1:abc123"})
    assert r.status_code == 201 and r.json["aliases"] == ["docker:h1:abc123"]
    net_id = r.json["id"]
    again = populated.post("/v1/networks/red/aliases", json={"alias": "docker:h1:abc123"})
    assert again.status_code == 201 and again.json["aliases"] == ["docker:h1:abc123"]
    # The alias names the network wherever a network is named.
    assert populated.get("/v1/networks/docker:h1:abc123").json["id"] == net_id
    reserved = populated.post("/v1/networks/docker:h1:abc123/addresses", json={"owner": "h1"})
    assert reserved.status_code == 201 and reserved.json["network"] == net_id
    assert populated.get("/v1/networks").json[0]["aliases"] == ["docker:h1:abc123"]
    # An alias, a name and an id name one network only.
    populated.post("/v1/networks", json={"name": "blue", "subnet": "10.9.0.0/24"})
    assert_error(populated.post("/v1/networks/blue/aliases", json={"alias": "docker:h1:abc123"}),
                 409, "another network")
    assert_error(populated.post("/v1/networks/blue/aliases", json={"alias": "red"}), 409)
    assert_error(populated.post("/v1/networks", json={"name": "docker:h1:abc123",
                                                      "subnet": "10.8.0.0/24"}), 400)
    populated.post("/v1/networks/blue/aliases", json={"alias": "b2"})
    assert_error(populated.post("/v1/networks", json={"name": "b2", "subnet": "10.8.0.0/24"}),
                 409, "alias")
    assert_error(populated.delete("/v1/networks/red/aliases/b2"), 409, "another network")
    assert_error(populated.post("/v1/networks/red/aliases", json={"alias": "a/b"}), 400, "alias")
    assert_error(populated.post("/v1/networks/nope/aliases", json={"alias": "x"}), 404)
    # Removal is idempotent; deleting a network takes its aliases.
    assert populated.delete("/v1/networks/red/aliases/docker:h1:abc123").status_code == 204
    assert populated.delete("/v1/networks/red/aliases/docker:h1:abc123").status_code == 204
    assert_error(populated.get("/v1/networks/docker:h1:abc123"), 404)
    assert populated.delete("/v1/networks/blue").status_code == 204
    assert_error(populated.get("/v1/networks/b2"), 404)
    assert populated.post("/v1/networks/red/aliases", json={"alias": "b2"}).status_code == 201


def test_aliases_survive_restart(tmp_path):
    store = Store(str(tmp_path / "a.db"))
    net = store.create_network("n", "10.0.0.0/24")
    store.add_alias("n", "docker:h1:0123")
    revision = store.snapshot().revision
    store.close()
    again = Store(str(tmp_path / "a.db"))
    assert again.get_network("docker:h1:0123").id == net.id
    assert again.aliases_of(net.id) == ["docker:h1:0123"]
    assert again.snapshot().revision == revision, "aliases do not touch the flow revision"


def test_no_static_files_are_served(client, tmp_path, monkeypatch):
    (tmp_path / "secret.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    response = client.get("/static/secret.txt")
    assert response.status_code == 404 and "error" in response.get_json()


def test_made_up_methods_share_one_metric_label(client):
    for i in range(50):
        assert client.open("/v1/networks", method=f"BREW{i}").status_code == 405
    text = client.get("/metrics").data.decode()
    assert "BREW" not in text
    assert 'method="other",route="unmatched",status="405"} 50.0' in text


def test_a_listing_is_read_from_one_snapshot(populated, monkeypatch):
    """An endpoint and then its network deleted while the list is being built: the list is
    the one of the snapshot it started from, never a 500."""
    ep = populated.post("/v1/endpoints", json={"network": "red", "host": "h1"}).json
    store = populated.application.store
    before = store.snapshot()
    assert populated.delete(f"/v1/endpoints/{ep['id']}").status_code == 204
    assert populated.delete("/v1/networks/red").status_code == 204
    after = store.snapshot()
    answers = iter([before])
    monkeypatch.setattr(store, "snapshot", lambda: next(answers, after))
    response = populated.get("/v1/endpoints")
    assert response.status_code == 200 and [e["id"] for e in response.json] == [ep["id"]]


def test_the_bridge_itself_is_no_endpoint_port(populated):
    r = populated.post("/v1/endpoints", json={"network": "red", "host": "h1", "port": "br-int"})
    assert_error(r, 400, "own interface of bridge br-int")
    assert populated.get("/v1/endpoints").json == []


def test_a_full_store_answers_507_and_keeps_serving_reads(populated):
    """The database at its size limit: what SQLite reports for a full disk (SQLITE_FULL)."""
    store = populated.application.store
    pages = store.backend._db.execute("PRAGMA page_count").fetchone()[0]
    store.backend._db.execute(f"PRAGMA max_page_count = {pages}")  # as if the disk were full now
    answers = [populated.post("/v1/networks", json={"name": f"n{i}", "subnet": "10.9.0.0/24"})
               for i in range(200)]
    full = [r for r in answers if r.status_code != 201]
    assert full, "the store filled up"
    assert_error(full[0], 507, "the state store is full")
    assert all(r.status_code == 507 for r in full)
    names = [n["name"] for n in populated.get("/v1/networks").json]
    assert names == ["red"] + [f"n{i}" for i in range(len(answers) - len(full))]
    assert populated.get("/v1/hosts").status_code == 200


def test_release_with_an_owner_frees_only_what_it_holds(populated):
    for owner, ip in (("h1", "10.0.0.2"), ("aux.h1", "10.0.0.3")):
        r = populated.post("/v1/networks/red/addresses", json={"owner": owner, "ip": ip})
        assert r.status_code == 201, r.json
    assert populated.delete("/v1/networks/red/addresses/10.0.0.3?owner=h1").status_code == 204
    assert populated.delete("/v1/networks/red/addresses/10.0.0.2?owner=h1").status_code == 204
    held = [(a["ip"], a["owner"]) for a in populated.get("/v1/networks/red/addresses").json]
    assert held == [("10.0.0.3", "aux.h1")]
