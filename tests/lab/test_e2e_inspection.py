"""Flow inspection, audit and trace on the lab, against what OVS itself says."""
from __future__ import annotations

import pytest

from tests.helpers import eventually
from tests.lab.ofproto_trace import both_traces
from tests.slot import needs_lab

pytestmark = [pytest.mark.lab, needs_lab]


@pytest.fixture(scope="module")
def pair(fabric):
    """red endpoints on h1 and h2, a blue endpoint on h1 (same subnet)."""
    fabric.client.create_network("red", "10.30.0.0/24")
    fabric.client.create_network("blue", "10.30.0.0/24")
    a, ep_a = fabric.attach("h1", "ia", "red")
    b, ep_b = fabric.attach("h2", "ib", "red")
    c, ep_c = fabric.attach("h1", "ic", "blue", ip="10.30.0.99")
    return (a, ep_a), (b, ep_b), (c, ep_c)


def test_flows_have_owners_and_counters_that_move(fabric, pair):
    (a, ep_a), (b, ep_b), _ = pair
    flows = fabric.client.request("GET", "/v1/hosts/h1/flows", endpoint=ep_b["id"])
    assert flows and all(f["owner"] == {"kind": "endpoint", "id": ep_b["id"],
                                        "name": ep_b["name"]} for f in flows)
    unicast = next(f for f in flows if f["table_name"] == "l2")
    assert f"dl_dst={ep_b['mac']}" in unicast["match"] and "tun_id" in unicast["actions"]
    before = unicast["packets"]
    assert a.ping(ep_b["ip"], count=3, timeout=2)

    def packets_now():
        return next(f["packets"] for f in fabric.client.request(
            "GET", "/v1/hosts/h1/flows", endpoint=ep_b["id"]) if f["match"] == unicast["match"])
    # OVS pulls datapath counters into its flow table about every 500 ms.
    assert eventually(lambda: packets_now() >= before + 3)


def test_flow_filters(fabric, pair):
    (_, ep_a), _, (_, ep_c) = pair
    table0 = fabric.client.request("GET", "/v1/hosts/h1/flows", table="ingress")
    assert table0 and {f["table"] for f in table0} == {0}
    red = fabric.client.request("GET", "/v1/hosts/h1/flows", network="red")
    assert red and ep_c["id"] not in {f["owner"]["id"] for f in red}
    everywhere = fabric.client.request("GET", "/v1/networks/red/flows")
    assert {f["host"] for f in everywhere} == {"h1", "h2"}
    mine = fabric.client.request("GET", f"/v1/endpoints/{ep_a['id']}/flows")
    assert {f["host"] for f in mine} == {"h1", "h2"}, "ARP and delivery flows on both hosts"


def test_ports_and_tables(fabric, pair):
    (a, ep_a), (b, ep_b), _ = pair
    assert a.ping(ep_b["ip"], count=2, timeout=2)
    ports = fabric.client.request("GET", "/v1/hosts/h1/ports")
    mine = next(p for p in ports if p["endpoint"] and p["endpoint"]["id"] == ep_a["id"])
    assert mine["name"] == a.port and mine["rx_packets"] > 0
    assert any(p["tunnel_to"] == "h2" for p in ports)
    tables = {t["name"]: t for t in fabric.client.request("GET", "/v1/hosts/h1/tables")}
    assert set(tables) >= {"ingress", "arp", "l2"}
    assert tables["ingress"]["lookup_count"] > 0 and tables["l2"]["active_count"] > 0


def test_trace_delivered_across_the_tunnel(fabric, pair):
    (_, ep_a), (_, ep_b), _ = pair
    result = fabric.client.request("POST", "/v1/trace",
                                   {"from": ep_a["id"], "to": ep_b["id"], "protocol": "icmp"})
    assert result["verdict"]["result"] == "delivered"
    assert result["verdict"]["endpoints"] == [ep_b["id"]]
    tunnel = next(h for h in result["hops"] if h["step"] == "tunnel")
    red = fabric.client.network("red")
    assert (tunnel["host"], tunnel["remote_host"], tunnel["vni"]) == ("h1", "h2", red["vni"])
    assert [h["host"] for h in result["hops"] if h["step"] == "table"][0] == "h1"
    assert result["hops"][-1] == {**result["hops"][-1], "step": "deliver",
                                  "endpoint": ep_b["id"], "host": "h2"}


def test_trace_across_networks_is_dropped_at_l2(fabric, pair):
    (_, ep_a), _, (_, ep_c) = pair
    result = fabric.client.request("POST", "/v1/trace", {"from": ep_a["id"], "to": ep_c["id"]})
    verdict = result["verdict"]
    assert verdict["result"] == "dropped"
    assert (verdict["host"], verdict["table"], verdict["table_name"]) == ("h1", 20, "l2")
    assert "red" in verdict["reason"] and verdict["flow"]["owner"]["kind"] == "fabric"


def test_trace_arp_is_answered_by_the_fabric(fabric, pair):
    (_, ep_a), (_, ep_b), _ = pair
    result = fabric.client.request("POST", "/v1/trace",
                                   {"from": ep_a["name"], "to": ep_b["ip"], "protocol": "arp"})
    assert result["verdict"]["result"] == "delivered"
    assert result["verdict"]["endpoints"] == [ep_a["id"]]
    assert "answered by the fabric" in result["verdict"]["reason"]
    # b is on h2: the request went through the tunnel and b's own flow on h2 answered it.
    answer = [h for h in result["hops"] if h["step"] == "table" and h["table_name"] == "arp"
              and h["flow"] and h["flow"]["owner"] and h["flow"]["owner"].get("id") == ep_b["id"]]
    assert [h["host"] for h in answer] == ["h2"]
    assert any(h["step"] == "tunnel" for h in result["hops"])


def test_trace_arp_for_an_unknown_address_says_why_it_is_dropped(fabric, pair):
    (_, ep_a), _, _ = pair
    result = fabric.client.request("POST", "/v1/trace",
                                   {"from": ep_a["name"], "to": "10.30.0.250", "protocol": "arp"})
    verdict = result["verdict"]
    assert verdict["result"] == "dropped" and verdict["table_name"] == "arp"
    assert "10.30.0.250" in verdict["reason"] and "unknown addresses" in verdict["reason"]


@pytest.mark.parametrize("target", ["same_network", "other_network"])
def test_trace_agrees_with_ofproto_trace(fabric, pair, target):
    (a, ep_a), (_, ep_b), (_, ep_c) = pair
    dst = ep_b if target == "same_network" else ep_c
    ours, actions = both_traces(fabric, ep_a, dst["id"], dst["ip"], dst["mac"])
    if target == "same_network":
        assert "tnl_push" in actions and ours["verdict"]["result"] == "delivered"
    else:
        assert actions == "drop" and ours["verdict"]["result"] == "dropped"


def test_audit_is_clean_then_shows_a_flow_deleted_by_hand(fabric, pair):
    (_, ep_a), (_, ep_b), _ = pair
    for host in fabric.lab.hosts:
        audit = fabric.client.request("GET", f"/v1/hosts/{host.name}/flows", audit="true")
        assert audit["in_sync"], audit
        assert audit["installed"] == audit["desired"] > 0
    h1 = fabric.lab.host("h1")
    h1.ofctl("del-flows", f"table=20,dl_dst={ep_b['mac']}")
    audit = fabric.client.request("GET", "/v1/hosts/h1/flows", audit="true")
    assert not audit["in_sync"]
    assert [f["owner"]["id"] for f in audit["missing"]] == [ep_b["id"]]
    assert audit["extra"] == [] and audit["different"] == []
    # The controller does not notice a hand edit by itself; a restart reconciles it.
    fabric.controller.kill()
    fabric.controller.start()
    fabric.controller.wait_connected([h.name for h in fabric.lab.hosts])
    assert eventually(lambda: fabric.client.request(
        "GET", "/v1/hosts/h1/flows", audit="true")["in_sync"], timeout=10)


def test_unconnected_or_unknown_host(fabric, pair):
    from api.client import ApiError
    with pytest.raises(ApiError) as err:
        fabric.client.request("GET", "/v1/hosts/nope/flows")
    assert err.value.status == 404


def test_metrics_from_the_running_controller(fabric, pair):
    import requests

    def metrics() -> dict:
        text = requests.get(fabric.controller.url + "/metrics", timeout=5).text
        return {name: float(value) for name, value in
                (line.rsplit(" ", 1) for line in text.splitlines()
                 if line and not line.startswith("#"))}

    before = metrics()
    extra = fabric.client.create_endpoint("red", "h2")
    values = metrics()
    fabric.client.delete_endpoint(extra["id"])
    assert values['ovsfabric_host_connected{host="h1"}'] == 1.0
    assert values['ovsfabric_switch_connects_total{host="h1"}'] >= 1
    assert values['ovsfabric_reconcile_runs_total{host="h1"}'] >= 1
    assert values['ovsfabric_flows{host="h1"}'] > 10
    assert values['ovsfabric_endpoints{network="red"}'] == 3
    assert values["ovsfabric_convergence_seconds_count"] >= 1
    mods = 'ovsfabric_flow_mods_sent_total{host="h1"}'
    assert values[mods] == before[mods] + 1, "h1 gets the flow into the tunnel to h2, no more"
