"""REST authentication and HTTPS: tokens for serve, the CLI and the client alike."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from api.app import create_app
from api.client import ApiError, FabricClient
from cli.main import main as cli_main
from controller.fabric import Fabric
from lab.controller import ControllerProcess
from model import Store
from security import certs, tokens
from tests import slot
from tests.helpers import ROOT

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def app(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    yield create_app(fabric, token=TOKEN).test_client()
    store.close()


@pytest.mark.parametrize("path", ["/v1/hosts", "/v1/networks", "/metrics", "/stats/switches"])
def test_requests_without_the_token_get_401(app, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = app.get(path, headers=headers)
        assert r.status_code == 401 and "token" in r.json["error"]
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_writes_without_the_token_change_nothing(app):
    r = app.post("/v1/networks", json={"name": "red", "subnet": "10.0.0.0/24"})
    assert r.status_code == 401
    ok = app.get("/v1/networks", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json == []


def test_the_documentation_is_readable_without_the_token(app):
    assert app.get("/v1/openapi.json").status_code == 200
    assert app.get("/docs").status_code == 200


def test_token_file_wins_and_is_private(tmp_path, monkeypatch):
    path = str(tmp_path / "token")
    tokens.write_token_file(path, "from-file")
    assert os.stat(path).st_mode & 0o777 == 0o600
    monkeypatch.setenv(tokens.TOKEN_ENV, "from-env")
    assert tokens.load_token(path) == "from-file"
    assert tokens.load_token() == "from-env"
    monkeypatch.setenv(tokens.TOKEN_FILE_ENV, path)
    assert tokens.load_token() == "from-file"


def test_token_command_makes_distinct_tokens(capsys):
    assert cli_main(["token"]) == 0
    assert cli_main(["token"]) == 0
    first, second = capsys.readouterr().out.split()
    assert first != second and len(first) >= 40


def test_serve_refuses_a_public_address_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVSFABRIC_")}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--api-listen", "0.0.0.0:18998",
         "--state", str(tmp_path / "s.db")], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60)
    assert result.returncode != 0 and "without a token" in result.stderr
    assert not os.path.exists(tmp_path / "s.db"), "it refused before touching any state"


@pytest.fixture
def https_controller(tmp_path):
    """A controller serving HTTPS with a token, its certificate from `ovsfabric certs`."""
    directory = str(tmp_path / "pki")
    assert cli_main(["certs", directory, "--controller", "127.0.0.1"]) == 0
    controller = ControllerProcess(
        str(tmp_path / "state.db"), "127.0.0.1", api_port=slot.API_PORT + 6,
        openflow_port=slot.OPENFLOW_PORT + 6,
        token=TOKEN, scheme="https", ca_cert=f"{directory}/ca.pem",
        extra_args=("--api-cert", f"{directory}/controller.pem",
                    "--api-key", f"{directory}/controller-key.pem"))
    controller.start()
    yield controller, directory
    controller.stop()


def test_https_with_token_for_client_and_cli(https_controller, capsys, monkeypatch):
    controller, directory = https_controller
    assert controller.client.create_network("red", "10.0.0.0/24")["name"] == "red"
    anonymous = FabricClient(controller.url, ca_cert=f"{directory}/ca.pem")
    with pytest.raises(ApiError) as err:
        anonymous.networks()
    assert err.value.status == 401
    untrusted = FabricClient(controller.url, token=TOKEN)  # system CAs do not know ours
    with pytest.raises(Exception, match="(?i)certificate"):
        untrusted.networks()
    monkeypatch.setenv("OVSFABRIC_TOKEN", TOKEN)
    assert cli_main(["--api", controller.url, "--ca-cert", f"{directory}/ca.pem",
                     "networks", "list"]) == 0
    assert "red" in capsys.readouterr().out
    monkeypatch.delenv("OVSFABRIC_TOKEN")
    assert cli_main(["--api", controller.url, "--ca-cert", f"{directory}/ca.pem",
                     "networks", "list"]) != 0
    assert "token" in capsys.readouterr().err


def test_certs_are_signed_by_the_ca(tmp_path):
    from cryptography import x509
    directory = str(tmp_path)
    certs.make_ca(directory)
    cert_path, key_path = certs.make_cert(directory, "h1", ["198.18.1.11"])
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
    ca = x509.load_pem_x509_certificate(open(f"{directory}/ca.pem", "rb").read())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "h1" in names.get_values_for_type(x509.DNSName)


def test_token_file_is_made_private_and_no_symlink_is_followed(tmp_path, caplog):
    loose = tmp_path / "loose"
    loose.write_text("old\n")
    loose.chmod(0o644)
    with caplog.at_level("WARNING"):
        assert tokens.load_token(str(loose)) == "old"
    assert "can be read by others" in caplog.text
    tokens.write_token_file(str(loose), "new")
    assert loose.stat().st_mode & 0o777 == 0o600 and loose.read_text() == "new\n"
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(OSError):
        tokens.write_token_file(str(tmp_path / "link"), "evil")
    assert victim.read_text() == "keep\n"


def test_a_second_serve_on_one_state_file_refuses_naming_the_first(tmp_path):
    state = str(tmp_path / "state.db")
    first = ControllerProcess(state, "127.0.0.1", api_port=slot.API_PORT + 7,
                              openflow_port=slot.OPENFLOW_PORT + 7)
    first.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OVSFABRIC_")}
        second = subprocess.run(
            [sys.executable, "-m", "cli.main", "serve",
             "--api-listen", f"127.0.0.1:{slot.API_PORT + 8}",
             "--openflow-listen", f"127.0.0.1:{slot.OPENFLOW_PORT + 8}", "--state", state],
            cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert f"in use by another ovsfabric serve (pid {first.proc.pid})" in second.stderr
        first.client.create_network("still-mine", "10.0.0.0/24")  # the first is unharmed
    finally:
        first.kill()  # SIGKILL: the kernel releases the lock
    again = ControllerProcess(state, "127.0.0.1", api_port=slot.API_PORT + 7,
                              openflow_port=slot.OPENFLOW_PORT + 7)
    again.start()
    try:
        assert [n["name"] for n in again.client.networks()] == ["still-mine"]
    finally:
        again.stop()


def test_token_command_makes_a_host_token_from_the_admin_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(tokens.TOKEN_ENV, raising=False)
    monkeypatch.delenv(tokens.TOKEN_FILE_ENV, raising=False)
    admin, host = str(tmp_path / "admin"), str(tmp_path / "h1")
    assert cli_main(["token", "--file", admin]) == 0
    assert cli_main(["token", "--host", "h1", "--admin-token-file", admin, "--file", host]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"host token for h1 written to {host}"
    assert os.stat(host).st_mode & 0o777 == 0o600
    assert tokens.load_token(host) == tokens.host_token(tokens.load_token(admin), "h1")
    monkeypatch.setenv(tokens.TOKEN_FILE_ENV, admin)  # the token settings name the admin's
    assert cli_main(["token", "--host", "h2"]) == 0
    assert capsys.readouterr().out.strip() == tokens.host_token(tokens.load_token(admin), "h2")
    (tmp_path / "link").symlink_to(tmp_path / "victim")
    with pytest.raises(SystemExit, match="symbolic link"):
        cli_main(["token", "--host", "h1", "--file", str(tmp_path / "link")])
    assert not (tmp_path / "victim").exists()
    with pytest.raises(SystemExit, match="host tokens are made from the admin token"):
        cli_main(["token", "--host", "h2", "--admin-token-file", host])
    monkeypatch.delenv(tokens.TOKEN_FILE_ENV)
    with pytest.raises(SystemExit, match="--admin-token-file"):
        cli_main(["token", "--host", "h1"])


def test_plugin_refuses_another_hosts_token(monkeypatch, tmp_path):
    monkeypatch.setenv(tokens.TOKEN_ENV, tokens.host_token(TOKEN, "h2"))
    monkeypatch.delenv(tokens.TOKEN_FILE_ENV, raising=False)
    with pytest.raises(SystemExit, match="the token is host h2's, not h1's"):
        cli_main(["plugin", "--controller", "http://127.0.0.1:9", "--host", "h1",
                  "--socket", str(tmp_path / "plugin.sock"), "--orphan-sweep", "0"])
    assert not (tmp_path / "plugin.sock").exists()
