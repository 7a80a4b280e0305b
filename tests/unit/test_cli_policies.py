"""`ovsfabric policies` and endpoint labels through the real entry point: against the real REST
app, and `policies status` against a stub answering the status JSON the server is to give."""
from __future__ import annotations

import json
import re

import pytest
from flask import Flask, jsonify

from api.client import FabricClient
from api.schemas import PolicyStatusView
from cli.labels import changed_labels
from cli.lookup import CommandError
from tests.helpers import serving
from tests.unit.test_cli import api, cli, populated, rows  # noqa: F401 (fixtures)

POLICY = {"name": "web", "applies_to": {"selector": {"labels": {"app": "web"}},
                                        "network": "red"},
          "ingress": [{"peers": [{"selector": {"labels": {"app": "db"}}},
                                 {"cidr": "192.0.2.0/24"}],
                       "ports": [{"protocol": "tcp", "port": 80},
                                 {"protocol": "udp", "port": 5000, "end_port": 5010}]}],
          "egress": []}


@pytest.fixture
def files(tmp_path):
    def write(name: str, content) -> str:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)
    return write


def test_endpoint_labels_on_create_and_by_label(populated, cli):  # noqa: F811
    url = populated
    code, out, err = cli("--api", url, "endpoints", "create", "--network", "red", "--host",
                         "h1", "--name", "web-1", "--labels", "app=web,tier=front")
    assert code == 0, err
    assert re.search(r"^labels:\s+app=web,tier=front$", out, re.M)
    code, out, _ = cli("--api", url, "endpoints", "label", "web-1", "tier-", "env=prod",
                       "app=api")
    assert code == 0 and re.search(r"^labels:\s+app=api,env=prod$", out, re.M)
    ep, = FabricClient(url).endpoints()
    assert ep["labels"] == {"app": "api", "env": "prod"}
    assert rows(cli("--api", url, "endpoints", "list")[1])[0]["LABELS"] == "app=api,env=prod"
    code, out, _ = cli("--api", url, "--json", "endpoints", "label", ep["id"], "env-")
    assert json.loads(out) == {**ep, "labels": {"app": "api"}}
    code, _, err = cli("--api", url, "endpoints", "label", "web-1", "app")
    assert code == 2 and "'app' is not KEY=VALUE (set) or KEY- (remove)" in err
    code, _, err = cli("--api", url, "endpoints", "label", "web-1", "app=a b")
    assert code == 2 and "labels.app value 'a b'" in err
    code, _, err = cli("--api", url, "endpoints", "create", "--network", "red", "--host", "h1",
                       "--labels", "app")
    assert code == 2 and "'app' in 'app' is not KEY=VALUE" in err
    assert FabricClient(url).endpoints()[0]["labels"] == {"app": "api"}


def test_label_changes_apply_in_order():
    assert changed_labels({"a": "1", "b": "2"}, ["a-", "c=", "b=3", "d-"]) == \
        {"b": "3", "c": ""}
    for bad in ("-", "=x", "plain"):
        with pytest.raises(CommandError):
            changed_labels({}, [bad])


def test_policies_create_list_show_replace_delete(populated, cli, files):  # noqa: F811
    url = populated
    code, out, err = cli("--api", url, "policies", "create", "--file", files("p.json", POLICY))
    assert code == 0, err
    policy = FabricClient(url).policy("web")
    assert re.search(r"^applies to:\s+app=web in red$", out, re.M)
    assert re.search(r"^governs:\s+ingress and egress$", out, re.M)
    assert rows(out.split("\n\n")[1]) == [
        {"RULE": "1", "DIRECTION": "ingress", "ACTION": "allow",
         "PEERS": "app=db; 192.0.2.0/24", "PORTS": "tcp/80, udp/5000-5010"}]
    assert rows(cli("--api", url, "policies", "list")[1]) == [
        {"NAME": "web", "APPLIES TO": "app=web in red", "INGRESS": "1", "EGRESS": "0",
         "ID": policy["id"]}]
    assert json.loads(cli("--api", url, "policies", "list", "--json")[1]) == [policy]
    assert json.loads(cli("--api", url, "--json", "policies", "show", policy["id"])[1]) == \
        policy

    replacement = {"name": "web", "applies_to": {"selector": {}},
                   "egress": [{"peers": [{"cidr": "0.0.0.0/0"}], "action": "deny"}]}
    code, out, _ = cli("--api", url, "policies", "replace", "web", "--file",
                       files("r.json", replacement))
    assert code == 0 and re.search(r"^applies to:\s+every endpoint$", out, re.M)
    assert rows(out.split("\n\n")[1]) == [
        {"RULE": "2", "DIRECTION": "egress", "ACTION": "deny", "PEERS": "0.0.0.0/0",
         "PORTS": "any"}]
    assert rows(cli("--api", url, "policies", "list")[1])[0]["INGRESS"] == "-"
    code, out, _ = cli("--api", url, "policies", "status", "web")  # the real route
    assert code == 0 and out.startswith(f"policy web ({policy['id']}): realized on 0 of 0 ")
    assert cli("--api", url, "policies", "delete", "web")[1] == "deleted policy web\n"
    assert cli("--api", url, "policies", "list")[1] == "no policies\n"


def test_policy_file_and_api_errors(populated, cli, files):  # noqa: F811
    url = populated
    code, _, err = cli("--api", url, "policies", "create", "--file", files("bad", "{nope"))
    assert code == 2 and "is not JSON: Expecting property name" in err
    code, _, err = cli("--api", url, "policies", "create", "--file", "/nonexistent/p.json")
    assert code == 2 and "cannot read /nonexistent/p.json" in err
    bad = {**POLICY, "ingress": [{"peers": [{"cidr": "10.0.0.1/8"}]}]}
    code, _, err = cli("--api", url, "policies", "create", "--file", files("b.json", bad))
    assert code == 2 and "ingress[0].peers[0].cidr 10.0.0.1/8 has host bits set" in err
    code, _, err = cli("--api", url, "policies", "show", "nope")
    assert code == 2 and "policy 'nope' does not exist" in err
    assert FabricClient(url).policies() == []


STATUS = PolicyStatusView(
    policy={"id": "p1", "name": "web"},
    hosts=[{"host": "h1", "realized": True, "flows": 12},
           {"host": "h2", "realized": False, "flows": 0}],
    rules=[{"id": 7, "direction": "ingress", "index": 0, "action": "allow", "packets": 1500,
            "bytes": 2048},
           {"id": 8, "direction": "egress", "index": 0, "action": "deny", "packets": 3,
            "bytes": 180}]).model_dump()


@pytest.fixture
def status_stub():
    """Answers the status of policy web (h2 not realized) and of done (every host realized)."""
    app = Flask("stub")
    done = {**STATUS, "policy": {"id": "p2", "name": "done"},
            "hosts": [{**h, "realized": True} for h in STATUS["hosts"]]}

    @app.get("/v1/policies/<ref>/status")
    def status(ref):
        if ref not in ("web", "done"):
            return jsonify(error=f"policy {ref!r} does not exist"), 404
        return jsonify(STATUS if ref == "web" else done)

    with serving(app) as url:
        yield url


def test_policy_status_shows_hosts_and_rule_counters(status_stub, cli):  # noqa: F811
    code, out, _ = cli("--api", status_stub, "policies", "status", "web")
    assert code == 1, "a host has not realized it"
    head, hosts, rules = out.split("\n\n")
    assert head == "policy web (p1): realized on 1 of 2 hosts; not on h2"
    assert rows(hosts) == [{"HOST": "h1", "REALIZED": "yes", "FLOWS": "12"},
                           {"HOST": "h2", "REALIZED": "no", "FLOWS": "0"}]
    assert rows(rules) == [
        {"RULE": "7", "DIRECTION": "ingress", "INDEX": "0", "ACTION": "allow",
         "PACKETS": "1.5K", "BYTES": "2.0 KiB"},
        {"RULE": "8", "DIRECTION": "egress", "INDEX": "0", "ACTION": "deny", "PACKETS": "3",
         "BYTES": "180 B"}]
    code, out, _ = cli("--api", status_stub, "policies", "status", "done")
    assert code == 0 and out.startswith("policy done (p2): realized on 2 of 2 hosts\n")
    code, out, _ = cli("--api", status_stub, "--json", "policies", "status", "web")
    assert code == 1 and json.loads(out) == STATUS
    code, _, err = cli("--api", status_stub, "policies", "status", "nope")
    assert code == 2 and "policy 'nope' does not exist" in err
