"""What ovsfabric changes in os-ken, one function per fix, each applied once.

os-ken has no hook for any of them: each replaces one of its module attributes. Before
replacing anything each fix checks that os-ken still has the shape it relies on, and raises
OsKenChanged otherwise: another os-ken fails at start instead of running without the fix.
tests/unit/test_os_ken_fixes.py checks the behaviour of os-ken each fix relies on.
"""
from __future__ import annotations

import dis
import inspect
import logging

import os_ken
from os_ken.base import app_manager  # noqa: F401  (os-ken's controller module needs it first)
from os_ken.controller import controller
from os_ken.lib import hub
from os_ken.ofproto import ofproto_common, ofproto_parser

from openflow import stats as wire_stats

from .switch import XID_BASE

LOG = logging.getLogger(__name__)
OPENFLOW_VERSIONS = range(0x01, 0x07)  # 1.0 to 1.5 on the wire
OFPT_MULTIPART_REPLY = 19  # the same number in OpenFlow 1.3 to 1.5


class OsKenChanged(RuntimeError):
    """The installed os-ken is not shaped as a fix expects (see constraints.txt)."""


class MalformedMessage(Exception):
    pass


def apply(session_for) -> None:
    """Puts every fix in place (once, however often called); flow-stats replies that switch
    sessions asked for go to ``session_for(datapath)``."""
    route_flow_stats_to_sessions(session_for)
    close_on_malformed_messages()
    report_closed_connections()


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise OsKenChanged(f"os-ken {os_ken.__version__}: {what}; ovsfabric's fixes to it "
                           "are written for the os-ken of constraints.txt")


def _globals_read(function) -> set[str]:
    return {i.argval for i in dis.get_instructions(function) if i.opname == "LOAD_GLOBAL"}


def _attributes_read(function) -> set[str]:
    return {i.argval for i in dis.get_instructions(function)
            if i.opname in ("LOAD_ATTR", "LOAD_METHOD")}


def receive_loop():
    """os-ken's own Datapath._recv_loop, under its _deactivate wrapper and under ours."""
    loop = controller.Datapath._recv_loop
    loop = getattr(loop, "__wrapped__", loop)  # report_closed_connections' wrapper
    cells = [c.cell_contents for c in loop.__closure__ or ()]
    functions = [c for c in cells if inspect.isfunction(c) and c.__name__ == "_recv_loop"]
    _expect(len(functions) == 1, "Datapath._recv_loop is no longer wrapped by _deactivate")
    return functions[0]


# ---- flow-stats replies routed to switch sessions --------------------------------------------

_session_for = None


def route_flow_stats_to_sessions(session_for) -> None:
    global _session_for
    _session_for = session_for


def _to_session(datapath, buf) -> bool:
    """Hands a flow-stats reply to the switch session that asked for it, unparsed.

    os-ken's parser builds objects for every entry of a table, which dominates a resync; the
    session reads the bytes itself (openflow.stats), far faster (docs/performance.md). Only replies to a session's
    own requests (xids from XID_BASE up) are taken; anything else, e.g. os_ken.lib.ofctl's
    requests, takes os-ken's way. Runs in the connection's receive thread: it only copies.
    Relies on os-ken's receive loop dispatching nothing for a message parsed as None.
    """
    if _session_for is None:
        return False
    session = _session_for(datapath)
    return session is not None and session.on_flow_stats_bytes(bytes(buf))


# ---- a malformed message closes its connection, and only that one ----------------------------

def _name(datapath) -> str:
    return f"{datapath.id:016x}" if datapath.id is not None else str(datapath.address)


class StrictParser:
    """What os-ken's receive loop parses with (its module's ``ofproto_parser``): raises on
    what os-ken would let through."""

    def __init__(self, parser):
        self.parser = parser  # os_ken.ofproto.ofproto_parser

    def header(self, buf):
        version, msg_type, msg_len, xid = self.parser.header(buf)
        if version not in OPENFLOW_VERSIONS or msg_len < ofproto_common.OFP_HEADER_SIZE:
            LOG.warning("malformed OpenFlow header (version 0x%02x, type %d, length %d): "
                        "closing the connection", version, msg_type, msg_len)
            raise MalformedMessage(f"version 0x{version:02x} length {msg_len}")
        return version, msg_type, msg_len, xid

    def msg(self, datapath, version, msg_type, msg_len, xid, buf):
        if msg_type == OFPT_MULTIPART_REPLY and wire_stats.reply_info(buf) is not None:
            if not wire_stats.well_framed(buf):  # os-ken's parser would loop on some
                LOG.warning("switch %s: malformed flow-stats reply: closing the connection",
                            _name(datapath))
                raise MalformedMessage(f"flow-stats reply, length {msg_len}")
            if xid >= XID_BASE and _to_session(datapath, buf):
                return None
        parsed = self.parser.msg(datapath, version, msg_type, msg_len, xid, buf)
        if parsed is None:  # os-ken logged why
            LOG.warning("switch %s: unparseable OpenFlow message (type %d, length %d): "
                        "closing the connection", _name(datapath), msg_type, msg_len)
            raise MalformedMessage(f"type {msg_type} length {msg_len}")
        return parsed


def close_on_malformed_messages() -> None:
    """A malformed message ends its switch's connection, and only that one.

    os-ken logs a message it cannot parse and carries on with the session, takes a length
    shorter than a header for 8, and waits for the body of any header, garbage included
    (0x9999 bytes for a switch that sent 0x99s): the session goes on in an unknown state.
    Its connection handler already closes a connection whose parsing raises, and reports
    the switch gone: here parsing raises instead. Only os-ken's receive loop sees this (the
    only reader of its module's reference to the parser functions), not the rest of os-ken.
    Flow-stats replies are checked for framing first: os-ken's parser loops for ever on an
    entry of length 0.
    """
    if isinstance(controller.ofproto_parser, StrictParser):
        return
    _expect(controller.ofproto_parser is ofproto_parser,
            "os_ken.controller.controller.ofproto_parser is not os_ken.ofproto.ofproto_parser")
    loop = receive_loop()
    _expect("ofproto_parser" in _globals_read(loop)
            and {"header", "msg"} <= _attributes_read(loop),
            "Datapath._recv_loop no longer parses with its module's ofproto_parser.header/msg")
    readers = [name for name, f in vars(controller).items() if inspect.isfunction(f)
               and "ofproto_parser" in _globals_read(f)]
    readers += [f"Datapath.{name}" for name, f in vars(controller.Datapath).items()
                if inspect.isfunction(f) and "ofproto_parser" in _globals_read(f)]
    _expect(not readers, f"{', '.join(readers)} also read(s) the module's ofproto_parser")
    controller.ofproto_parser = StrictParser(ofproto_parser)


# ---- a closed connection is reported closed --------------------------------------------------

def report_closed_connections() -> None:
    """A closed connection is reported closed, whoever closed it.

    When os-ken's receive loop ends (end of stream, a malformed message), its serve() kills
    and joins the send thread; under native threads hub.kill() does nothing, and the send
    thread waits on its queue until something is sent. A switch nobody sends to (one of no
    registered host, or one whose host's OVSDB is not ready) then stays "connected" for ever,
    and each such connection keeps two threads. An empty last message wakes the sender; it
    ends, serve() returns and os-ken reports the switch gone (DEAD_DISPATCHER).
    """
    receive = controller.Datapath._recv_loop
    if hasattr(receive, "__wrapped__"):
        return
    _expect(hub.HUB_TYPE == "native", f"os-ken runs on {hub.HUB_TYPE!r} threads, not native")
    _expect(list(inspect.signature(receive).parameters) == ["self"],
            "Datapath._recv_loop takes other arguments than self")
    _expect("_recv_loop" in _attributes_read(controller.Datapath.serve),
            "Datapath.serve no longer runs _recv_loop")
    _expect(list(inspect.signature(controller.Datapath.send).parameters)
            == ["self", "buf", "close_socket"], "Datapath.send(buf, close_socket) changed")

    def recv_loop(self):
        try:
            receive(self)
        finally:
            self.send(b"", close_socket=True)

    recv_loop.__wrapped__ = receive
    controller.Datapath._recv_loop = recv_loop
