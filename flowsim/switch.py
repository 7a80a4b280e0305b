"""SimSwitch: OpenFlow 1.3 flow tables driven by os-ken flow-mod messages.

Semantics follow the OF 1.3 spec, and Open vSwitch where the spec leaves room
(out_port/out_group delete filters, OFPTT_ALL only for deletes, goto only forward).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from openflow.vocabulary import canonical_name

from .consistency import NX_CT_F_COMMIT, NX_NAT_F_DST, NX_NAT_F_SRC, check_flow
from .conntrack import ConnTracker, Nat, state_text
from .lookup import clauses, lookup
from .packet import CT_FIELDS, FlowSimError, Packet, field_width, to_int
from .trace import CtEvent, Step, TtlEvent

NX_CT_RECIRC_NONE = 0xFF
# What a ct's nat may rewrite in the packet.
NAT_FIELDS = ("ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst")
# Lookups per packet: more means a ct(table=) loop (OVS stops recirculating at a depth too).
MAX_STEPS = 256

# The spec fixes the execution order of instructions, whatever their order in the message.
_INSTRUCTION_ORDER = {ofp.OFPIT_METER: 0, ofp.OFPIT_APPLY_ACTIONS: 1, ofp.OFPIT_CLEAR_ACTIONS: 2,
                      ofp.OFPIT_WRITE_ACTIONS: 3, ofp.OFPIT_WRITE_METADATA: 4,
                      ofp.OFPIT_GOTO_TABLE: 5}


def _match_key(match) -> tuple:
    """Canonical ((field, value, mask), ...): equal keys mean identical matches (strict)."""
    key = []
    for name, user_value in match.items():
        value, mask = to_int(name, user_value)
        if mask is None:
            mask = (1 << field_width(name)) - 1
        if mask:  # an all-zero mask is a wildcard
            key.append((name, value & mask, mask))
    return tuple(sorted(key))


def _actions(instructions, kinds=(ofp.OFPIT_APPLY_ACTIONS, ofp.OFPIT_WRITE_ACTIONS)):
    for inst in instructions:
        if isinstance(inst, parser.OFPInstructionActions) and inst.type in kinds:
            yield from inst.actions


@dataclass(eq=False)  # identity semantics: tables remove entries by identity
class FlowEntry:
    table_id: int
    priority: int
    match: dict  # os-ken notation: field -> value or (value, mask)
    instructions: list
    cookie: int = 0
    packet_count: int = 0
    flags: int = 0
    key: tuple = field(default=(), repr=False)
    # Its conjunction actions: a flow with any is a clause, never a match by itself.
    conjunctions: tuple = field(default=(), repr=False)

    def matches(self, pkt: Packet) -> bool:
        for name, value, mask in self.key:
            have = pkt.get_int(name)
            if have is None or have & mask != value:
                return False
        return True

    def covered_by(self, key: tuple) -> bool:
        """Non-strict selection: is this entry at least as specific as the request?"""
        mine = {name: (value, mask) for name, value, mask in self.key}
        for name, value, mask in key:
            if name not in mine:
                return False
            my_value, my_mask = mine[name]
            if my_mask & mask != mask or my_value & mask != value:
                return False
        return True

    def outputs_to(self, port: int) -> bool:
        return any(isinstance(a, parser.OFPActionOutput) and a.port == port
                   for a in _actions(self.instructions))

    def uses_group(self, group_id: int) -> bool:
        return any(isinstance(a, parser.OFPActionGroup) and a.group_id == group_id
                   for a in _actions(self.instructions))

    def __str__(self):
        match = ",".join(f"{k}={v[0]}/{v[1]}" if isinstance(v, tuple) else f"{k}={v}"
                         for k, v in self.match.items())
        insts = " ".join(type(i).__name__.removeprefix("OFPInstruction") for i in self.instructions)
        return (f"table={self.table_id} priority={self.priority} cookie={self.cookie:#x} "
                f"n_packets={self.packet_count} {match or '*'} -> {insts or 'drop'}")


class SimSwitch:
    def __init__(self, dpid: int = 0, ports=None):
        self.dpid = dpid
        self.ports = None if ports is None else set(ports)  # None: any port number exists
        self._tables: dict[int, list[FlowEntry]] = {}
        self._bundles: dict[int, dict] = {}
        self.conntrack = ConnTracker()
        self.last_trace: list[Step] = []  # every lookup of the last process(), in order

    # ---- messages -------------------------------------------------------

    def apply(self, msg) -> None:
        if isinstance(msg, parser.OFPFlowMod):
            self._flow_mod(msg)
        elif isinstance(msg, parser.OFPBarrierRequest):
            pass  # we apply synchronously, so every earlier message is already done
        elif isinstance(msg, parser.ONFBundleAddMsg):
            self._bundle_add(msg)
        elif isinstance(msg, parser.ONFBundleCtrlMsg):
            self._bundle_ctrl(msg)
        else:
            raise FlowSimError(f"unsupported message {type(msg).__name__}")

    def apply_all(self, msgs) -> None:
        for msg in msgs:
            self.apply(msg)

    def flows(self, table_id: int | None = None) -> list[FlowEntry]:
        return [e for t in sorted(self._tables) if table_id in (None, t) for e in self._tables[t]]

    def _flow_mod(self, msg) -> None:
        cmd, tid = msg.command, msg.table_id
        if cmd in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            self._delete(msg, strict=cmd == ofp.OFPFC_DELETE_STRICT)
            return
        if cmd not in (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            raise FlowSimError(f"unknown flow_mod command {cmd}")
        if tid == ofp.OFPTT_ALL:
            raise FlowSimError("OFPTT_ALL is only allowed for deletes")  # OFPFMFC_BAD_TABLE_ID
        for inst in msg.instructions:
            # OVS rejects backward/self gotos when the flow is added (OFPBIC_BAD_TABLE_ID).
            if isinstance(inst, parser.OFPInstructionGotoTable) and inst.table_id <= tid:
                raise FlowSimError(f"goto_table:{inst.table_id} from table {tid} must go forward")
        check_flow(msg.match, msg.instructions)
        if cmd == ofp.OFPFC_ADD:
            self._add(msg)
        else:
            self._modify(msg, strict=cmd == ofp.OFPFC_MODIFY_STRICT)

    def _add(self, msg) -> None:
        entry = FlowEntry(msg.table_id, msg.priority, dict(msg.match.items()),
                          list(msg.instructions), msg.cookie, 0, msg.flags, _match_key(msg.match),
                          clauses(msg.instructions))
        table = self._tables.setdefault(msg.table_id, [])
        for i, old in enumerate(table):
            if old.priority == entry.priority and old.key == entry.key:
                # Identical match and priority: replace; OF1.3 §6.4 keeps counters
                # unless the new flow asks OFPFF_RESET_COUNTS.
                if not msg.flags & ofp.OFPFF_RESET_COUNTS:
                    entry.packet_count = old.packet_count
                table[i] = entry
                return
        # Keep tables sorted by priority; among equals the older entry wins lookups.
        pos = next((i for i, e in enumerate(table) if e.priority < entry.priority), len(table))
        table.insert(pos, entry)

    def _selected(self, msg, strict: bool):
        """Yield (table, index, entry) chosen by a modify/delete request."""
        key = _match_key(msg.match)
        tables = self._tables if msg.table_id == ofp.OFPTT_ALL else [msg.table_id]
        for tid in list(tables):
            table = self._tables.get(tid, [])
            for i, e in enumerate(table):
                if e.cookie & msg.cookie_mask != msg.cookie & msg.cookie_mask:
                    continue
                if strict and (e.priority != msg.priority or e.key != key):
                    continue
                if not strict and not e.covered_by(key):
                    continue
                yield table, i, e

    def _modify(self, msg, strict: bool) -> None:
        # OF1.1+: a modify that selects nothing is a no-op (it never adds); the
        # cookie is not changed. Entries are replaced, not mutated, so bundle
        # rollback can restore a shallow snapshot.
        for table, i, e in list(self._selected(msg, strict)):
            count = 0 if msg.flags & ofp.OFPFF_RESET_COUNTS else e.packet_count
            table[i] = replace(e, instructions=list(msg.instructions), packet_count=count,
                               conjunctions=clauses(msg.instructions))

    def _delete(self, msg, strict: bool) -> None:
        # As OVS: out_port/out_group filter unless OFPP_ANY/OFPG_ANY. os-ken's
        # OFPFlowMod defaults both to 0, so a delete that doesn't set them only
        # removes flows that output to port 0 / group 0, i.e. usually nothing.
        doomed = [e for _, _, e in self._selected(msg, strict)
                  if (msg.out_port == ofp.OFPP_ANY or e.outputs_to(msg.out_port))
                  and (msg.out_group == ofp.OFPG_ANY or e.uses_group(msg.out_group))]
        for e in doomed:
            self._tables[e.table_id].remove(e)

    # ---- bundles (ONF extension used with OF1.3) ---------------------------

    def _bundle_add(self, msg) -> None:
        if not isinstance(msg.message, parser.OFPFlowMod):
            raise FlowSimError(f"bundle {msg.bundle_id}: unsupported {type(msg.message).__name__}")
        # Adding to an unknown id opens the bundle implicitly, as OVS does.
        bundle = self._bundles.setdefault(msg.bundle_id, {"msgs": [], "closed": False})
        if bundle["closed"]:
            raise FlowSimError(f"bundle {msg.bundle_id} is closed")  # OFPBFC_BUNDLE_CLOSED
        bundle["msgs"].append(msg.message)

    def _bundle_ctrl(self, msg) -> None:
        bid, kind = msg.bundle_id, msg.type
        if kind == ofp.ONF_BCT_OPEN_REQUEST:
            if bid in self._bundles:
                raise FlowSimError(f"bundle {bid} already open")
            self._bundles[bid] = {"msgs": [], "closed": False}
            return
        if bid not in self._bundles:
            raise FlowSimError(f"no bundle {bid}")  # OFPBFC_BAD_ID
        if kind == ofp.ONF_BCT_CLOSE_REQUEST:
            self._bundles[bid]["closed"] = True
        elif kind == ofp.ONF_BCT_DISCARD_REQUEST:
            del self._bundles[bid]
        elif kind == ofp.ONF_BCT_COMMIT_REQUEST:
            msgs = self._bundles.pop(bid)["msgs"]
            # All or nothing: roll back to a snapshot if any message fails.
            snapshot = {t: list(entries) for t, entries in self._tables.items()}
            try:
                for m in msgs:
                    self._flow_mod(m)
            except Exception:
                self._tables = snapshot
                raise
        else:
            raise FlowSimError(f"unsupported bundle control type {kind}")

    # ---- pipeline -------------------------------------------------------

    def process(self, pkt: Packet, in_port: int) -> list[tuple[int | str, Packet]]:
        pkt = pkt.copy()
        pkt.in_port = in_port
        pkt.reset_pipeline()
        out: list = []
        self.last_trace = []
        # A ct(table=) forks: the tracked copy is a pass of its own, run after the current one
        # (as OVS runs a recirculation after the actions it was forked from).
        passes = deque([_Pass(0, pkt, {}, 0)])
        while passes:
            if len(self.last_trace) > MAX_STEPS:
                raise FlowSimError(f"more than {MAX_STEPS} lookups: a recirculation loop?")
            self._run(passes.popleft(), out, passes)
        return out

    def _run(self, run: _Pass, out: list, passes: deque) -> None:
        table_id, pkt, action_set = run.table_id, run.pkt, run.action_set
        while table_id is not None:
            entry, conj_id = lookup(self._tables.get(table_id, []), pkt)
            step = Step(table_id, entry, run.recirculation, conj_id)
            self.last_trace.append(step)
            if entry is None:
                return  # table miss without a miss flow: drop, action set discarded
            entry.packet_count += 1
            table_id = None
            context = _Context(pkt, out, step, passes, run.recirculation, action_set)
            for inst in sorted(entry.instructions, key=lambda i: _INSTRUCTION_ORDER.get(i.type, 9)):
                if isinstance(inst, parser.OFPInstructionGotoTable):
                    table_id = inst.table_id
                elif isinstance(inst, parser.OFPInstructionWriteMetadata):
                    mask = inst.metadata_mask
                    pkt.metadata = (pkt.metadata & ~mask) | (inst.metadata & mask)
                elif isinstance(inst, parser.OFPInstructionMeter):
                    pass  # rate limiting does not change where a packet goes
                elif inst.type == ofp.OFPIT_APPLY_ACTIONS:
                    if not all(self._execute(action, context) for action in inst.actions):
                        break  # as OVS: the rest of this flow's instructions are skipped
                elif inst.type == ofp.OFPIT_CLEAR_ACTIONS:
                    action_set.clear()
                elif inst.type == ofp.OFPIT_WRITE_ACTIONS:
                    for action in inst.actions:
                        action_set[_set_slot(action)] = action
                else:
                    raise FlowSimError(f"unsupported instruction {inst!r}")
        # Pipeline end: the action set runs field changes first, output last.
        context = _Context(pkt, out, self.last_trace[-1], passes, run.recirculation, {})
        for slot, action in action_set.items():
            if slot != "output" and not self._execute(action, context):
                return
        if "output" in action_set:
            self._execute(action_set["output"], context)

    def _execute(self, action, context: _Context) -> bool:
        """Run one action; False when the packet goes no further in this table."""
        pkt, out = context.pkt, context.out
        if isinstance(action, parser.OFPActionOutput):
            self._output(action.port, pkt, out)
        elif isinstance(action, parser.OFPActionSetField):
            value, mask = to_int(action.key, action.value)
            if mask is not None:  # e.g. "10.0.0.0/24": OF1.3 set_field has no mask
                raise FlowSimError(f"masked set_field {action.key}={action.value!r}")
            pkt.set_int(action.key, value)
        elif isinstance(action, parser.NXActionRegMove):
            src_field = canonical_name(action.src_field)
            dst_field = canonical_name(action.dst_field)
            src = pkt.get_int(src_field)
            if src is None:
                raise FlowSimError(f"move from absent field {src_field}")
            bits = (src >> action.src_ofs) & ((1 << action.n_bits) - 1)
            pkt.write_bits(dst_field, bits, action.dst_ofs, action.n_bits)
        elif isinstance(action, parser.NXActionRegLoad):
            # ofs_nbits packs the start bit (<< 6) and n_bits - 1.
            ofs, n_bits = action.ofs_nbits >> 6, (action.ofs_nbits & 0x3F) + 1
            pkt.write_bits(action.dst, action.value, ofs, n_bits)
        elif isinstance(action, parser.OFPActionDecNwTtl):
            return self._dec_ttl(context)
        elif isinstance(action, parser.NXActionCT):
            self._ct(action, context)
        else:
            raise FlowSimError(f"unsupported action {type(action).__name__}")
        return True

    @staticmethod
    def _dec_ttl(context: _Context) -> bool:
        pkt = context.pkt
        if pkt.nw_ttl is None:
            return True  # not IP: OVS leaves the packet as it is
        expired = pkt.nw_ttl <= 1
        context.step.events.append(TtlEvent(pkt.nw_ttl, expired))
        if expired:
            # OVS stops this table's actions; its packet-in for an invalid TTL is off by
            # default, so the packet is just not forwarded.
            return False
        pkt.nw_ttl -= 1
        return True

    def _ct(self, action, context: _Context) -> None:
        if action.flags & ~NX_CT_F_COMMIT or action.alg:
            raise FlowSimError(f"ct with flags {action.flags:#x} or alg {action.alg}: not modelled")
        pkt = context.pkt
        nat, writes = None, {}
        for nested in action.actions:
            if isinstance(nested, parser.NXActionNAT):
                nat = _nat(nested)
            else:  # ct_mark or ct_label, as consistency.check_flow allows
                writes[nested.key] = to_int(nested.key, nested.value)[0]
        commit = bool(action.flags & NX_CT_F_COMMIT)
        tracked = pkt.copy()
        outcome = self.conntrack.execute(tracked, _zone(action, pkt), commit, nat, writes)
        recirculate = None if action.recirc_table == NX_CT_RECIRC_NONE else action.recirc_table
        context.step.events.append(CtEvent(
            outcome.zone, commit, state_text(pkt.ct_state), state_text(outcome.state),
            recirculate, outcome.translated, _committed(outcome, writes),
            tracked.ct_mark, tracked.ct_label))
        if recirculate is not None:
            context.passes.append(_Pass(recirculate, tracked, dict(context.action_set),
                                        context.recirculation + 1))
        else:
            # The datapath translated the packet itself.
            for name in NAT_FIELDS:
                setattr(pkt, name, getattr(tracked, name))
        # As OVS: the packet that goes on is untracked, its conntrack fields cleared; only a
        # recirculation sees what ct returned.
        for name in CT_FIELDS:
            setattr(pkt, name, 0)

    def _output(self, port: int, pkt: Packet, out: list) -> None:
        if port == ofp.OFPP_CONTROLLER:
            out.append(("controller", pkt.copy()))
        elif port == ofp.OFPP_NORMAL:
            out.append(("normal", pkt.copy()))  # the switch's own L2 forwarding: not modelled
        elif port == ofp.OFPP_IN_PORT:
            out.append((pkt.in_port, pkt.copy()))
        elif port in (ofp.OFPP_FLOOD, ofp.OFPP_ALL):
            if self.ports is None:
                raise FlowSimError("flood needs SimSwitch(ports=...)")
            out.extend((p, pkt.copy()) for p in sorted(self.ports) if p != pkt.in_port)
        elif port > ofp.OFPP_MAX:
            raise FlowSimError(f"unsupported output port {port:#x}")
        elif port == pkt.in_port:
            pass  # OpenFlow drops output to the ingress port unless it says OFPP_IN_PORT
        elif self.ports is None or port in self.ports:
            out.append((port, pkt.copy()))
        # else: output to a port the switch doesn't have is dropped, as in OVS


def _set_slot(action):
    """Action-set slot: one action per kind, and one field write per destination field."""
    if isinstance(action, parser.OFPActionSetField):
        return ("set", action.key)
    if isinstance(action, parser.NXActionRegMove):
        return ("set", action.dst_field)
    if isinstance(action, parser.NXActionRegLoad):
        return ("set", action.dst)
    if isinstance(action, parser.OFPActionOutput):
        return "output"
    return type(action).__name__


@dataclass
class _Pass:
    """One way through the tables: the packet as received, or a copy ct recirculated."""
    table_id: int
    pkt: Packet
    action_set: dict
    recirculation: int


@dataclass
class _Context:
    """What an action may touch: the packet, the outputs, and the pass it runs in."""
    pkt: Packet
    out: list
    step: Step
    passes: deque
    recirculation: int
    action_set: dict


def _zone(action, pkt: Packet) -> int:
    """A ct's zone: immediate, or bits of a field (zone_ofs_nbits then packs them)."""
    if not action.zone_src:
        return action.zone_ofs_nbits
    name = canonical_name(action.zone_src)
    ofs, n_bits = action.zone_ofs_nbits >> 6, (action.zone_ofs_nbits & 0x3F) + 1
    return ((pkt.get_int(name) or 0) >> ofs) & ((1 << n_bits) - 1)


def _nat(action) -> Nat:
    if action.flags & ~(NX_NAT_F_SRC | NX_NAT_F_DST) or action.range_ipv6_min:
        raise FlowSimError(f"nat flags {action.flags:#x} or IPv6 ranges: not modelled")
    kind = "src" if action.flags & NX_NAT_F_SRC else "dst" if action.flags & NX_NAT_F_DST \
        else None
    addresses = (action.range_ipv4_min, action.range_ipv4_max or None) \
        if action.range_ipv4_min else None
    ports = (action.range_proto_min, action.range_proto_max) \
        if action.range_proto_min is not None else None
    return Nat(kind, addresses, ports)


def _committed(outcome, writes: dict) -> str | None:
    if not outcome.commit or outcome.connection is None:
        return None
    what = "new connection" if outcome.committed_new else "existing connection"
    if writes:
        what += " with " + ", ".join(f"{k}={v:#x}" for k, v in sorted(writes.items()))
    return what
