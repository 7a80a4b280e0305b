"""A table lookup with Open vSwitch's conjunctive matches. Pure.

A flow whose actions are conjunction(id, k/n) is one clause k of conjunction id at its priority;
it never matches a packet by itself. When, for each of the n clauses, some flow of it at that
priority matches, the packet is looked up again with conj_id=id, among the flows that are not
clauses, and the flow found is the match. Satisfied conjunctions only count above the highest
priority ordinary flow that matches; a satisfied one with no conj_id flow is passed over.
"""
from __future__ import annotations

from collections import defaultdict

from os_ken.ofproto import ofproto_v1_3_parser as parser

from .packet import Packet


def clauses(instructions) -> tuple:
    """The conjunction actions of a flow's instructions (OVS allows no others beside them)."""
    return tuple(a for inst in instructions if isinstance(inst, parser.OFPInstructionActions)
                 for a in inst.actions if isinstance(a, parser.NXActionConjunction))


def lookup(entries: list, pkt: Packet):
    """(flow, conj_id) for pkt among entries sorted by priority, highest first; flow None
    on a miss, conj_id None unless a conjunction chose the flow."""
    hard = next((e for e in entries if not e.conjunctions and e.matches(pkt)), None)
    floor = -1 if hard is None else hard.priority
    # priority -> conjunction id -> (n_clauses, clauses matched, counted from 0)
    soft: dict[int, dict[int, tuple[int, set]]] = defaultdict(dict)
    for entry in entries:
        if entry.priority <= floor:
            break
        if entry.matches(pkt):
            for action in entry.conjunctions:
                n, seen = soft[entry.priority].setdefault(action.id, (action.n_clauses, set()))
                seen.add(action.clause)
    for priority in sorted(soft, reverse=True):
        # Which of several satisfied conjunctions wins is undefined in OVS; here the lowest id.
        for conj_id in sorted(soft[priority]):
            n, seen = soft[priority][conj_id]
            if len(seen) < n:
                continue
            saved, pkt.conj_id = pkt.conj_id, conj_id
            try:
                found = next((e for e in entries if not e.conjunctions and e.matches(pkt)), None)
            finally:
                pkt.conj_id = saved
            if found is not None:
                return found, conj_id
    return hard, None
