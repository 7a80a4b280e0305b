"""Real Open vSwitch replies, read by openflow.stats: the tables the controller programs.

A network across the lab's hosts (local ports, tunnels, the gateway), then each host's table
read straight from its bridge and parsed both ways; then a controller restart, whose
reconciliation reads the tables with wire_stats and must find nothing to change.
"""
from __future__ import annotations

import signal

import pytest
from os_ken.ofproto import ofproto_parser

from flows.flow import OFPP_IN_PORT
from harness.ofclient import OpenFlowClient
from harness.simfabric import DP
from openflow import stats as wire_stats
from openflow import wire
from openflow.actions import conjunction, ct, dec_ttl, move, nat, output, set_field
from openflow.flow import Flow
from openflow.os_ken import flow_from_stats
from tests.helpers import eventually
from tests.slot import needs_lab

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


# What routing and policy will install: conntrack with NAT and marks, conjunctive matches,
# TTL decrement and L3 rewrites, tunnel destinations. Open vSwitch must answer with the very
# bytes the codec reads back as these flows, or a resync would rewrite them every time.
ROUTING_AND_POLICY = [
    Flow.make(0, 100, 7, {"eth_type": 0x0800, "ct_state": (0, 0x20)},
              actions=[ct(zone=5, table=10, nat=nat())]),
    Flow.make(10, 100, 7, {"eth_type": 0x0800, "ct_state": (0x21, 0x21), "ct_zone": 5},
              actions=[ct(commit=True, zone=5, nat=nat("src", ("192.0.2.1", "192.0.2.9"),
                                                         (1024, 2048)),
                          exec_actions=[set_field("ct_mark", 3),
                                        set_field("ct_label", 1 << 70)]),
                       dec_ttl(), set_field("eth_src", "02:00:00:00:00:01"),
                       set_field("ipv4_dst", "10.0.0.2"), output(1)]),
    Flow.make(10, 90, 7, {"eth_type": 0x0800, "ct_mark": 3, "ct_label": (1 << 70, 1 << 70),
                          "ct_zone": 5}, actions=[ct(commit=True, nat=nat("dst", ("10.0.0.7",
                                                                                   None)))]),
    Flow.make(20, 50, 7, {"eth_type": 0x0800, "ipv4_src": "10.0.0.1"},
              actions=[conjunction(9, 1, 2)]),
    Flow.make(20, 50, 7, {"eth_type": 0x0800, "tcp_dst": 80, "ip_proto": 6},
              actions=[conjunction(9, 2, 2)]),
    Flow.make(20, 60, 7, {"conj_id": 9, "eth_type": 0x0800}, actions=[output(2)]),
    Flow.make(20, 40, 7, {"tun_ipv4_dst": "198.51.100.7", "tunnel_id": 5, "reg3": 4},
              actions=[move("reg3", "reg4", 32), output(3)]),
]


def test_routing_and_policy_flows_read_back_as_sent(lab):
    host = lab.host("h1")
    host.vsctl("--may-exist", "add-br", "br-vocab", "--", "set", "bridge", "br-vocab",
               "datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure")
    try:
        bundle = wire.Bundle(1)
        with OpenFlowClient(host.bridge_mgmt("br-vocab")) as client:
            client.sock.sendall(b"".join(
                [bundle.open(1)]
                + [bundle.flow_mod_add(f, 2 + i) for i, f in enumerate(ROUTING_AND_POLICY)]
                + [bundle.commit(99)]))
            client.barrier()
            parts = client.flow_stats_replies()
        flows = [f for part in parts for f in wire_stats.flows(part)]
        assert flows == os_ken_flows(parts)
        assert sorted(flows, key=repr) == sorted(ROUTING_AND_POLICY, key=repr), \
            host.ofctl("dump-flows", bridge="br-vocab")
    finally:
        host.vsctl("--if-exists", "del-br", "br-vocab")
