"""flowsim against ofproto/trace on a real netdev bridge: conntrack with zones, commit and
recirculation, ct_state matches, NAT, dec_ttl and conjunctive matches.

The flows go to the bridge as ovs-ofctl writes them, come back as flow stats and are loaded
into the simulator as the live trace loads them. ofproto/trace runs no connection tracker: it
is told what each ct returned (--ct-next), namely the state the simulator's conntrack
computed, which the test also checks. So OVS judges the pipeline around conntrack: every
table and flow hit in every pass, the zone each recirculation carries, the ports the packet
goes out of, and the rewritten headers of a routed packet.
"""
from __future__ import annotations

import re

import pytest
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flowsim import CtEvent, Packet, SimSwitch
from harness.ofclient import OpenFlowClient
from harness.simfabric import DP
from tests.slot import needs_lab

pytestmark = [pytest.mark.lab, needs_lab]

BRIDGE = "br-sim"
PORTS = (1, 2, 3, 4)
MAC1, MAC2, GW_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:fe"
PUBLIC = "192.0.2.10"

# A firewall with SNAT: the zone comes from reg5 (5, or 6 for port 3), new connections are
# admitted from port 1 only and committed with a mark, replies come back routed (dec_ttl).
FIREWALL = """
table=0,priority=100,ip,ct_state=-trk,in_port=3,actions=load:0x6->NXM_NX_REG5[],ct(zone=NXM_NX_REG5[0..15],table=1,nat)
table=0,priority=90,ip,ct_state=-trk,actions=load:0x5->NXM_NX_REG5[],ct(zone=NXM_NX_REG5[0..15],table=1,nat)
table=0,priority=0,actions=drop
table=1,priority=100,ip,ct_state=+trk+new,in_port=1,actions=ct(commit,zone=NXM_NX_REG5[0..15],nat(src=192.0.2.10:40000-40010),exec(set_field:0x2a->ct_mark)),output:2
table=1,priority=90,ip,ct_state=+trk+est-rpl,in_port=1,actions=output:2
table=1,priority=90,ip,ct_state=+trk+est+rpl,in_port=2,actions=dec_ttl,output:1
table=1,priority=80,ip,ct_state=+trk+inv,actions=drop
table=1,priority=70,ip,ct_state=+trk+new,in_port=2,actions=drop
"""

# ct(table=) forks: the original goes on untracked and the tracked copy runs after it; a ct
# without table (the commit) leaves the copy untracked again.
FORK = """
table=0,priority=100,ip,in_port=4,actions=ct(zone=7,table=2),output:3,goto_table:1
table=1,priority=100,ip,ct_state=-trk,actions=output:1
table=2,priority=100,ip,ct_state=+trk+new,actions=ct(commit,zone=7),goto_table:3
table=3,priority=100,ip,ct_state=-trk,actions=output:2
table=3,priority=90,ip,ct_state=+trk,actions=output:1
"""

# An expired TTL stops its flow, not the action set written before it.
ACTION_SET = """
table=0,priority=10,ip,actions=write_actions(output:3),goto_table:1
table=1,priority=10,ip,actions=dec_ttl,output:2
"""

# Conjunctions of 2 and 3 dimensions in front of a router hop.
ROUTER = f"""
table=0,priority=50,ip,nw_src=10.0.0.1,actions=conjunction(9,1/2)
table=0,priority=50,ip,nw_src=10.0.0.3,actions=conjunction(9,1/2)
table=0,priority=50,tcp,tp_dst=80,actions=conjunction(9,2/2)
table=0,priority=50,udp,tp_dst=53,actions=conjunction(9,2/2)
table=0,priority=40,in_port=1,actions=conjunction(11,1/3)
table=0,priority=40,ip,nw_dst=10.0.1.0/24,actions=conjunction(11,2/3)
table=0,priority=40,tcp,actions=conjunction(11,3/3)
table=0,priority=60,conj_id=9,ip,actions=goto_table:12
table=0,priority=60,conj_id=11,ip,actions=output:4
table=0,priority=10,actions=output:3
table=12,priority=100,ip,dl_dst={GW_MAC},actions=set_field:{GW_MAC}->eth_src,set_field:{MAC2}->eth_dst,dec_ttl,output:2
table=12,priority=0,actions=drop
"""


@pytest.fixture(scope="module")
def bridge(lab):
    host = lab.host("h1")
    ports = [arg for p in PORTS for arg in ("--", "add-port", BRIDGE, f"sim{p}", "--", "set",
                                            "interface", f"sim{p}", "type=internal",
                                            f"ofport_request={p}")]
    host.vsctl("--may-exist", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE,
               f"datapath_type={host.datapath_type}", "protocols=OpenFlow13",
               "fail_mode=secure", *ports)
    try:
        yield host
    finally:
        host.vsctl("--if-exists", "del-br", BRIDGE)


def install(host, flows: str) -> SimSwitch:
    """The flows on the bridge, and a simulated switch loaded from what the bridge reports."""
    host.ofctl("del-flows", bridge=BRIDGE)
    for line in flows.split():
        host.ofctl("add-flow", line, bridge=BRIDGE)
    with OpenFlowClient(host.bridge_mgmt(BRIDGE)) as client:
        parts = client.flow_stats_replies()
    switch = SimSwitch(ports=PORTS)
    for part in parts:
        for s in ofproto_parser.msg(DP, *ofproto_parser.header(part), part).body:
            switch.apply(parser.OFPFlowMod(
                DP, cookie=s.cookie, table_id=s.table_id, priority=s.priority,
                command=ofp.OFPFC_ADD, match=s.match, instructions=s.instructions))
    return switch


def flow_text(pkt: Packet, in_port: int) -> str:
    proto = {1: "icmp", 6: "tcp", 17: "udp"}[pkt.ip_proto]
    text = (f"in_port={in_port},{proto},dl_src={pkt.eth_src},dl_dst={pkt.eth_dst},"
            f"nw_src={pkt.ipv4_src},nw_dst={pkt.ipv4_dst},nw_ttl={pkt.nw_ttl}")
    if proto == "icmp":
        return text + f",icmp_type={pkt.icmpv4_type},icmp_code={pkt.icmpv4_code}"
    return text + f",{proto}_src={pkt.get_int(proto + '_src')}," \
                  f"{proto}_dst={pkt.get_int(proto + '_dst')}"


def simulate(switch: SimSwitch, pkt: Packet, in_port: int) -> dict:
    outs = switch.process(pkt, in_port)
    passes: dict[int, list] = {}
    for step in switch.last_trace:
        passes.setdefault(step.recirculation, []).append(
            (step.table_id, None if step.entry is None else step.entry.priority))
    forks = [e for step in switch.last_trace for e in step.events
             if isinstance(e, CtEvent) and e.recirculate_to is not None]
    return {"passes": [passes[n] for n in sorted(passes)], "ports": [p for p, _ in outs],
            "ct_next": [",".join(e.state_after.strip("+").split("+")) for e in forks],
            "zones": [e.zone for e in forks], "packets": [q for _, q in outs]}


def ofproto_trace(host, pkt: Packet, in_port: int, ct_next: list[str]) -> dict:
    """ofproto/trace's passes (the packet, then each recirculation), as simulate() gives."""
    args = [arg for state in ct_next for arg in ("--ct-next", state)]
    out = host.appctl("ofproto/trace", BRIDGE, flow_text(pkt, in_port), *args)
    sections = re.split(r"^recirc\(0x[0-9a-f]+\) - resume conntrack.*$", out, flags=re.M)
    passes, ports, zones, final = [], [], [], []
    for index, section in enumerate(sections):
        hits = []
        for line in section.splitlines():
            if (hit := re.match(r"\s*(\d+)\. (?:.*, )?priority (\d+)$", line)):
                hits.append((int(hit.group(1)), int(hit.group(2))))
            elif (miss := re.match(r"\s*(\d+)\. No match", line)):
                hits.append((int(miss.group(1)), None))
            elif (port := re.match(r"\s+output:(\d+)$", line)):
                ports.append(int(port.group(1)))
        passes.append(hits)
        if index:
            zones.append(int(re.search(r"^Flow: .*ct_zone=(\d+)", section, re.M).group(1)))
        final.append(re.search(r"^Final flow: (.*)$", section, re.M).group(1))
    return {"passes": passes, "ports": ports, "zones": zones, "final": final, "text": out}


def compare(host, switch, pkt: Packet, in_port: int) -> dict:
    ours = simulate(switch, pkt, in_port)
    theirs = ofproto_trace(host, pkt, in_port, ours["ct_next"])
    assert (ours["passes"], ours["ports"], ours["zones"]) == \
        (theirs["passes"], theirs["ports"], theirs["zones"]), theirs["text"]
    return ours | {"final": theirs["final"]}


def udp(src, dst, sport, dport, ttl=64):
    return Packet.udp(MAC1, MAC2, src, dst, sport, dport, nw_ttl=ttl)


def test_firewall_with_snat_and_zones_agrees_with_ofproto_trace(bridge):
    switch = install(bridge, FIREWALL)
    out = compare(bridge, switch, udp("10.0.0.1", "10.0.0.2", 5000, 53), 1)
    assert (out["ct_next"], out["zones"], out["ports"]) == (["new,trk"], [5], [2])
    sent = out["packets"][0]
    assert (sent.ipv4_src, sent.udp_src) == (PUBLIC, 40000)

    reply = compare(bridge, switch, udp("10.0.0.2", PUBLIC, 53, 40000), 2)
    assert (reply["ct_next"], reply["ports"]) == (["est,rpl,trk,dnat"], [1])
    back = reply["packets"][0]
    assert (back.ipv4_dst, back.udp_dst, back.nw_ttl, back.ct_mark) == \
        ("10.0.0.1", 5000, 63, 0x2A)

    again = compare(bridge, switch, udp("10.0.0.1", "10.0.0.2", 5000, 53), 1)
    assert (again["ct_next"], again["ports"]) == (["est,trk,snat"], [2])

    # The same reply from port 3 is tracked in zone 6, where it is new: table 1 has no flow.
    other_zone = compare(bridge, switch, udp("10.0.0.2", PUBLIC, 53, 40000), 3)
    assert (other_zone["ct_next"], other_zone["zones"]) == (["new,trk"], [6])
    assert other_zone["passes"][1] == [(1, None)] and other_zone["ports"] == []

    stray = Packet.icmp(MAC2, MAC1, "10.0.0.2", "10.0.0.1", icmp_type=0, icmp_id=3)
    assert compare(bridge, switch, stray, 2)["ct_next"] == ["inv,trk"]
    outsider = compare(bridge, switch, udp("10.0.0.9", "10.0.0.1", 7, 7), 2)
    assert (outsider["ct_next"], outsider["passes"][1], outsider["ports"]) == \
        (["new,trk"], [(1, 70)], [])


def test_a_forked_packet_goes_on_untracked_as_in_ofproto_trace(bridge):
    switch = install(bridge, FORK)
    out = compare(bridge, switch, udp("10.0.0.1", "10.0.0.2", 5000, 53), 4)
    assert out["passes"] == [[(0, 100), (1, 100)], [(2, 100), (3, 100)]]
    assert (out["ct_next"], out["zones"], out["ports"]) == (["new,trk"], [7], [3, 1, 2])


@pytest.mark.parametrize("ttl, expected_ports", [(1, [3]), (2, [2, 3])])
def test_expired_ttl_and_the_action_set_as_in_ofproto_trace(bridge, ttl, expected_ports):
    switch = install(bridge, ACTION_SET)
    out = compare(bridge, switch, udp("10.0.0.1", "10.0.0.2", 1, 2, ttl=ttl), 1)
    assert out["ports"] == expected_ports


@pytest.mark.parametrize("src, dst, proto, port, in_port, ttl, expected_ports", [
    ("10.0.0.1", "10.0.0.2", "tcp", 80, 1, 64, [2]),  # conjunction 9, routed
    ("10.0.0.3", "10.0.0.2", "udp", 53, 1, 1, []),  # conjunction 9, TTL expires
    ("10.0.0.1", "10.0.0.2", "udp", 54, 1, 64, [3]),  # 9's second dimension fails
    ("10.0.0.2", "10.0.1.5", "tcp", 80, 1, 64, [4]),  # 9's first fails; 11's three match
    ("10.0.0.2", "10.0.1.5", "tcp", 80, 2, 64, [3]),  # 11's in_port fails
])
def test_conjunctions_and_routing_agree_with_ofproto_trace(bridge, src, dst, proto, port,
                                                            in_port, ttl, expected_ports):
    switch = install(bridge, ROUTER)
    maker = Packet.tcp if proto == "tcp" else Packet.udp
    pkt = maker(MAC1, GW_MAC, src, dst, 33000, port, nw_ttl=ttl)
    out = compare(bridge, switch, pkt, in_port)
    assert out["ports"] == expected_ports
    if expected_ports == [2]:
        routed = out["packets"][0]
        assert (routed.eth_src, routed.eth_dst, routed.nw_ttl) == (GW_MAC, MAC2, ttl - 1)
        for part in (f"dl_src={GW_MAC}", f"dl_dst={MAC2}", f"nw_ttl={ttl - 1}"):
            assert part in out["final"][0]
