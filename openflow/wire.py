"""Flow data straight to OpenFlow 1.3 wire bytes, without os-ken objects. Pure.

Building and serializing an os-ken OFPFlowMod costs 55 µs or more per flow, most of it in
OFPMatch's field conversions (netaddr); Open vSwitch takes some 250,000 flow mods per second
when they come already serialized. This module packs the same messages with ``struct``
(bench/wire_rate.py measures both).

The bytes are identical to os-ken's serialization of ``os_ken.add_message`` and
``os_ken.delete_message`` (and of ONFBundleAddMsg / ONFBundleCtrlMsg / OFPBarrierRequest),
down to field order and padding: tests/unit/test_wire.py compares them byte for byte. That is the
proof of correctness, so where os-ken makes a choice the specification leaves open, this
module makes the same one:

- match fields are sorted by os-ken's OXM type number ``(oxm_class << 7) | oxm_field``, which
  puts the Nicira field reg0 (class 0x0001) *before* every OpenFlow-basic field (class 0x8000);
  the one exception is tcp_flags, a Nicira field whose prerequisites are basic fields: it
  goes last, which os-ken does not do (and Open vSwitch refuses os-ken's order);
- a masked match value is sent ANDed with its mask, and a mask is always sent when given, even
  an all-ones one;
- a flow mod for ADD has out_port and out_group 0 (OFPFlowMod's defaults), DELETE_STRICT has
  OFPP_ANY / OFPG_ANY and cookie 0;
- NXActionRegMove names its fields by their OXM headers (reg0 by its NXM_NX_REG0 header).

Fields and actions are the vocabulary's (openflow.vocabulary, openflow.actions); anything
else (another field, action or value form) raises ValueError, and the caller sends that flow
through os-ken instead.

Per-flow work is kept small: each encoded match field (a (name, value) pair of Flow.match) and
each encoded action (an action tuple) is cached, keyed by the very tuple the Flow holds, so a
flow costs a few dict look-ups, a sort and a join; whole flow mod bodies are cached per Flow,
so a flow sent again (to another switch, or after a reconnection) costs a header pack only.
A first programming misses those caches for every endpoint's address: the usual value forms
(a str address, an int) take specialised per-field encoders, and a bundled flow mod is packed
with its bundle header in one call (Bundle.flow_mod_add).
The caches are bounded, and safe to share between switch threads: a dict or lru_cache update
is atomic under the GIL, and the worst a race can do is encode something twice.
"""
from __future__ import annotations

import struct
from functools import lru_cache

from . import actions, values
from .flow import Flow
from .vocabulary import FIELDS

OFP_VERSION = 0x04  # OpenFlow 1.3

# Message types, commands and reserved values (OpenFlow 1.3.5, ofproto_v1_3 in os-ken).
OFPT_EXPERIMENTER = 4
OFPT_FLOW_MOD = 14
OFPT_BARRIER_REQUEST = 20
OFPFC_ADD = 0
OFPFC_DELETE_STRICT = 4
OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPMT_OXM = 1
OFPIT_GOTO_TABLE = 1
OFPIT_WRITE_METADATA = 2
OFPIT_APPLY_ACTIONS = 4
ONF_EXPERIMENTER_ID = 0x4F4E4600
ONF_ET_BUNDLE_CONTROL = 2300
ONF_ET_BUNDLE_ADD_MESSAGE = 2301
ONF_BCT_OPEN_REQUEST = 0
ONF_BCT_COMMIT_REQUEST = 4
ONF_BCT_DISCARD_REQUEST = 6
ONF_BF_ATOMIC = 1
ONF_BF_ORDERED = 2
FULL_MASK_64 = (1 << 64) - 1
MAX_MESSAGE = 0xFFFF  # ofp_header.length is 16 bits

# ofp_header + ofp_flow_mod up to its match: version, type, length, xid, cookie, cookie_mask,
# table_id, command, idle_timeout, hard_timeout, priority, buffer_id, out_port, out_group,
# flags, 2 pad bytes.
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")
_HEADER = struct.Struct("!BBHI")
_XID = struct.Struct("!I")
_MATCH_HEADER = struct.Struct("!HH")  # type, length (without the trailing padding)
_APPLY_ACTIONS = struct.Struct("!HH4x")  # type, len
_WRITE_METADATA = struct.Struct("!HH4xQQ")  # type, len, metadata, mask
_GOTO_TABLE = struct.Struct("!HHB3x")  # type, len, table_id
# ofp_header + experimenter, exp_type + bundle_id, 2 pad bytes, flags; the inner message follows.
_BUNDLE_ADD = struct.Struct("!BBHIIII2xH")
# A bundle add and the flow mod it carries, packed in one call (their headers are adjacent).
_BUNDLED_FLOW_MOD = struct.Struct(_BUNDLE_ADD.format + _FLOW_MOD.format[1:])
# ofp_header + experimenter, exp_type + bundle_id, type, flags; no properties.
_BUNDLE_CTRL = struct.Struct("!BBHIIIIHH")
_PADDING = [bytes(n) for n in range(8)]

# ---- match fields ---------------------------------------------------------------------------

# What is encoded here is what the vocabulary declares; anything else is os-ken's to encode.
_HEADERS = {name: f.oxm for name, f in FIELDS.items()}
_VALUE_ENCODERS = values.ENCODERS

# Caches of encoded pieces, bounded (cleared when full: simple, and a refill is cheap).
_CACHE_LIMIT = values.CACHE_LIMIT


def _encode_tlv(name, value) -> bytes:
    """A match field as an OXM TLV."""
    field = values.field(name)
    value, mask = values.match_value(field, value)
    if mask is None:
        return field.oxm + value
    # os-ken (oxm_normalize_user) sends the value ANDed with its mask.
    value = bytes(v & m for v, m in zip(value, mask))
    return field.oxm_masked + value + mask


# (name, value) -> OXM TLV. Keyed by the pair Flow.match already holds: a look-up
# allocates nothing. Values recur across flows (a network's metadata, eth_type, a port).
_tlvs: dict = {}


def _match_tlv(item) -> bytes:
    try:
        name, value = item
        header = _HEADERS.get(name)
    except (TypeError, ValueError):
        raise ValueError(f"a match item is (field, value): {item!r}") from None
    if header is not None and type(value) is not tuple and not (
            type(value) is str and "/" in value):  # not masked, not a CIDR prefix
        tlv = header + _VALUE_ENCODERS[name](value)
    else:
        tlv = _encode_tlv(name, value)
    if len(_tlvs) >= _CACHE_LIMIT:
        _tlvs.clear()
    _tlvs[item] = tlv
    return tlv


# Nicira fields whose prerequisites are OpenFlow-basic fields: sent after every basic field.
_AFTER_BASIC = frozenset(h for f in ("tcp_flags_nxm",)
                         for h in (FIELDS[f].oxm, FIELDS[f].oxm_masked))


def encode_match(match: tuple) -> bytes:
    """ofp_match (OXM), padded to 8 bytes, for a Flow.match."""
    if len(dict(match)) != len(match):
        # os-ken (a dict of keyword arguments) would keep only one of them.
        raise ValueError(f"a field appears twice in {match!r}")
    get = _tlvs.get
    tlvs = [get(item) or _match_tlv(item) for item in match]
    # os-ken sorts the fields by their OXM type, (class << 7) | field. A TLV begins with
    # exactly those 23 bits, big-endian, so sorting the TLVs' bytes gives the same order.
    tlvs.sort()
    if _AFTER_BASIC.intersection(t[:4] for t in tlvs):
        # Its prerequisites (eth_type, ip_proto) must come first, or OVS refuses the match
        # (OFPBMC_BAD_PREREQ): os-ken's order is not kept here.
        tlvs.sort(key=lambda t: t[:4] in _AFTER_BASIC)
    body = b"".join(tlvs)
    length = 4 + len(body)
    return _MATCH_HEADER.pack(OFPMT_OXM, length) + body + _PADDING[-length % 8]


# ---- actions and instructions ---------------------------------------------------------------

_actions: dict = {}  # action tuple -> encoded action


def _action(action) -> bytes:
    encoded = actions.encode(action)
    if len(_actions) >= _CACHE_LIMIT:
        _actions.clear()
    _actions[action] = encoded
    return encoded


def encode_instructions(flow: Flow) -> bytes:
    """The instructions os_ken.instructions builds, in its order: apply-actions,
    write-metadata (full mask), goto-table."""
    parts = []
    if flow.actions:
        get = _actions.get
        encoded = b"".join([get(a) or _action(a) for a in flow.actions])
        # Every action is a multiple of 8 bytes long: the instruction needs no padding.
        parts.append(_APPLY_ACTIONS.pack(OFPIT_APPLY_ACTIONS, 8 + len(encoded)))
        parts.append(encoded)
    if flow.write_metadata is not None:
        parts.append(_WRITE_METADATA.pack(
            OFPIT_WRITE_METADATA, 24,
            values.unsigned(flow.write_metadata, 64, "write_metadata"), FULL_MASK_64))
    if flow.goto is not None:
        parts.append(_GOTO_TABLE.pack(OFPIT_GOTO_TABLE, 8,
                                      values.unsigned(flow.goto, 8, "goto")))
    return b"".join(parts)


# ---- messages -------------------------------------------------------------------------------

# Whole bodies (match and instructions) per Flow: a flow sent again, to another switch or after
# a reconnection, is not encoded again. Flow is frozen and hashable; the bound keeps memory
# flat (a body is about 100 to 300 bytes).
@lru_cache(maxsize=_CACHE_LIMIT)
def _add_tail(flow: Flow) -> bytes:
    return encode_match(flow.match) + encode_instructions(flow)


@lru_cache(maxsize=_CACHE_LIMIT)
def _delete_tail(flow: Flow) -> bytes:
    return encode_match(flow.match)


def _flow_mod_packer(command: int, tail_of, out_port: int, out_group: int, keeps_cookie: bool,
                     doc: str):
    """The one packing of a flow mod of ``command``, alone or with the bundle add that carries
    it (their headers are adjacent, so a bundled flow mod is one pack too). Made once per
    command, so that a flow costs one call and one pack."""
    size, bundled_size = _FLOW_MOD.size, _BUNDLE_ADD.size + _FLOW_MOD.size
    pack_alone, pack_bundled = _FLOW_MOD.pack, _BUNDLED_FLOW_MOD.pack

    def pack(flow: Flow, xid: int, bundle: "Bundle | None" = None) -> bytes:
        try:
            tail = tail_of(flow)
            cookie = flow.cookie if keeps_cookie else 0
            if bundle is None:
                return pack_alone(
                    OFP_VERSION, OFPT_FLOW_MOD, _length(size + len(tail)), xid, cookie, 0,
                    flow.table, command, 0, 0, flow.priority, OFP_NO_BUFFER, out_port,
                    out_group, 0) + tail
            return pack_bundled(
                OFP_VERSION, OFPT_EXPERIMENTER, _length(bundled_size + len(tail)), xid,
                ONF_EXPERIMENTER_ID, ONF_ET_BUNDLE_ADD_MESSAGE, bundle.id, bundle.flags,
                OFP_VERSION, OFPT_FLOW_MOD, size + len(tail), xid, cookie, 0, flow.table,
                command, 0, 0, flow.priority, OFP_NO_BUFFER, out_port, out_group, 0) + tail
        except (TypeError, struct.error) as exc:
            # Unhashable, or a number out of its field's range: nothing the compiler makes.
            raise ValueError(f"{flow}: {exc}") from None
    pack.__doc__ = doc
    return pack


flow_mod_add = _flow_mod_packer(
    OFPFC_ADD, _add_tail, 0, 0, True,
    """OFPFC_ADD (replaces a flow of the same table, priority and match), as
    os_ken.add_message serializes it: cookie, table, priority, no timeouts, OFP_NO_BUFFER,
    out_port and out_group 0, no flags.""")
flow_mod_delete_strict = _flow_mod_packer(
    OFPFC_DELETE_STRICT, _delete_tail, OFPP_ANY, OFPG_ANY, False,
    """OFPFC_DELETE_STRICT, as os_ken.delete_message serializes it: table, priority and
    match; cookie 0, OFPP_ANY, OFPG_ANY, no instructions.""")


def _length(length: int) -> int:
    if length > MAX_MESSAGE:
        raise ValueError(f"a message of {length} bytes is longer than OpenFlow allows")
    return length


def bundle_add(inner: bytes, bundle_id: int, flags: int, xid: int) -> bytes:
    """ONF bundle add (OpenFlow 1.3 extension 230) carrying ``inner``, a whole message.

    The inner message's xid must equal the outer one (the extension, section 3.3): like
    os-ken's ONFBundleAddMsg, its xid is overwritten with ``xid`` when it differs.
    """
    if len(inner) < _HEADER.size:
        raise ValueError("the inner message is shorter than an OpenFlow header")
    try:
        head = _BUNDLE_ADD.pack(OFP_VERSION, OFPT_EXPERIMENTER,
                                _length(_BUNDLE_ADD.size + len(inner)), xid,
                                ONF_EXPERIMENTER_ID, ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id, flags)
        if _XID.unpack_from(inner, 4)[0] != xid:
            inner = inner[:4] + _XID.pack(xid) + inner[8:]
    except struct.error as exc:
        raise ValueError(f"bundle add: {exc}") from None
    return head + inner


class Bundle:
    """One ONF bundle: its id and flags, and the messages that open, fill, commit or discard
    it. Atomic and ordered by default: the switch applies all of it, in order, or none."""

    __slots__ = ("flags", "id")

    def __init__(self, bundle_id: int, flags: int = ONF_BF_ATOMIC | ONF_BF_ORDERED):
        self.id = bundle_id
        self.flags = flags

    def open(self, xid: int) -> bytes:
        return bundle_ctrl(self.id, ONF_BCT_OPEN_REQUEST, self.flags, xid)

    def commit(self, xid: int) -> bytes:
        return bundle_ctrl(self.id, ONF_BCT_COMMIT_REQUEST, self.flags, xid)

    def discard(self, xid: int) -> bytes:
        return bundle_ctrl(self.id, ONF_BCT_DISCARD_REQUEST, self.flags, xid)

    def flow_mod_add(self, flow: Flow, xid: int) -> bytes:
        """bundle_add(flow_mod_add(flow, xid), ...) in one pack: a reconnection sends
        thousands of these, and the inner message is never needed alone."""
        return flow_mod_add(flow, xid, self)

    def flow_mod_delete_strict(self, flow: Flow, xid: int) -> bytes:
        return flow_mod_delete_strict(flow, xid, self)

    def add(self, inner: bytes, xid: int) -> bytes:
        """Any whole message (one os-ken serialized) into the bundle."""
        return bundle_add(inner, self.id, self.flags, xid)


def bundle_ctrl(bundle_id: int, type_: int, flags: int, xid: int) -> bytes:
    """ONF bundle control (open, close, commit, discard requests), without properties."""
    try:
        return _BUNDLE_CTRL.pack(OFP_VERSION, OFPT_EXPERIMENTER, _BUNDLE_CTRL.size, xid,
                                 ONF_EXPERIMENTER_ID, ONF_ET_BUNDLE_CONTROL, bundle_id, type_,
                                 flags)
    except struct.error as exc:
        raise ValueError(f"bundle control: {exc}") from None


def barrier(xid: int) -> bytes:
    """OFPT_BARRIER_REQUEST."""
    try:
        return _HEADER.pack(OFP_VERSION, OFPT_BARRIER_REQUEST, _HEADER.size, xid)
    except struct.error as exc:
        raise ValueError(f"barrier: {exc}") from None


def clear_caches() -> None:
    """Forgets every encoded field, action and flow (for benchmarks of the cold path)."""
    values.clear_caches()
    for cache in (_tlvs, _actions):
        cache.clear()
    _add_tail.cache_clear()
    _delete_tail.cache_clear()
