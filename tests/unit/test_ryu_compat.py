"""The Ryu-compatible /stats routes in-process, on a fake switch: routing of replies, errors,
and the deadline when a switch never answers."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser as parser

from api import ryu_compat
from api.app import create_app
from controller.fabric import Fabric
from model import Store

DPID = 0xabc


class FakeDatapath:
    """Answers desc requests through the fabric's reply routing, as the os-ken app does."""

    ofproto = ofproto_v1_3
    ofproto_parser = parser

    def __init__(self, fabric: Fabric, answer: bool):
        self.id, self.xid = DPID, 0
        self.fabric, self.answer = fabric, answer

    def set_xid(self, msg):
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg):
        msg.serialize()
        if self.answer:
            reply = parser.OFPDescStatsReply(self, body=parser.OFPDescStats(
                "maker", "hw", "sw", "serial", "dp"), flags=0)
            reply.xid = msg.xid
            threading.Timer(0.01, self.fabric.ofctl_waiters.deliver, (reply,)).start()


@pytest.fixture
def fabric(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    yield fabric
    store.close()


def client_with(fabric: Fabric, answer: bool):
    fabric.switches["h1"] = SimpleNamespace(dp=FakeDatapath(fabric, answer))
    return create_app(fabric).test_client()


def test_reply_reaches_the_request(fabric):
    client = client_with(fabric, answer=True)
    assert client.get("/stats/switches").json == [DPID]
    for dpid in (str(DPID), hex(DPID)):
        r = client.get(f"/stats/desc/{dpid}")
        assert r.status_code == 200, r.json
        assert r.json == {str(DPID): {"mfr_desc": "maker", "hw_desc": "hw", "sw_desc": "sw",
                                      "serial_num": "serial", "dp_desc": "dp"}}
    assert fabric.ofctl_waiters[DPID] == {}


def test_silent_switch_gives_503_after_the_deadline(fabric, monkeypatch):
    monkeypatch.setattr(ryu_compat, "REPLY_TIMEOUT_S", 0.3)
    client = client_with(fabric, answer=False)
    started = time.monotonic()
    r = client.get(f"/stats/desc/{DPID}")
    assert r.status_code == 503 and "did not answer" in r.json["error"]
    assert time.monotonic() - started < 2
    assert fabric.ofctl_waiters[DPID] == {}


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/stats/desc/12", None, 404),
    ("GET", "/stats/desc/zz", None, 400),
    ("GET", "/stats/flow/0x", None, 400),
    ("POST", f"/stats/flow/{DPID}", "[1]", 400),
    ("POST", f"/stats/flow/{DPID}", '{"match": 3}', 400),
    ("POST", f"/stats/aggregateflow/{DPID}", "{nope", 400),
    ("POST", f"/stats/flow/{DPID}", '{"table_id": "x"}', 400),
    ("POST", f"/stats/flow/{DPID}", '{"match": {"tp_src": 80}}', 400),
    ("GET", f"/stats/port/{DPID}/x", None, 400),
    ("GET", f"/stats/port/{DPID}/{2**32}", None, 400),
    ("GET", "/stats/port/12/1", None, 404),
])
def test_errors(fabric, method, path, body, status):
    r = client_with(fabric, answer=True).open(path, method=method, data=body)
    assert r.status_code == status, r.json
    assert set(r.json) == {"error"}
