"""Scoped tokens: a host token reads the fabric and manages its own host's share of it; the
admin token does everything. Every refusal is a 403 saying why, and changes nothing."""
from __future__ import annotations

import pytest

from api.app import create_app
from controller.fabric import Fabric
from model import Store
from security import tokens

ADMIN = "admin-token-for-scope-tests"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


class Caller:
    def __init__(self, client, token: str):
        self.client, self.headers = client, bearer(token)

    def __getattr__(self, method):
        return lambda path, **kw: getattr(self.client, method)(path, headers=self.headers, **kw)


@pytest.fixture
def fabric(tmp_path):
    """h1 and h2 registered; network red made over REST by the admin, h1 holding an address
    and an endpoint in it."""
    store = Store(str(tmp_path / "state.db"))
    client = create_app(Fabric(store, "tcp:127.0.0.1:6653"), token=ADMIN).test_client()
    admin = Caller(client, ADMIN)
    for i in (1, 2):
        assert admin.post("/v1/hosts", json={"name": f"h{i}", "ovsdb": f"unix:/x/h{i}",
                                             "tunnel_ip": f"192.0.2.{i}"}).status_code == 201
    assert admin.post("/v1/networks", json={"name": "red", "subnet": "10.0.0.0/24"}) \
        .status_code == 201
    h1 = Caller(client, tokens.host_token(ADMIN, "h1"))
    assert h1.post("/v1/networks/red/addresses", json={"owner": "h1", "ip": "10.0.0.9"}) \
        .status_code == 201
    ep = h1.post("/v1/endpoints", json={"network": "red", "host": "h1"})
    assert ep.status_code == 201
    yield {"client": client, "admin": admin, "h1": h1, "endpoint": ep.json["id"],
           "h2": Caller(client, tokens.host_token(ADMIN, "h2"))}
    store.close()


def refused(response, *words):
    assert response.status_code == 403, response.json
    assert set(response.json) == {"error"}
    assert "host h2's" in response.json["error"]
    for word in words:
        assert word in response.json["error"]
    return True


def test_another_hosts_reservation_is_neither_released_nor_taken(fabric):
    h2 = fabric["h2"]
    assert refused(h2.delete("/v1/networks/red/addresses/10.0.0.9"), "10.0.0.9", "'h1'")
    assert refused(h2.delete("/v1/networks/red/addresses/10.0.0.9?owner=h1"))
    assert refused(h2.post("/v1/networks/red/addresses", json={"owner": "h1"}))
    assert refused(h2.post("/v1/networks/red/addresses", json={"owner": "aux.h1"}))
    held = fabric["h1"].get("/v1/networks/red/addresses").json
    assert [(r["ip"], r["owner"]) for r in held] == [("10.0.0.9", "h1")]
    # Its own owner's release of an address it does not hold changes nothing either.
    assert h2.delete("/v1/networks/red/addresses/10.0.0.9?owner=h2").status_code == 204
    assert len(fabric["admin"].get("/v1/networks/red/addresses").json) == 1


def test_a_host_manages_its_own_and_its_aux_reservations(fabric):
    h2 = fabric["h2"]
    for owner in ("h2", "aux.h2"):
        ip = h2.post("/v1/networks/red/addresses", json={"owner": owner}).json["ip"]
        assert h2.delete(f"/v1/networks/red/addresses/{ip}").status_code == 204
    assert [r["owner"] for r in h2.get("/v1/networks/red/addresses").json] == ["h1"]


def test_another_hosts_endpoints_are_neither_made_nor_deleted(fabric):
    h2, endpoint = fabric["h2"], fabric["endpoint"]
    assert refused(h2.delete(f"/v1/endpoints/{endpoint}"), "endpoint", "'h1'")
    assert refused(h2.post("/v1/endpoints", json={"network": "red", "host": "h1"}),
                   "an endpoint on host 'h1'")
    eps = fabric["admin"].get("/v1/endpoints").json
    assert [(e["id"], e["host"]) for e in eps] == [(endpoint, "h1")]
    own = h2.post("/v1/endpoints", json={"network": "red", "host": "h2"})
    assert own.status_code == 201
    assert h2.delete(f"/v1/endpoints/{own.json['id']}").status_code == 204


def test_a_host_deletes_only_the_networks_it_made(fabric):
    h1, h2 = fabric["h1"], fabric["h2"]
    assert refused(h2.delete("/v1/networks/red"), "network 'red'", "an admin made")
    made = h2.post("/v1/networks", json={"name": "blue", "subnet": "10.1.0.0/24"})
    assert made.status_code == 201 and made.json["owner"] == "h2"
    assert refused(h2.post("/v1/networks", json={"name": "x", "subnet": "10.2.0.0/24",
                                                 "owner": "h1"}))
    assert h1.delete("/v1/networks/blue").status_code == 403
    assert {n["name"] for n in fabric["admin"].get("/v1/networks").json} == {"red", "blue"}
    assert h2.delete("/v1/networks/blue").status_code == 204


def test_a_host_touches_only_aliases_in_its_own_names(fabric):
    h2 = fabric["h2"]
    assert h2.post("/v1/networks/red/aliases", json={"alias": "docker:h2:abc"}) \
        .status_code == 201
    assert refused(h2.post("/v1/networks/red/aliases", json={"alias": "docker:h1:abc"}),
                   "KIND:h2:")
    assert refused(h2.post("/v1/networks/red/aliases", json={"alias": "green"}))
    assert fabric["admin"].post("/v1/networks/red/aliases", json={"alias": "docker:h1:x"}) \
        .status_code == 201
    assert refused(h2.delete("/v1/networks/red/aliases/docker:h1:x"))
    assert h2.delete("/v1/networks/red/aliases/docker:h2:abc").status_code == 204
    assert fabric["h1"].get("/v1/networks/red").json["aliases"] == ["docker:h1:x"]


def test_hosts_are_registered_and_removed_by_the_admin_only(fabric):
    h2 = fabric["h2"]
    assert refused(h2.post("/v1/hosts", json={"name": "h3", "ovsdb": "unix:/x/h3",
                                              "tunnel_ip": "192.0.2.3"}), "admin token")
    assert refused(h2.delete("/v1/hosts/h2"), "DELETE /v1/hosts/<name>")
    assert [h["name"] for h in h2.get("/v1/hosts").json] == ["h1", "h2"]


def test_a_host_cannot_exhaust_a_network(fabric):
    """Reservations and endpoints together: at most half of the addresses per host."""
    h2 = fabric["h2"]
    assert h2.post("/v1/networks", json={"name": "tiny", "subnet": "10.3.0.0/28"}) \
        .status_code == 201  # 13 assignable addresses
    assert h2.post("/v1/endpoints", json={"network": "tiny", "host": "h2"}).status_code == 201
    got = [h2.post("/v1/networks/tiny/addresses", json={"owner": owner}).status_code
           for owner in ["h2"] * 5 + ["aux.h2"] * 3]
    assert got == [201] * 6 + [403] * 2
    last = h2.post("/v1/endpoints", json={"network": "tiny", "host": "h2"})
    assert last.status_code == 403 and "at most half (7)" in last.json["error"]
    # The other half is still there for the other hosts.
    h1 = fabric["h1"]
    assert [h1.post("/v1/networks/tiny/addresses", json={"owner": "h1"}).status_code
            for _ in range(6)] == [201] * 6


def test_reads_are_open_to_a_host_token(fabric):
    h2 = fabric["h2"]
    for path in ("/v1/hosts", "/v1/hosts/h1", "/v1/networks", "/v1/networks/red",
                 "/v1/networks/red/addresses", "/v1/endpoints", "/metrics", "/stats/switches"):
        assert h2.get(path).status_code == 200, path
    assert h2.post("/v1/trace", json={"from": fabric["endpoint"], "to": "10.0.0.1"}) \
        .status_code != 403


def test_the_admin_token_does_everything(fabric):
    admin, endpoint = fabric["admin"], fabric["endpoint"]
    assert admin.post("/v1/networks/red/addresses", json={"owner": "h2"}).status_code == 201
    assert admin.delete("/v1/networks/red/addresses/10.0.0.9").status_code == 204
    assert admin.delete(f"/v1/endpoints/{endpoint}").status_code == 204
    made = admin.post("/v1/networks", json={"name": "h1s", "subnet": "10.1.0.0/24",
                                           "owner": "h1"})
    assert made.json["owner"] == "h1"
    assert fabric["h1"].delete("/v1/networks/h1s").status_code == 204
    assert admin.delete("/v1/networks/red").status_code == 204
    assert admin.delete("/v1/hosts/h2").status_code == 204


@pytest.mark.parametrize("token", [
    tokens.host_token("another-admin-token", "h2"),  # made from another admin token
    tokens.host_token(ADMIN, "h2")[:-1] + "A",  # altered
    "host~h1~" + tokens.host_token(ADMIN, "h2").rpartition("~")[2],  # another host's signature
    "host~h2",
])
def test_forged_host_tokens_get_401(fabric, token):
    response = fabric["client"].get("/v1/networks", headers=bearer(token))
    assert response.status_code == 401


def test_a_host_token_is_tied_to_its_host_and_the_admin_token():
    token = tokens.host_token(ADMIN, "h1")
    assert token.startswith("host~h1~") and ADMIN not in token
    assert tokens.identify(ADMIN, f"Bearer {token}") == tokens.Scope("h1")
    assert tokens.identify(ADMIN, f"bearer {ADMIN}") == tokens.ADMIN
    assert tokens.host_token(ADMIN, "h1") == token != tokens.host_token(ADMIN, "h2")
    with pytest.raises(ValueError, match="host token"):
        tokens.host_token(token, "h2")
