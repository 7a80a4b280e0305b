"""Web pages of other sites, DNS rebinding, and bodies that are not JSON, all refused in-process."""
from __future__ import annotations

import pytest

from api.app import create_app
from api.browsers import Audience, origin
from controller.fabric import Fabric
from model import Store
from tests.unit.test_api import assert_error

NETWORK = '{"name": "red", "subnet": "10.0.0.0/24"}'


@pytest.fixture
def store(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    yield store
    store.close()


def app_for(store, audience: Audience = Audience()):
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    return create_app(fabric, audience=audience).test_client()


@pytest.fixture
def client(store):
    return app_for(store)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_body_that_is_not_declared_json_is_refused_and_changes_nothing(client, store,
                                                                       content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/networks", data=NETWORK, headers=headers)
    assert_error(response, 415, "application/json")
    assert store.snapshot().networks == {}
    assert client.post("/v1/networks", data=NETWORK, content_type="application/json; "
                       "charset=utf-8").status_code == 201


def test_ryu_stats_posts_only_read_and_keep_taking_form_encoded_filters(client):
    response = client.post("/stats/flow/1", data='{"table_id": 0}',
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code != 415, response.json


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8686", "127.0.0.2.evil.example",
                                  "", "[::1", "127.0.0.1:notaport"])
def test_a_host_header_naming_someone_else_is_refused(client, store, host):
    response = client.post("/v1/networks", data=NETWORK, content_type="application/json",
                           headers={"Host": host})
    assert_error(response, 421, "--api-hostname")
    assert store.snapshot().networks == {}
    assert client.get("/v1/networks", headers={"Host": host}).status_code == 421


@pytest.mark.parametrize("listen, host, allowed", [
    ("127.0.0.1", "127.0.0.1:8686", True),
    ("127.0.0.1", "localhost:8686", True),
    ("127.0.0.1", "[::1]:8686", True),
    ("127.0.0.1", "198.18.0.1:8686", False),
    ("198.18.0.1", "198.18.0.1", True),
    ("198.18.0.1", "localhost", False),
    ("198.18.0.1", "198.18.0.2", False),
    ("0.0.0.0", "198.18.0.2:8686", True),
    ("0.0.0.0", "localhost", True),
    ("0.0.0.0", "fabric.example", False),
])
def test_which_host_headers_name_this_api(listen, host, allowed):
    assert Audience(listen).allows_host(host) is allowed


def test_a_configured_name_is_served(store):
    client = app_for(store, Audience("198.18.0.1", frozenset({"fabric.example"})))
    assert client.get("/v1/networks", headers={"Host": "FABRIC.example:8686"}).status_code == 200
    assert client.get("/v1/networks", headers={"Host": "other.example"}).status_code == 421


def test_requests_from_another_origin_are_refused_unless_configured(store):
    client = app_for(store)
    cross = {"Origin": "https://evil.example", "Host": "127.0.0.1:8686"}
    assert_error(client.post("/v1/networks", data=NETWORK, content_type="application/json",
                             headers=cross), 403, "--cors-origin")
    assert_error(client.get("/v1/networks", headers=cross), 403)
    assert_error(client.options("/v1/networks", headers=cross | {
        "Access-Control-Request-Method": "POST"}), 403)
    assert store.snapshot().networks == {}
    # The API's own pages (the /docs page's "try it out") are of its own origin.
    same = {"Origin": "http://127.0.0.1:8686", "Host": "127.0.0.1:8686"}
    assert client.post("/v1/networks", data=NETWORK, content_type="application/json",
                       headers=same).status_code == 201


def test_a_configured_origin_gets_cors_answers(store):
    client = app_for(store, Audience(cors_origins=frozenset({"https://console.example"})))
    console = {"Origin": "https://console.example", "Host": "127.0.0.1:8686"}
    preflight = client.options("/v1/networks", headers=console | {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://console.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    created = client.post("/v1/networks", data=NETWORK, content_type="application/json",
                          headers=console)
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == "https://console.example"
    other = console | {"Origin": "https://console.example:444"}
    assert client.get("/v1/networks", headers=other).status_code == 403


@pytest.mark.parametrize("text", ["*", "https://console.example/", "console.example",
                                  "ftp://console.example", "https://u@console.example"])
def test_a_cors_origin_must_be_an_origin(text):
    with pytest.raises(ValueError):
        origin(text)
    assert origin("HTTPS://Console.example:8443") == "https://console.example:8443"


@pytest.mark.parametrize("body, words", [
    (b"", ["empty"]),
    (b"   ", ["empty"]),
    (b'{"name": "red\xff"}', ["not UTF-8", "byte 13"]),
    (b'{"name": "red", ', ["not JSON", "line 1 column"]),
    (b'{"name": "red", "subnet": "10.0.0.0/24", "vni": 1' + b"0" * 5000 + b"}",
     ["too many digits"]),
    (b"[" * 100000 + b"]" * 100000, []),  # beyond the body limit or too deep: never a 500
])
def test_bodies_that_are_not_json_say_what_is_wrong(client, store, body, words):
    response = client.post("/v1/networks", data=body, content_type="application/json")
    assert response.status_code in (400, 413), response.json
    assert_error(response, response.status_code, *words)
    assert store.snapshot().networks == {}
