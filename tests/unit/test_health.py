"""/healthz and /readyz: readable without a token, and readiness failing, with a reason,
while the state store cannot be read or the state served is not the store's."""
from __future__ import annotations


import pytest

from api.app import create_app
from controller.fabric import Fabric
from model import Store

TOKEN = "health-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    yield store, create_app(fabric, token=TOKEN).test_client()
    store.close()


def test_both_answer_without_a_token(served):
    store, app = served
    assert app.get("/healthz").json == {"alive": True}
    ready = app.get("/readyz")
    assert ready.status_code == 200 and ready.json == {"ready": True, "revision": 0}
    assert app.post("/v1/networks", json={"name": "red", "subnet": "10.0.0.0/24"},
                    headers=ADMIN).status_code == 201
    assert app.get("/readyz").json == {"ready": True, "revision": 1}
    assert app.get("/v1/networks").status_code == 401  # the rest still needs the token


def test_not_ready_while_the_store_cannot_be_read(served):
    store, app = served
    store.backend._db.close()  # what a vanished disk looks like to the store
    ready = app.get("/readyz")
    assert ready.status_code == 503 and "state store cannot be read" in ready.json["error"]
    assert app.get("/healthz").status_code == 200  # alive all the same


def test_not_ready_while_the_state_served_is_behind_the_store(served, monkeypatch):
    store, app = served
    behind = store.served_revision() - 1
    monkeypatch.setattr(store, "served_revision", lambda: behind)
    ready = app.get("/readyz")
    assert ready.status_code == 503 and "catching up" in ready.json["error"]


def test_both_are_in_the_openapi_document(served):
    _, app = served
    paths = app.get("/v1/openapi.json").json["paths"]
    assert set(paths["/readyz"]["get"]["responses"]) >= {"200", "503"}
    assert "/healthz" in paths
