"""Real Open vSwitch replies, read by openflow.stats: the tables the controller programs.

A network across the lab's hosts (local ports, tunnels, the gateway), then each host's table
read straight from its bridge and parsed both ways; then a controller restart, whose
reconciliation reads the tables with wire_stats and must find nothing to change.
"""
from __future__ import annotations

import signal

import pytest
from os_ken.ofproto import ofproto_parser

from openflow import stats as wire_stats
from flows.flow import OFPP_IN_PORT
from openflow.os_ken import flow_from_stats
from tests.conftest import needs_lab
from tests.helpers import eventually
from tests.ofclient import OpenFlowClient
from tests.simfabric import DP

pytestmark = [pytest.mark.lab, needs_lab]


@pytest.fixture(scope="module")
def net(fabric):
    fabric.client.create_network("ws", "10.77.0.0/24")
    for host in fabric.lab.hosts:
        fabric.attach(host.name, f"ws{host.name}", "ws")
    fabric.attach("h1", "ws2h1", "ws")
    yield
    fabric.detach_all()


def raw_table(host) -> list[bytes]:
    with OpenFlowClient(host.bridge_mgmt()) as client:
        return client.flow_stats_replies()


def os_ken_flows(parts: list[bytes]) -> list:
    result = []
    for part in parts:
        msg = ofproto_parser.msg(DP, *ofproto_parser.header(part), part)
        result += [flow_from_stats(stats) for stats in msg.body]
    return result


def test_open_vswitch_replies_read_as_os_ken_reads_them(fabric, net):
    for host in fabric.lab.hosts:
        assert eventually(lambda: fabric.client.audit(host.name)["in_sync"], 10)
        parts = raw_table(host)
        flows = [f for part in parts for f in wire_stats.flows(part)]
        assert flows == os_ken_flows(parts), host.name
        actions = {a for f in flows for a in f.actions}
        # What makes these replies more than plain OXM: NXM headers in moves, reg0.
        assert ("move", "arp_sha", "arp_tha", 48) in actions
        assert ("output", OFPP_IN_PORT) in actions
        assert any(a[0] == "set_field" and a[1] == "tunnel_id" for a in actions)
        assert any(name == "reg0" for f in flows for name, _ in f.match)


def test_a_restart_reads_the_same_table_and_changes_nothing(fabric, net):
    before = {h.name: os_ken_flows(raw_table(h)) for h in fabric.lab.hosts}
    fabric.controller.kill(signal.SIGTERM)
    fabric.controller.start()
    fabric.controller.wait_connected([h.name for h in fabric.lab.hosts])
    for host in fabric.lab.hosts:
        status = eventually(lambda: (s := fabric.client.host(host.name))["last_reconcile"]
                            and s, 20)
        assert status, host.name
        reconcile = status["last_reconcile"]
        assert (reconcile["added"], reconcile["deleted"]) == (0, 0), (host.name, reconcile)
        assert reconcile["flows_read"] == len(before[host.name])
        assert status["flow_mods_sent"] == 0
    assert {h.name: os_ken_flows(raw_table(h)) for h in fabric.lab.hosts} == before
