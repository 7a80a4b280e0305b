"""The controller side of leadership without a switch: which role a replica asks for, when a
switch session may program, what a single controller does (nothing new), and the OVSDB fence's
decision; a switch session against a fake datapath that answers role requests as OVS does
(ofproto/connmgr.c: a MASTER or SLAVE request with a generation older than the latest seen is
refused with OFPRRFC_STALE), and a fabric fed a leadership of the test's own."""
from __future__ import annotations

import struct
import threading
from types import SimpleNamespace
from unittest import mock

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.fabric import Fabric
from controller.leadership import (ROLE_MASTER, ROLE_SLAVE, Role, Standalone, Term,
                                   may_program, wanted_role)
from controller.switch import NotProgramming, SwitchSession
from model import Store
from ovsdb.fence import GENERATION_KEY, STANDALONE, Fenced, Verdict, Writer, seen_generation, \
    verdict
from ovsdb.session import HostSession


# ---- the decisions -------------------------------------------------------------------------

def test_no_term_no_role_request():
    assert wanted_role(None, True) is None
    assert wanted_role(None, False) is None


def test_the_leader_asks_master_the_others_slave_with_the_terms_generation():
    term = Term("b", 7)
    assert wanted_role(term, True) == Role(ROLE_MASTER, 7)
    assert wanted_role(term, False) == Role(ROLE_SLAVE, 7)
    assert wanted_role(Term("b", 2 ** 64 - 1), True).generation == 2 ** 64 - 1
    with pytest.raises(ValueError):
        wanted_role(Term("b", 2 ** 64), True)  # no uint64: never sent truncated


def test_only_a_leader_whose_master_the_switch_confirmed_in_this_term_programs():
    term = Term("a", 5)
    assert may_program(term, True, Role(ROLE_MASTER, 5))
    assert not may_program(term, True, None), "before the ROLE_REPLY"
    assert not may_program(term, True, Role(ROLE_MASTER, 4)), "a confirmation of a past term"
    assert not may_program(term, True, Role(ROLE_SLAVE, 5))
    assert not may_program(term, False, Role(ROLE_MASTER, 5)), "deposed: stops at once"
    assert not may_program(Term("b", 6), False, Role(ROLE_MASTER, 5))
    assert may_program(None, True, None), "Standalone: as ever"


def test_standalone_leads_alone_with_its_one_target():
    lead = Standalone("c1", "http://127.0.0.1:8686", "tcp:192.0.2.1:6653")
    lead.start()
    assert lead.term() is None and lead.leads()
    assert lead.controllers() == ["tcp:192.0.2.1:6653"]
    assert lead.members() == [{"name": "c1", "api": "http://127.0.0.1:8686",
                               "advertise": "tcp:192.0.2.1:6653", "leader": True}]
    assert lead.status()["leads"]
    lead.subscribe(lambda: None)
    lead.stop()


@pytest.mark.parametrize("ours, seen, expected", [
    (None, None, Verdict.UNFENCED), (None, 9, Verdict.UNFENCED),
    (5, None, Verdict.CLAIM), (5, 4, Verdict.CLAIM), (5, 5, Verdict.HOLDS),
    (5, 6, Verdict.FENCED)])
def test_the_fence_decision(ours, seen, expected):
    assert verdict(Writer(True, ours), seen) is expected
    assert verdict(Writer(False, ours), seen) is Verdict.FOLLOWER


def test_the_generation_read_from_the_host():
    assert seen_generation({GENERATION_KEY: "12", "system-id": "x"}) == 12
    for junk in ({}, None, {GENERATION_KEY: "x"}, {GENERATION_KEY: "-1"}):
        assert seen_generation(junk) is None


# ---- a switch session and a switch that answers roles as OVS does ------------------------------

class RoleSwitch:
    """A datapath that keeps OVS's master election id and answers role requests like
    ofproto's handle_role_request: a stale MASTER/SLAVE generation gets OFPRRFC_STALE."""

    ofproto = ofp
    ofproto_parser = parser
    id = 1

    def __init__(self, latest: int | None = None):
        self.latest = latest
        self.session: SwitchSession | None = None
        self.requests: list[tuple[int, int]] = []
        self.sent: list[bytes] = []

    def send_msg(self, msg) -> None:
        assert isinstance(msg, parser.OFPRoleRequest)
        self.requests.append((msg.role, msg.generation_id))
        if self.latest is not None and msg.generation_id < self.latest:
            error = SimpleNamespace(xid=msg.xid, type=ofp.OFPET_ROLE_REQUEST_FAILED,
                                    code=ofp.OFPRRFC_STALE)
            self.session.on_error(error)
            return
        self.latest = msg.generation_id
        reply = parser.OFPRoleReply(self, msg.role, msg.generation_id)
        reply.xid = msg.xid
        assert self.session.on_reply(reply)

    def send(self, data: bytes) -> None:
        self.sent.append(data)


class Elected:
    """A leadership of the test's own: it says what it is told."""

    def __init__(self, term: Term | None, leads: bool, controllers=("tcp:192.0.2.1:6653",)):
        self._term, self._leads, self._controllers = term, leads, list(controllers)
        self._callbacks = []

    def start(self):
        pass

    def stop(self):
        pass

    def term(self):
        return self._term

    def leads(self):
        return self._leads

    def controllers(self):
        return sorted(self._controllers)

    def subscribe(self, callback):
        self._callbacks.append(callback)

    def members(self):
        return []

    def status(self):
        return {}

    def set(self, term=None, leads=None, controllers=None):
        self._term = term if term is not None else self._term
        self._leads = leads if leads is not None else self._leads
        self._controllers = list(controllers) if controllers is not None else self._controllers
        for callback in self._callbacks:
            callback()


def role_session(dp: RoleSwitch, lead) -> SwitchSession:
    session = SwitchSession(dp, "h1", lambda: None, lambda s: None, mock.MagicMock(),
                            reply_timeout=2, leadership=lead)
    dp.session = session
    return session


def test_standalone_sends_no_role_request_and_programs():
    dp = RoleSwitch()
    s = role_session(dp, Standalone(advertise="tcp:192.0.2.1:6653"))
    s._settle_role()
    assert dp.requests == [] and s.programs()


def test_the_leader_programs_once_the_switch_confirmed_its_master():
    dp = RoleSwitch()
    s = role_session(dp, Elected(Term("a", 5), True))
    assert not s.programs()
    s._settle_role()
    assert dp.requests == [(ofp.OFPCR_ROLE_MASTER, 5)]
    assert s.role == Role(ROLE_MASTER, 5) and s.programs()
    s._settle_role()
    assert len(dp.requests) == 1, "a confirmed role is not asked again"


def test_a_follower_asks_slave_and_never_programs():
    dp = RoleSwitch()
    s = role_session(dp, Elected(Term("b", 5), False))
    s._settle_role()
    assert dp.requests == [(ofp.OFPCR_ROLE_SLAVE, 5)] and not s.programs()
    with pytest.raises(NotProgramming):
        s._send_programming(b"flow mods")
    assert dp.sent == []


def test_a_stale_generation_is_refused_and_not_asked_again():
    dp = RoleSwitch(latest=6)  # the successor asked already
    s = role_session(dp, Elected(Term("a", 5), True))  # a deposed leader that does not know
    s._settle_role()
    assert s.role is None and s.role_refused == Role(ROLE_MASTER, 5) and not s.programs()
    s._settle_role()
    assert dp.requests == [(ofp.OFPCR_ROLE_MASTER, 5)]


def test_a_deposed_leader_stops_between_two_batches_and_then_asks_slave():
    dp = RoleSwitch()
    lead = Elected(Term("a", 5), True)
    s = role_session(dp, lead)
    s._settle_role()
    s._send_programming(b"batch 1")
    lead.set(term=Term("b", 6), leads=False)
    with pytest.raises(NotProgramming):
        s._send_programming(b"batch 2")
    assert dp.sent == [b"batch 1"]
    s._settle_role()
    assert dp.requests[-1] == (ofp.OFPCR_ROLE_SLAVE, 6) and not s.programs()


def test_a_new_term_of_the_same_leader_rereads_the_table_after_its_master():
    dp = RoleSwitch()
    lead = Elected(Term("a", 5), True)
    s = role_session(dp, lead)
    s._settle_role()
    s.installed = {}
    lead.set(term=Term("a", 8))
    assert not s.programs(), "not before the new term's MASTER is confirmed"
    s._settle_role()
    assert s.programs() and s.installed is None and dp.requests[-1] == (ofp.OFPCR_ROLE_MASTER, 8)


def test_the_role_reply_reaches_the_session_through_the_app():
    from os_ken.controller import ofp_event

    from controller.app import FabricApp
    assert ofp_event.EventOFPRoleReply in FabricApp._reply.callers


# ---- the OVSDB fence inside a session's plan -------------------------------------------------

class FakeRow:
    def __init__(self, ids):
        self.uuid = "ovs-row"
        self.external_ids = ids
        self.verified = []

    def verify(self, column):
        self.verified.append(column)


def planning_session(writer: Writer, ids: dict) -> tuple[HostSession, FakeRow]:
    session = HostSession("h1", "unix:/nonexistent", lambda _: None, lambda: writer)
    row = FakeRow(ids)
    session._idl = SimpleNamespace(tables={"Open_vSwitch": SimpleNamespace(rows={1: row})})
    session._api = mock.MagicMock()
    session._api.db_set.side_effect = lambda *args: ("db_set", *args)
    return session, row


def test_a_single_controller_writes_unfenced():
    session, row = planning_session(STANDALONE, {GENERATION_KEY: "3"})
    assert session._plan_fence() == ([], True) and row.verified == []


def test_a_follower_writes_nothing():
    session, row = planning_session(Writer(False, 5), {})
    assert session._plan_fence() == ([], False)
    with mock.patch.object(session, "_plan_config") as config:
        assert session._plan(object()) == ([], False)
    config.assert_not_called()


def test_the_leader_claims_an_older_generation_verified():
    session, row = planning_session(Writer(True, 5), {GENERATION_KEY: "4"})
    commands, allowed = session._plan_fence()
    assert allowed and row.verified == ["external_ids"]
    assert commands == [("db_set", "Open_vSwitch", "ovs-row",
                         ("external_ids", {GENERATION_KEY: "5"}))]


def test_the_claim_goes_out_even_with_nothing_else_to_change():
    session, row = planning_session(Writer(True, 5), {})
    with mock.patch.object(session, "_plan_config", return_value=([], False)):
        commands, _ = session._plan(object())
    assert len(commands) == 1, "the claim alone: it fences the deposed leader from now on"


def test_the_leader_holding_the_fence_only_verifies():
    session, row = planning_session(Writer(True, 5), {GENERATION_KEY: "5"})
    assert session._plan_fence() == ([], True) and row.verified == ["external_ids"]


def test_a_deposed_leader_sees_the_later_generation_and_gives_up():
    session, row = planning_session(Writer(True, 5), {GENERATION_KEY: "6"})
    with pytest.raises(Fenced):
        session._plan_fence()
    assert session.fenced_by == 6 and row.verified == []


def test_a_session_plans_nothing_as_a_follower_or_under_an_older_generation():
    session, _ = planning_session(Writer(False, 7), {GENERATION_KEY: "6"})
    assert not session._may_write()
    session, _ = planning_session(Writer(True, 5), {GENERATION_KEY: "6"})
    assert not session._may_write() and session.fenced_by == 6 and "fenced" in session.last_error
    for writer in (Writer(True, 6), Writer(True, 7), STANDALONE):
        session, _ = planning_session(writer, {GENERATION_KEY: "6"})
        assert session._may_write()


# ---- a fabric with a leadership of the test's own ---------------------------------------------

def test_the_hosts_are_told_every_replicas_target_and_a_change_of_members(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    lead = Elected(Term("a", 3), True, ["tcp:192.0.2.2:6653", "tcp:192.0.2.1:6653"])
    fabric = Fabric(store, "tcp:192.0.2.1:6653", leadership=lead)
    fabric.start()
    try:
        store.create_host("h1", "unix:/nonexistent/h1", "192.0.2.11")
        session = fabric.ovsdb_sessions["h1"]
        assert session.desired.controllers == ("tcp:192.0.2.1:6653", "tcp:192.0.2.2:6653")
        assert session._writer() == Writer(True, 3)
        woken = threading.Event()
        session.kick = woken.set
        lead.set(controllers=["tcp:192.0.2.1:6653", "tcp:192.0.2.3:6653"], leads=False,
                 term=Term("b", 4))
        assert woken.wait(2), "the session is woken by a change of leadership"
        assert session.desired.controllers == ("tcp:192.0.2.1:6653", "tcp:192.0.2.3:6653")
        assert session._writer() == Writer(False, 4)
    finally:
        fabric.stop()
        store.close()


def test_a_standalone_fabric_tells_the_one_advertised_target(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    fabric.start()
    try:
        store.create_host("h1", "unix:/nonexistent/h1", "192.0.2.11")
        session = fabric.ovsdb_sessions["h1"]
        assert session.desired.controllers == ("tcp:127.0.0.1:6653",)
        assert session._writer() == STANDALONE
    finally:
        fabric.stop()
        store.close()


def test_a_follower_sends_no_packet_outs(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653", leadership=Elected(Term("b", 2), False))
    follower = SimpleNamespace(dp=object(), programs=lambda: False)
    fabric.physical_switches["h1"] = follower
    assert fabric._next_hop_queries() == []
    store.close()



def test_a_follower_leaves_a_deleted_hosts_switch_to_the_leader(tmp_path, monkeypatch):
    import controller.fabric as fabric_module
    store = Store(str(tmp_path / "s.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653", leadership=Elected(Term("b", 2), False))
    cleared = []
    monkeypatch.setattr(fabric_module, "clear_flows", lambda dp, **kw: cleared.append(dp))
    switch = SimpleNamespace(dp="dp-h1", programs=lambda: False, stop=lambda: None)
    fabric.switches["h1"] = switch
    fabric.ovsdb_sessions["h1"] = SimpleNamespace(desired=None, stop=lambda cleanup: None)
    fabric._forget_host("h1")
    assert cleared == [], "a follower cleared a switch's flows"
    store.close()


def test_a_follower_does_not_wait_for_flows_it_does_not_send(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    lead = Elected(Term("b", 2), False)
    fabric = Fabric(store, "tcp:127.0.0.1:6653", leadership=lead)
    fabric.ovsdb_sessions["h1"] = SimpleNamespace(synced=True, ports=None)
    fabric.switches["h1"] = SimpleNamespace(applied_revision=-1, programs=lambda: False)
    assert fabric.wait_programmed({"h1"}, 5, timeout=0.2)
    lead.set(leads=True, term=Term("a", 3))
    assert not fabric.wait_programmed({"h1"}, 5, timeout=0.2), "the leader waits"
    store.close()


def test_a_role_status_stops_the_session_at_once_and_its_old_master_is_refused():
    dp = RoleSwitch()
    s = role_session(dp, Elected(Term("a", 5), True))  # cut off: it still believes it leads
    s._settle_role()
    dp.latest = 6  # b asked MASTER with 6; OVS tells a
    s.on_role_status(ROLE_SLAVE, 6)
    assert not s.programs()
    s._settle_role()
    assert dp.requests[-1] == (ofp.OFPCR_ROLE_MASTER, 5) and s.role_refused == Role(ROLE_MASTER, 5)
    assert not s.programs()


def test_the_app_hands_onf_role_status_to_the_session():
    from controller.app import FabricApp
    seen = []
    session = SimpleNamespace(on_role_status=lambda *a: seen.append(a))
    app = SimpleNamespace(fabric=SimpleNamespace(session_for=lambda dp: session))
    data = struct.pack("!IB3xQ", ROLE_SLAVE, 0, 6)
    msg = SimpleNamespace(experimenter=0x4F4E4600, exp_type=1911, data=data, datapath="dp")
    FabricApp._experimenter(app, SimpleNamespace(msg=msg))
    msg.exp_type = 2300  # a bundle reply: not ours to read here
    FabricApp._experimenter(app, SimpleNamespace(msg=msg))
    assert seen == [(ROLE_SLAVE, 6)]


def test_an_is_slave_error_makes_the_session_ask_again(monkeypatch):
    dp = RoleSwitch()
    s = role_session(dp, Elected(Term("a", 5), True))
    s._settle_role()
    error = SimpleNamespace(type=ofp.OFPET_BAD_REQUEST, code=ofp.OFPBRC_IS_SLAVE)
    monkeypatch.setattr(s, "_send", lambda changes, bundle: [error])
    monkeypatch.setattr(s, "dump_flows", lambda: {})
    from flows import FlowDiff
    s.table = SimpleNamespace(view_for=lambda *a: None, rebuild=lambda *a: {},
                              update=lambda *a: None)
    monkeypatch.setattr("controller.switch.diff",
                        lambda desired, installed: FlowDiff(add=[object()], delete=[]))
    s._take_work = lambda: SimpleNamespace(snap=None, ports=None, ports_version=1, units=None)
    with pytest.raises(RuntimeError):
        s._converge()
    assert s.role is None, "the role is asked again"
