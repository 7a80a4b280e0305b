"""Flow data straight to OpenFlow 1.3 wire bytes, without os-ken objects. Pure.

Building and serializing an os-ken OFPFlowMod costs 55 µs or more per flow, most of it in
OFPMatch's field conversions (netaddr); Open vSwitch takes some 250,000 flow mods per second
when they come already serialized. This module packs the same messages with ``struct``
(bench/wire_rate.py measures both).

The bytes are identical to os-ken's serialization of ``os_ken.add_message`` and
``os_ken.delete_message`` (and of ONFBundleAddMsg / ONFBundleCtrlMsg / OFPBarrierRequest),
down to field order and padding: tests/test_wire.py compares them byte for byte. That is the
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
with its bundle header in one call (Bundle.flow_mod_add).
The caches are bounded, and safe to share between switch threads: a dict or lru_cache update
is atomic under the GIL, and the worst a race can do is encode something twice.
"""
from __future__ import annotations

import socket
import struct
from functools import lru_cache

from flows.flow import Flow

from .vocabulary import FIELDS, Field

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
ONF_BCT_OPEN_REQUEST = 0
ONF_BCT_COMMIT_REQUEST = 4
ONF_BCT_DISCARD_REQUEST = 6
ONF_BF_ATOMIC = 1
ONF_BF_ORDERED = 2
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

# What is encoded here is what the vocabulary declares; anything else is os-ken's to encode.
_HEADERS = {name: struct.pack("!I", f.header) for name, f in FIELDS.items()}
_MASKED_HEADERS = {name: struct.pack("!I", f.masked_header) for name, f in FIELDS.items()}

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


def _field(name) -> Field:
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


def _value(field: Field, value) -> bytes:
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
        return _HEADERS[name] + value
    # os-ken (oxm_normalize_user) sends the value ANDed with its mask.
    value = bytes(v & m for v, m in zip(value, mask))
    return _MASKED_HEADERS[name] + value + mask


# (name, value) -> OXM TLV. Keyed by the pair Flow.match already holds: a look-up
# allocates nothing. Values recur across flows (a network's metadata, eth_type, a port).
_tlvs: dict = {}


def _value_encoder(field: Field):
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


def _set_field_encoder(field: Field):
    """A set_field of the field, its action header, OXM header and padding made once."""
    length = (8 + field.size + 7) // 8 * 8
    prefix = _ACTION_HEADER.pack(OFPAT_SET_FIELD, length) + _HEADERS[field.name]
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
        # max_len 0, as os_ken._action asks (it matters only for the controller port).
        return _OUTPUT.pack(OFPAT_OUTPUT, 16, _u(action[1], 32, "output port"), 0)
    if kind == "set_field" and len(action) == 3:
        field = _field(action[1])
        if isinstance(action[2], tuple):  # OFPActionSetField takes no mask
            raise ValueError(f"set_field {field.name}: no mask allowed: {action[2]!r}")
        tlv = _HEADERS[field.name] + _value(field, action[2])
        length = (4 + len(tlv) + 7) // 8 * 8
        return (_ACTION_HEADER.pack(OFPAT_SET_FIELD, length) + tlv
                + _PADDING[length - 4 - len(tlv)])
    if kind == "move" and len(action) == 4:
        src, dst = _field(action[1]), _field(action[2])
        # os-ken writes the fields' unmasked OXM headers and offsets 0; n_bits as given.
        return _REG_MOVE.pack(OFPAT_EXPERIMENTER, 24, NX_EXPERIMENTER_ID, NXAST_REG_MOVE,
                              _u(action[3], 16, "move n_bits"), 0, 0,
                              src.header, dst.header)
    raise ValueError(f"action not encoded here: {action!r}")


_actions: dict = {}  # action tuple -> encoded action


def _action(action) -> bytes:
    encoded = _encode_action(action)
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


def _flow_mod(flow: Flow, xid: int, delete: bool, bundle: "Bundle | None" = None) -> bytes:
    """The one packing of a flow mod, alone or with the bundle add that carries it (their
    headers are adjacent, so a bundled flow mod is one pack too).

    ADD is what os_ken.add_message serializes: cookie, table, priority, no timeouts,
    OFP_NO_BUFFER, out_port and out_group 0, no flags. DELETE_STRICT is delete_message's:
    table, priority and match; cookie 0, OFPP_ANY, OFPG_ANY, no instructions.
    """
    try:
        if delete:
            tail = _delete_tail(flow)
            cookie, command, out_port, out_group = 0, OFPFC_DELETE_STRICT, OFPP_ANY, OFPG_ANY
        else:
            tail = _add_tail(flow)
            cookie, command, out_port, out_group = flow.cookie, OFPFC_ADD, 0, 0
        length = _FLOW_MOD.size + len(tail)
        if bundle is None:
            return _FLOW_MOD.pack(
                OFP_VERSION, OFPT_FLOW_MOD, _length(length), xid, cookie, 0, flow.table,
                command, 0, 0, flow.priority, OFP_NO_BUFFER, out_port, out_group, 0) + tail
        return _BUNDLED_FLOW_MOD.pack(
            OFP_VERSION, OFPT_EXPERIMENTER, _length(_BUNDLE_ADD.size + length), xid,
            ONF_EXPERIMENTER_ID, ONF_ET_BUNDLE_ADD_MESSAGE, bundle.id, bundle.flags,
            OFP_VERSION, OFPT_FLOW_MOD, length, xid, cookie, 0, flow.table, command, 0, 0,
            flow.priority, OFP_NO_BUFFER, out_port, out_group, 0) + tail
    except (TypeError, struct.error) as exc:
        # Unhashable, or a number out of its field's range: nothing the compiler makes.
        raise ValueError(f"{flow}: {exc}") from None


def flow_mod_add(flow: Flow, xid: int) -> bytes:
    """OFPFC_ADD: replaces a flow of the same table, priority and match."""
    return _flow_mod(flow, xid, delete=False)


def flow_mod_delete_strict(flow: Flow, xid: int) -> bytes:
    """OFPFC_DELETE_STRICT of the flow of the same table, priority and match."""
    return _flow_mod(flow, xid, delete=True)


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
        return _flow_mod(flow, xid, delete=False, bundle=self)

    def flow_mod_delete_strict(self, flow: Flow, xid: int) -> bytes:
        return _flow_mod(flow, xid, delete=True, bundle=self)

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
    for cache in (_macs, _ipv4s, _tlvs, _actions):
        cache.clear()
    _add_tail.cache_clear()
    _delete_tail.cache_clear()
