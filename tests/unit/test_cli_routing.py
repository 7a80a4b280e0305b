"""`ovsfabric routers`, `publish` and the egress options, through the real entry point against
the real REST app: human output and --json."""
from __future__ import annotations

import json
import re

import pytest

from api.client import FabricClient
from tests.unit.test_cli import api, cli, rows  # noqa: F401 (fixtures)


@pytest.fixture
def fabric(api, cli):  # noqa: F811
    """h1 (egress 198.51.100.1); red and blue (no egress); endpoint fw in red on h1."""
    assert cli("--api", api, "hosts", "create", "h1", "--ovsdb", "unix:/nonexistent/h1",
               "--tunnel-ip", "192.0.2.1", "--egress-ip", "198.51.100.1")[0] == 0
    assert cli("--api", api, "networks", "create", "red", "--subnet", "10.0.0.0/24")[0] == 0
    assert cli("--api", api, "networks", "create", "blue", "--subnet", "10.1.0.0/24",
               "--no-egress")[0] == 0
    assert cli("--api", api, "endpoints", "create", "--network", "red", "--host", "h1",
               "--name", "fw", "--ip", "10.0.0.5")[0] == 0
    return api


def test_egress_options(fabric, cli):  # noqa: F811
    client = FabricClient(fabric)
    assert client.host("h1")["egress_ip"] == "198.51.100.1"
    assert re.search(r"^egress ip:\s+198\.51\.100\.1$", cli("--api", fabric, "hosts", "show",
                                                            "h1")[1], re.M)
    assert {r["NAME"]: r["EGRESS"] for r in rows(cli("--api", fabric, "networks", "list")[1])} \
        == {"red": "yes", "blue": "no"}
    code, out, _ = cli("--api", fabric, "networks", "egress", "blue", "on")
    assert code == 0 and re.search(r"^egress:\s+yes$", out, re.M)
    code, out, _ = cli("--api", fabric, "--json", "networks", "egress", "red", "off")
    assert json.loads(out) == client.network("red") and json.loads(out)["egress"] is False


def test_routers(fabric, cli):  # noqa: F811
    code, out, _ = cli("--api", fabric, "routers", "create", "r1")
    assert code == 0 and re.search(r"^mac:\s+02:0f:5e:00:00:01$", out, re.M)
    for network in ("red", "blue"):
        assert cli("--api", fabric, "routers", "attach", "r1", network)[0] == 0
    router = FabricClient(fabric).router("r1")
    row, = rows(cli("--api", fabric, "routers", "list")[1])
    assert row == {"NAME": "r1", "NUMBER": "1", "MAC": "02:0f:5e:00:00:01",
                   "NETWORKS": "red, blue", "ROUTES": "0", "ID": router["id"]}
    assert json.loads(cli("--api", fabric, "routers", "list", "--json")[1]) == [router]

    code, out, _ = cli("--api", fabric, "routers", "routes", "r1", "192.168.0.0/16=10.0.0.5",
                       "0.0.0.0/0=10.0.0.5")
    assert code == 0 and rows(out) == [
        {"DESTINATION": "192.168.0.0/16", "NEXTHOP": "10.0.0.5"},
        {"DESTINATION": "0.0.0.0/0", "NEXTHOP": "10.0.0.5"}]
    assert json.loads(cli("--api", fabric, "--json", "routers", "routes", "r1")[1]) == \
        FabricClient(fabric).router("r1")["routes"]
    code, out, _ = cli("--api", fabric, "routers", "show", "r1")
    assert re.search(r"^networks:\s+red, blue$", out, re.M) and "192.168.0.0/16" in out
    code, _, err = cli("--api", fabric, "routers", "detach", "r1", "red")
    assert code == 2 and "routes through network 'red'" in err
    assert cli("--api", fabric, "routers", "routes", "r1", "--clear")[1] == \
        "router r1 has no routes\n"
    assert cli("--api", fabric, "routers", "detach", "r1", "red")[1] == \
        "detached network red from router r1\n"
    code, _, err = cli("--api", fabric, "routers", "delete", "r1")
    assert code == 2 and "networks attached" in err
    assert cli("--api", fabric, "routers", "detach", "r1", "blue")[0] == 0
    assert cli("--api", fabric, "routers", "delete", "r1")[1] == "deleted router r1\n"
    assert cli("--api", fabric, "routers", "list")[1] == "no routers\n"


ROUTER_ERRORS = [
    (["routes", "r1", "192.168.0.0/16"], ["DEST=NEXTHOP"]),
    (["routes", "r1", "192.168.0.0/16=10.0.0.5", "--clear"], ["not both"]),
    (["routes", "r1", "192.168.0.1/16=10.0.0.5"], ["host bits set"]),
    (["show", "nope"], ["nope"]),
]


def test_router_errors_exit_2_and_change_nothing(fabric, cli):  # noqa: F811
    assert cli("--api", fabric, "routers", "create", "r1")[0] == 0
    before = FabricClient(fabric).routers()
    for argv, words in ROUTER_ERRORS:
        code, out, err = cli("--api", fabric, "routers", *argv)
        assert code == 2 and out == ""
        for word in words:
            assert word in err
    assert FabricClient(fabric).routers() == before


def test_publish(fabric, cli):  # noqa: F811
    assert cli("--api", fabric, "publish", "add", "fw", "tcp", "80")[1] == \
        "published tcp 198.51.100.1:49152 (host h1) -> endpoint fw port 80\n"
    code, out, _ = cli("--api", fabric, "--json", "publish", "add", "fw", "udp", "53", "5353")
    assert json.loads(out) == {"protocol": "udp", "port": 53, "host_port": 5353, "host": "h1",
                               "host_ip": "198.51.100.1"}
    assert rows(cli("--api", fabric, "publish", "list", "fw")[1]) == [
        {"PROTOCOL": "tcp", "HOST": "h1", "OUTSIDE": "198.51.100.1:49152", "PORT": "80"},
        {"PROTOCOL": "udp", "HOST": "h1", "OUTSIDE": "198.51.100.1:5353", "PORT": "53"}]
    code, _, err = cli("--api", fabric, "publish", "add", "fw", "udp", "54", "5353")
    assert code == 2 and "5353" in err
    assert cli("--api", fabric, "publish", "delete", "fw", "tcp", "49152")[1] == \
        "unpublished tcp host port 49152 of endpoint fw\n"
    fw = FabricClient(fabric).endpoints()[0]["id"]
    assert json.loads(cli("--api", fabric, "publish", "list", fw, "--json")[1]) == \
        FabricClient(fabric).published(fw)
    assert cli("--api", fabric, "publish", "delete", "fw", "udp", "5353")[0] == 0
    assert cli("--api", fabric, "publish", "list", "fw")[1] == "endpoint fw publishes no ports\n"


def test_a_routed_trace_shows_the_route_under_its_hop():
    from cli.inspection import trace_lines
    flow = {"priority": 149, "match": "ip,metadata=0x100000000/0xffff00000000,nw_dst=10.2.0.0/24",
            "actions": "dec_ttl,move:NXM_OF_IP_DST[]->NXM_NX_REG3[],write_metadata:0xc9,"
                       "goto_table:14", "owner": {"kind": "router", "id": "r", "name": "r1"}}
    route = {"router": "r1", "destination": "10.2.0.0/24", "nexthop": None, "network": "back",
             "ttl": {"before": 64, "after": 63}}
    result = {"packet": {}, "hops": [{"host": "h1", "step": "table", "table": 12,
                                      "table_name": "l3_lookup", "flow": flow, "route": route}],
              "verdict": {"result": "delivered", "endpoints": [], "reason": "delivered"}}
    lines = trace_lines(result, {})
    assert lines[1].startswith("h1  table 12 l3_lookup  prio 149")
    assert lines[2].split() == "h1 routed by r1: 10.2.0.0/24 attached, into back, TTL 64 -> 63"\
        .split()


def test_flows_of_a_router_take_no_other_filter(fabric, cli):  # noqa: F811
    code, _, err = cli("--api", fabric, "flows", "--router", "r1", "--network", "red")
    assert code != 0 and "--router takes no HOST" in err
