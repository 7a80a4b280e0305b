"""The os-ken application: thin handlers that hand each event to the fabric or a switch session."""
from __future__ import annotations

import functools
import logging
import struct

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER,
                                       set_ev_cls)
from os_ken.ofproto import ofproto_v1_3

LOG = logging.getLogger(__name__)
ONF_EXPERIMENTER, ONFT_ROLE_STATUS = 0x4F4E4600, 1911
ROLE_STATUS = struct.Struct("!IB3xQ")  # role, reason, generation_id


def guarded(handler):
    """With os-ken's native threads every exception counts as the thread's exit
    (hub.TaskExit is Exception there): one error in a handler would silently end the app's
    event loop. Log it and keep going instead."""
    @functools.wraps(handler)
    def wrapper(self, ev):
        try:
            handler(self, ev)
        except Exception:
            LOG.exception("handling %s failed", type(ev).__name__)
    return wrapper


class FabricApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    # Set by controller.runtime before os-ken instantiates the app: os-ken builds apps
    # itself and passes no arguments of ours.
    fabric = None

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @guarded
    def _state_change(self, ev):
        if ev.datapath.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            self.fabric.switch_connected(ev.datapath)
        else:
            self.fabric.switch_disconnected(ev.datapath)

    @set_ev_cls([ofp_event.EventOFPBarrierReply, ofp_event.EventOFPFlowStatsReply,
                 ofp_event.EventOFPAggregateStatsReply, ofp_event.EventOFPPortStatsReply,
                 ofp_event.EventOFPTableStatsReply, ofp_event.EventOFPDescStatsReply,
                 ofp_event.EventOFPPortDescStatsReply, ofp_event.EventOFPRoleReply],
                MAIN_DISPATCHER)
    @guarded
    def _reply(self, ev):
        session = self.fabric.session_for(ev.msg.datapath)
        if session is None or not session.on_reply(ev.msg):
            self.fabric.ofctl_waiters.deliver(ev.msg)

    @set_ev_cls(ofp_event.EventOFPExperimenter, MAIN_DISPATCHER)
    @guarded
    def _experimenter(self, ev):
        """ONF's role status (OpenFlow 1.3 extension 1911): OVS tells a MASTER it was made
        SLAVE by another controller's MASTER request."""
        msg = ev.msg
        if (msg.experimenter, msg.exp_type) != (ONF_EXPERIMENTER, ONFT_ROLE_STATUS) or \
                len(msg.data) < ROLE_STATUS.size:
            return
        role, _reason, generation = ROLE_STATUS.unpack_from(msg.data)
        session = self.fabric.session_for(msg.datapath)
        if session is not None:
            session.on_role_status(role, generation)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @guarded
    def _packet_in(self, ev):
        self.fabric.packet_in(ev.msg.datapath, bytes(ev.msg.data))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @guarded
    def _error(self, ev):
        session = self.fabric.session_for(ev.msg.datapath)
        if session is not None:
            session.on_error(ev.msg)
        else:
            LOG.warning("error from unmanaged switch: %s", ev.msg)
