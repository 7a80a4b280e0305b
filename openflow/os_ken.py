"""Translation between Flow data and os-ken OpenFlow 1.3 messages, both ways. Pure."""
from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flows.flow import Flow

from .vocabulary import canonical_name

FULL_MASK_64 = (1 << 64) - 1


def _action(dp, action: tuple):
    kind = action[0]
    if kind == "output":
        return parser.OFPActionOutput(action[1], max_len=0)
    if kind == "set_field":
        return parser.OFPActionSetField(**{action[1]: action[2]})
    if kind == "move":
        return parser.NXActionRegMove(src_field=action[1], dst_field=action[2], n_bits=action[3])
    raise ValueError(f"unknown action {action!r}")


def instructions(dp, flow: Flow) -> list:
    result = []
    if flow.actions:
        result.append(parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [_action(dp, a) for a in flow.actions]))
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
    actions: tuple = ()
    write_metadata = goto = None
    for inst in stats.instructions:
        if isinstance(inst, parser.OFPInstructionActions) and inst.type == ofp.OFPIT_APPLY_ACTIONS:
            actions = tuple(_action_tuple(a) for a in inst.actions)
        elif isinstance(inst, parser.OFPInstructionWriteMetadata):
            write_metadata = inst.metadata if inst.metadata_mask == FULL_MASK_64 else (
                inst.metadata, inst.metadata_mask)
        elif isinstance(inst, parser.OFPInstructionGotoTable):
            goto = inst.table_id
        else:
            # Something we never install: keep it visible so that the diff rewrites the flow.
            actions += (("unsupported", repr(inst)),)
    return Flow(stats.table_id, stats.priority, tuple(sorted(stats.match.items())),
                stats.cookie, actions, write_metadata, goto)


def _action_tuple(action) -> tuple:
    if isinstance(action, parser.OFPActionOutput):
        return ("output", action.port)
    if isinstance(action, parser.OFPActionSetField):
        return ("set_field", action.key, action.value)
    if isinstance(action, parser.NXActionRegMove):
        # OVS answers with the NXM spelling of OXM fields (eth_src_nxm for eth_src).
        return ("move", canonical_name(action.src_field), canonical_name(action.dst_field),
                action.n_bits)
    return ("unsupported", repr(action))
