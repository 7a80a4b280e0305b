"""A minimal OpenFlow 1.3 client for tests: the raw bytes Open vSwitch sends, unparsed.

It talks to a bridge's management socket (unix:<rundir>/<bridge>.mgmt), as ovs-ofctl does,
so that tests can feed real replies to openflow.stats and to os-ken alike.
"""
from __future__ import annotations

import socket
import struct

from openflow import stats as wire_stats
from openflow import wire

HEADER = struct.Struct("!BBHI")
HELLO = 0
ECHO_REQUEST, ECHO_REPLY = 2, 3
MULTIPART_REQUEST = 18
# ofp_multipart_request (type FLOW, no flags) + ofp_flow_stats_request: every table, any
# port and group, no cookie filter, an empty match.
_FLOW_STATS_REQUEST_BODY = struct.pack("!HH4xB3xII4xQQHH4x", 1, 0, 0xFF, 0xFFFFFFFF,
                                       0xFFFFFFFF, 0, 0, 1, 4)


class OpenFlowClient:
    def __init__(self, target: str, timeout: float = 30.0):
        if not target.startswith("unix:"):
            raise ValueError(f"a unix: target, not {target!r}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(target[len("unix:"):])
        self._buf = bytearray()
        self._send(HELLO, 1)
        while self._read()[1] != HELLO:
            pass

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, msg_type: int, xid: int, body: bytes = b"") -> None:
        self.sock.sendall(HEADER.pack(4, msg_type, HEADER.size + len(body), xid) + body)

    def _read(self) -> tuple[bytes, int, int]:
        """(message, type, xid); answers echo requests on the way."""
        while True:
            while len(self._buf) < HEADER.size or \
                    len(self._buf) < HEADER.unpack_from(self._buf)[2]:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("the switch closed the connection")
                self._buf += chunk
            _, msg_type, length, xid = HEADER.unpack_from(self._buf)
            message = bytes(self._buf[:length])
            del self._buf[:length]
            if msg_type == ECHO_REQUEST:
                self._send(ECHO_REPLY, xid, message[HEADER.size:])
                continue
            return message, msg_type, xid

    def flow_stats_replies(self, xid: int = 0x80000042) -> list[bytes]:
        """Every part of the reply to a flow-stats request for the whole table."""
        self._send(MULTIPART_REQUEST, xid, _FLOW_STATS_REQUEST_BODY)
        parts = []
        while True:
            message, _, reply_xid = self._read()
            info = wire_stats.reply_info(message)
            if reply_xid != xid or info is None:
                continue
            parts.append(message)
            if not info[1]:
                return parts

    def barrier(self, xid: int = 0x80000043) -> None:
        self.sock.sendall(wire.barrier(xid))
        while self._read()[2] != xid:
            pass
