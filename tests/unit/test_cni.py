"""The CNI plugin without a host: what it accepts and refuses, with which codes, the results
in each version's shape, its names, and that a failed ADD undoes what it made."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from cni import errors, naming, plugin, request, verbs
from cni.controller import Controller, _refusal
from cni.install import conflist, install
from cni.versions import SUPPORTED, shaped

CONF = {"cniVersion": "1.0.0", "name": "red", "type": "ovsfabric",
        "controller": "http://127.0.0.1:8686", "host": "h1", "network": "red"}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/proc/self/ns/net",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


def run(env=None, conf=CONF, **changes):
    environ = {**ENV, **(env or {})}
    environ = {k: v for k, v in {**environ, **changes}.items() if v is not None}
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    return plugin.run(environ, stdin)


def code_of(env=None, conf=CONF, **changes) -> tuple[int, str]:
    status, output = run(env, conf, **changes)
    assert status == 1, output
    return output["code"], output["msg"]


# ---- environment: 4 ------------------------------------------------------------------------

@pytest.mark.parametrize("command, missing", [
    ("ADD", "CNI_CONTAINERID"), ("ADD", "CNI_NETNS"), ("ADD", "CNI_IFNAME"),
    ("ADD", "CNI_PATH"), ("DEL", "CNI_CONTAINERID"), ("DEL", "CNI_IFNAME"),
    ("CHECK", "CNI_NETNS"), ("GC", "CNI_PATH"), ("STATUS", "CNI_PATH")])
def test_a_missing_variable_is_error_4_naming_it(command, missing):
    code, msg = code_of(CNI_COMMAND=command, **{missing: None})
    assert code == errors.INVALID_ENVIRONMENT and missing in msg


def test_del_needs_no_netns():
    parsed = request.parse({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""},
                           CONF)
    assert parsed.netns == "" and parsed.ifname == "eth0"


@pytest.mark.parametrize("changes, named", [
    ({"CNI_COMMAND": "ADDD"}, "CNI_COMMAND"), ({"CNI_COMMAND": None}, "CNI_COMMAND"),
    ({"CNI_CONTAINERID": "-leading"}, "CNI_CONTAINERID"),
    ({"CNI_CONTAINERID": "a/b"}, "CNI_CONTAINERID"),
    ({"CNI_IFNAME": "a-very-long-ifname"}, "CNI_IFNAME"), ({"CNI_IFNAME": "a/b"}, "CNI_IFNAME"),
    ({"CNI_IFNAME": ".."}, "CNI_IFNAME"), ({"CNI_NETNS": "/nonexistent/ns"}, "CNI_NETNS"),
    ({"CNI_ARGS": "K8S_POD_NAME"}, "CNI_ARGS")])
def test_an_invalid_variable_is_error_4_naming_it(changes, named):
    code, msg = code_of(**changes)
    assert code == errors.INVALID_ENVIRONMENT and named in msg


# ---- configuration: 6, 7 and 1 -------------------------------------------------------------

@pytest.mark.parametrize("stdin", [b"{not json", b"\xff\xfe", b"[1, 2]", b"", b"42"])
def test_a_configuration_that_does_not_decode_is_error_6(stdin):
    assert code_of(conf=stdin)[0] == errors.DECODE_FAILURE


@pytest.mark.parametrize("changes, named", [
    ({"controller": None}, "controller"), ({"controller": "ftp://x"}, "controller"),
    ({"controller": "http://"}, "controller"), ({"controller": "http://$(X):$(Y)"}, "controller"),
    ({"controller": "http://ctl:port"}, "controller"), ({"host": ""}, "host"),
    ({"name": "has space"}, "name"), ({"name": "-dash"}, "name"),
    ({"network": 7}, "network"), ({"name": None}, "name"), ({"mtu": 100}, "mtu"),
    ({"mtu": "1400"}, "mtu"), ({"mtu": True}, "mtu"), ({"dns": []}, "dns"),
    ({"token_file": 3}, "token_file"), ({"prevResult": []}, "prevResult"),
    ({"runtimeConfig": {"portMappings": {}}}, "portMappings"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 80}]}}, "portMappings[0]"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 70000}]}},
     "portMappings[0]"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 8, "containerPort": 8,
                                          "protocol": "sctp"}]}}, "sctp"),
    ({"cni.dev/valid-attachments": [{"containerID": "a"}]}, "valid-attachments[0]")])
def test_an_invalid_configuration_is_error_7_naming_the_key(changes, named):
    conf = {k: v for k, v in {**CONF, **changes}.items() if v is not None}
    code, msg = code_of(conf=conf)
    assert code == errors.INVALID_CONFIG and named in msg, msg


@pytest.mark.parametrize("version", ["0.2.0", "2.0.0", None, 1])
def test_an_unknown_version_is_error_1(version):
    assert code_of(conf={**CONF, "cniVersion": version})[0] == errors.INCOMPATIBLE_VERSION


def test_an_unreadable_token_file_is_error_7(tmp_path):
    conf = request.netconf({**CONF, "token_file": str(tmp_path / "absent")})
    with pytest.raises(errors.CniError) as caught:
        conf.token()
    assert caught.value.code == errors.INVALID_CONFIG and "absent" in caught.value.msg


def test_errors_answer_in_the_configuration_s_version():
    status, output = run(conf={**CONF, "cniVersion": "0.4.0"}, CNI_IFNAME="a/b")
    assert output["cniVersion"] == "0.4.0" and set(output) == {"cniVersion", "code", "msg"}


def test_the_configuration_is_read_whole():
    parsed = request.parse(
        {**ENV, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;"
                            "K8S_POD_INFRA_CONTAINER_ID=abc"},
        ({**CONF, "mtu": 1400, "dns": {"nameservers": ["10.0.0.2"]},
                    "runtimeConfig": {"portMappings": [
                        {"hostPort": 8080, "containerPort": 80, "protocol": "TCP"},
                        {"hostPort": 53, "containerPort": 5353, "protocol": "udp"}]},
                    "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]
                    }))
    assert parsed.labels == {"K8S_POD_NAMESPACE": "shop", "K8S_POD_NAME": "web-1"}
    assert parsed.conf.mtu == 1400 and parsed.conf.dns == {"nameservers": ["10.0.0.2"]}
    assert parsed.conf.port_mappings == (request.PortMapping(8080, 80, "tcp"),
                                         request.PortMapping(53, 5353, "udp"))
    assert parsed.conf.valid_attachments == (request.Attachment("c1", "eth0"),)


def test_a_pod_name_too_long_for_a_label_is_left_out():
    parsed = request.parse({**ENV, "CNI_ARGS": f"K8S_POD_NAME={'p' * 64};"
                                               f"K8S_POD_NAMESPACE=ns"},
                           CONF)
    assert parsed.labels == {"K8S_POD_NAMESPACE": "ns"}


# ---- VERSION and results ------------------------------------------------------------------

@pytest.mark.parametrize("stdin, version", [(b'{"cniVersion": "0.4.0"}', "0.4.0"),
                                            (b"", "1.1.0"), (b"{junk", "1.1.0"),
                                            (b'{"cniVersion": "9.9.9"}', "1.1.0")])
def test_version_lists_every_supported_version(stdin, version):
    status, output = plugin.run({"CNI_COMMAND": "VERSION"}, stdin)
    assert status == 0
    assert output == {"cniVersion": version,
                      "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


RESULT = {"interfaces": [{"name": "ofnabc", "mac": "aa:bb:cc:dd:ee:ff", "mtu": 1450},
                         {"name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1450,
                          "sandbox": "/run/netns/x"}],
          "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 1}],
          "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}], "dns": {}}


def test_results_take_each_version_s_shape():
    old = shaped(RESULT, "0.3.1")
    assert old["cniVersion"] == "0.3.1" and old["ips"][0]["version"] == "4"
    assert all("mtu" not in i for i in old["interfaces"])
    v1 = shaped(RESULT, "1.0.0")
    assert "version" not in v1["ips"][0] and all("mtu" not in i for i in v1["interfaces"])
    assert shaped(RESULT, "1.1.0")["interfaces"][1]["mtu"] == 1450
    assert RESULT["interfaces"][0]["mtu"] == 1450  # the input is left as it was


def test_an_unexpected_failure_is_still_the_spec_s_json(monkeypatch):
    def broken(req):
        raise KeyError("gateway")
    monkeypatch.setattr(verbs, "add", broken)
    status, output = run()
    assert status == 1 and output["code"] == 999 and "KeyError" in output["msg"]


# ---- names --------------------------------------------------------------------------------

def test_endpoint_names_fit_the_controller_s_rules():
    pattern = __import__("re").compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
    short = naming.endpoint_name("abc123", "eth0")
    assert short == "abc123-eth0"
    long_a = naming.endpoint_name("a" * 64, "net1234567890ab")
    long_b = naming.endpoint_name("a" * 63 + "b", "net1234567890ab")
    assert long_a != long_b and len(long_a) <= 64 and pattern.fullmatch(long_a)
    assert naming.endpoint_name("a" * 64, "eth0") != naming.endpoint_name("a" * 64, "eth1")


def test_the_host_veth_is_known_by_the_endpoint_s_name():
    name = naming.endpoint_name("c" * 64, "eth0")
    veth = naming.host_veth(name)
    assert len(veth) <= 15 and veth.startswith(naming.VETH_PREFIX)
    assert naming.made_here({"name": name, "port": veth})
    assert not naming.made_here({"name": name, "port": "ofh0123456789"})
    assert naming.parse_alias(naming.alias("red", "c1", "eth0")) == ("red", "c1", "eth0")
    assert naming.parse_alias("something else") is None and naming.parse_alias(None) is None


# ---- the controller's answers -------------------------------------------------------------

@pytest.mark.parametrize("status, code", [(503, errors.TRY_AGAIN_LATER),
                                          (500, errors.TRY_AGAIN_LATER),
                                          (404, errors.INVALID_CONFIG),
                                          (401, errors.INVALID_CONFIG),
                                          (403, errors.INVALID_CONFIG),
                                          (409, errors.REFUSED), (400, errors.REFUSED)])
def test_the_controller_s_refusals_map_to_codes(status, code):
    error = _refusal(status, json.dumps({"error": "network 'x' does not exist"}).encode())
    assert error.code == code and "network 'x' does not exist" in error.msg


def test_an_unreachable_controller_is_try_again_later():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(errors.CniError) as caught:
            Controller(f"http://127.0.0.1:{port}", timeout=2).network("red")
    assert caught.value.code == errors.TRY_AGAIN_LATER and str(port) in caught.value.msg


# ---- a failed ADD undoes what it made -----------------------------------------------------

class FakeController:
    def __init__(self, fail_publish=False):
        self.endpoints_made, self.deleted, self.fail_publish = [], [], fail_publish

    def endpoints(self, host, network=None):
        return []

    def network(self, ref):
        return {"id": "n1", "name": "red", "mtu": 1450}

    def create_endpoint(self, **fields):
        self.endpoints_made.append(fields)
        return {"id": "e1", "ip": "10.0.0.2", "prefix_len": 24, "mac": "02:00:00:00:00:02",
                "gateway": "10.0.0.1", **fields}

    def publish(self, *args):
        if self.fail_publish:
            raise errors.CniError(errors.REFUSED, "host port 8080 is taken")

    def delete_endpoint(self, endpoint_id):
        self.deleted.append(endpoint_id)


@pytest.fixture
def fake_host(monkeypatch):
    made = {"links": set()}
    monkeypatch.setattr(verbs.links, "create_pair",
                        lambda host_end, *a: made["links"].add(host_end))
    monkeypatch.setattr(verbs.links, "delete_host_link", made["links"].discard)
    monkeypatch.setattr(verbs.links, "configure", lambda *a: None)
    monkeypatch.setattr(verbs.links, "host_mac", lambda name: "aa:aa:aa:aa:aa:aa")
    return made


def parsed(**conf):
    return request.parse(ENV, {**CONF, **conf})


def test_a_failed_add_removes_its_endpoint_and_veth(monkeypatch, fake_host):
    controller = FakeController(fail_publish=True)
    monkeypatch.setattr(verbs, "controller_of", lambda req: controller)
    req = parsed(runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    with pytest.raises(errors.CniError, match="taken"):
        verbs.add(req)
    assert controller.deleted == ["e1"] and fake_host["links"] == set()


def test_an_add_answers_with_both_ends_and_the_endpoint(monkeypatch, fake_host):
    controller = FakeController()
    monkeypatch.setattr(verbs, "controller_of", lambda req: controller)
    result = verbs.add(parsed())
    host_end = naming.host_veth("abc123-eth0")
    assert fake_host["links"] == {host_end}
    assert controller.endpoints_made == [{"network": "n1", "host": "h1", "port": host_end,
                                          "name": "abc123-eth0", "labels": {}}]
    assert result["interfaces"][1] == {"name": "eth0", "mac": "02:00:00:00:00:02",
                                       "mtu": 1450, "sandbox": "/proc/self/ns/net"}
    assert result["ips"] == [{"address": "10.0.0.2/24", "gateway": "10.0.0.1",
                              "interface": 1}]


def test_an_mtu_above_the_network_s_is_refused_before_anything_is_made(monkeypatch,
                                                                        fake_host):
    controller = FakeController()
    monkeypatch.setattr(verbs, "controller_of", lambda req: controller)
    with pytest.raises(errors.CniError) as caught:
        verbs.add(parsed(mtu=1500))
    assert caught.value.code == errors.INVALID_CONFIG and "1450" in caught.value.msg
    assert controller.endpoints_made == [] and fake_host["links"] == set()


# ---- install ------------------------------------------------------------------------------

def test_install_writes_a_runnable_plugin_and_a_valid_conflist(tmp_path):
    conf = conflist("red", "http://192.0.2.1:8686", "h1", token_file="/etc/t")
    plugin_path, conf_path = install(str(tmp_path / "bin"), str(tmp_path / "net.d"), conf)
    assert os.access(plugin_path, os.X_OK)
    with open(conf_path) as f:
        written = json.load(f)
    assert written["cniVersion"] == "1.0.0" and written["cniVersions"] == ["1.0.0", "1.1.0"]
    assert written["plugins"][0]["type"] == "ovsfabric"
    assert written["plugins"][0]["capabilities"] == {"portMappings": True}
    request.netconf({"cniVersion": "1.1.0", "name": written["name"], **written["plugins"][0]})
    done = subprocess.run([plugin_path], input=b'{"cniVersion": "1.0.0"}', capture_output=True,
                          env={"CNI_COMMAND": "VERSION"}, timeout=10)
    assert done.returncode == 0
    assert json.loads(done.stdout)["supportedVersions"] == list(SUPPORTED)
    done = subprocess.run([plugin_path], input=b"{", capture_output=True, timeout=10,
                          env={**ENV, "CNI_NETNS": "/proc/self/ns/net"})
    assert done.returncode == 1 and json.loads(done.stdout)["code"] == errors.DECODE_FAILURE


def test_the_install_command_writes_both_and_refuses_a_bad_controller(tmp_path, capsys):
    from cli.main import main
    args = ["cni", "install", "--bin-dir", str(tmp_path / "bin"), "--conf-dir",
            str(tmp_path / "net.d"), "--host", "node-1", "--network", "pods", "--mtu", "1400"]
    assert main([*args, "--controller", "http://10.0.0.1:8686", "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written == {"plugin": str(tmp_path / "bin" / "ovsfabric"),
                       "conflist": str(tmp_path / "net.d" / "10-ovsfabric-pods.conflist")}
    with open(written["conflist"]) as f:
        plugin_conf = json.load(f)["plugins"][0]
    assert (plugin_conf["host"], plugin_conf["network"], plugin_conf["mtu"]) == (
        "node-1", "pods", 1400)
    with open(written["plugin"], "rb") as f:
        assert f.readline() == b"#!/usr/bin/python3 -IS\n"
    assert main([*args, "--controller", "http://10.0.0.1:8686", "--python", "/opt/py/bin/python3"
                 ]) == 0
    with open(written["plugin"], "rb") as f:
        assert f.readline() == b"#!/opt/py/bin/python3 -IS\n"
    capsys.readouterr()
    os.unlink(written["plugin"])
    assert main([*args, "--controller", "10.0.0.1:8686"]) == 2
    assert "is not an http:// or https:// URL" in capsys.readouterr().err
    assert not os.path.exists(written["plugin"])  # nothing written
