"""The etcd client's sessions do not read proxies or ~/.netrc from the environment on every
request (a quarter of a transaction's CPU): etcd is reached directly, a proxy named in the
environment is not used, and a CA bundle named there still is when no CA is given."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from cluster.etcd import EtcdClient, EtcdTarget


@pytest.fixture
def fake_etcd():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"header": {"revision": "7"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_proxy_in_the_environment_is_not_used(fake_etcd, monkeypatch):
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    client = EtcdClient(EtcdTarget.parse(f"etcd://127.0.0.1:{fake_etcd}"))
    assert client.get_prefix("/")["header"]["revision"] == "7"
    assert all(not c.session.trust_env for c in client._clients)


def test_a_ca_bundle_named_by_the_environment_is_still_used(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    client = EtcdClient(EtcdTarget.parse("etcd://127.0.0.1:1"))
    assert client._clients[0].session.verify == "/etc/ssl/bundle.pem"
