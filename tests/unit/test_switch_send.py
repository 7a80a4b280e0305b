"""SwitchSession._send without a switch: what goes on the wire, and when.

The flow mods are written in batches as they are serialized (the switch decodes one batch
while the next is made), inside one bundle on reconcile; a flow wire.py does not encode goes
through os-ken; a failure half-way discards the bundle already opened.
"""
from __future__ import annotations

import struct
from unittest import mock

import pytest
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import switch
from controller.switch import SEND_BATCH, XID_BASE, SwitchSession
from flows import FlowDiff
from flows.flow import Flow
from openflow import wire
from openflow.os_ken import add_message, delete_message
from tests.unit.test_wire import compiled

FLOWS = compiled("wide")
FLAGS = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
HEADER = struct.Struct("!BBHI")


class FakeDatapath:
    """Records the bytes the session writes; answers barriers."""

    ofproto = ofp
    ofproto_parser = parser
    id = 1

    def __init__(self):
        self.writes: list[bytes] = []
        self.session: SwitchSession | None = None

    def send(self, data: bytes) -> bool:
        self.writes.append(data)
        return True

    def send_msg(self, msg) -> None:
        # Only the barrier after the flow mods: answered at once.
        assert isinstance(msg, parser.OFPBarrierRequest)
        self.session._pending[msg.xid].done.set()


def make_session() -> tuple[SwitchSession, FakeDatapath]:
    dp = FakeDatapath()
    s = SwitchSession(dp, "h1", lambda: None, lambda _: None, mock.MagicMock())
    dp.session = s
    return s, dp


def messages(data: bytes) -> list[bytes]:
    out = []
    while data:
        length = HEADER.unpack_from(data)[2]
        out.append(data[:length])
        data = data[length:]
    return out


def test_a_reconcile_is_one_bundle_of_the_same_bytes_as_before():
    s, dp = make_session()
    adds, deletes = FLOWS[:-20], FLOWS[-20:]
    assert s._send(FlowDiff(add=list(adds), delete=list(deletes)), bundle=True) == []
    sent = messages(b"".join(dp.writes))
    assert len(sent) == len(FLOWS) + 2
    xids = [HEADER.unpack_from(m)[3] for m in sent]
    assert len(set(xids)) == len(xids) and min(xids) >= XID_BASE
    bundle_id = struct.unpack_from("!I", sent[0], 16)[0]
    assert sent[0] == wire.bundle_ctrl(bundle_id, ofp.ONF_BCT_OPEN_REQUEST, FLAGS, xids[0])
    assert sent[-1] == wire.bundle_ctrl(bundle_id, ofp.ONF_BCT_COMMIT_REQUEST, FLAGS, xids[-1])
    for message, xid, flow in zip(sent[1:], xids[1:], adds):
        inner = add_message(dp, flow)
        inner.set_xid(xid)
        expected = parser.ONFBundleAddMsg(dp, bundle_id, FLAGS, inner, [])
        expected.set_xid(xid)
        expected.serialize()
        assert message == bytes(expected.buf)  # os-ken's own serialization
    for message, xid, flow in zip(sent[1 + len(adds):], xids[1 + len(adds):], deletes):
        assert message == wire.bundle_add(wire.flow_mod_delete_strict(flow, xid), bundle_id,
                                          FLAGS, xid)
    assert s.flow_mods_sent == len(FLOWS)


def test_without_a_bundle_plain_flow_mods():
    s, dp = make_session()
    s._send(FlowDiff(add=FLOWS[:3], delete=FLOWS[3:5]), bundle=False)
    sent = messages(b"".join(dp.writes))
    xids = [HEADER.unpack_from(m)[3] for m in sent]
    assert sent == [wire.flow_mod_add(f, x) for f, x in zip(FLOWS[:3], xids)] + \
        [wire.flow_mod_delete_strict(f, x) for f, x in zip(FLOWS[3:5], xids[3:])]


def test_batches_are_written_while_the_rest_is_serialized(monkeypatch):
    s, dp = make_session()
    flows = (FLOWS * (3 * SEND_BATCH // len(FLOWS) + 1))[:3 * SEND_BATCH]
    writes_seen = []
    encode = wire.Bundle.flow_mod_add

    def spy(bundle, flow, xid):
        writes_seen.append(len(dp.writes))
        return encode(bundle, flow, xid)
    monkeypatch.setattr(wire.Bundle, "flow_mod_add", spy)
    s._send(FlowDiff(add=flows), bundle=True)
    # The first batch (bundle open and SEND_BATCH - 1 flows) was written before the
    # SEND_BATCH-th flow was serialized, and so on.
    assert writes_seen[SEND_BATCH - 2] == 0 and writes_seen[SEND_BATCH - 1] == 1
    # The last flow: three full batches already written; it and the commit make the fourth.
    assert writes_seen[-1] == 3 and len(dp.writes) == 4
    assert all(len(messages(w)) == SEND_BATCH for w in dp.writes[:3])


def test_a_flow_wire_does_not_encode_goes_through_os_ken():
    s, dp = make_session()
    odd = Flow.make(20, 5, 1, {"vlan_vid": 0x1005}, actions=[("output", 2)])
    s._send(FlowDiff(add=[FLOWS[0], odd], delete=[odd]), bundle=True)
    sent = messages(b"".join(dp.writes))
    bundle_id = struct.unpack_from("!I", sent[0], 16)[0]
    for message, make in ((sent[2], add_message), (sent[3], delete_message)):
        xid = HEADER.unpack_from(message)[3]
        inner = make(dp, odd)
        inner.set_xid(xid)
        inner.serialize()
        assert message == wire.bundle_add(bytes(inner.buf), bundle_id, FLAGS, xid)
        parsed = ofproto_parser.msg(dp, *ofproto_parser.header(message), message)
        assert parsed.exp_type == ofp.ONF_ET_BUNDLE_ADD_MESSAGE


def test_a_failure_half_way_discards_the_open_bundle():
    s, dp = make_session()
    flows = FLOWS * (SEND_BATCH // len(FLOWS) + 1)
    # Neither serializer takes it: too long for an OpenFlow message.
    too_long = Flow.make(0, 1, 0, actions=[("output", p) for p in range(5000)])
    with pytest.raises(Exception):  # os-ken fails with struct.error
        s._send(FlowDiff(add=flows + [too_long]), bundle=True)
    sent = messages(b"".join(dp.writes))
    bundle_id = struct.unpack_from("!I", sent[0], 16)[0]
    assert sent[-1] == wire.bundle_ctrl(bundle_id, ofp.ONF_BCT_DISCARD_REQUEST, FLAGS,
                                        HEADER.unpack_from(sent[-1])[3])


def test_a_failure_before_anything_was_written_writes_nothing():
    s, dp = make_session()
    too_long = Flow.make(0, 1, 0, actions=[("output", p) for p in range(5000)])
    with pytest.raises(Exception):  # os-ken fails with struct.error
        s._send(FlowDiff(add=[too_long]), bundle=True)
    assert dp.writes == []


def test_bundle_ids_differ_between_sends():
    s, dp = make_session()
    s._send(FlowDiff(add=FLOWS[:1]), bundle=True)
    s._send(FlowDiff(add=FLOWS[:1]), bundle=True)
    first, second = (struct.unpack_from("!I", w, 16)[0] for w in dp.writes)
    assert first != second
    assert switch._bundle_ids  # the module's counter, shared by sessions
