"""The `ovsfabric` client commands, through the real entry point.

Inventory commands run against the real REST app (hosts stay disconnected); flows, trace and
audit run against a stub app answering canned JSON in the documented shapes (api/schemas.py).
"""
from __future__ import annotations

import json
import re
import socket

import pytest
import requests
from flask import Flask, jsonify, request

from api.app import create_app
from api.client import FabricClient
from api.schemas import (AuditView, EndpointView, FlowView, HostView, NetworkView, TraceView)
from cli.inspection import verdict_line
from cli.main import main
from cli.render import human_bytes, human_count, table
from controller.fabric import Fabric
from model import Store
from tests.helpers import serving


@pytest.fixture
def cli(capsys):
    """Runs `ovsfabric ARGS...`; returns (exit status, stdout, stderr)."""
    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def rows(out: str) -> list[dict[str, str]]:
    """A table printed by the CLI as dicts by header (columns are 2+ spaces apart)."""
    lines = [line for line in out.splitlines() if line.strip()]
    headers = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(headers, re.split(r"\s{2,}", line.strip()))) for line in lines[1:]]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- against the real REST app ------------------------------------------------------------

@pytest.fixture
def api(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    fabric.start()
    with serving(create_app(fabric)) as url:
        yield url
    fabric.stop()
    store.close()


@pytest.fixture
def populated(api, cli):
    for i in (1, 2):
        code, _, err = cli("--api", api, "hosts", "create", f"h{i}", "--ovsdb",
                           f"unix:/nonexistent/h{i}", "--tunnel-ip", f"192.0.2.{i}")
        assert code == 0, err
    for name, subnet in (("red", "10.0.0.0/24"), ("blue", "10.0.0.0/24")):
        assert cli("--api", api, "networks", "create", name, "--subnet", subnet)[0] == 0
    return api


def test_hosts_create_list_show_delete(api, cli):
    code, out, _ = cli("--api", api, "hosts", "create", "h1", "--ovsdb", "unix:/nonexistent",
                       "--tunnel-ip", "192.0.2.1", "--datapath-type", "netdev")
    assert code == 0
    assert re.search(r"^datapath type:\s+netdev$", out, re.M)
    dpid = FabricClient(api).host("h1")["dpid"]

    code, out, _ = cli("--api", api, "hosts", "list")
    assert code == 0
    assert rows(out) == [{"NAME": "h1", "CONNECTED": "no", "DPID": dpid,
                          "TUNNEL IP": "192.0.2.1", "OVSDB": "unix:/nonexistent",
                          "DATAPATH": "netdev", "BRIDGE": "br-int", "FLOWS": "-"}]

    code, out, _ = cli("--api", api, "hosts", "show", "h1")
    assert re.search(r"^connected:\s+no$", out, re.M) and dpid in out

    assert cli("--api", api, "hosts", "delete", "h1")[:2] == (0, "deleted host h1\n")
    assert cli("--api", api, "hosts", "list")[1] == "no hosts\n"


@pytest.mark.parametrize("argv", [
    ["--json", "hosts", "list"],
    ["hosts", "list", "--json"],
    ["hosts", "--json", "list"],
])
def test_global_options_before_or_after_the_command(populated, cli, argv):
    code, out, _ = cli("--api", populated, *argv)
    assert code == 0
    assert json.loads(out) == FabricClient(populated).hosts()


def test_api_option_after_the_command_and_from_the_environment(populated, cli, monkeypatch):
    code, out, _ = cli("networks", "list", "--api", populated)
    assert code == 0 and [r["NAME"] for r in rows(out)] == ["red", "blue"]
    monkeypatch.setenv("OVSFABRIC_API", populated)
    code, out, _ = cli("networks", "list")
    assert code == 0 and [r["NAME"] for r in rows(out)] == ["red", "blue"]
    monkeypatch.setenv("OVSFABRIC_API", f"http://127.0.0.1:{closed_port()}")
    assert cli("networks", "list")[0] == 2
    assert cli("networks", "list", "--api", populated)[0] == 0  # the option wins


def test_networks(api, cli):
    code, out, _ = cli("--api", api, "networks", "create", "red", "--subnet", "10.1.0.0/24",
                       "--vni", "500", "--mtu", "1400")
    assert code == 0 and re.search(r"^vni:\s+500$", out, re.M)
    assert re.search(r"^owner:\s+an admin$", out, re.M)
    net = FabricClient(api).network("red")
    row, = rows(cli("--api", api, "networks", "list")[1])
    assert row == {"NAME": "red", "SUBNET": "10.1.0.0/24", "GATEWAY": "10.1.0.1", "VNI": "500",
                   "MTU": "1400", "EGRESS": "yes", "ID": net["id"]}
    code, out, _ = cli("--api", api, "--json", "networks", "show", net["id"])
    assert json.loads(out) == net
    assert cli("--api", api, "networks", "delete", "red")[0] == 0
    assert cli("--api", api, "networks", "list")[1] == "no networks\n"


def test_endpoints_name_their_network(populated, cli):
    api = populated
    code, out, err = cli("--api", api, "endpoints", "create", "--network", "red", "--host", "h1",
                         "--name", "web-1", "--ip", "10.0.0.5")
    assert code == 0, err
    assert re.search(r"^network:\s+red \([0-9a-f]+\)$", out, re.M)
    assert cli("--api", api, "endpoints", "create", "--network", "blue", "--host", "h2",
               "--name", "db-1")[0] == 0
    red = FabricClient(api).network("red")

    listed = rows(cli("--api", api, "endpoints", "list")[1])
    assert {r["NAME"]: (r["NETWORK"], r["HOST"], r["PORT"]) for r in listed} == \
        {"web-1": ("red", "h1", "-"), "db-1": ("blue", "h2", "-")}
    assert next(r for r in listed if r["NAME"] == "web-1")["IP"] == "10.0.0.5/24"
    assert [r["NAME"] for r in rows(cli("--api", api, "endpoints", "list", "--network",
                                        red["id"])[1])] == ["web-1"]
    assert [r["NAME"] for r in rows(cli("--api", api, "endpoints", "list", "--host",
                                        "h2")[1])] == ["db-1"]

    web = FabricClient(api).endpoints(network="red")[0]
    code, out, _ = cli("--api", api, "endpoints", "show", "web-1")  # by name, resolved
    assert code == 0 and web["id"] in out and web["mac"] in out
    assert cli("--api", api, "endpoints", "delete", web["id"])[0] == 0
    assert [e["name"] for e in FabricClient(api).endpoints()] == ["db-1"]


def test_api_errors_exit_non_zero_with_the_apis_message(populated, cli):
    body = {"name": "h1", "ovsdb": "unix:/x", "tunnel_ip": "192.0.2.9"}
    message = requests.post(populated + "/v1/hosts", json=body).json()["error"]
    code, out, err = cli("--api", populated, "hosts", "create", "h1", "--ovsdb", "unix:/x",
                         "--tunnel-ip", "192.0.2.9")
    assert (code, out, err) == (2, "", f"ovsfabric: {message}\n")

    code, out, err = cli("--api", populated, "--json", "networks", "show", "nope")
    assert code == 2 and out == "" and "network 'nope' does not exist" in err

    code, _, err = cli("--api", populated, "networks", "create", "x", "--subnet", "10.9.0.0/24",
                       "--vni", "0")
    assert code == 2 and "vni" in err

    cli("--api", populated, "endpoints", "create", "--network", "red", "--host", "h1")
    code, _, err = cli("--api", populated, "networks", "delete", "red")
    assert code == 2 and "endpoints" in err
    assert "red" in [n["name"] for n in FabricClient(populated).networks()]


def test_inspection_of_disconnected_hosts(populated, cli):
    """The real API answers 503 for hosts without a switch: an error for `flows`, a finding
    for `audit`."""
    code, out, err = cli("--api", populated, "flows", "h1")
    message = requests.get(populated + "/v1/hosts/h1/flows").json()["error"]
    assert (code, out, err) == (2, "", f"ovsfabric: {message}\n")
    code, out, _ = cli("--api", populated, "audit")
    assert code == 1
    assert [line.split("  ")[:2] for line in out.splitlines()] == \
        [["h1", "NOT CONNECTED"], ["h2", "NOT CONNECTED"]]


def test_unreachable_api_names_the_url(cli):
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, err = cli("--api", url, "hosts", "list")
    assert code == 2 and out == ""
    assert f"cannot reach the API at {url}: Connection refused" in err


def test_an_answer_that_is_not_json_is_reported(cli):
    app = Flask("not-the-api")
    app.add_url_rule("/v1/hosts", "hosts", lambda: "<html>hello</html>")
    with serving(app) as url:
        code, _, err = cli("--api", url, "hosts", "list")
    assert code == 2 and f"the answer of {url} is not JSON" in err


def test_serve_is_still_a_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    assert "--openflow-listen" in capsys.readouterr().out


# ---- against a stub of the inspection endpoints --------------------------------------------

WEB1, WEB2, DB1 = "a1" * 16, "b2" * 16, "c3" * 16


def flow(host, table, name, prio, match, actions, owner, packets=None, nbytes=None):
    return FlowView(host=host, table=table, table_name=name, priority=prio, match=match,
                    actions=actions, cookie="0x0", owner=owner, packets=packets,
                    bytes=nbytes).model_dump()


WEB1_OWNER = {"kind": "endpoint", "id": WEB1, "name": "web-1"}
RED_OWNER = {"kind": "network", "id": "n1", "name": "red"}
FLOWS = [
    flow("h1", 0, "ingress", 200, "in_port=1000,dl_src=02:00:00:00:00:01,ip,nw_src=10.0.0.2",
         "write_metadata:0x64,goto_table:20", WEB1_OWNER, 1234, 12_595),
    flow("h1", 0, "ingress", 0, "", "drop", {"kind": "fabric"}, 3_400_000, 5 * 1024 ** 3),
    flow("h1", 20, "l2", 10, "metadata=0x64,dl_dst=ff:ff:ff:ff:ff:ff", "output:1000,output:2",
         RED_OWNER, 7, 700),
    flow("h2", 20, "l2", 100, "metadata=0x64,dl_dst=02:00:00:00:00:01", "set_field:0x64->"
         "tun_id,output:2", WEB1_OWNER),
]


def audit_view(host, flows, missing=(), extra=()):
    return AuditView(host=host, in_sync=not (missing or extra), installed=flows,
                     desired=flows + len(missing) - len(extra), missing=list(missing),
                     extra=list(extra), different=[]).model_dump()


def host_row(name):
    return HostView(name=name, ovsdb="unix:/x", tunnel_ip="192.0.2.1", datapath_type="system",
                    bridge="br-int", connected=name != "h3", ovsdb_connected=True,
                    openflow_connected=name != "h3", dpid="0" * 16, flows=27,
                    flow_mods_sent=0, error=None).model_dump()


def endpoint_view(ep_id, name, network):
    return EndpointView(id=ep_id, name=name, network=network, host="h1", port=None,
                        ip="10.0.0.2", prefix_len=24, mac="02:00:00:00:00:01",
                        gateway="10.0.0.1", mtu=1450, labels={}).model_dump()


HOP = {"step": "table"}
DELIVERED = TraceView(packet={"dl_src": "02:00:00:00:00:01", "nw_dst": "10.0.0.3",
                              "nw_proto": 6, "tp_dst": 80}, hops=[
    {**HOP, "host": "h1", "table": 0, "table_name": "ingress", "flow": FLOWS[0]},
    {**HOP, "host": "h1", "table": 20, "table_name": "l2", "flow": FLOWS[2]},
    {"host": "h1", "step": "tunnel", "vni": 100, "remote_host": "h2", "port": 2},
    {**HOP, "host": "h2", "table": 0, "table_name": "ingress", "flow": None},
    {"host": "h2", "step": "deliver", "port": 1001, "endpoint": WEB2},
], verdict={"result": "delivered", "endpoints": [WEB2],
                     "reason": "delivered to web-2"}).model_dump()
DROP = flow("h1", 0, "ingress", 100, "in_port=1000", "drop", WEB1_OWNER, 3, 180)
DROPPED = TraceView(packet={"nw_dst": "10.0.0.9"}, hops=[
    {**HOP, "host": "h1", "table": 0, "table_name": "ingress", "flow": DROP},
], verdict={"result": "dropped", "endpoints": [], "host": "h1", "table": 0,
            "table_name": "ingress", "flow": DROP, "reason": "source address not the "
            "endpoint's"}).model_dump()


class Stub:
    """Canned answers in the documented shapes; records what the CLI asked."""

    def __init__(self):
        self.hosts = [host_row(h) for h in ("h1", "h2", "h3")]
        self.calls: list[tuple[str, str, dict, dict | None]] = []
        self.app = Flask("stub")
        self.app.before_request(lambda: self.calls.append(
            (request.method, request.path, dict(request.args),
             request.get_json(silent=True))))
        for path, view in (("/v1/hosts", self.list_hosts), ("/v1/networks", self.networks),
                           ("/v1/endpoints", self.endpoints),
                           ("/v1/hosts/<name>/flows", self.host_flows),
                           ("/v1/networks/<ref>/flows", self.network_flows),
                           ("/v1/endpoints/<ep>/flows", self.endpoint_flows)):
            self.app.add_url_rule(path, view.__name__, view)
        self.app.add_url_rule("/v1/trace", "trace", self.trace, methods=["POST"])

    def list_hosts(self):
        return jsonify(self.hosts)

    def networks(self):
        return jsonify([NetworkView(id="n1", name="red", subnet="10.0.0.0/24",
                                    gateway="10.0.0.1", vni=100, mtu=1450).model_dump()])

    def endpoints(self):
        return jsonify([endpoint_view(WEB1, "web-1", "n1"), endpoint_view(WEB2, "web-2", "n1")])

    def network_flows(self, ref):
        return jsonify(FLOWS)

    def endpoint_flows(self, ep):
        return jsonify([f for f in FLOWS if f["owner"]["id"] == WEB1])

    def host_flows(self, name):
        if name == "h9":
            return jsonify(error="host 'h9' does not exist"), 404
        if request.args.get("audit") != "true":
            return jsonify([f for f in FLOWS if f["host"] == name])
        if name == "h3":
            return jsonify(error="host 'h3' is not connected"), 503
        if name == "h2":
            return jsonify(audit_view("h2", 11, missing=[FLOWS[3]]))
        return jsonify(audit_view(name, 27))

    def trace(self):
        to = request.get_json()["to"]
        if to == "nope":
            return jsonify(error="endpoint 'nope' does not exist"), 404
        return jsonify(DELIVERED if to == "web-2" else DROPPED)

    def paths(self) -> list[str]:
        return [path for _, path, _, _ in self.calls]


@pytest.fixture
def stub():
    stub = Stub()
    with serving(stub.app) as url:
        stub.url = url
        yield stub


def test_flows_of_a_host(stub, cli):
    code, out, _ = cli("--api", stub.url, "flows", "h1")
    assert code == 0
    assert out.splitlines()[0].split() == ["HOST", "TABLE", "PRIO", "OWNER", "PACKETS", "BYTES",
                                           "MATCH", "ACTIONS"]
    table_ = rows(out)
    assert [(r["TABLE"], r["PRIO"], r["OWNER"], r["PACKETS"], r["BYTES"]) for r in table_] == [
        ("0 ingress", "200", "endpoint web-1", "1.2K", "12.3 KiB"),
        ("0 ingress", "0", "fabric", "3.4M", "5.0 GiB"),
        ("20 l2", "10", "network red", "7", "700 B")]
    assert table_[0]["MATCH"] == FLOWS[0]["match"]
    assert table_[0]["ACTIONS"] == "write_metadata:0x64,goto_table:20"
    assert stub.calls[-1][2] == {}


def test_flows_filters_are_sent_and_applied(stub, cli):
    code, out, _ = cli("--api", stub.url, "flows", "h1", "--network", "red", "--endpoint",
                       "web-1", "--table", "ingress")
    assert code == 0
    assert stub.calls[-1][1:3] == ("/v1/hosts/h1/flows",
                                   {"network": "red", "endpoint": WEB1, "table": "ingress"})


def test_flows_across_hosts(stub, cli):
    code, out, _ = cli("--api", stub.url, "flows", "--network", "red", "--table", "l2")
    assert code == 0 and stub.paths()[-1] == "/v1/networks/red/flows"
    assert [(r["HOST"], r["PRIO"]) for r in rows(out)] == [("h1", "10"), ("h2", "100")]
    code, out, _ = cli("--api", stub.url, "flows", "--endpoint", "web-1")
    assert code == 0 and stub.paths()[-1] == f"/v1/endpoints/{WEB1}/flows"
    assert {r["OWNER"] for r in rows(out)} == {"endpoint web-1"}


def test_flows_json_is_the_apis_answer(stub, cli):
    code, out, _ = cli("--api", stub.url, "flows", "h1", "--json")
    assert code == 0 and json.loads(out) == FLOWS[:3]


def test_flows_errors(stub, cli):
    code, out, err = cli("--api", stub.url, "flows")
    assert (code, out) == (2, "") and "needs a HOST" in err and stub.calls == []
    code, out, err = cli("--api", stub.url, "flows", "h9")
    assert (code, out, err) == (2, "", "ovsfabric: host 'h9' does not exist\n")


def test_trace_delivered(stub, cli):
    code, out, _ = cli("--api", stub.url, "trace", "web-1", "web-2", "--protocol", "tcp",
                       "--port", "80")
    assert code == 0
    assert stub.calls[0][3] == {"from": "web-1", "to": "web-2", "protocol": "tcp",
                                "dst_port": 80}
    lines = out.splitlines()
    assert lines[0] == "packet  dl_src=02:00:00:00:00:01,nw_dst=10.0.0.3,nw_proto=6,tp_dst=80"
    assert re.fullmatch(r"h1  table 0 ingress\s+prio 200  in_port=1000,\S+  -> "
                        r"write_metadata:0x64,goto_table:20   \[endpoint web-1\]", lines[1])
    assert lines[2].startswith("h1  table 20 l2 ") and lines[2].endswith("[network red]")
    assert lines[1].index(" -> ") == lines[2].index(" -> ")  # actions in one column
    assert lines[3] == "h1  tunnel  VNI 100 -> h2 (port 2)"
    assert re.fullmatch(r"h2  table 0 ingress\s+miss: no flow matched", lines[4])
    assert lines[5] == "h2  deliver to endpoint web-2 (port 1001)"
    assert lines[6:] == ["DELIVERED to web-2"]


def test_trace_verdict_says_why_when_the_names_do_not():
    arp = {"result": "delivered", "endpoints": [WEB1],
           "reason": "ARP request for 10.0.0.3 answered by the fabric"}
    assert verdict_line(arp, {WEB1: "web-1"}) == \
        "DELIVERED to web-1: ARP request for 10.0.0.3 answered by the fabric"
    nothing = {"result": "dropped", "endpoints": [], "reason": "no hop was taken"}
    assert verdict_line(nothing, {}) == "DROPPED: no hop was taken"
    out = {"result": "leaves", "endpoints": [], "host": "h1",
           "reason": "leaves the fabric from host h1 as 192.0.2.1:40000 (source NAT)"}
    assert verdict_line(out, {}) == \
        "LEAVES from h1: leaves the fabric from host h1 as 192.0.2.1:40000 (source NAT)"


def test_trace_dropped_is_a_result_not_an_error(stub, cli):
    code, out, _ = cli("--api", stub.url, "trace", "web-1", "10.0.0.9")
    assert code == 0
    assert "protocol" not in stub.calls[0][3]  # the API's default applies
    assert out.splitlines()[-1] == ("DROPPED on h1 at table 0 (ingress) by prio 100 "
                                    "in_port=1000 -> drop [endpoint web-1]: source address "
                                    "not the endpoint's")


def test_trace_json_and_errors(stub, cli):
    code, out, _ = cli("--json", "--api", stub.url, "trace", "web-1", "web-2")
    assert code == 0 and json.loads(out) == DELIVERED
    code, _, err = cli("--api", stub.url, "trace", "web-1", "nope")
    assert code == 2 and err == "ovsfabric: endpoint 'nope' does not exist\n"
    calls = len(stub.calls)
    code, _, err = cli("--api", stub.url, "trace", "web-1", "web-2", "--port", "80")
    assert code == 2 and "--port needs --protocol tcp or udp" in err
    assert len(stub.calls) == calls


def test_audit_reports_every_host_and_exits_1_when_one_differs(stub, cli):
    code, out, _ = cli("--api", stub.url, "audit")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "h1  in sync  27 flows"
    assert lines[1] == "h2  OUT OF SYNC  1 missing, 0 extra, 0 different"
    assert lines[2].split()[:3] == ["STATUS", "HOST", "TABLE"] and lines[2].startswith("    ")
    missing, = rows("\n".join(lines[2:4]))
    assert (missing["STATUS"], missing["HOST"], missing["PRIO"], missing["OWNER"],
            missing["PACKETS"]) == ("missing", "h2", "100", "endpoint web-1", "-")
    assert lines[4:] == ["h3  NOT CONNECTED  host 'h3' is not connected"]
    assert all(args == {"audit": "true"} for _, path, args, _ in stub.calls
               if path.endswith("/flows"))


def test_audit_all_in_sync_exits_0(stub, cli):
    stub.hosts = stub.hosts[:1]
    assert cli("--api", stub.url, "audit") == (0, "h1  in sync  27 flows\n", "")


def test_audit_json(stub, cli):
    code, out, _ = cli("--api", stub.url, "audit", "--json")
    assert code == 1
    h1, h2, h3 = json.loads(out)
    assert h1 == audit_view("h1", 27) and h2["missing"] == [FLOWS[3]]
    assert h3 == {"host": "h3", "in_sync": False, "error": "host 'h3' is not connected"}


# ---- rendering ---------------------------------------------------------------------------

@pytest.mark.parametrize("n, text", [(None, "-"), (0, "0"), (999, "999"), (1234, "1.2K"),
                                     (999_999, "1.0M"), (3_400_000, "3.4M"),
                                     (7_000_000_000, "7.0G")])
def test_human_count(n, text):
    assert human_count(n) == text


@pytest.mark.parametrize("n, text", [(None, "-"), (512, "512 B"), (1024, "1.0 KiB"),
                                     (12_595, "12.3 KiB"), (3 * 1024 ** 2, "3.0 MiB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_table_aligns_columns_and_right_aligns_numbers():
    assert table(("NAME", "FLOWS"), [("h1", 7), ("host-2", 1234), ("h3", None)],
                 right=("FLOWS",)).splitlines() == [
        "NAME    FLOWS",
        "h1          7",
        "host-2   1234",
        "h3          -"]
