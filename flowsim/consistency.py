"""What Open vSwitch refuses when a flow with conntrack or conjunction actions is added. Pure.

Checked against ovs-ofctl: a flow the switch would refuse must not pass in the simulator.
"""
from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3_parser as parser

from .conntrack import INV
from .packet import ETH_TYPE_IPV4, FlowSimError, to_int

ETH_TYPE_IPV6 = 0x86DD
NX_CT_F_COMMIT = 1
NX_NAT_F_SRC, NX_NAT_F_DST = 1, 2
CT_EXEC_FIELDS = ("ct_mark", "ct_label")


def actions_of(instructions) -> list:
    return [a for inst in instructions if isinstance(inst, parser.OFPInstructionActions)
            for a in inst.actions]


def check_flow(match, instructions) -> None:
    actions = actions_of(instructions)
    conjunctions = [a for a in actions if isinstance(a, parser.NXActionConjunction)]
    if conjunctions and len(conjunctions) != len(actions):
        raise FlowSimError("conjunction actions may not be combined with other actions")
    for action in conjunctions:
        if action.n_clauses < 2 or not 0 <= action.clause < action.n_clauses:
            raise FlowSimError(f"conjunction({action.id},{action.clause + 1}/"
                               f"{action.n_clauses}): at least 2 clauses, k in 1..n")
    for action in actions:
        if isinstance(action, parser.NXActionCT):
            _check_ct(action, dict(match.items()))
        elif isinstance(action, parser.NXActionNAT):
            raise FlowSimError("nat is only allowed inside ct")


def _check_ct(action, match: dict) -> None:
    if match.get("eth_type") not in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
        raise FlowSimError("ct needs a match on IP (OFPBAC_MATCH_INCONSISTENT)")
    commit = bool(action.flags & NX_CT_F_COMMIT)
    if commit and "ct_state" in match:
        value, mask = to_int("ct_state", match["ct_state"])
        if value & (INV if mask is None else mask) & INV:
            raise FlowSimError("ct(commit) on +inv packets (OFPBAC_MATCH_INCONSISTENT)")
    for nested in action.actions:
        if isinstance(nested, parser.NXActionNAT):
            needs_commit = nested.flags & (NX_NAT_F_SRC | NX_NAT_F_DST)
        elif isinstance(nested, parser.OFPActionSetField) and nested.key in CT_EXEC_FIELDS:
            needs_commit = True
        else:
            raise FlowSimError(f"ct does not support nested {type(nested).__name__}")
        if needs_commit and not commit:
            raise FlowSimError("ct needs commit for exec and for nat with a range")
