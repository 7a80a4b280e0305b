"""flowsim: flow tables built from real os-ken message objects, no switch needed."""
import pytest
from os_ken.ofproto import nicira_ext
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flowsim import FlowSimError, Packet, SimFabric, SimSwitch


class DP:  # os-ken messages only need a datapath that names its ofproto modules
    ofproto = ofp
    ofproto_parser = parser


DPATH = DP()
MAC1, MAC2, GW_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:fe"
IP1, IP2, GW_IP = "10.0.0.1", "10.0.0.2", "10.0.0.254"


def flow(match=None, inst=(), table=0, priority=100, command=ofp.OFPFC_ADD, **kw):
    return parser.OFPFlowMod(datapath=DPATH, table_id=table, priority=priority,
                             command=command, match=parser.OFPMatch(**(match or {})),
                             instructions=list(inst), **kw)


def delete(strict=False, **kw):
    # OVS filters deletes by out_port/out_group; ANY turns the filters off.
    kw.setdefault("out_port", ofp.OFPP_ANY)
    kw.setdefault("out_group", ofp.OFPG_ANY)
    cmd = ofp.OFPFC_DELETE_STRICT if strict else ofp.OFPFC_DELETE
    return flow(command=cmd, **kw)


def apply(*actions):
    return parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions))


def write(*actions):
    return parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, list(actions))


def output(port):
    return parser.OFPActionOutput(port)


def goto(table):
    return parser.OFPInstructionGotoTable(table)


def ports_of(outputs):
    return [port for port, _ in outputs]


def switch(*msgs, ports=(1, 2, 3, 4)):
    sw = SimSwitch(dpid=1, ports=ports)
    sw.apply_all(msgs)
    return sw


# ---- matching -----------------------------------------------------------------

def test_highest_priority_wins_counts_and_miss_drops():
    sw = switch(flow({}, [apply(output(2))], priority=1),
                flow({"eth_dst": MAC2}, [apply(output(3))], priority=200))
    pkt = Packet.icmp(MAC1, MAC2, IP1, IP2)
    assert ports_of(sw.process(pkt, in_port=1)) == [3]
    assert ports_of(sw.process(Packet.icmp(MAC1, GW_MAC, IP1, GW_IP), in_port=1)) == [2]
    assert [f.packet_count for f in sw.flows()] == [1, 1]
    assert sw.last_trace[0].entry.priority == 1

    empty = switch()
    assert empty.process(pkt, in_port=1) == []
    assert [(s.table_id, s.entry) for s in empty.last_trace] == [(0, None)]


def test_masked_matches_use_the_mask():
    sw = switch(flow({"eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")},
                     [apply(output(2))], priority=300),
                flow({"eth_type": 0x0800, "ipv4_dst": "10.0.1.0/24"}, [apply(output(3))]),
                flow({"eth_type": 0x0800, "ipv4_dst": ("10.0.2.0", "255.255.255.0")},
                     [apply(output(4))]))
    assert ports_of(sw.process(Packet.arp_request(MAC1, IP1, IP2), 1)) == [2]  # broadcast
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, "10.0.1.77"), 1)) == [3]
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, "10.0.2.9"), 1)) == [4]
    assert sw.process(Packet.icmp(MAC1, MAC2, IP1, "10.0.3.9"), 1) == []


def test_match_on_a_header_the_packet_lacks_fails():
    sw = switch(flow({"ipv4_src": IP1}, [apply(output(2))]))
    assert sw.process(Packet.arp_request(MAC1, IP1, IP2), 1) == []
    assert ports_of(sw.process(Packet.udp(MAC1, MAC2, IP1, IP2, 5000, 53), 1)) == [2]


# ---- instructions and actions ---------------------------------------------------

def test_goto_and_write_metadata():
    sw = switch(flow({"in_port": 1}, [parser.OFPInstructionWriteMetadata(0x1234, 0xFF00), goto(1)]),
                flow({"metadata": 0x1200}, [apply(output(2))], table=1))  # mask kept 0x34 out
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2), 1)) == [2]
    assert [s.table_id for s in sw.last_trace] == [0, 1]


def test_metadata_and_registers_reset_per_packet():
    sw = switch(flow({"metadata": 7, "reg3": 9}, [apply(output(2))]))
    pkt = Packet.icmp(MAC1, MAC2, IP1, IP2)
    pkt.metadata, pkt.reg3 = 7, 9  # stale state from the caller must not leak in
    assert sw.process(pkt, 1) == []


def test_goto_must_go_forward():
    with pytest.raises(FlowSimError):
        switch(flow({}, [goto(1)], table=1))


def test_apply_runs_now_write_runs_at_pipeline_end():
    sw = switch(
        flow({}, [apply(parser.OFPActionSetField(eth_dst=MAC2), output(2)),
                  write(parser.OFPActionSetField(eth_dst=GW_MAC), output(3)), goto(1)]),
        flow({}, [apply(output(4))], table=1))
    outs = sw.process(Packet.icmp(MAC1, "02:00:00:00:00:99", IP1, IP2), 1)
    assert [(port, p.eth_dst) for port, p in outs] == [(2, MAC2), (4, MAC2), (3, GW_MAC)]


def test_clear_actions_empties_the_action_set_before_write():
    clear = parser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, [])
    sw = switch(flow({}, [write(output(3)), goto(1)]),
                # Listed write-then-clear, but the spec runs clear first.
                flow({}, [write(output(4)), clear], table=1))
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2), 1)) == [4]


def test_flow_without_instructions_drops():
    sw = switch(flow({}, []))
    assert sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2), 1) == []
    assert sw.flows()[0].packet_count == 1


def test_output_to_ingress_needs_ofpp_in_port():
    sw = switch(flow({}, [apply(output(1), output(ofp.OFPP_IN_PORT),
                                output(ofp.OFPP_CONTROLLER), output(99))]))
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2), 1)) == [1, "controller"]


def test_reg_load_and_reg_move_between_tables():
    load = parser.NXActionRegLoad(ofs_nbits=nicira_ext.ofs_nbits(8, 15), dst="reg0", value=0xAB)
    move = parser.NXActionRegMove(src_field="reg0", dst_field="tunnel_id", n_bits=8, src_ofs=8)
    sw = switch(flow({}, [apply(load, move), goto(1)]),
                flow({"reg0": 0xAB00, "tunnel_id": 0xAB}, [apply(output(2))], table=1))
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2), 1)) == [2]


def test_arp_responder_replies_on_in_port():
    # The classic OVS ARP responder: turn the request around in the switch.
    responder = flow(
        {"eth_type": 0x0806, "arp_op": 1, "arp_tpa": GW_IP},
        [apply(parser.NXActionRegMove(src_field="eth_src", dst_field="eth_dst", n_bits=48),
               parser.OFPActionSetField(eth_src=GW_MAC),
               parser.OFPActionSetField(arp_op=2),
               parser.NXActionRegMove(src_field="arp_sha", dst_field="arp_tha", n_bits=48),
               parser.NXActionRegMove(src_field="arp_spa", dst_field="arp_tpa", n_bits=32),
               parser.OFPActionSetField(arp_sha=GW_MAC),
               parser.OFPActionSetField(arp_spa=GW_IP),
               output(ofp.OFPP_IN_PORT))])
    sw = switch(responder)
    outs = sw.process(Packet.arp_request(MAC1, IP1, GW_IP), in_port=3)
    expected = Packet.arp_reply(GW_MAC, GW_IP, MAC1, IP1)
    expected.in_port = 3
    assert outs == [(3, expected)]
    assert sw.process(Packet.arp_request(MAC1, IP1, IP2), in_port=3) == []


# ---- flow table maintenance --------------------------------------------------------

def test_add_replaces_identical_match_and_priority():
    sw = switch(flow({"eth_dst": MAC2}, [apply(output(2))], cookie=1))
    sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2), 1)
    # Same match spelled with a full mask and upper case is still identical.
    sw.apply(flow({"eth_dst": (MAC2.upper(), "ff:ff:ff:ff:ff:ff")}, [apply(output(3))], cookie=2))
    sw.apply(flow({"eth_dst": MAC2}, [apply(output(4))], priority=50))
    flows = sw.flows()
    assert [(f.priority, f.cookie, f.packet_count) for f in flows] == [(100, 2, 1), (50, 0, 0)]
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2), 1)) == [3]


def test_delete_non_strict_with_cookie_mask():
    sw = switch(flow({"eth_type": 0x0800, "ipv4_dst": IP1}, cookie=0x101),
                flow({"eth_type": 0x0800, "ipv4_dst": IP2}, cookie=0x102, priority=7),
                flow({"eth_type": 0x0800}, cookie=0x201),
                flow({}, cookie=0x101, priority=0))
    sw.apply(delete(match={"eth_type": 0x0800}, cookie=0x100, cookie_mask=0xFF00))
    # The IPv4 flows of cookie 0x1xx go; the other cookie and the wider match stay.
    assert sorted(f.cookie for f in sw.flows()) == [0x101, 0x201]
    assert sw.flows()[-1].match == {}


def test_delete_non_strict_selects_only_more_specific_masks():
    sw = switch(flow({"eth_type": 0x0800, "ipv4_dst": "10.0.0.0/8"}),
                flow({"eth_type": 0x0800, "ipv4_dst": "10.0.5.0/24"}))
    sw.apply(delete(match={"eth_type": 0x0800, "ipv4_dst": "10.0.0.0/16"}))
    assert [f.match["ipv4_dst"] for f in sw.flows()] == [("10.0.0.0", "255.0.0.0")]


def test_zero_mask_is_a_wildcard():
    sw = switch(flow({}, [apply(output(2))]))
    sw.apply(flow({"eth_src": (MAC1, "00:00:00:00:00:00")}, [apply(output(3))]))
    assert len(sw.flows()) == 1  # identical to the match-all flow, so it replaced it
    assert ports_of(sw.process(Packet.icmp(MAC2, MAC1, IP2, IP1), 1)) == [3]


def test_delete_strict_needs_priority_and_exact_match():
    sw = switch(flow({"eth_type": 0x0800}, priority=10),
                flow({"eth_type": 0x0800}, priority=20),
                flow({"eth_type": 0x0800, "ip_proto": 6}, priority=10))
    sw.apply(delete(strict=True, match={"eth_type": 0x0800}, priority=10))
    assert [(f.priority, f.match) for f in sw.flows()] == [
        (20, {"eth_type": 0x0800}), (10, {"eth_type": 0x0800, "ip_proto": 6})]


def test_delete_out_port_filter_and_os_ken_default():
    sw = switch(flow({"in_port": 1}, [apply(output(2))]),
                flow({"in_port": 2}, [write(output(3))]))
    # os-ken's OFPFlowMod defaults out_port/out_group to 0, which OVS reads as a
    # filter "outputs to port 0": nothing is deleted.
    sw.apply(flow(command=ofp.OFPFC_DELETE))
    assert len(sw.flows()) == 2
    sw.apply(delete(out_port=3))
    assert [f.match for f in sw.flows()] == [{"in_port": 1}]


def test_delete_all_tables():
    sw = switch(flow({}, table=0), flow({}, table=3), flow({"in_port": 1}, table=5))
    sw.apply(delete(table=4))
    assert len(sw.flows()) == 3
    sw.apply(delete(table=ofp.OFPTT_ALL))
    assert sw.flows() == []


def test_modify_changes_instructions_only_and_never_adds():
    sw = switch(flow({"eth_dst": MAC2}, [apply(output(2))], cookie=5),
                flow({"eth_dst": MAC1}, [apply(output(2))], cookie=6, priority=5))
    sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2), 1)
    sw.apply(flow({}, [apply(output(3))], command=ofp.OFPFC_MODIFY, cookie=5, cookie_mask=0xFF))
    assert [(f.cookie, f.packet_count, [a.port for a in f.instructions[0].actions])
            for f in sw.flows()] == [(5, 1, [3]), (6, 0, [2])]
    sw.apply(flow({"eth_dst": MAC1}, [apply(output(4))], command=ofp.OFPFC_MODIFY_STRICT))
    assert ports_of(sw.process(Packet.icmp(MAC2, MAC1, IP2, IP1), 1)) == [2]  # priority differs
    sw.apply(flow({"eth_dst": GW_MAC}, [apply(output(4))], command=ofp.OFPFC_MODIFY))
    assert len(sw.flows()) == 2


def test_add_to_all_tables_is_rejected():
    with pytest.raises(FlowSimError):
        switch(flow({}, table=ofp.OFPTT_ALL))


# ---- messages ---------------------------------------------------------------------

def bundle_ctrl(bundle_id, kind):
    return parser.ONFBundleCtrlMsg(DPATH, bundle_id, kind, ofp.ONF_BF_ATOMIC, [])


def bundle_add(bundle_id, msg):
    return parser.ONFBundleAddMsg(DPATH, bundle_id, ofp.ONF_BF_ATOMIC, msg, [])


def test_bundle_applies_on_commit_and_not_on_discard():
    sw = switch()
    sw.apply_all([bundle_ctrl(7, ofp.ONF_BCT_OPEN_REQUEST),
                  bundle_add(7, flow({"in_port": 1}, [apply(output(2))])),
                  bundle_add(7, flow({"in_port": 2}, [apply(output(1))]))])
    assert sw.flows() == []
    sw.apply(bundle_ctrl(7, ofp.ONF_BCT_CLOSE_REQUEST))
    with pytest.raises(FlowSimError):
        sw.apply(bundle_add(7, flow({"in_port": 3})))  # closed bundles take no more
    sw.apply_all([bundle_ctrl(7, ofp.ONF_BCT_COMMIT_REQUEST), parser.OFPBarrierRequest(DPATH)])
    assert len(sw.flows()) == 2

    sw.apply_all([bundle_add(8, delete(table=ofp.OFPTT_ALL)),
                  bundle_ctrl(8, ofp.ONF_BCT_DISCARD_REQUEST)])
    assert len(sw.flows()) == 2
    with pytest.raises(FlowSimError):
        sw.apply(bundle_ctrl(8, ofp.ONF_BCT_COMMIT_REQUEST))  # gone with the discard


def test_bundle_commit_is_atomic():
    sw = switch(flow({"in_port": 1}, [apply(output(2))]))
    sw.apply_all([bundle_add(9, delete(table=ofp.OFPTT_ALL)),
                  bundle_add(9, flow({}, [goto(0)]))])  # invalid: goto backwards
    with pytest.raises(FlowSimError):
        sw.apply(bundle_ctrl(9, ofp.ONF_BCT_COMMIT_REQUEST))
    assert [f.match for f in sw.flows()] == [{"in_port": 1}]


def test_unknown_message_and_action_raise():
    sw = switch()
    with pytest.raises(FlowSimError):
        sw.apply(parser.OFPEchoRequest(DPATH))
    sw.apply(flow({}, [apply(parser.OFPActionGroup(1))]))  # storing is fine...
    with pytest.raises(FlowSimError):
        sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2), 1)  # ...executing is not modelled


# ---- fabric -----------------------------------------------------------------------

VNI, TUN = 5000, 10


def vtep(local_port, local_mac, remote_mac):
    """Host port <-> tunnel port for one VNI, switching on destination MAC."""
    return switch(
        flow({"in_port": local_port}, [apply(parser.OFPActionSetField(tunnel_id=VNI))]
             + [parser.OFPInstructionWriteMetadata(1, 1), goto(1)]),
        flow({"in_port": TUN, "tunnel_id": VNI}, [goto(1)]),
        flow({"eth_dst": remote_mac, "metadata": (1, 1)}, [apply(output(TUN))], table=1),
        flow({"eth_dst": local_mac, "tunnel_id": VNI}, [apply(output(local_port))], table=1),
        ports=(local_port, TUN))


def two_site_fabric():
    fab = SimFabric()
    fab.add_switch("h1", vtep(1, MAC1, MAC2))
    fab.add_switch("h2", vtep(2, MAC2, MAC1))
    fab.link_tunnel(("h1", TUN), ("h2", TUN))
    fab.attach("ep1", ("h1", 1))
    fab.attach("ep2", ("h2", 2))
    return fab


def test_tunnel_delivers_between_switches_both_ways():
    fab = two_site_fabric()
    pkt = Packet.icmp(MAC1, MAC2, IP1, IP2)
    assert fab.send("ep1", pkt) == [("ep2", pkt)]  # the host sees the frame unchanged
    assert [(name, port) for name, port, _ in fab.last_path] == [("h1", 1), ("h2", TUN)]
    assert fab.reachable("ep2", "ep1", Packet.icmp(MAC2, MAC1, IP2, IP1))
    assert not fab.reachable("ep1", "ep2", Packet.icmp(MAC1, GW_MAC, IP1, IP2))


def test_wrong_vni_is_not_delivered():
    fab = two_site_fabric()
    fab.switches["h1"].apply(flow({"in_port": 1}, [apply(parser.OFPActionSetField(tunnel_id=VNI + 1),
                                                         output(TUN))], priority=200))
    assert fab.send("ep1", Packet.icmp(MAC1, MAC2, IP1, IP2)) == []


def test_tunnel_loop_hits_hop_limit():
    fab = SimFabric(max_hops=5)
    for name in ("a", "b"):
        # Plain output back to the ingress port would be dropped; IN_PORT bounces it.
        fab.add_switch(name, switch(flow({"in_port": 1}, [apply(output(TUN))]),
                                    flow({"in_port": TUN}, [apply(output(ofp.OFPP_IN_PORT))]),
                                    ports=(1, TUN)))
    fab.link_tunnel(("a", TUN), ("b", TUN))
    fab.attach("ep", ("a", 1))
    with pytest.raises(FlowSimError, match="hop limit"):
        fab.send("ep", Packet.icmp(MAC1, MAC2, IP1, IP2))
