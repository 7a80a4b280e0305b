"""Translation between Flow data and os-ken OpenFlow 1.3 messages, both ways. Pure."""
from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from . import actions
from .flow import Flow

FULL_MASK_64 = (1 << 64) - 1


def instructions(dp, flow: Flow) -> list:
    result = []
    if flow.actions:
        result.append(parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [actions.to_os_ken(a) for a in flow.actions]))
    if flow.write_metadata is not None:
        result.append(parser.OFPInstructionWriteMetadata(flow.write_metadata, FULL_MASK_64))
    if flow.goto is not None:
        result.append(parser.OFPInstructionGotoTable(flow.goto))
    return result


def add_message(dp, flow: Flow) -> parser.OFPFlowMod:
    """ADD replaces a flow with the same table, priority and match: used for new and changed."""
    return parser.OFPFlowMod(
        dp, cookie=flow.cookie, table_id=flow.table, command=ofp.OFPFC_ADD,
        priority=flow.priority, match=parser.OFPMatch(**dict(flow.match)),
        instructions=instructions(dp, flow))


def delete_message(dp, flow: Flow) -> parser.OFPFlowMod:
    return parser.OFPFlowMod(
        dp, table_id=flow.table, command=ofp.OFPFC_DELETE_STRICT, priority=flow.priority,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=parser.OFPMatch(**dict(flow.match)))


def flow_from_stats(stats) -> Flow:
    """An installed flow (an OFPFlowStats entry from the switch) as Flow data."""
    applied: tuple = ()
    write_metadata = goto = None
    for inst in stats.instructions:
        if isinstance(inst, parser.OFPInstructionActions) and inst.type == ofp.OFPIT_APPLY_ACTIONS:
            applied = tuple(actions.from_os_ken(a) for a in inst.actions)
        elif isinstance(inst, parser.OFPInstructionWriteMetadata):
            write_metadata = inst.metadata if inst.metadata_mask == FULL_MASK_64 else (
                inst.metadata, inst.metadata_mask)
        elif isinstance(inst, parser.OFPInstructionGotoTable):
            goto = inst.table_id
        else:
            # Something we never install: keep it visible so that the diff rewrites the flow.
            applied += (("unsupported", repr(inst)),)
    return Flow(stats.table_id, stats.priority, tuple(sorted(stats.match.items())),
                stats.cookie, applied, write_metadata, goto)
