"""Starts os-ken inside this process (os-ken 4 ships no ryu-manager) on native threads."""
from __future__ import annotations

import logging
import types

from os_ken import cfg
from os_ken.base import app_manager

from openflow import stats as wire_stats
from security.tls import os_ken_options

from .switch import XID_BASE

LOG = logging.getLogger(__name__)
OPENFLOW_VERSIONS = range(0x01, 0x07)  # 1.0 to 1.5 on the wire
OFPT_MULTIPART_REPLY = 19  # the same number in OpenFlow 1.3 to 1.5


def start_openflow(fabric, listen_host: str, listen_port: int, identity=None) -> list:
    """Starts the OpenFlow listener and the fabric app; returns os-ken's service threads.

    With a TLS identity the listener speaks only TLS and requires the switches' certificates
    to be signed by the identity's CA."""
    import os_ken.controller.controller  # noqa: F401  (registers the ofp_* options)

    from .app import FabricApp

    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", listen_host)
    if identity is None:
        cfg.CONF.set_override("ofp_tcp_listen_port", listen_port)
    else:
        cfg.CONF.set_override("ofp_ssl_listen_port", listen_port)
        for option, value in os_ken_options(identity).items():
            cfg.CONF.set_override(option, value)
    FabricApp.fabric = fabric
    _route_flow_stats_to_sessions(fabric)
    _close_on_malformed_messages()
    _report_closed_connections()
    manager = app_manager.AppManager.get_instance()
    manager.load_apps(["controller.app"])
    contexts = manager.create_contexts()
    return manager.instantiate_apps(**contexts)



class MalformedMessage(Exception):
    pass


# Who takes the flow-stats replies that sessions asked for: the fabric's session_for.
_session_for = None


def _route_flow_stats_to_sessions(fabric) -> None:
    global _session_for
    _session_for = fabric.session_for


def _name(datapath) -> str:
    return f"{datapath.id:016x}" if datapath.id is not None else str(datapath.address)


def _to_session(datapath, buf) -> bool:
    """Hands a flow-stats reply to the switch session that asked for it, unparsed.

    os-ken's parser turns a 10,000-flow table into objects in most of a second; the session
    reads the bytes itself (openflow.stats) in a tenth of that. Only replies to a session's
    own requests (xids from XID_BASE up) are taken; anything else, e.g. os_ken.lib.ofctl's
    requests, takes os-ken's way. Runs in the connection's receive thread: it only copies.
    """
    if _session_for is None:
        return False
    session = _session_for(datapath)
    return session is not None and session.on_flow_stats_bytes(bytes(buf))


def _close_on_malformed_messages() -> None:
    """A malformed message ends its switch's connection, and only that one.

    os-ken logs a message it cannot parse and carries on with the session, takes a length
    shorter than a header for 8, and waits for the body of any header, garbage included
    (0x9999 bytes for a switch that sent 0x99s): the session goes on in an unknown state.
    Its connection handler already closes a connection whose parsing raises, and reports
    the switch gone: here parsing raises instead. Only os-ken's receive loop sees this (its
    module's reference to the parser functions), not the rest of os-ken.

    Flow-stats replies are checked for framing first (os-ken's parser loops for ever on an
    entry of length 0); those a switch session asked for go to it unparsed (_to_session).
    """
    from os_ken.controller import controller
    from os_ken.ofproto import ofproto_common, ofproto_parser

    if isinstance(controller.ofproto_parser, types.SimpleNamespace):
        return  # already in place

    def header(buf):
        version, msg_type, msg_len, xid = ofproto_parser.header(buf)
        if version not in OPENFLOW_VERSIONS or msg_len < ofproto_common.OFP_HEADER_SIZE:
            LOG.warning("malformed OpenFlow header (version 0x%02x, type %d, length %d): "
                        "closing the connection", version, msg_type, msg_len)
            raise MalformedMessage(f"version 0x{version:02x} length {msg_len}")
        return version, msg_type, msg_len, xid

    def msg(datapath, version, msg_type, msg_len, xid, buf):
        if msg_type == OFPT_MULTIPART_REPLY and wire_stats.reply_info(buf) is not None:
            if not wire_stats.well_framed(buf):  # os-ken's parser would loop on some
                LOG.warning("switch %s: malformed flow-stats reply: closing the connection",
                            _name(datapath))
                raise MalformedMessage(f"flow-stats reply, length {msg_len}")
            if xid >= XID_BASE and _to_session(datapath, buf):
                return None  # the session has it; os-ken's loop dispatches nothing for None
        parsed = ofproto_parser.msg(datapath, version, msg_type, msg_len, xid, buf)
        if parsed is None:  # os-ken logged why
            LOG.warning("switch %s: unparseable OpenFlow message (type %d, length %d): "
                        "closing the connection", _name(datapath), msg_type, msg_len)
            raise MalformedMessage(f"type {msg_type} length {msg_len}")
        return parsed

    controller.ofproto_parser = types.SimpleNamespace(header=header, msg=msg)


def _report_closed_connections() -> None:
    """A closed connection is reported closed, whoever closed it.

    When os-ken's receive loop ends (end of stream, a malformed message), its serve() kills
    and joins the send thread; under native threads hub.kill() does nothing, and the send
    thread waits on its queue until something is sent. A switch nobody sends to (one of no
    registered host, or one whose host's OVSDB is not ready) then stays "connected" for ever,
    and each such connection keeps two threads. An empty last message wakes the sender; it
    ends, serve() returns and os-ken reports the switch gone (DEAD_DISPATCHER).
    """
    from os_ken.controller import controller

    receive = controller.Datapath._recv_loop
    if getattr(receive, "wakes_sender", False):
        return

    def recv_loop(self):
        try:
            receive(self)
        finally:
            self.send(b"", close_socket=True)

    recv_loop.wakes_sender = True
    controller.Datapath._recv_loop = recv_loop
