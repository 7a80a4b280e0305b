"""Flow-stats replies from the wire to a switch session, without a switch.

controller.os_ken_fixes hands a session's flow-stats replies over as bytes before os-ken parses
them; SwitchSession.dump_flows reads them with openflow.stats and flow_stats with os-ken.
A fake datapath answers the session's requests with replies built from compiled flows.
"""
from __future__ import annotations

from unittest import mock

import pytest
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import os_ken_fixes
from controller.switch import XID_BASE, SwitchError, SwitchSession
from flows.flow import table_of
from tests.unit.test_wire import compiled
from tests.unit.test_wire_stats import REPLY, entry, flow_entry, reply

FLOWS = compiled("overlapping")


class FakeDatapath:
    """Answers a flow-stats request with FLOWS in parts of 10 entries, either as bytes
    (what the runtime routes) or as os-ken's parsed messages (no routing)."""

    ofproto = ofp
    ofproto_parser = parser
    id = 1

    def __init__(self, raw: bool = True, parts: list[bytes] | None = None):
        self.raw = raw
        self.parts = parts
        self.session: SwitchSession | None = None

    def send_msg(self, msg) -> None:
        assert isinstance(msg, parser.OFPFlowStatsRequest) and msg.xid >= XID_BASE
        entries = [flow_entry(f, counters=i + 1) for i, f in enumerate(FLOWS)]
        parts = self.parts or [reply(entries[i:i + 10], xid=msg.xid, more=i + 10 < len(entries))
                               for i in range(0, len(entries), 10)]
        for part in parts:
            part = part[:4] + msg.xid.to_bytes(4, "big") + part[8:]
            if self.raw:
                assert self.session.on_flow_stats_bytes(part)
            else:
                parsed = ofproto_parser.msg(self, *ofproto_parser.header(part), part)
                assert self.session.on_reply(parsed)


def session(dp: FakeDatapath) -> SwitchSession:
    result = SwitchSession(dp, "h1", lambda: None, lambda s: None, mock.MagicMock())
    dp.session = result
    return result


@pytest.mark.parametrize("raw", [True, False], ids=["bytes", "os-ken-parsed"])
def test_dump_flows_reads_the_table(raw):
    assert session(FakeDatapath(raw)).dump_flows() == table_of(FLOWS)


@pytest.mark.parametrize("raw", [True, False], ids=["bytes", "os-ken-parsed"])
def test_flow_stats_still_gives_os_ken_entries_with_counters(raw):
    stats = session(FakeDatapath(raw)).flow_stats()
    assert all(isinstance(s, parser.OFPFlowStats) for s in stats)
    assert [s.packet_count for s in stats] == [3 * (i + 1) for i in range(len(FLOWS))]
    assert [(s.table_id, s.priority, s.cookie) for s in stats] == \
        [(f.table, f.priority, f.cookie) for f in FLOWS]


def test_a_broken_reply_is_a_switch_error():
    good = flow_entry(FLOWS[0])
    broken = reply([b"\x00\x00" + good[2:]])  # an entry of length 0
    with pytest.raises(SwitchError):
        session(FakeDatapath(parts=[broken])).dump_flows()


def test_replies_of_no_pending_request_are_refused():
    s = session(FakeDatapath())
    assert not s.on_flow_stats_bytes(reply([flow_entry(FLOWS[0])], xid=XID_BASE + 5))
    assert not s.on_flow_stats_bytes(REPLY.pack(4, ofp.OFPT_MULTIPART_REPLY, 16, XID_BASE,
                                                ofp.OFPMP_PORT_DESC, 0))
    assert not s.on_flow_stats_bytes(b"\x04")


# ---- the runtime's routing, in os-ken's receive loop ------------------------------------------

class Sessions:
    """A fabric's session_for: one session for one datapath, recording what it takes."""

    def __init__(self, dp):
        self.dp = dp
        self.taken: list[bytes] = []
        self.pending = True

    def session_for(self, dp):
        if dp is not self.dp:
            return None
        sessions = self

        class Taker:
            def on_flow_stats_bytes(self, data):
                sessions.taken.append(data)
                return sessions.pending
        return Taker()


@pytest.fixture
def receive(monkeypatch):
    """os-ken's receive loop's view of the parser, with os_ken_fixes in place."""
    from os_ken.controller import controller
    monkeypatch.setattr(controller, "ofproto_parser", ofproto_parser)  # undone after the test
    monkeypatch.setattr(os_ken_fixes, "_session_for", None)
    os_ken_fixes.close_on_malformed_messages()
    dp = FakeDatapath()
    sessions = Sessions(dp)
    os_ken_fixes.route_flow_stats_to_sessions(sessions.session_for)

    def parse(message: bytes, datapath=dp):
        version, msg_type, length, xid = controller.ofproto_parser.header(message)
        return controller.ofproto_parser.msg(datapath, version, msg_type, length, xid,
                                             bytearray(message))
    return parse, sessions


def test_a_sessions_flow_stats_reply_skips_os_ken(receive):
    parse, sessions = receive
    message = reply([flow_entry(f) for f in FLOWS[:5]], xid=XID_BASE + 7)
    assert parse(message) is None  # nothing for os-ken to dispatch
    assert sessions.taken == [message] and type(sessions.taken[0]) is bytes


@pytest.mark.parametrize("why", ["os-ken-xid", "other-switch", "no-pending-request",
                                 "port-desc"])
def test_everything_else_takes_os_kens_way(receive, why):
    parse, sessions = receive
    xid = 7 if why == "os-ken-xid" else XID_BASE + 7
    message = reply([flow_entry(f) for f in FLOWS[:5]], xid=xid)
    datapath = sessions.dp
    if why == "other-switch":
        datapath = FakeDatapath()
    elif why == "no-pending-request":
        sessions.pending = False
    elif why == "port-desc":
        message = REPLY.pack(4, ofp.OFPT_MULTIPART_REPLY, 16, xid, ofp.OFPMP_PORT_DESC, 0)
    parsed = parse(message, datapath)
    assert isinstance(parsed, parser.OFPMultipartReply) and parsed.xid == xid
    if why == "port-desc" or why == "os-ken-xid":
        assert sessions.taken == []


def test_malformed_messages_still_close_the_connection(receive):
    """A reply os-ken cannot parse (a masked set_field) on os-ken's way: closed as before."""
    parse, _ = receive
    masked = bytes.fromhex("0019 0010 0001 0108 00000001 00000003".replace(" ", ""))
    body = bytes.fromhex("0001000400000000") + bytes.fromhex("0004001800000000") + masked
    with pytest.raises(os_ken_fixes.MalformedMessage):
        parse(reply([entry(body)], xid=9))


@pytest.mark.parametrize("xid", [9, XID_BASE + 9], ids=["os-ken-xid", "session-xid"])
def test_a_zero_length_entry_closes_the_connection(receive, xid):
    """os-ken's own parser would loop for ever on it, in the connection's receive thread."""
    parse, sessions = receive
    good = flow_entry(FLOWS[0])
    with pytest.raises(os_ken_fixes.MalformedMessage):
        parse(reply([good, b"\x00\x00" + good[2:]], xid=xid))
    assert sessions.taken == []
