"""A read-only subset of Ryu's ofctl_rest (``/stats/...``), for people moving from Ryu.

Same paths and JSON as Ryu's ofctl_rest on OpenFlow 1.3: the answers come from os-ken's
``ofctl_v1_3``, which ofctl_rest used. Errors follow this API's convention, ``{"error": ...}``:
400 for a malformed dpid, port or body, 404 for a dpid without a connected switch, 503 when
the switch does not answer in time. These routes are not in the /v1 OpenAPI document.
"""
from __future__ import annotations

import struct
import threading

from flask import Flask, jsonify, request
from os_ken.lib import ofctl_v1_3 as ofctl

from controller.fabric import Fabric
from model import InvalidRequest, NotFound, Unavailable

from .spec import json_object

REPLY_TIMEOUT_S = 5.0
# What os-ken's ofctl raises on a filter it cannot turn into a request.
FILTER_ERRORS = (ValueError, TypeError, KeyError, AttributeError, struct.error)


class _PerSwitch(dict):
    """Pending requests of one switch; a reply and a deadline may both remove an entry."""

    def __delitem__(self, xid):
        # Tolerant on purpose: a KeyError in the os-ken reply handler would end os-ken's
        # event loop (its native hub re-raises every exception there).
        self.pop(xid, None)


class _Deadline:
    """What ofctl takes as ``waiters``: registers in the fabric's table, with a deadline.

    ofctl waits on an os-ken hub.Event whose wait() ignores its timeout under the native hub,
    so a switch that never answers would hold an API thread for ever. Here a timer wakes it.
    """

    def __init__(self, waiters: dict, dpid: int):
        self._pending = waiters.setdefault(dpid, _PerSwitch())
        self._timers: list[tuple[threading.Timer, int]] = []
        self.answered = True

    def setdefault(self, dpid, default):  # ofctl: waiters.setdefault(dp.id, {})
        return self

    def __setitem__(self, xid, entry):  # ofctl: waiters[dp.id][xid] = (event, msgs)
        self._pending[xid] = entry
        timer = threading.Timer(REPLY_TIMEOUT_S, self._expire, (xid, entry[0]))
        timer.daemon = True
        self._timers.append((timer, xid))
        timer.start()

    def __delitem__(self, xid):
        self._pending.pop(xid, None)

    def _expire(self, xid, event) -> None:
        if self._pending.pop(xid, None) is not None:
            self.answered = False
        event.set()

    def close(self) -> None:
        for timer, xid in self._timers:
            timer.cancel()
            self._pending.pop(xid, None)


def register(app: Flask, fabric: Fabric) -> None:
    def datapath(dpid: str):
        try:
            number = int(dpid, 0)  # decimal as in Ryu, 0x-hex too
        except ValueError:
            raise InvalidRequest(f"invalid datapath id {dpid!r}") from None
        dp = next((s.dp for s in list(fabric.switches.values()) if s.dp.id == number), None)
        if dp is None:
            raise NotFound(f"no connected switch with datapath id {dpid}")
        return dp

    def ask(dp, stats, *args):
        """Ryu's JSON from one ofctl_v1_3 request to the switch."""
        waiters = _Deadline(fabric.ofctl_waiters, dp.id)
        try:
            result = stats(dp, waiters, *args)
        except FILTER_ERRORS as exc:
            raise InvalidRequest(f"invalid filter: {exc!r}") from None
        finally:
            waiters.close()
        if not waiters.answered:
            raise Unavailable(f"switch {dp.id} did not answer within {REPLY_TIMEOUT_S:g} s")
        return jsonify(result)

    def flow_filter() -> dict:
        """The optional JSON body of the flow requests (Ryu's fields: table_id, match, ...)."""
        if not request.get_data():
            return {}
        body = json_object()
        if not isinstance(body.get("match", {}), dict):
            raise InvalidRequest("the match must be a JSON object")
        return body

    @app.get("/stats/switches")
    def ryu_switches():
        return jsonify([s.dp.id for s in list(fabric.switches.values())])

    @app.get("/stats/desc/<dpid>")
    def ryu_desc(dpid):
        return ask(datapath(dpid), ofctl.get_desc_stats)

    @app.route("/stats/flow/<dpid>", methods=["GET", "POST"])
    def ryu_flows(dpid):
        return ask(datapath(dpid), ofctl.get_flow_stats, flow_filter())

    @app.route("/stats/aggregateflow/<dpid>", methods=["GET", "POST"])
    def ryu_aggregate_flows(dpid):
        return ask(datapath(dpid), ofctl.get_aggregate_flow_stats, flow_filter())

    @app.get("/stats/port/<dpid>")
    @app.get("/stats/port/<dpid>/<port>")
    def ryu_ports(dpid, port="ALL"):
        dp = datapath(dpid)
        if port == "ALL":
            return ask(dp, ofctl.get_port_stats, None)
        try:
            number = int(port, 0)
        except ValueError:
            number = -1
        if not 0 <= number <= 0xffffffff:
            raise InvalidRequest(f"invalid port number {port!r}")
        return ask(dp, ofctl.get_port_stats, number)

    @app.get("/stats/table/<dpid>")
    def ryu_tables(dpid):
        return ask(datapath(dpid), ofctl.get_table_stats)
