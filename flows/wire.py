"""Flow data straight to OpenFlow 1.3 wire bytes, without os-ken objects. Pure.

Building and serializing an os-ken OFPFlowMod costs 55 µs or more per flow, most of it in
OFPMatch's field conversions (netaddr); Open vSwitch takes some 250,000 flow mods per second
when they come already serialized. This module packs the same messages with ``struct``
(bench/wire_rate.py measures both).

The bytes are identical to os-ken's serialization of ``openflow.add_message`` and
``openflow.delete_message`` (and of ONFBundleAddMsg / ONFBundleCtrlMsg / OFPBarrierRequest),
down to field order and padding: tests/unit/test_wire.py compares them byte for byte. That is the
proof of correctness, so where os-ken makes a choice the specification leaves open, this
module makes the same one:

- match fields are sorted by os-ken's OXM type number ``(oxm_class << 7) | oxm_field``, which
  puts the Nicira field reg0 (class 0x0001) *before* every OpenFlow-basic field (class 0x8000);
- a masked match value is sent ANDed with its mask, and a mask is always sent when given, even
  an all-ones one;
- a flow mod for ADD has out_port and out_group 0 (OFPFlowMod's defaults), DELETE_STRICT has
  OFPP_ANY / OFPG_ANY and cookie 0;
- NXActionRegMove names its fields by their OXM headers (reg0 by its NXM_NX_REG0 header).

Anything outside what the compiler produces (another field, action or value form) raises
ValueError, and the caller sends that flow through os-ken instead.

Per-flow work is kept small: each encoded match field (a (name, value) pair of Flow.match) and
each encoded action (an action tuple) is cached, keyed by the very tuple the Flow holds, so a
flow costs a few dict look-ups, a sort and a join; whole flow mod bodies are cached per Flow,
so a flow sent again (to another switch, or after a reconnection) costs a header pack only.
A first programming misses those caches for every endpoint's address: the usual value forms
(a str address, an int) take specialised per-field encoders, and a bundled flow mod is packed
with its bundle header in one call (bundle_flow_mod_add).
The caches are bounded, and safe to share between switch threads: a dict or lru_cache update
is atomic under the GIL, and the worst a race can do is encode something twice.
"""
from __future__ import annotations

import socket
import struct
from functools import lru_cache

from .flow import Flow

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
OFPAT_OUTPUT = 0
OFPAT_SET_FIELD = 25
OFPAT_EXPERIMENTER = 0xFFFF
NX_EXPERIMENTER_ID = 0x00002320
NXAST_REG_MOVE = 6
ONF_EXPERIMENTER_ID = 0x4F4E4600
ONF_ET_BUNDLE_CONTROL = 2300
ONF_ET_BUNDLE_ADD_MESSAGE = 2301
FULL_MASK_32 = (1 << 32) - 1
FULL_MASK_64 = (1 << 64) - 1
MAX_MESSAGE = 0xFFFF  # ofp_header.length is 16 bits

# ofp_header + ofp_flow_mod up to its match: version, type, length, xid, cookie, cookie_mask,
# table_id, command, idle_timeout, hard_timeout, priority, buffer_id, out_port, out_group,
# flags, 2 pad bytes.
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")
_HEADER = struct.Struct("!BBHI")
_XID = struct.Struct("!I")
_MATCH_HEADER = struct.Struct("!HH")  # type, length (without the trailing padding)
_OUTPUT = struct.Struct("!HHIH6x")  # type, len, port, max_len
_ACTION_HEADER = struct.Struct("!HH")  # set_field: type, len, then the OXM TLV and padding
# NXActionRegMove: type, len, experimenter, subtype, n_bits, src_ofs, dst_ofs, src, dst
# (OXM headers). 24 bytes, a multiple of 8, so it carries no padding.
_REG_MOVE = struct.Struct("!HHIHHHHII")
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

_OFB = 0x8000  # OFPXMC_OPENFLOW_BASIC
_NXM_1 = 0x0001  # OFPXMC_NXM_1, the NXM_NX_* fields: os-ken encodes reg0 as NXM_NX_REG0

# name -> (OXM class, OXM field, value kind, value size in bytes). Only what the compiler
# uses (arp_tha only as a move destination); anything else is os-ken's to encode.
_FIELD_SPECS = {
    "in_port": (_OFB, 0, "int", 4),
    "metadata": (_OFB, 2, "int", 8),
    "eth_dst": (_OFB, 3, "mac", 6),
    "eth_src": (_OFB, 4, "mac", 6),
    "eth_type": (_OFB, 5, "int", 2),
    "ip_proto": (_OFB, 10, "int", 1),
    "ipv4_src": (_OFB, 11, "ipv4", 4),
    "ipv4_dst": (_OFB, 12, "ipv4", 4),
    "icmpv4_type": (_OFB, 19, "int", 1),
    "arp_op": (_OFB, 21, "int", 2),
    "arp_spa": (_OFB, 22, "ipv4", 4),
    "arp_tpa": (_OFB, 23, "ipv4", 4),
    "arp_sha": (_OFB, 24, "mac", 6),
    "arp_tha": (_OFB, 25, "mac", 6),
    "tunnel_id": (_OFB, 38, "int", 8),
    "reg0": (_NXM_1, 0, "int", 4),
}


class _Field:
    """One OXM field with its headers precomputed."""

    __slots__ = ("header", "header_masked", "header_value", "kind", "name", "size")

    def __init__(self, name: str, oxm_class: int, oxm_field: int, kind: str, size: int):
        self.name = name
        self.kind = kind
        self.size = size
        # OXM header: class (16 bits), field (7), hasmask (1), payload length (8).
        self.header_value = (oxm_class << 16) | (oxm_field << 9) | size
        self.header = struct.pack("!I", self.header_value)
        self.header_masked = struct.pack(
            "!I", (oxm_class << 16) | (oxm_field << 9) | (1 << 8) | (2 * size))


FIELDS = {name: _Field(name, *spec) for name, spec in _FIELD_SPECS.items()}

# Caches, all bounded by _CACHE_LIMIT entries (cleared when full: simple, and a refill is
# cheap). An endpoint's MAC and IP recur in several fields of several flows.
_CACHE_LIMIT = 1 << 16
_macs: dict = {}  # "xx:xx:xx:xx:xx:xx" -> 6 bytes
_ipv4s: dict = {}  # "a.b.c.d" -> 4 bytes


def _remember(cache: dict, key, value):
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _field(name) -> _Field:
    try:
        return FIELDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"field {name!r} is not encoded here") from None


def _mac(text) -> bytes:
    binary = _macs.get(text)
    if binary is not None:
        return binary
    # netaddr (os-ken's parser) accepts many spellings; only the usual one is taken here, and
    # it means the same bytes in both. Anything else goes to os-ken.
    if type(text) is str and len(text) == 17 and text[2::3] == ":::::":
        try:
            # fromhex skips whitespace between pairs: six bytes prove twelve hex digits.
            binary = bytes.fromhex(text.replace(":", ""))
        except ValueError:
            binary = b""
        if len(binary) == 6:
            return _remember(_macs, text, binary)
    raise ValueError(f"not a MAC address in the xx:xx:xx:xx:xx:xx form: {text!r}")


def _ipv4(text) -> bytes:
    binary = _ipv4s.get(text)
    if binary is not None:
        return binary
    # inet_pton takes the dotted quad only (no leading zeros, no shorthand): what it takes,
    # netaddr (os-ken's parser, in its INET_PTON mode) reads the same way.
    if type(text) is str:
        try:
            return _remember(_ipv4s, text, socket.inet_pton(socket.AF_INET, text))
        except OSError:
            pass
    raise ValueError(f"not an IPv4 address: {text!r}")


def _ipv4_prefix(text) -> tuple[bytes, bytes] | None:
    """"a.b.c.d/n" as (address, netmask), as os-ken reads it (netaddr.IPNetwork); else None."""
    if type(text) is str and "/" in text:
        address, _, length = text.partition("/")
        if length.isdigit() and length.isascii() and (length == "0" or length[0] != "0") \
                and int(length) <= 32:
            mask = (FULL_MASK_32 << (32 - int(length))) & FULL_MASK_32
            return _ipv4(address), mask.to_bytes(4, "big")
        raise ValueError(f"not an IPv4 prefix: {text!r}")
    return None


def _value(field: _Field, value) -> bytes:
    if field.kind == "int":
        # bool is an int to os-ken as well (True is sent as 1).
        if not isinstance(value, int):
            raise ValueError(f"{field.name}: not an integer: {value!r}")
        try:
            return value.to_bytes(field.size, "big")
        except OverflowError:
            # os-ken would silently keep the low bytes; a value that does not fit is a bug.
            raise ValueError(f"{field.name}: {value!r} does not fit in {field.size} bytes") \
                from None
    if field.kind == "mac":
        return _mac(value)
    return _ipv4(value)


def _encode_tlv(name, value) -> bytes:
    """A match field as an OXM TLV."""
    field = _field(name)
    mask = None
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name}: a masked value is (value, mask): {value!r}")
        value, mask = _value(field, value[0]), _value(field, value[1])
    elif field.kind == "ipv4" and (prefix := _ipv4_prefix(value)) is not None:
        value, mask = prefix
    else:
        value = _value(field, value)
    if mask is None:
        return field.header + value
    # os-ken (oxm_normalize_user) sends the value ANDed with its mask.
    value = bytes(v & m for v, m in zip(value, mask))
    return field.header_masked + value + mask


# (name, value) -> OXM TLV. Keyed by the pair Flow.match already holds: a look-up
# allocates nothing. Values recur across flows (a network's metadata, eth_type, a port).
_tlvs: dict = {}


def _value_encoder(field: _Field):
    """The usual value form of a field (a str address, an int) to its bytes, with the
    general _value for anything else (which raises or gives the same bytes). A first
    programming sees each endpoint's address a few times and nothing else: this is the
    path its time goes to, so it makes as few calls as it can."""
    if field.kind == "mac":
        def encode(value):
            if type(value) is str:
                return _macs.get(value) or _mac(value)
            return _value(field, value)
    elif field.kind == "ipv4":
        def encode(value):
            if type(value) is str:
                return _ipv4s.get(value) or _ipv4(value)
            return _value(field, value)
    else:
        size = field.size

        def encode(value):
            if type(value) is int and value >= 0:
                try:
                    return value.to_bytes(size, "big")
                except OverflowError:
                    pass
            return _value(field, value)  # raises, or encodes a bool as os-ken does
    return encode


_VALUE_ENCODERS = {name: _value_encoder(field) for name, field in FIELDS.items()}
_HEADERS = {name: field.header for name, field in FIELDS.items()}


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
    body = b"".join(tlvs)
    length = 4 + len(body)
    return _MATCH_HEADER.pack(OFPMT_OXM, length) + body + _PADDING[-length % 8]


# ---- actions and instructions ---------------------------------------------------------------

def _u(value, bits: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{what}: not an unsigned {bits}-bit integer: {value!r}")
    return value


def _set_field_encoder(field: _Field):
    """A set_field of the field, its action header, OXM header and padding made once."""
    length = (8 + field.size + 7) // 8 * 8
    prefix = _ACTION_HEADER.pack(OFPAT_SET_FIELD, length) + field.header
    padding = _PADDING[length - 8 - field.size]
    value = _VALUE_ENCODERS[field.name]

    def encode(action: tuple) -> bytes:
        if isinstance(action[2], tuple):  # OFPActionSetField takes no mask
            raise ValueError(f"set_field {field.name}: no mask allowed: {action[2]!r}")
        return prefix + value(action[2]) + padding
    return encode


_SET_FIELD_ENCODERS = {name: _set_field_encoder(field) for name, field in FIELDS.items()}


def _encode_action(action) -> bytes:
    kind = action[0] if type(action) is tuple and action else None
    if kind == "set_field" and len(action) == 3 and type(action[1]) is str \
            and action[1] in _SET_FIELD_ENCODERS:
        return _SET_FIELD_ENCODERS[action[1]](action)
    if kind == "output" and len(action) == 2:
        # max_len 0, as openflow._action asks (it matters only for the controller port).
        return _OUTPUT.pack(OFPAT_OUTPUT, 16, _u(action[1], 32, "output port"), 0)
    if kind == "set_field" and len(action) == 3:
        field = _field(action[1])
        if isinstance(action[2], tuple):  # OFPActionSetField takes no mask
            raise ValueError(f"set_field {field.name}: no mask allowed: {action[2]!r}")
        tlv = field.header + _value(field, action[2])
        length = (4 + len(tlv) + 7) // 8 * 8
        return (_ACTION_HEADER.pack(OFPAT_SET_FIELD, length) + tlv
                + _PADDING[length - 4 - len(tlv)])
    if kind == "move" and len(action) == 4:
        src, dst = _field(action[1]), _field(action[2])
        # os-ken writes the fields' unmasked OXM headers and offsets 0; n_bits as given.
        return _REG_MOVE.pack(OFPAT_EXPERIMENTER, 24, NX_EXPERIMENTER_ID, NXAST_REG_MOVE,
                              _u(action[3], 16, "move n_bits"), 0, 0,
                              src.header_value, dst.header_value)
    raise ValueError(f"action not encoded here: {action!r}")


_actions: dict = {}  # action tuple -> encoded action


def _action(action) -> bytes:
    encoded = _encode_action(action)
    if len(_actions) >= _CACHE_LIMIT:
        _actions.clear()
    _actions[action] = encoded
    return encoded


def encode_instructions(flow: Flow) -> bytes:
    """The instructions openflow.instructions builds, in its order: apply-actions,
    write-metadata (full mask), goto-table."""
    parts = []
    if flow.actions:
        get = _actions.get
        actions = b"".join([get(a) or _action(a) for a in flow.actions])
        # Every action is a multiple of 8 bytes long: the instruction needs no padding.
        parts.append(_APPLY_ACTIONS.pack(OFPIT_APPLY_ACTIONS, 8 + len(actions)))
        parts.append(actions)
    if flow.write_metadata is not None:
        parts.append(_WRITE_METADATA.pack(
            OFPIT_WRITE_METADATA, 24, _u(flow.write_metadata, 64, "write_metadata"),
            FULL_MASK_64))
    if flow.goto is not None:
        parts.append(_GOTO_TABLE.pack(OFPIT_GOTO_TABLE, 8, _u(flow.goto, 8, "goto")))
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


def flow_mod_add(flow: Flow, xid: int) -> bytes:
    """OFPFC_ADD, as openflow.add_message serializes: cookie, table, priority, no timeouts,
    OFP_NO_BUFFER, out_port and out_group 0, no flags."""
    try:
        tail = _add_tail(flow)
        return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, _length(_FLOW_MOD.size + len(tail)),
                              xid, flow.cookie, 0, flow.table, OFPFC_ADD, 0, 0, flow.priority,
                              OFP_NO_BUFFER, 0, 0, 0) + tail
    except (TypeError, struct.error) as exc:
        # Unhashable, or a number out of its field's range: nothing the compiler makes.
        raise ValueError(f"{flow}: {exc}") from None


def flow_mod_delete_strict(flow: Flow, xid: int) -> bytes:
    """OFPFC_DELETE_STRICT, as openflow.delete_message serializes: table, priority and match;
    cookie 0, OFPP_ANY, OFPG_ANY, no instructions."""
    try:
        tail = _delete_tail(flow)
        return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, _length(_FLOW_MOD.size + len(tail)),
                              xid, 0, 0, flow.table, OFPFC_DELETE_STRICT, 0, 0, flow.priority,
                              OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0) + tail
    except (TypeError, struct.error) as exc:
        raise ValueError(f"{flow}: {exc}") from None


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


def bundle_flow_mod_add(flow: Flow, bundle_id: int, flags: int, xid: int) -> bytes:
    """bundle_add(flow_mod_add(flow, xid), bundle_id, flags, xid), in one pack: the
    reconcile path sends thousands of these, and the inner message is never needed alone."""
    try:
        tail = _add_tail(flow)
        inner = _FLOW_MOD.size + len(tail)
        return _BUNDLED_FLOW_MOD.pack(
            OFP_VERSION, OFPT_EXPERIMENTER, _length(_BUNDLE_ADD.size + inner), xid,
            ONF_EXPERIMENTER_ID, ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id, flags,
            OFP_VERSION, OFPT_FLOW_MOD, inner, xid, flow.cookie, 0, flow.table, OFPFC_ADD, 0, 0,
            flow.priority, OFP_NO_BUFFER, 0, 0, 0) + tail
    except (TypeError, struct.error) as exc:
        raise ValueError(f"{flow}: {exc}") from None


def bundle_flow_mod_delete_strict(flow: Flow, bundle_id: int, flags: int, xid: int) -> bytes:
    """bundle_add(flow_mod_delete_strict(flow, xid), bundle_id, flags, xid), in one pack."""
    try:
        tail = _delete_tail(flow)
        inner = _FLOW_MOD.size + len(tail)
        return _BUNDLED_FLOW_MOD.pack(
            OFP_VERSION, OFPT_EXPERIMENTER, _length(_BUNDLE_ADD.size + inner), xid,
            ONF_EXPERIMENTER_ID, ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id, flags,
            OFP_VERSION, OFPT_FLOW_MOD, inner, xid, 0, 0, flow.table, OFPFC_DELETE_STRICT, 0, 0,
            flow.priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0) + tail
    except (TypeError, struct.error) as exc:
        raise ValueError(f"{flow}: {exc}") from None


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
    for cache in (_macs, _ipv4s, _tlvs, _actions):
        cache.clear()
    _add_tail.cache_clear()
    _delete_tail.cache_clear()
