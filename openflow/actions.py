"""Every action the controller speaks, declared once. Pure.

An action is a tuple, so that flows compare and hash; its first item names its kind. Each
kind below is one entry that knows all of the action: its wire bytes both ways (wire, stats),
its os-ken object both ways (os_ken), and its ovs-ofctl notation (notation). A new action is
one entry plus tests.

The bytes are os-ken's serialization of the os-ken object (tests/unit/test_wire.py compares them),
with one exception: os-ken does not pad a nat whose ranges are not a multiple of 8 bytes long
(it leaves the next action misaligned inside a ct); here it is padded, as Open vSwitch does.

    ("output", port)
    ("set_field", field, value)
    ("move", src_field, dst_field, n_bits)           whole fields, from bit 0
    ("dec_ttl",)                                     OFPAT_DEC_NW_TTL
    ("conjunction", id, clause, n_clauses)           clause counted from 1, as ovs-ofctl does
    ("ct", commit, zone, table, nat, exec_actions)   table None: no recirculation
    ("nat", kind, addresses, ports)                  only inside a ct; kind None, "src" or
                                                     "dst"; addresses and ports (min, max),
                                                     either may be None
"""
from __future__ import annotations

import socket
import struct

from os_ken.ofproto import ofproto_v1_3_parser as parser

from . import values
from .flow import OFPP_IN_PORT
from .values import Unknown
from .vocabulary import FIELDS, canonical_name, move_names

OFPAT_OUTPUT = 0
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_NORMAL = 0xFFFFFFFA
OFPCML_NO_BUFFER = 0xFFFF
OFPAT_DEC_NW_TTL = 24
OFPAT_SET_FIELD = 25
OFPAT_EXPERIMENTER = 0xFFFF
NX_EXPERIMENTER_ID = 0x00002320
NXAST_REG_MOVE = 6
NXAST_CONJUNCTION = 34
NXAST_CT = 35
NXAST_NAT = 36
NX_CT_F_COMMIT = 1
NX_CT_RECIRC_NONE = 0xFF
NX_NAT_F_SRC, NX_NAT_F_DST = 1, 2
NX_NAT_RANGE_IPV4_MIN, NX_NAT_RANGE_IPV4_MAX = 1, 2
NX_NAT_RANGE_IPV6 = 4 | 8
NX_NAT_RANGE_PROTO_MIN, NX_NAT_RANGE_PROTO_MAX = 16, 32

_TYPE_LEN = struct.Struct("!HH")
_PADDING = [bytes(n) for n in range(8)]


def output(port: int) -> tuple:
    return ("output", port)


def set_field(name: str, value) -> tuple:
    return ("set_field", name, value)


def move(src: str, dst: str, n_bits: int) -> tuple:
    return ("move", src, dst, n_bits)


def dec_ttl() -> tuple:
    return ("dec_ttl",)


def conjunction(conj_id: int, clause: int, n_clauses: int) -> tuple:
    return ("conjunction", conj_id, clause, n_clauses)


def ct(commit: bool = False, zone: int = 0, table: int | None = None,
       nat: tuple | None = None, exec_actions: tuple | list = ()) -> tuple:
    return ("ct", commit, zone, table, nat, tuple(exec_actions))


def nat(kind: str | None = None, addresses: tuple | None = None,
        ports: tuple | None = None) -> tuple:
    return ("nat", kind, addresses, ports)


def _experimenter(subtype: int, body: bytes) -> bytes:
    """A Nicira action: header, subtype, body, padded to 8 bytes."""
    length = (10 + len(body) + 7) // 8 * 8
    return struct.pack("!HHIH", OFPAT_EXPERIMENTER, length, NX_EXPERIMENTER_ID, subtype) \
        + body + _PADDING[length - 10 - len(body)]


def _arity(action, n: int) -> None:
    if len(action) != n:
        raise ValueError(f"{action[0]} takes {n - 1} arguments: {action!r}")


def _max_len(port: int) -> int:
    """max_len matters only for the controller port, which is sent whole packets
    (OFPCML_NO_BUFFER); 0 elsewhere."""
    return OFPCML_NO_BUFFER if port == OFPP_CONTROLLER else 0


class Output:
    name = "output"
    wire_key = OFPAT_OUTPUT
    os_ken_type = parser.OFPActionOutput
    _PACK = struct.Struct("!HHIH6x")  # type, len, port, max_len

    def encode(self, action) -> bytes:
        _arity(action, 2)
        port = values.unsigned(action[1], 32, "output port")
        return self._PACK.pack(OFPAT_OUTPUT, 16, port, _max_len(port))

    def decode(self, raw: bytes) -> tuple:
        if len(raw) != 16:
            raise Unknown
        return ("output", self._PACK.unpack(raw)[2])

    def to_os_ken(self, action):
        return parser.OFPActionOutput(action[1], max_len=_max_len(action[1]))

    def from_os_ken(self, obj) -> tuple:
        return ("output", obj.port)

    def notation(self, action) -> str:
        # As ovs-ofctl prints them.
        named = {OFPP_IN_PORT: "IN_PORT", OFPP_NORMAL: "NORMAL",
                 OFPP_CONTROLLER: f"CONTROLLER:{OFPCML_NO_BUFFER}"}
        return named.get(action[1], f"output:{action[1]}")


class SetField:
    name = "set_field"
    wire_key = OFPAT_SET_FIELD
    os_ken_type = parser.OFPActionSetField
    # In a set_field, ovs-ofctl keeps the OXM name but for tun_id.
    _NOTATION_NAMES = {"tunnel_id": "tun_id"}

    def __init__(self):
        self._encoders = {name: self._encoder(f) for name, f in FIELDS.items()}

    @staticmethod
    def _encoder(field):
        """The field's set_field with its action header, OXM header and padding made once."""
        length = (8 + field.size + 7) // 8 * 8
        prefix = _TYPE_LEN.pack(OFPAT_SET_FIELD, length) + field.oxm
        padding = _PADDING[length - 8 - field.size]
        value = values.ENCODERS[field.name]

        def encode(action: tuple) -> bytes:
            if isinstance(action[2], tuple):  # OFPActionSetField takes no mask
                raise ValueError(f"set_field {field.name}: no mask allowed: {action[2]!r}")
            return prefix + value(action[2]) + padding
        return encode

    def encode(self, action) -> bytes:
        try:
            encode = self._encoders[action[1]] if len(action) == 3 else None
        except (KeyError, TypeError):  # not a field, or unhashable
            encode = None
        if encode is None:
            raise ValueError(f"set_field not encoded here: {action!r}")
        return encode(action)

    def decode(self, raw: bytes) -> tuple:
        tlv_end = 8 + raw[7]
        if tlv_end > len(raw) or any(raw[tlv_end:]):  # the rest must be padding
            raise Unknown
        name, value = values.decode_tlv(raw[4:tlv_end])
        if isinstance(value, tuple):  # OpenFlow 1.3 has no masked set_field: os-ken fails
            raise Unknown
        return ("set_field", name, value)

    def to_os_ken(self, action):
        return parser.OFPActionSetField(**{action[1]: action[2]})

    def from_os_ken(self, obj) -> tuple:
        return ("set_field", obj.key, obj.value)

    def notation(self, action) -> str:
        field = action[1]
        return f"set_field:{values.text(field, action[2])}->" \
               f"{self._NOTATION_NAMES.get(field, field)}"


class Move:
    name = "move"
    wire_key = (OFPAT_EXPERIMENTER, NX_EXPERIMENTER_ID, NXAST_REG_MOVE)
    os_ken_type = parser.NXActionRegMove
    # type, len, experimenter, subtype, n_bits, src_ofs, dst_ofs, src, dst (OXM headers)
    _PACK = struct.Struct("!HHIHHHHII")
    _NAMES = move_names()

    def encode(self, action) -> bytes:
        _arity(action, 4)
        src, dst = values.field(action[1]), values.field(action[2])
        # os-ken writes the fields' unmasked OXM headers and offsets 0; n_bits as given.
        return self._PACK.pack(OFPAT_EXPERIMENTER, 24, NX_EXPERIMENTER_ID, NXAST_REG_MOVE,
                               values.unsigned(action[3], 16, "move n_bits"), 0, 0,
                               src.header, dst.header)

    def decode(self, raw: bytes) -> tuple:
        if len(raw) != 24:
            raise Unknown
        n_bits, _, _, src, dst = self._PACK.unpack(raw)[4:]
        # Named by their OXM type alone (no mask bit, no length), offsets dropped, as os-ken
        # and from_os_ken do.
        src_name, dst_name = self._NAMES.get(src >> 9), self._NAMES.get(dst >> 9)
        if src_name is None or dst_name is None:
            raise Unknown
        return ("move", src_name, dst_name, n_bits)

    def to_os_ken(self, action):
        return parser.NXActionRegMove(src_field=action[1], dst_field=action[2],
                                      n_bits=action[3])

    def from_os_ken(self, obj) -> tuple:
        # Open vSwitch answers with the NXM spelling of OXM fields (eth_src_nxm for eth_src).
        return ("move", canonical_name(obj.src_field), canonical_name(obj.dst_field),
                obj.n_bits)

    def notation(self, action) -> str:
        src, dst = (FIELDS[f].nxm_name if f in FIELDS else f
                    for f in action[1:3])
        return f"move:{src}[]->{dst}[]"


class DecTtl:
    name = "dec_ttl"
    wire_key = OFPAT_DEC_NW_TTL
    os_ken_type = parser.OFPActionDecNwTtl
    _BYTES = struct.pack("!HH4x", OFPAT_DEC_NW_TTL, 8)

    def encode(self, action) -> bytes:
        _arity(action, 1)
        return self._BYTES

    def decode(self, raw: bytes) -> tuple:
        if raw != self._BYTES:
            raise Unknown
        return ("dec_ttl",)

    def to_os_ken(self, action):
        return parser.OFPActionDecNwTtl()

    def from_os_ken(self, obj) -> tuple:
        return ("dec_ttl",)

    def notation(self, action) -> str:
        return "dec_ttl"


class Conjunction:
    name = "conjunction"
    wire_key = (OFPAT_EXPERIMENTER, NX_EXPERIMENTER_ID, NXAST_CONJUNCTION)
    os_ken_type = parser.NXActionConjunction
    _BODY = struct.Struct("!BBI")  # clause (from 0), n_clauses, id

    def encode(self, action) -> bytes:
        _arity(action, 4)
        conj_id = values.unsigned(action[1], 32, "conjunction id")
        n_clauses = values.unsigned(action[3], 8, "conjunction n_clauses")
        clause = values.unsigned(action[2], 8, "conjunction clause")
        if not 1 <= clause <= n_clauses:
            raise ValueError(f"conjunction clause {clause} not in 1..{n_clauses}")
        return _experimenter(NXAST_CONJUNCTION, self._BODY.pack(clause - 1, n_clauses, conj_id))

    def decode(self, raw: bytes) -> tuple:
        if len(raw) != 16:
            raise Unknown
        clause, n_clauses, conj_id = self._BODY.unpack_from(raw, 10)
        return ("conjunction", conj_id, clause + 1, n_clauses)

    def to_os_ken(self, action):
        return parser.NXActionConjunction(action[2] - 1, action[3], action[1])

    def from_os_ken(self, obj) -> tuple:
        return ("conjunction", obj.id, obj.clause + 1, obj.n_clauses)

    def notation(self, action) -> str:
        return f"conjunction({action[1]},{action[2]}/{action[3]})"


class Ct:
    name = "ct"
    wire_key = (OFPAT_EXPERIMENTER, NX_EXPERIMENTER_ID, NXAST_CT)
    os_ken_type = parser.NXActionCT
    # flags, zone_src (an OXM header; 0: the zone is immediate), zone (or ofs_nbits),
    # recirc_table, 3 pad bytes, alg; the nested actions follow.
    _BODY = struct.Struct("!HIHB3xH")

    def encode(self, action) -> bytes:
        _arity(action, 6)
        _, commit, zone, table, nat_action, exec_actions = action
        if type(commit) is not bool:
            raise ValueError(f"ct commit: not a bool: {commit!r}")
        table = NX_CT_RECIRC_NONE if table is None else values.unsigned(table, 8, "ct table")
        nested = list(exec_actions)
        if nat_action is not None:
            if type(nat_action) is not tuple or not nat_action or nat_action[0] != "nat":
                raise ValueError(f"ct nat: not a nat action: {nat_action!r}")
            nested.insert(0, nat_action)
        body = self._BODY.pack(NX_CT_F_COMMIT if commit else 0, 0,
                               values.unsigned(zone, 16, "ct zone"), table, 0)
        return _experimenter(NXAST_CT, body + b"".join(encode(a) for a in nested))

    def decode(self, raw: bytes) -> tuple:
        if len(raw) < 24:
            raise Unknown
        flags, zone_src, zone, table, alg = self._BODY.unpack_from(raw, 10)
        if flags & ~NX_CT_F_COMMIT or zone_src or alg:  # force, a zone from a field, an ALG
            raise Unknown
        nested = decode_list(raw, 24, len(raw))
        return self._make(flags, zone, table, nested)

    @staticmethod
    def _make(flags: int, zone: int, table: int, nested: tuple) -> tuple:
        # Open vSwitch keeps a ct's nat first among its actions (and prints it apart).
        nat_action = nested[0] if nested and nested[0][0] == "nat" else None
        return ct(bool(flags & NX_CT_F_COMMIT), zone,
                  None if table == NX_CT_RECIRC_NONE else table, nat_action,
                  nested[1:] if nat_action else nested)

    def to_os_ken(self, action):
        _, commit, zone, table, nat_action, exec_actions = action
        nested = ([nat_action] if nat_action else []) + list(exec_actions)
        return parser.NXActionCT(NX_CT_F_COMMIT if commit else 0, 0, zone,
                                 NX_CT_RECIRC_NONE if table is None else table, 0,
                                 [to_os_ken(a) for a in nested])

    def from_os_ken(self, obj) -> tuple:
        if obj.flags & ~NX_CT_F_COMMIT or obj.zone_src or obj.alg:
            return ("unsupported", repr(obj))
        return self._make(obj.flags, obj.zone_ofs_nbits, obj.recirc_table,
                          tuple(from_os_ken(a) for a in obj.actions))

    def notation(self, action) -> str:
        # ovs-ofctl's order: commit, table, zone, nat, exec.
        _, commit, zone, table, nat_action, exec_actions = action
        parts = ["commit"] if commit else []
        if table is not None:
            parts.append(f"table={table}")
        if zone:
            parts.append(f"zone={zone}")
        if nat_action is not None:
            parts.append(notation(nat_action))
        if exec_actions:
            parts.append(f"exec({','.join(notation(a) for a in exec_actions)})")
        return f"ct({','.join(parts)})"


class Nat:
    name = "nat"
    wire_key = (OFPAT_EXPERIMENTER, NX_EXPERIMENTER_ID, NXAST_NAT)
    os_ken_type = parser.NXActionNAT
    _BODY = struct.Struct("!2xHH")  # pad, flags, range_present; the ranges follow
    _KINDS = {None: 0, "src": NX_NAT_F_SRC, "dst": NX_NAT_F_DST}
    _FLAGS = {v: k for k, v in _KINDS.items()}

    def encode(self, action) -> bytes:
        _arity(action, 4)
        _, kind, addresses, ports = action
        if kind not in self._KINDS:
            raise ValueError(f"nat kind: None, 'src' or 'dst': {kind!r}")
        present, ranges = 0, b""
        low, high = self._pair(addresses, "addresses")
        if low is not None:
            present, ranges = present | NX_NAT_RANGE_IPV4_MIN, ranges + values.ipv4(low)
        if high is not None:
            present, ranges = present | NX_NAT_RANGE_IPV4_MAX, ranges + values.ipv4(high)
        low, high = self._pair(ports, "ports")
        if low is not None:
            present |= NX_NAT_RANGE_PROTO_MIN
            ranges += values.unsigned(low, 16, "nat port").to_bytes(2, "big")
        if high is not None:
            present |= NX_NAT_RANGE_PROTO_MAX
            ranges += values.unsigned(high, 16, "nat port").to_bytes(2, "big")
        return _experimenter(NXAST_NAT, self._BODY.pack(self._KINDS[kind], present) + ranges)

    @staticmethod
    def _pair(value, what: str) -> tuple:
        if value is None:
            return None, None
        if type(value) is not tuple or len(value) != 2 or value == (None, None):
            raise ValueError(f"nat {what}: (min, max), either may be None: {value!r}")
        return value

    def decode(self, raw: bytes) -> tuple:
        if len(raw) < 16:
            raise Unknown
        flags, present = self._BODY.unpack_from(raw, 10)
        if flags not in self._FLAGS or present & ~(NX_NAT_RANGE_IPV4_MIN | NX_NAT_RANGE_IPV4_MAX
                                                   | NX_NAT_RANGE_PROTO_MIN
                                                   | NX_NAT_RANGE_PROTO_MAX):
            raise Unknown  # persistent, hash, random; IPv6 ranges
        offset, found = 16, []
        for bit, size in ((NX_NAT_RANGE_IPV4_MIN, 4), (NX_NAT_RANGE_IPV4_MAX, 4),
                          (NX_NAT_RANGE_PROTO_MIN, 2), (NX_NAT_RANGE_PROTO_MAX, 2)):
            if present & bit:
                if offset + size > len(raw):
                    raise Unknown
                piece = raw[offset:offset + size]
                found.append(socket.inet_ntoa(piece) if size == 4 else
                             int.from_bytes(piece, "big"))
                offset += size
            else:
                found.append(None)
        return self._make(self._FLAGS[flags], *found)

    @staticmethod
    def _make(kind, ipv4_min, ipv4_max, port_min, port_max) -> tuple:
        addresses = None if ipv4_min is None and ipv4_max is None else (ipv4_min, ipv4_max)
        ports = None if port_min is None and port_max is None else (port_min, port_max)
        return nat(kind, addresses, ports)

    def to_os_ken(self, action):
        _, kind, addresses, ports = action
        addresses, ports = addresses or (None, None), ports or (None, None)
        return parser.NXActionNAT(self._KINDS[kind], range_ipv4_min=addresses[0] or "",
                                  range_ipv4_max=addresses[1] or "",
                                  range_proto_min=ports[0], range_proto_max=ports[1])

    def from_os_ken(self, obj) -> tuple:
        if obj.flags not in self._FLAGS or obj.range_ipv6_min or obj.range_ipv6_max:
            return ("unsupported", repr(obj))
        return self._make(self._FLAGS[obj.flags], obj.range_ipv4_min or None,
                          obj.range_ipv4_max or None, obj.range_proto_min,
                          obj.range_proto_max)

    def notation(self, action) -> str:
        _, kind, addresses, ports = action
        if kind is None:
            return "nat"
        text = f"nat({kind}"
        if addresses is not None:
            text += "=" + "-".join(dict.fromkeys(a for a in addresses if a is not None))
        if ports is not None:
            text += ":" + "-".join(dict.fromkeys(str(p) for p in ports if p is not None))
        return text + ")"


KINDS = {entry.name: entry for entry in (Output(), SetField(), Move(), DecTtl(), Conjunction(),
                                         Ct(), Nat())}
_DECODERS = {entry.wire_key: entry.decode for entry in KINDS.values()}
_BY_OS_KEN = {entry.os_ken_type: entry for entry in KINDS.values()}
_EXPERIMENTER = struct.Struct("!IH")  # experimenter, subtype


_ENCODERS = {name: entry.encode for name, entry in KINDS.items()}


def _kind(action):
    entry = KINDS.get(action[0]) if type(action) is tuple and action \
        and type(action[0]) is str else None
    if entry is None:
        raise ValueError(f"action not encoded here: {action!r}")
    return entry


def encode(action) -> bytes:
    """An action tuple's wire bytes; ValueError for anything not declared here."""
    try:
        encode_kind = _ENCODERS[action[0]]
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"action not encoded here: {action!r}") from None
    if type(action) is not tuple:
        raise ValueError(f"an action is a tuple: {action!r}")
    return encode_kind(action)


def decode(raw: bytes) -> tuple:
    """One action's bytes (its length checked) as a tuple; Unknown for what is not declared."""
    kind = _TYPE_LEN.unpack_from(raw)[0]
    if kind == OFPAT_EXPERIMENTER:
        if len(raw) < 16:
            raise Unknown
        kind = (kind, *_EXPERIMENTER.unpack_from(raw, 4))
    decode_kind = _DECODERS.get(kind)
    if decode_kind is None:
        raise Unknown
    return decode_kind(raw)


def decode_list(buf: bytes, offset: int, end: int, decode_one=decode) -> tuple:
    """The actions of buf[offset:end], each by ``decode_one`` (bytes -> tuple); ValueError
    if their lengths do not frame them."""
    actions = []
    while offset < end:
        if offset + 4 > end:
            raise ValueError("truncated action")
        length = _TYPE_LEN.unpack_from(buf, offset)[1]
        if length < 8 or length % 8 or offset + length > end:
            raise ValueError(f"bad action length {length}")
        actions.append(decode_one(buf[offset:offset + length]))
        offset += length
    return tuple(actions)


def to_os_ken(action):
    return _kind(action).to_os_ken(action)


def from_os_ken(obj) -> tuple:
    """An os-ken action object as a tuple; ("unsupported", repr) for what is not declared,
    so that a flow holding it differs from every flow the compiler makes."""
    entry = _BY_OS_KEN.get(type(obj))
    return entry.from_os_ken(obj) if entry is not None else ("unsupported", repr(obj))


def notation(action) -> str:
    entry = KINDS.get(action[0]) if action else None
    if entry is None:
        return str(action[1]) if len(action) > 1 else action[0]
    return entry.notation(action)
