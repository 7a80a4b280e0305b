"""Flow-stats multipart replies, from wire bytes straight to Flow data. Pure.

Reading back a large table through os-ken is slow, nearly all of it in os-ken's parser (an
OFPFlowStats, an OFPMatch and action objects per entry, netaddr for every address) and in
os_ken.flow_from_stats. This module reads the same bytes with ``struct``.

Its result is the one flow_from_stats gives for os-ken's parse of the same bytes, Flow for
Flow (tests/unit/test_wire_stats.py compares them). Where the two could differ it follows os-ken:

- fields are named and typed by the vocabulary, whose names are os-ken's (a test holds them
  equal); a move's fields in the NXM spelling Open vSwitch answers with (NXM_OF_ETH_SRC) get
  the field's own name (eth_src), as flow_from_stats gives them;
- a field with its mask bit set is a (value, mask) pair, whatever the mask; MACs are
  lower-case xx:xx:xx:xx:xx:xx, IPv4 addresses dotted quads (what netaddr prints);
- a move keeps its field names and n_bits only, not its offsets (flow_from_stats drops them);
- write-metadata with a full mask is the plain value, else a (value, mask) pair.

An entry with anything else (a field the vocabulary lacks, another action or
instruction, an instruction twice) is parsed by os-ken and converted by flow_from_stats, entry
by entry: the result stays the same, only slower. A reply whose framing is broken raises
ValueError.

Decoded pieces are cached by their bytes: a match field, an action and a whole entry's match
and instructions recur across flows and across reads of the same table. The caches are bounded
and safe to share between threads (a dict update is atomic under the GIL).
"""
from __future__ import annotations

import struct

from os_ken.ofproto import ofproto_v1_3_parser as parser

from . import actions, values
from .flow import Flow
from .os_ken import flow_from_stats
from .values import Unknown
from .wire import (FULL_MASK_64, OFP_VERSION, OFPIT_APPLY_ACTIONS, OFPIT_GOTO_TABLE,
                   OFPIT_WRITE_METADATA, OFPMT_OXM)

OFPT_MULTIPART_REPLY = 19
OFPMP_FLOW = 1
OFPMPF_REPLY_MORE = 1

# ofp_header + ofp_multipart_reply: version, type, length, xid, multipart type, flags, pad.
_REPLY = struct.Struct("!BBHIHH4x")
# ofp_flow_stats up to its match (48 bytes): length, table_id, pad, duration (8), priority,
# idle and hard timeouts, flags, pad (10), cookie, packet and byte counts (16).
_ENTRY = struct.Struct("!HBx8xH10xQ16x")
_MIN_ENTRY = _ENTRY.size + 8  # with the smallest (empty, padded) match
_TYPE_LEN = struct.Struct("!HH")
_WRITE_METADATA = struct.Struct("!8xQQ")  # type, len, pad; metadata, mask
_GOTO_TABLE = struct.Struct("!B")

_decode_tlv = values.decode_tlv
_decode_action = actions.decode
_CACHE_LIMIT = 1 << 16
_tlvs: dict = {}  # OXM TLV bytes -> (name, value)
_actions: dict = {}  # action bytes -> action tuple
_bodies: dict = {}  # match and instruction bytes -> (match, actions, write_metadata, goto)


def _remember(cache: dict, key, value):
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _match(buf: bytes, end: int) -> tuple:
    """The match's fields, sorted by name like flow_from_stats; buf starts at ofp_match."""
    offset = 4
    items = []
    get = _tlvs.get
    while offset < end:
        if offset + 4 > end:
            raise ValueError("truncated OXM field")
        stop = offset + 4 + buf[offset + 3]
        if stop > end:
            raise ValueError("truncated OXM field")
        tlv = buf[offset:stop]
        item = get(tlv)
        if item is None:
            item = _remember(_tlvs, tlv, _decode_tlv(tlv))
        items.append(item)
        offset = stop
    items.sort()
    return tuple(items)


# ---- actions and instructions -----------------------------------------------------------------

def _action(raw: bytes) -> tuple:
    action = _actions.get(raw)
    if action is None:
        action = _remember(_actions, raw, _decode_action(raw))
    return action


def _body(buf: bytes) -> tuple:
    """(match, actions, write_metadata, goto) of an entry's match and instructions."""
    match_type, match_len = _TYPE_LEN.unpack_from(buf)
    if match_type != OFPMT_OXM:
        raise Unknown
    if match_len < 4 or (match_len + 7) // 8 * 8 > len(buf):
        raise ValueError(f"bad match length {match_len}")
    match = _match(buf, match_len)
    offset = (match_len + 7) // 8 * 8
    applied: tuple = ()
    write_metadata = goto = None
    seen = set()
    while offset < len(buf):
        if offset + 4 > len(buf):
            raise ValueError("truncated instruction")
        kind, length = _TYPE_LEN.unpack_from(buf, offset)
        if length < 8 or offset + length > len(buf):
            raise ValueError(f"bad instruction length {length}")
        if kind in seen:  # flow_from_stats would keep the last: rare enough for os-ken
            raise Unknown
        seen.add(kind)
        if kind == OFPIT_APPLY_ACTIONS:
            applied = actions.decode_list(buf, offset + 8, offset + length, _action)
        elif kind == OFPIT_WRITE_METADATA and length == 24:
            metadata, mask = _WRITE_METADATA.unpack_from(buf, offset)
            write_metadata = metadata if mask == FULL_MASK_64 else (metadata, mask)
        elif kind == OFPIT_GOTO_TABLE and length == 8:
            goto = _GOTO_TABLE.unpack_from(buf, offset + 4)[0]
        else:
            raise Unknown
        offset += length
    return match, applied, write_metadata, goto


# ---- replies ----------------------------------------------------------------------------------

def reply_info(buf) -> tuple[int, bool] | None:
    """(xid, more parts follow) if buf starts an OpenFlow 1.3 flow-stats reply, else None."""
    if len(buf) < _REPLY.size:
        return None
    version, msg_type, _, xid, mp_type, flags = _REPLY.unpack_from(buf)
    if version != OFP_VERSION or msg_type != OFPT_MULTIPART_REPLY or mp_type != OFPMP_FLOW:
        return None
    return xid, bool(flags & OFPMPF_REPLY_MORE)


def well_framed(buf) -> bool:
    """Whether a flow-stats reply's entries and matches fit in it, each within the next.

    Cheap (two unpacks per entry), for a check before anyone parses: os-ken's parser loops
    for ever on an entry of length 0.
    """
    end = len(buf)
    if reply_info(buf) is None or _REPLY.unpack_from(buf)[2] != end:
        return False
    offset = _REPLY.size
    while offset < end:
        if offset + _MIN_ENTRY > end:
            return False
        length = _TYPE_LEN.unpack_from(buf, offset)[0]
        match_len = _TYPE_LEN.unpack_from(buf, offset + _ENTRY.size)[1]
        if length < _MIN_ENTRY or offset + length > end or match_len < 4 \
                or _ENTRY.size + (match_len + 7) // 8 * 8 > length:
            return False
        offset += length
    return True


def flows(buf: bytes) -> list[Flow]:
    """The flows of one flow-stats reply message (one part of a multipart reply)."""
    if reply_info(buf) is None:
        raise ValueError("not an OpenFlow 1.3 flow-stats reply")
    end = _REPLY.unpack_from(buf)[2]
    if end > len(buf):
        raise ValueError(f"reply of {end} bytes holds only {len(buf)}")
    result = []
    offset = _REPLY.size
    get = _bodies.get
    unpack_entry = _ENTRY.unpack_from
    while offset < end:
        if offset + _MIN_ENTRY > end:
            raise ValueError(f"truncated flow-stats entry at {offset}")
        length, table, priority, cookie = unpack_entry(buf, offset)
        if length < _MIN_ENTRY or offset + length > end:
            raise ValueError(f"bad flow-stats entry length {length} at {offset}")
        raw = buf[offset + _ENTRY.size:offset + length]
        body = get(raw)
        if body is None:
            try:
                body = _remember(_bodies, raw, _body(raw))
            except Unknown:
                result.append(_os_ken_entry(buf, offset))
                offset += length
                continue
        result.append(Flow(table, priority, body[0], cookie, *body[1:]))
        offset += length
    return result


def _os_ken_entry(buf: bytes, offset: int) -> Flow:
    """One entry the slow way: os-ken's parser, then flow_from_stats."""
    try:
        return flow_from_stats(parser.OFPFlowStats.parser(buf, offset))
    except Exception as exc:  # os-ken fails with struct.error, AssertionError, KeyError...
        raise ValueError(f"unparseable flow-stats entry at {offset}: {exc!r}") from None


def clear_caches() -> None:
    """Forgets every decoded piece (for benchmarks of the cold path, and tests)."""
    for cache in (_tlvs, _actions, _bodies):
        cache.clear()
