"""GET /v1/cluster and `ovsfabric cluster`: a single process answers for itself; with replicas
the answer is the election's status (a fake one here: tests/lab/test_cluster_election.py runs the
real one against etcd)."""
from __future__ import annotations

import socket

import pytest

from api.app import create_app
from api.schemas import ClusterView
from controller.fabric import Fabric
from model import Store
from security import tokens
from tests.helpers import serving
from tests.unit.test_cli import cli, rows  # noqa: F401 (fixtures)

TOKEN = "an-admin-token-long-enough-for-the-tests-0123456789"
THREE = {"members": [
    {"name": "a:8686", "api": "http://192.0.2.1:8686", "advertise": "tcp:192.0.2.1:6653",
     "leader": False},
    {"name": "b:8686", "api": "http://192.0.2.2:8686", "advertise": "tcp:192.0.2.2:6653",
     "leader": True},
    {"name": "c:8686", "api": "http://192.0.2.3:8686", "advertise": "tcp:192.0.2.3:6653",
     "leader": False}], "leader": "b:8686", "revision": 4711}


class FakeCluster:
    def __init__(self, status):
        self.answer = status

    def status(self):
        return self.answer


@pytest.fixture
def fabric(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:192.0.2.9:6653")
    yield fabric
    store.close()


def test_a_single_process_is_its_own_leader(fabric):
    client = create_app(fabric).test_client()
    client.post("/v1/networks", json={"name": "red", "subnet": "10.0.0.0/24"})
    answer = client.get("/v1/cluster")
    assert answer.status_code == 200
    body = answer.json
    ClusterView.model_validate(body)
    [me] = body["members"]
    assert me["leader"] is True and body["leader"] == me["name"]
    assert me["name"].startswith(socket.gethostname())
    assert me["advertise"] == "tcp:192.0.2.9:6653"
    assert me["api"].startswith("http://")
    assert body["revision"] == fabric.store.snapshot().revision > 0


def test_with_replicas_the_election_answers_with_the_store_revision_served(fabric):
    client = create_app(fabric, cluster=FakeCluster(THREE)).test_client()
    client.post("/v1/networks", json={"name": "red", "subnet": "10.0.0.0/24"})
    answer = client.get("/v1/cluster")
    assert answer.status_code == 200
    assert answer.json == {**THREE, "revision": fabric.store.served_revision()} != THREE


def test_no_leader_known_is_null(fabric):
    status = {"members": [THREE["members"][0]], "leader": None, "revision": 12}
    client = create_app(fabric, cluster=FakeCluster(status)).test_client()
    assert client.get("/v1/cluster").json == {**status, "revision": 0}


def test_the_leader_waits_for_its_switches_for_a_follower(fabric):
    client = create_app(fabric).test_client()
    client.post("/v1/hosts", json={"name": "h1", "ovsdb": "unix:/x", "tunnel_ip": "192.0.2.1"})
    wait = {"hosts": ["h1"], "revision": fabric.store.snapshot().revision, "timeout": 0.2}
    # No switch of h1 is connected: nothing to wait for.
    assert client.post("/v1/cluster/programmed", json=wait).json == {"programmed": True}
    refused = client.post("/v1/cluster/programmed", json={**wait, "timeout": 60})
    assert refused.status_code == 400 and "timeout" in refused.json["error"]


def test_any_token_reads_it_and_none_is_refused(fabric):
    client = create_app(fabric, TOKEN, cluster=FakeCluster(THREE)).test_client()
    assert client.get("/v1/cluster").status_code == 401
    for token in (TOKEN, tokens.host_token(TOKEN, "h1")):
        answer = client.get("/v1/cluster", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.json
    assert client.post("/v1/cluster", json={}).status_code in (401, 405)


def test_documented_in_the_openapi_document(fabric):
    doc = create_app(fabric).test_client().get("/v1/openapi.json").json
    op = doc["paths"]["/v1/cluster"]["get"]
    assert op["tags"] == ["cluster"]
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["properties"]) == {"members", "leader", "revision"}


# ---- the command ---------------------------------------------------------------------------

def test_cluster_command_prints_the_members_and_the_leader(fabric, cli):
    with serving(create_app(fabric, cluster=FakeCluster(THREE))) as url:
        code, out, err = cli("--api", url, "cluster")
    assert code == 0, err
    first, table_text = out.split("\n", 1)
    assert first == f"leader: b:8686, revision {fabric.store.served_revision()}"
    assert rows(table_text) == [
        {"NAME": m["name"], "LEADER": "yes" if m["leader"] else "no", "API": m["api"],
         "ADVERTISE": m["advertise"]} for m in THREE["members"]]


def test_cluster_command_json_is_the_apis_answer(fabric, cli):
    import json
    with serving(create_app(fabric, cluster=FakeCluster(THREE))) as url:
        code, out, _ = cli("--api", url, "cluster", "--json")
    assert code == 0 and json.loads(out) == {**THREE, "revision": 0}


def test_cluster_command_without_a_leader(fabric, cli):
    status = {**THREE, "leader": None,
              "members": [{**m, "leader": False} for m in THREE["members"]]}
    with serving(create_app(fabric, cluster=FakeCluster(status))) as url:
        code, out, _ = cli("--api", url, "cluster")
    assert code == 0
    assert out.splitlines()[0] == "leader: none known, revision 0"
    assert {r["LEADER"] for r in rows(out.split("\n", 1)[1])} == {"no"}


def test_cluster_command_of_a_single_process(fabric, cli):
    with serving(create_app(fabric)) as url:
        code, out, _ = cli("--api", url, "cluster")
    assert code == 0
    [row] = rows(out.split("\n", 1)[1])
    assert row["LEADER"] == "yes" and row["ADVERTISE"] == "tcp:192.0.2.9:6653"
    assert out.startswith(f"leader: {row['NAME']}, revision ")
