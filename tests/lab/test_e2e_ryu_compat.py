"""Ryu's ofctl_rest subset (/stats/...) on the lab, against what OVS itself says."""
from __future__ import annotations

import re

import pytest

from tests.helpers import eventually
from tests.slot import needs_lab

pytestmark = [pytest.mark.lab, needs_lab]


@pytest.fixture(scope="module")
def pair(fabric):
    """Two endpoints of one network on h1 and h2 that have pinged each other."""
    fabric.client.create_network("ryu", "10.40.0.0/24")
    a, ep_a = fabric.attach("h1", "ya", "ryu")
    b, ep_b = fabric.attach("h2", "yb", "ryu")
    assert a.ping(ep_b["ip"], count=2, timeout=2)
    return (a, ep_a), (b, ep_b)


def stats(fabric, path: str, body: str | None = None):
    """Status and JSON of a /stats request (POST when there is a body)."""
    r = fabric.client.http.request("POST" if body else "GET", fabric.client.url + path,
                                   data=body, timeout=30)
    return r.status_code, r.json()


def dpids(fabric) -> dict[str, int]:
    return {h["name"]: int(h["dpid"], 16) for h in fabric.client.hosts()}


def ovs_flows(host, *args) -> list[tuple[int, int, int]]:
    """(table, priority, cookie) of each flow as ovs-ofctl dumps it."""
    flows = []
    for line in host.ofctl("dump-flows", *args).splitlines():
        if "actions=" not in line:
            continue
        table = re.search(r"\btable=(\d+)", line)
        priority = re.search(r"\bpriority=(\d+)", line)
        flows.append((int(table.group(1)) if table else 0,
                      int(priority.group(1)) if priority else 32768,
                      int(re.search(r"\bcookie=(0x[0-9a-f]+)", line).group(1), 16)))
    return sorted(flows)


def test_switches_are_the_hosts_dpids(fabric):
    status, body = stats(fabric, "/stats/switches")
    assert status == 200
    assert sorted(body) == sorted(dpids(fabric).values()) and len(body) == 3


def test_desc(fabric):
    dpid = dpids(fabric)["h1"]
    status, body = stats(fabric, f"/stats/desc/{dpid}")
    assert status == 200 and list(body) == [str(dpid)]
    assert set(body[str(dpid)]) == {"mfr_desc", "hw_desc", "sw_desc", "serial_num", "dp_desc"}
    assert body[str(dpid)]["hw_desc"] == "Open vSwitch"


@pytest.mark.parametrize("host", ["h1", "h2", "h3"])
def test_flows_are_the_switch_flows(fabric, pair, host):
    dpid = dpids(fabric)[host]
    expected = ovs_flows(fabric.lab.host(host))
    for ref in (str(dpid), hex(dpid)):  # decimal as in Ryu, and 0x-hex
        status, body = stats(fabric, f"/stats/flow/{ref}")
        assert status == 200 and list(body) == [str(dpid)]
        flows = body[str(dpid)]
        assert len(flows) == len(expected)
        assert sorted((f["table_id"], f["priority"], f["cookie"]) for f in flows) == expected
    if host != "h3":  # h3 has no endpoint: only the fixed flows, without counters to see
        assert len(flows) > 3
        assert any(f["packet_count"] > 0 for f in flows)
    for flow in flows:
        assert isinstance(flow["match"], dict) and isinstance(flow["actions"], list)
        assert {"priority", "cookie", "packet_count", "byte_count", "idle_timeout",
                "hard_timeout", "duration_sec", "table_id", "flags"} <= set(flow)


def test_flow_filter_by_table(fabric, pair):
    dpid = dpids(fabric)["h1"]
    status, body = stats(fabric, f"/stats/flow/{dpid}", '{"table_id": 10}')
    assert status == 200
    flows = body[str(dpid)]
    table10 = ovs_flows(fabric.lab.host("h1"), "table=10")
    assert flows and len(flows) == len(table10) < len(ovs_flows(fabric.lab.host("h1")))
    assert {f["table_id"] for f in flows} == {10}
    # Match and priority filters, as Ryu takes them: the ARP allow flow of the endpoint.
    arp = '{"table_id": 0, "match": {"eth_type": 2054}, "priority": 200}'
    _, body = stats(fabric, f"/stats/flow/{dpid}", arp)
    expected = [f for f in ovs_flows(fabric.lab.host("h1"), "table=0,arp") if f[1] == 200]
    assert len(body[str(dpid)]) == len(expected) == 1
    assert body[str(dpid)][0]["match"]["dl_type"] == 2054


def test_aggregate(fabric, pair):
    dpid = dpids(fabric)["h1"]
    h1 = fabric.lab.host("h1")
    status, body = stats(fabric, f"/stats/aggregateflow/{dpid}")
    assert status == 200
    [aggregate] = body[str(dpid)]
    assert aggregate["flow_count"] == len(ovs_flows(h1)) and aggregate["packet_count"] > 0
    _, body = stats(fabric, f"/stats/aggregateflow/{dpid}", '{"table_id": 20}')
    assert body[str(dpid)][0]["flow_count"] == len(ovs_flows(h1, "table=20")) > 0


def test_port_stats_count_the_endpoint_traffic(fabric, pair):
    (a, _), (_, ep_b) = pair
    dpid = dpids(fabric)["h1"]
    ofport = int(a.host.vsctl("get", "Interface", a.port, "ofport"))
    assert a.ping(ep_b["ip"], count=2, timeout=2)

    def port() -> dict | None:
        _, body = stats(fabric, f"/stats/port/{dpid}")
        return next((p for p in body[str(dpid)] if p["port_no"] == ofport), None)
    assert eventually(lambda: (port() or {}).get("rx_packets", 0) > 0)
    assert port()["tx_packets"] > 0
    status, body = stats(fabric, f"/stats/port/{dpid}/{ofport}")
    assert status == 200 and [p["port_no"] for p in body[str(dpid)]] == [ofport]


def test_table_stats(fabric, pair):
    dpid = dpids(fabric)["h1"]
    h1 = fabric.lab.host("h1")
    status, body = stats(fabric, f"/stats/table/{dpid}")
    assert status == 200
    tables = {t["table_id"]: t for t in body[str(dpid)]}
    for table_id in (0, 10, 20):
        active = tables[table_id]["active_count"]
        assert active == len(ovs_flows(h1, f"table={table_id}")) > 0
        assert tables[table_id]["lookup_count"] >= tables[table_id]["matched_count"]


def test_errors(fabric):
    unknown = max(dpids(fabric).values()) + 1
    for path in (f"/stats/desc/{unknown}", f"/stats/flow/{unknown}",
                 f"/stats/port/{hex(unknown)}/1"):
        status, body = stats(fabric, path)
        assert status == 404 and "error" in body, path
    h1 = dpids(fabric)["h1"]
    for path, body in (("/stats/flow/zz1", None), (f"/stats/flow/{h1}", "[1]"),
                       (f"/stats/port/{h1}/eth0", None)):
        status, answer = stats(fabric, path, body)
        assert status == 400 and "error" in answer, path