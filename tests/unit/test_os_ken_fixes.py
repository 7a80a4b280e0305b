"""controller.os_ken_fixes against the os-ken installed: each fix finds the shape it expects,
is put in place once, and does what it is for through os-ken's own connection handling (a
real Datapath serving a TCP connection in this process). Another os-ken fails here first.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest
from os_ken.base import app_manager
from os_ken.controller import controller, ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER
from os_ken.lib import hub
from os_ken.ofproto import ofproto_parser

from controller import os_ken_fixes
from controller.switch import XID_BASE
from tests.unit.test_fake_switches import ECHO_REQUEST, HELLO, MALFORMED, message
from tests.unit.test_switch_replies import FLOWS
from tests.unit.test_wire_stats import flow_entry, reply


@pytest.fixture
def os_ken(monkeypatch):
    """os-ken as installed, without the fixes (every change undone after the test)."""
    monkeypatch.setattr(controller, "ofproto_parser", ofproto_parser)
    loop = controller.Datapath._recv_loop
    monkeypatch.setattr(controller.Datapath, "_recv_loop", getattr(loop, "__wrapped__", loop))
    monkeypatch.setattr(os_ken_fixes, "_session_for", None)
    return controller


@pytest.fixture
def fixed(os_ken):
    os_ken_fixes.apply(None)
    return os_ken


# ---- the shape each fix expects ---------------------------------------------------------------

def test_each_fix_is_put_in_place_once(os_ken):
    original = os_ken.Datapath._recv_loop
    os_ken_fixes.apply(None)
    loop, parser = os_ken.Datapath._recv_loop, os_ken.ofproto_parser
    assert loop is not original and loop.__wrapped__ is original
    assert isinstance(parser, os_ken_fixes.StrictParser) and parser.parser is ofproto_parser
    os_ken_fixes.apply(None)
    assert os_ken.Datapath._recv_loop is loop and os_ken.ofproto_parser is parser
    assert os_ken_fixes.receive_loop().__qualname__ == "Datapath._recv_loop"


def _loop_without_parser(self):
    return self


def _deactivated(function):
    def deactivate(self):
        return function(self)
    return deactivate


CHANGES = {
    "receive loop parses otherwise": (controller.Datapath, "_recv_loop",
                                      _deactivated(_loop_without_parser)),
    "receive loop no longer wrapped": (controller.Datapath, "_recv_loop", _loop_without_parser),
    "another reader of the parser": (controller, "_split_addr",
                                     lambda addr: ofproto_parser.header(addr)),
    "parser moved": (controller, "ofproto_parser", object()),
    "send takes other arguments": (controller.Datapath, "send", lambda self, buf: None),
    "serve receives otherwise": (controller.Datapath, "serve", lambda self: None),
    "green threads": (hub, "HUB_TYPE", "eventlet"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_another_os_ken_stops_the_start(os_ken, monkeypatch, change):
    monkeypatch.setattr(*CHANGES[change])
    with pytest.raises(os_ken_fixes.OsKenChanged, match="constraints.txt"):
        os_ken_fixes.apply(None)


# ---- what each does, through os-ken's connection handling -------------------------------------

class Brick:
    """Stands for os-ken's ofp_event service: records the events a Datapath sends it."""

    name = "ofp_event"

    def __init__(self):
        self.events: list = []
        self.datapath = None

    def send_event_to_observers(self, ev, state=None):
        self.events.append(ev)
        if isinstance(ev, ofp_event.EventOFPStateChange) and self.datapath is None:
            self.datapath = ev.datapath

    def get_handlers(self, ev, state=None):
        return []

    def dead(self) -> bool:
        return any(isinstance(e, ofp_event.EventOFPStateChange) and e.state == DEAD_DISPATCHER
                   for e in self.events)

    def messages(self) -> list:
        return [e.msg for e in self.events if hasattr(e, "msg")]


class Connection:
    """A switch's TCP connection, served by os-ken's datapath_connection_factory."""

    def __init__(self, monkeypatch):
        self.brick = Brick()
        monkeypatch.setitem(app_manager.SERVICE_BRICKS, "ofp_event", self.brick)
        with socket.create_server(("127.0.0.1", 0)) as server:
            self.switch = socket.create_connection(server.getsockname(), timeout=5)
            conn, address = server.accept()
        self.thread = threading.Thread(target=self._serve, args=(conn, address), daemon=True)
        self.thread.start()
        # The Datapath looks its brick up when made: before the next connection's brick.
        deadline = time.monotonic() + 3
        while self.brick.datapath is None and time.monotonic() < deadline:
            time.sleep(0.01)
        self.switch.sendall(message(HELLO, 1))
        # The controller's HELLO: its sender has sent, and now waits for more.
        assert self.switch.recv(len(message(HELLO, 0)))[1] == HELLO

    @staticmethod
    def _serve(conn, address):
        try:
            controller.datapath_connection_factory(conn, address)
        except Exception:
            pass  # logged by os-ken: the connection's end, as in os-ken's server

    def closed_by_controller(self, timeout: float = 3) -> bool:
        """The controller's side ended: the switch's stream ended, serve() returned."""
        self.switch.settimeout(timeout)
        try:
            while self.switch.recv(4096):
                pass
        except ConnectionResetError:
            pass  # closed with bytes of ours still unread
        except TimeoutError:
            return False
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def close(self) -> None:
        self.switch.close()
        datapath = self.brick.datapath
        if self.thread.is_alive() and datapath is not None:
            datapath.send(b"", close_socket=True)  # os-ken's sender waits for something
        self.thread.join(5)


@pytest.fixture
def connect(monkeypatch):
    made = []

    def make():
        made.append(Connection(monkeypatch))
        return made[-1]
    yield make
    for connection in made:
        connection.close()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_message_closes_its_connection(fixed, connect, case):
    connection, other = connect(), connect()
    connection.switch.sendall(MALFORMED[case])
    assert connection.closed_by_controller()
    assert connection.brick.dead()
    other.switch.sendall(message(ECHO_REQUEST, 5))
    time.sleep(0.2)
    assert other.thread.is_alive() and not other.brick.dead()


def test_os_ken_alone_waits_for_the_body_of_garbage(os_ken, connect):
    """Why close_on_malformed_messages is there: when this fails, os-ken does it itself."""
    connection = connect()
    connection.switch.sendall(MALFORMED["garbage"])
    assert not connection.closed_by_controller(timeout=0.5)


def test_a_clean_close_is_reported(fixed, connect):
    connection = connect()
    connection.switch.shutdown(socket.SHUT_WR)
    assert connection.closed_by_controller()
    assert connection.brick.dead()


def test_os_ken_alone_does_not_end_a_closed_connection(os_ken, connect):
    """Why report_closed_connections is there: os-ken's send thread outlives the
    connection until something is sent, under native threads."""
    connection = connect()
    connection.switch.shutdown(socket.SHUT_WR)
    connection.thread.join(0.5)
    assert connection.thread.is_alive() and not connection.brick.dead()


def test_a_sessions_flow_stats_reply_reaches_it_and_not_os_ken(fixed, connect):
    connection = connect()
    taken = []

    class Session:
        def on_flow_stats_bytes(self, data):
            taken.append(data)
            return True
    os_ken_fixes.route_flow_stats_to_sessions(
        lambda dp: Session() if dp is connection.brick.datapath else None)
    ours = reply([flow_entry(f) for f in FLOWS[:3]], xid=XID_BASE + 1)
    theirs = reply([flow_entry(f) for f in FLOWS[:3]], xid=7)
    connection.switch.sendall(ours + theirs + message(ECHO_REQUEST, 8))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(connection.brick.messages()) < 3:
        time.sleep(0.02)
    assert taken == [ours]
    assert [type(m).__name__ for m in connection.brick.messages()] == \
        ["OFPHello", "OFPFlowStatsReply", "OFPEchoRequest"]
    assert connection.brick.messages()[1].xid == 7
