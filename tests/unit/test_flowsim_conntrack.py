"""flowsim's conntrack, L3 rewrites and conjunctive matches, with os-ken message objects."""
import pytest
from os_ken.ofproto import nicira_ext
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flowsim import CtEvent, FlowSimError, Packet, TtlEvent
from flowsim.conntrack import DNAT, EST, INV, NEW, RPL, SNAT, TRK
from tests.unit.test_flowsim import apply, flow, goto, output, ports_of, switch, write

MAC1, MAC2, GW_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:fe"
IP1, IP2, IP3, PUBLIC = "10.0.0.1", "10.0.0.2", "10.0.0.3", "192.0.2.10"
IP = {"eth_type": 0x0800}
NO_RECIRCULATION = 0xFF
COMMIT = 1


def ct(table=NO_RECIRCULATION, zone=0, commit=False, actions=(), zone_field=None):
    if zone_field is not None:  # zone=NXM_NX_REGn[0..15]
        return parser.NXActionCT(COMMIT if commit else 0, zone_field,
                                 nicira_ext.ofs_nbits(0, 15), table, 0, list(actions))
    return parser.NXActionCT(COMMIT if commit else 0, 0, zone, table, 0, list(actions))


def nat(kind=None, low="", high="", ports=(None, None)):
    flags = {None: 0, "src": 1, "dst": 2}[kind]
    return parser.NXActionNAT(flags, range_ipv4_min=low, range_ipv4_max=high or low,
                              range_proto_min=ports[0], range_proto_max=ports[1])


def state(value, mask=None):
    return {"ct_state": value if mask is None else (value, mask)}


def firewall():
    """Table 0 tracks; table 1 commits new connections from port 1 and passes established
    ones both ways; whatever else is tracked is dropped."""
    return switch(
        flow(IP | state(0, TRK), [apply(ct(table=1))]),
        flow(IP | state(TRK | NEW, TRK | NEW) | {"in_port": 1},
             [apply(ct(commit=True), output(2))], table=1),
        flow(IP | state(TRK | EST, TRK | EST) | {"in_port": 1}, [apply(output(2))], table=1),
        flow(IP | state(TRK | EST, TRK | EST) | {"in_port": 2}, [apply(output(1))], table=1))


def udp(src_ip=IP1, dst_ip=IP2, sport=5000, dport=53, src_mac=MAC1, dst_mac=MAC2):
    return Packet.udp(src_mac, dst_mac, src_ip, dst_ip, sport, dport)


def ct_events(sw) -> list[CtEvent]:
    return [e for step in sw.last_trace for e in step.events if isinstance(e, CtEvent)]


# ---- conntrack ----------------------------------------------------------------------

def test_new_is_committed_and_the_reply_is_established():
    sw = firewall()
    assert ports_of(sw.process(udp(), 1)) == [2]
    first = ct_events(sw)
    assert [(e.state_before, e.state_after, e.committed) for e in first] == [
        ("-trk", "+new+trk", None), ("+new+trk", "+new+trk", "new connection")]
    assert [(s.table_id, s.recirculation) for s in sw.last_trace] == [(0, 0), (1, 1)]
    # Without the commit, the reply would be +new and dropped: it comes back established.
    assert ports_of(sw.process(udp(IP2, IP1, 53, 5000, MAC2, MAC1), 2)) == [1]
    assert ct_events(sw)[0].state_after == "+est+rpl+trk"
    assert ports_of(sw.process(udp(), 1)) == [2]
    assert ct_events(sw)[0].state_after == "+est+trk"
    # A reply to a connection never opened is new, from the wrong side: dropped.
    assert sw.process(udp(IP2, IP1, 53, 5001, MAC2, MAC1), 2) == []


def test_uncommitted_connections_leave_nothing():
    sw = switch(flow(IP | state(0, TRK), [apply(ct(table=1))]),
                flow(IP | state(TRK | EST, TRK | EST), [apply(output(2))], table=1),
                flow(IP | state(TRK | NEW, TRK | NEW), [apply(output(3))], table=1))
    assert ports_of(sw.process(udp(), 1)) == [3]
    assert ports_of(sw.process(udp(IP2, IP1, 53, 5000), 2)) == [3]
    assert sw.conntrack.connections() == []


def load(register, value):
    return parser.NXActionRegLoad(ofs_nbits=nicira_ext.ofs_nbits(0, 31), dst=register,
                                  value=value)


def test_zones_from_a_register_keep_identical_tuples_apart():
    sw = switch(
        *(flow({"in_port": port}, [apply(load("reg5", zone)), goto(1)])
          for port, zone in ((1, 7), (2, 8), (3, 7))),
        flow(IP, [apply(ct(table=2, zone_field="reg5"))], table=1),
        flow(IP | state(TRK | NEW, TRK | NEW),
             [apply(ct(commit=True, zone_field="reg5"), output(4))], table=2),
        flow(IP | state(TRK | EST, TRK | EST), [apply(output(1))], table=2))
    sw.process(udp(), 1)
    reply = udp(IP2, IP1, 53, 5000, MAC2, MAC1)
    # The same reply is new in zone 8 (it opens a connection of its own there)...
    assert ports_of(sw.process(reply, 2)) == [4]
    assert (ct_events(sw)[0].zone, ct_events(sw)[0].state_after) == (8, "+new+trk")
    # ...and the answer to the connection in zone 7.
    assert ports_of(sw.process(reply, 3)) == [1]
    assert (ct_events(sw)[0].zone, ct_events(sw)[0].state_after) == (7, "+est+rpl+trk")
    assert sorted(c.zone for c in sw.conntrack.connections()) == [7, 8]


def test_a_zone_constant_isolates_too():
    sw = switch(
        flow(IP | {"in_port": 1}, [apply(ct(commit=True, zone=1), output(3))]),
        flow(IP | {"in_port": 2}, [apply(ct(table=1, zone=2))]),
        flow(IP | {"in_port": 4}, [apply(ct(table=1, zone=1))]),
        flow(IP | state(TRK | EST, TRK | EST), [apply(output(3))], table=1))
    sw.process(udp(), 1)
    reply = udp(IP2, IP1, 53, 5000, MAC2, MAC1)
    assert sw.process(reply, 2) == [] and ct_events(sw)[0].state_after == "+new+trk"
    assert ports_of(sw.process(reply, 4)) == [3]
    assert (ct_events(sw)[0].zone, ct_events(sw)[0].state_after) == (1, "+est+rpl+trk")


def test_without_table_ct_results_stay_hidden():
    # OVS: ct without table= commits, but the packet goes on untracked.
    sw = switch(flow(IP, [apply(ct(commit=True)), goto(1)]),
                flow(IP | state(0, TRK), [apply(output(2))], table=1),
                flow(IP | state(TRK, TRK), [apply(output(3))], table=1))
    assert ports_of(sw.process(udp(), 1)) == [2]
    assert len(sw.conntrack.connections()) == 1


def test_a_tracked_packet_goes_on_untracked_after_another_ct():
    sw = switch(flow(IP | state(0, TRK), [apply(ct(table=1))]),
                flow(IP | state(TRK | NEW, TRK | NEW), [apply(ct(commit=True)), goto(2)],
                     table=1),
                flow(IP | state(0, TRK), [apply(output(2))], table=2),
                flow(IP | state(TRK, TRK), [apply(output(3))], table=2))
    assert ports_of(sw.process(udp(), 1)) == [2]


def test_ct_with_table_forks_and_the_original_goes_on():
    sw = switch(flow(IP, [apply(ct(table=2), output(3)), goto(1)]),
                flow(IP, [apply(output(4))], table=1),
                flow(IP | state(TRK | NEW, TRK | NEW), [apply(output(2))], table=2))
    # The original's outputs first, then the recirculated copy's.
    outs = sw.process(udp(), 1)
    assert ports_of(outs) == [3, 4, 2]
    assert [p.ct_state for _, p in outs] == [0, 0, TRK | NEW]
    assert [(s.table_id, s.recirculation) for s in sw.last_trace] == [(0, 0), (1, 0), (2, 1)]


def test_mark_and_label_set_on_commit_are_read_back():
    set_mark = parser.OFPActionSetField(ct_mark=0x2A)
    set_label = parser.OFPActionSetField(ct_label=1 << 100)
    sw = switch(
        flow(IP | state(0, TRK), [apply(ct(table=1))]),
        flow(IP | state(TRK | NEW, TRK | NEW),
             [apply(ct(commit=True, actions=[set_mark, set_label]))], table=1),
        flow(IP | state(TRK | EST, TRK | EST) | {"ct_mark": 0x2A, "ct_label": 1 << 100},
             [apply(output(3))], table=1, priority=200),
        flow(IP | state(TRK | EST, TRK | EST), [apply(output(4))], table=1))
    assert sw.process(udp(), 1) == []
    commit = ct_events(sw)[1]
    assert (commit.mark, commit.label) == (0x2A, 1 << 100)
    assert "ct_mark=0x2a" in commit.committed
    outs = sw.process(udp(IP2, IP1, 53, 5000, MAC2, MAC1), 2)
    assert ports_of(outs) == [3] and outs[0][1].ct_mark == 0x2A


def test_unsolicited_icmp_reply_and_icmp_errors_are_invalid():
    sw = switch(
        flow(IP | state(0, TRK), [apply(ct(table=1))]),
        flow(IP | state(TRK | INV, TRK | INV), [apply(output(ofp.OFPP_CONTROLLER))], table=1),
        flow(IP | state(TRK | NEW, TRK | NEW | INV), [apply(ct(commit=True), output(2))],
             table=1),
        flow(IP | state(TRK | EST, TRK | EST), [apply(output(1))], table=1))
    reply = Packet.icmp(MAC2, MAC1, IP2, IP1, icmp_type=0, icmp_id=9)
    assert ports_of(sw.process(reply, 2)) == ["controller"]
    assert ct_events(sw)[0].state_after == "+inv+trk"
    # The request opens the connection (its identifier is its port): now the reply is one.
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2, icmp_id=9), 1)) == [2]
    assert ports_of(sw.process(reply, 2)) == [1]
    other = Packet.icmp(MAC2, MAC1, IP2, IP1, icmp_type=0, icmp_id=10)
    assert ports_of(sw.process(other, 2)) == ["controller"]
    unreachable = Packet.icmp(MAC2, MAC1, IP2, IP1, icmp_type=3, icmp_code=1)
    assert ports_of(sw.process(unreachable, 2)) == ["controller"]


def test_snat_translates_out_and_back():
    sw = switch(
        flow(IP | state(0, TRK), [apply(ct(table=1, actions=[nat()]))]),
        flow(IP | state(TRK | NEW, TRK | NEW) | {"in_port": 1},
             [apply(ct(commit=True, actions=[nat("src", PUBLIC, ports=(40000, 40010))]),
                    output(2))], table=1),
        flow(IP | state(TRK | EST, TRK | EST) | {"in_port": 1}, [apply(output(2))], table=1),
        flow(IP | state(TRK | EST, TRK | EST) | {"in_port": 2}, [apply(output(1))], table=1))
    (port, out), = sw.process(udp(), 1)
    assert (port, out.ipv4_src, out.udp_src, out.ipv4_dst, out.udp_dst) == \
        (2, PUBLIC, 40000, IP2, 53)
    assert ct_events(sw)[1].nat == "ipv4_src 10.0.0.1 -> 192.0.2.10, udp_src 5000 -> 40000"
    # A second client with the same port gets the next free one.
    (_, second), = sw.process(udp(IP3), 1)
    assert (second.ipv4_src, second.udp_src) == (PUBLIC, 40001)
    # The reply to the public address is un-NATed back to the client, as +est+rpl+dnat.
    (port, back), = sw.process(udp(IP2, PUBLIC, 53, 40000, MAC2, MAC1), 2)
    assert (port, back.ipv4_dst, back.udp_dst, back.ipv4_src) == (1, IP1, 5000, IP2)
    assert back.ct_state == TRK | EST | RPL | DNAT
    (_, again), = sw.process(udp(), 1)
    assert (again.ipv4_src, again.udp_src, again.ct_state) == (PUBLIC, 40000, TRK | EST | SNAT)


def test_dnat_translates_in_and_back():
    backends = ("10.0.0.7", "10.0.0.8")
    sw = switch(
        flow(IP | state(0, TRK), [apply(ct(table=1, actions=[nat()]))]),
        flow(IP | state(TRK | NEW, TRK | NEW) | {"ipv4_dst": PUBLIC},
             [apply(ct(commit=True, actions=[nat("dst", *backends, ports=(8080, None))]),
                    output(2))], table=1),
        flow(IP | state(TRK | EST, TRK | EST) | {"in_port": 1}, [apply(output(2))], table=1),
        flow(IP | state(TRK | EST, TRK | EST) | {"in_port": 2}, [apply(output(1))], table=1))
    client = Packet.tcp(MAC1, MAC2, IP1, PUBLIC, 33000, 80)
    (_, inside), = sw.process(client, 1)
    assert (inside.ipv4_dst, inside.tcp_dst) == ("10.0.0.7", 8080)
    assert ct_events(sw)[1].nat == "ipv4_dst 192.0.2.10 -> 10.0.0.7, tcp_dst 80 -> 8080"
    (_, back), = sw.process(Packet.tcp(MAC2, MAC1, "10.0.0.7", IP1, 8080, 33000), 2)
    assert (back.ipv4_src, back.tcp_src, back.ipv4_dst, back.tcp_dst) == (PUBLIC, 80, IP1, 33000)
    assert back.ct_state & (SNAT | RPL) == SNAT | RPL
    # The same client port to the same address again is that connection, not a new binding.
    (_, inside), = sw.process(client, 1)
    assert len(sw.conntrack.connections()) == 1
    assert (inside.ipv4_dst, inside.ct_state) == ("10.0.0.7", TRK | EST | DNAT)


def test_icmp_snat_keeps_the_identifier_and_is_undone():
    sw = switch(
        flow(IP | {"in_port": 1}, [apply(ct(commit=True, actions=[nat("src", PUBLIC)]),
                                         output(2))]),
        flow(IP | {"in_port": 2}, [apply(ct(table=1, actions=[nat()]))]),
        flow(IP | state(TRK | EST | RPL, TRK | EST | RPL), [apply(output(1))], table=1))
    (_, out), = sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2, icmp_id=77), 1)
    assert (out.ipv4_src, out.icmp_id) == (PUBLIC, 77)
    (_, back), = sw.process(Packet.icmp(MAC2, MAC1, IP2, PUBLIC, icmp_type=0, icmp_id=77), 2)
    assert back.ipv4_dst == IP1


def test_flows_ovs_refuses_are_refused():
    for bad in (flow({}, [apply(ct(commit=True))]),  # ct needs a match on IP
                flow(IP | state(TRK | INV, TRK | INV), [apply(ct(commit=True))]),
                flow(IP, [apply(ct(actions=[parser.OFPActionSetField(ct_mark=1)]))]),
                flow(IP, [apply(ct(actions=[nat("src", PUBLIC)]))]),
                flow(IP, [apply(ct(commit=True, actions=[parser.OFPActionSetField(reg0=1)]))]),
                flow({}, [apply(parser.NXActionConjunction(0, 1, 5))]),
                flow({}, [apply(parser.NXActionConjunction(0, 2, 5), output(1))])):
        with pytest.raises(FlowSimError):
            switch(bad)


# ---- L3 ------------------------------------------------------------------------------

def router(dst_mac=MAC2):
    return switch(flow(IP | {"eth_dst": GW_MAC}, [apply(
        parser.OFPActionSetField(eth_src=GW_MAC), parser.OFPActionSetField(eth_dst=dst_mac),
        parser.OFPActionDecNwTtl(), parser.OFPActionSetField(ipv4_dst=IP3), output(2))]))


def test_routing_rewrites_macs_and_decrements_ttl():
    sw = router()
    (port, out), = sw.process(Packet.icmp(MAC1, GW_MAC, IP1, IP2, nw_ttl=9), 1)
    assert (port, out.eth_src, out.eth_dst, out.nw_ttl, out.ipv4_dst) == (2, GW_MAC, MAC2, 8, IP3)
    assert sw.last_trace[0].events == [TtlEvent(9, expired=False)]


@pytest.mark.parametrize("ttl", [0, 1])
def test_an_expired_ttl_is_not_forwarded(ttl):
    sw = router()
    assert sw.process(Packet.icmp(MAC1, GW_MAC, IP1, IP2, nw_ttl=ttl), 1) == []
    assert sw.last_trace[0].events == [TtlEvent(ttl, expired=True)]


def test_expired_ttl_keeps_earlier_outputs_and_skips_the_goto():
    sw = switch(flow(IP, [apply(output(3), parser.OFPActionDecNwTtl(), output(2)), goto(1)]),
                flow({}, [apply(output(4))], table=1))
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2, nw_ttl=1), 1)) == [3]
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2, nw_ttl=2), 1)) == [3, 2, 4]


def test_expired_ttl_leaves_the_action_set_to_run():
    sw = switch(flow(IP, [write(output(3)), goto(1)]),
                flow(IP, [apply(parser.OFPActionDecNwTtl(), output(2))], table=1))
    assert ports_of(sw.process(Packet.icmp(MAC1, MAC2, IP1, IP2, nw_ttl=1), 1)) == [3]


# ---- conjunctive matches -------------------------------------------------------------

def conj(conj_id, clause, n):
    return apply(parser.NXActionConjunction(clause - 1, n, conj_id))


def test_two_dimensions_match_only_together():
    sw = switch(
        flow(IP | {"ipv4_src": IP1}, [conj(7, 1, 2)], priority=50),
        flow(IP | {"ipv4_src": IP3}, [conj(7, 1, 2)], priority=50),
        flow(IP | {"ip_proto": 17, "udp_dst": 53}, [conj(7, 2, 2)], priority=50),
        # The conj_id flow is looked up like any other: above the catch-all, or it wins.
        flow({"conj_id": 7}, [apply(output(2))], priority=20),
        flow({}, [apply(output(3))], priority=10))
    assert ports_of(sw.process(udp(IP1), 1)) == [2]
    assert sw.last_trace[0].conj_id == 7
    assert ports_of(sw.process(udp(IP3), 1)) == [2]
    assert ports_of(sw.process(udp(IP2), 1)) == [3]  # first dimension fails
    assert ports_of(sw.process(udp(IP1, dport=54), 1)) == [3]  # second fails
    assert sw.last_trace[0].conj_id is None


def test_three_dimensions_and_priorities():
    sw = switch(
        flow(IP | {"in_port": 1}, [conj(9, 1, 3)], priority=80),
        flow(IP | {"ipv4_dst": IP2}, [conj(9, 2, 3)], priority=80),
        flow(IP | {"ip_proto": 6}, [conj(9, 3, 3)], priority=80),
        flow({"conj_id": 9}, [apply(output(2))], priority=100),
        # An ordinary flow above the conjunction's priority wins over it...
        flow(IP | {"ip_proto": 6, "tcp_dst": 22}, [apply(output(4))], priority=90),
        # ...one below loses to it.
        flow(IP, [apply(output(3))], priority=70))
    tcp = Packet.tcp(MAC1, MAC2, IP1, IP2, 40000, 80)
    assert ports_of(sw.process(tcp, 1)) == [2]
    assert ports_of(sw.process(Packet.tcp(MAC1, MAC2, IP1, IP2, 40000, 22), 1)) == [4]
    assert ports_of(sw.process(tcp, 4)) == [3]  # the in_port dimension fails
    assert ports_of(sw.process(udp(IP1, IP2), 1)) == [3]  # the protocol dimension fails
    assert [f.packet_count for f in sw.flows() if f.match == {"conj_id": 9}] == [1]


def test_clauses_at_another_priority_are_another_conjunction():
    sw = switch(flow(IP | {"ipv4_src": IP1}, [conj(4, 1, 2)], priority=50),
                flow(IP | {"ip_proto": 17}, [conj(4, 2, 2)], priority=40),
                flow({"conj_id": 4}, [apply(output(2))]))
    assert sw.process(udp(IP1), 1) == []


def test_satisfied_conjunction_without_its_flow_is_passed_over():
    sw = switch(flow(IP | {"ipv4_src": IP1}, [conj(4, 1, 2)], priority=50),
                flow(IP | {"ip_proto": 17}, [conj(4, 2, 2)], priority=50),
                flow(IP, [apply(output(3))], priority=10))
    assert ports_of(sw.process(udp(IP1), 1)) == [3]
