"""The reply routing that os_ken.lib.ofctl_v1_3's request helpers expect from their app.

Those helpers (kept in os-ken though its ofctl_rest app is gone) register
``waiters[dpid][xid] = (event, msgs)`` and wait; the app must append each reply and set the
event after the last part. Ryu's ofctl_rest did this in its handler; this is that handler.
"""
from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser


class OfctlWaiters(dict):
    def deliver(self, msg) -> None:
        per_dp = self.get(msg.datapath.id)
        entry = per_dp.get(msg.xid) if per_dp else None
        if entry is None:
            return
        event, msgs = entry
        msgs.append(msg)
        if isinstance(msg, parser.OFPMultipartReply) and msg.flags & ofp.OFPMPF_REPLY_MORE:
            return
        per_dp.pop(msg.xid, None)
        event.set()
