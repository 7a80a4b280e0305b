"""Field values to and from their wire bytes, as the vocabulary types them. Pure.

A value is an int, a MAC address in the xx:xx:xx:xx:xx:xx form or an IPv4 dotted quad (with
"/n" for a prefix in a match), and means the same bytes as it does to os-ken; any other
spelling raises ValueError, and the caller hands the flow to os-ken.
"""
from __future__ import annotations

import socket
import struct

from .vocabulary import FIELDS, Field

FULL_MASK_32 = (1 << 32) - 1

# Caches, all bounded by CACHE_LIMIT entries (cleared when full: simple, and a refill is
# cheap). An endpoint's MAC and IP recur in several fields of several flows.
CACHE_LIMIT = 1 << 16
_macs: dict = {}  # "xx:xx:xx:xx:xx:xx" -> 6 bytes
_ipv4s: dict = {}  # "a.b.c.d" -> 4 bytes


def remember(cache: dict, key, value):
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def field(name) -> Field:
    try:
        return FIELDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"field {name!r} is not encoded here") from None


def mac(text) -> bytes:
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
            return remember(_macs, text, binary)
    raise ValueError(f"not a MAC address in the xx:xx:xx:xx:xx:xx form: {text!r}")


def ipv4(text) -> bytes:
    binary = _ipv4s.get(text)
    if binary is not None:
        return binary
    # inet_pton takes the dotted quad only (no leading zeros, no shorthand): what it takes,
    # netaddr (os-ken's parser, in its INET_PTON mode) reads the same way.
    if type(text) is str:
        try:
            return remember(_ipv4s, text, socket.inet_pton(socket.AF_INET, text))
        except OSError:
            pass
    raise ValueError(f"not an IPv4 address: {text!r}")


def ipv4_prefix(text) -> tuple[bytes, bytes] | None:
    """"a.b.c.d/n" as (address, netmask), as os-ken reads it (netaddr.IPNetwork); else None."""
    if type(text) is str and "/" in text:
        address, _, length = text.partition("/")
        if length.isdigit() and length.isascii() and (length == "0" or length[0] != "0") \
                and int(length) <= 32:
            mask = (FULL_MASK_32 << (32 - int(length))) & FULL_MASK_32
            return ipv4(address), mask.to_bytes(4, "big")
        raise ValueError(f"not an IPv4 prefix: {text!r}")
    return None


def value(field: Field, value) -> bytes:
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
        return mac(value)
    return ipv4(value)


def _value_encoder(field: Field):
    """The usual value form of a field (a str address, an int) to its bytes, with the
    general _value for anything else (which raises or gives the same bytes). A first
    programming sees each endpoint's address a few times and nothing else: this is the
    path its time goes to, so it makes as few calls as it can."""
    if field.kind == "mac":
        def encode(value):
            if type(value) is str:
                return _macs.get(value) or mac(value)
            return value(field, value)
    elif field.kind == "ipv4":
        def encode(value):
            if type(value) is str:
                return _ipv4s.get(value) or ipv4(value)
            return value(field, value)
    else:
        size = field.size

        def encode(value):
            if type(value) is int and value >= 0:
                try:
                    return value.to_bytes(size, "big")
                except OverflowError:
                    pass
            return value(field, value)  # raises, or encodes a bool as os-ken does
    return encode


ENCODERS = {name: _value_encoder(field) for name, field in FIELDS.items()}


def unsigned(value, bits: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{what}: not an unsigned {bits}-bit integer: {value!r}")
    return value


def match_value(field: Field, given) -> tuple[bytes, bytes | None]:
    """A match value as (value, mask or None): a (value, mask) pair, an "a.b.c.d/n" prefix,
    or a plain value."""
    if isinstance(given, tuple):
        if len(given) != 2:
            raise ValueError(f"{field.name}: a masked value is (value, mask): {given!r}")
        return value(field, given[0]), value(field, given[1])
    if field.kind == "ipv4" and (prefix := ipv4_prefix(given)) is not None:
        return prefix
    return value(field, given), None


# ---- from the wire ---------------------------------------------------------------------------

class Unknown(Exception):
    """Bytes the vocabulary does not declare: the flow-stats reader leaves them to os-ken."""


_DECODERS = {"int": lambda binary: int.from_bytes(binary, "big"),
             "mac": lambda binary: binary.hex(":"),  # lower case, as netaddr prints it
             "ipv4": socket.inet_ntoa}
# OXM TLV header -> (name, value size, decoder, masked): the spelling the encoder sends, and
# Open vSwitch answers with.
_BY_HEADER = {}
for _f in FIELDS.values():
    _BY_HEADER[_f.header] = (_f.name, _f.size, _DECODERS[_f.kind], False)
    _BY_HEADER[_f.masked_header] = (_f.name, _f.size, _DECODERS[_f.kind], True)
_TLV_HEADER = struct.Struct("!I")


def decode(field: Field, binary: bytes):
    """A field's value bytes in the notation encode takes."""
    return _DECODERS[field.kind](binary)


def decode_tlv(tlv: bytes) -> tuple:
    """An OXM TLV as (name, value), or (name, (value, mask)) when its mask bit is set."""
    spec = _BY_HEADER.get(_TLV_HEADER.unpack_from(tlv)[0])
    if spec is None:
        raise Unknown
    name, size, decode, masked = spec
    if masked:
        return name, (decode(tlv[4:4 + size]), decode(tlv[4 + size:]))
    return name, decode(tlv[4:])


def text(name: str, value) -> str:
    """A value as ovs-ofctl prints it: hex for the fields it prints in hex, flags as flags."""
    field = FIELDS.get(name)
    if field is not None and field.flags and _all_ints(value):
        value, mask = value if isinstance(value, tuple) else (value, (1 << len(field.flags)) - 1)
        return "".join(("+" if value >> bit & 1 else "-") + flag
                       for bit, flag in enumerate(field.flags) if mask >> bit & 1)
    if isinstance(value, tuple):
        return f"{text(name, value[0])}/{text(name, value[1])}"
    if isinstance(value, int) and field is not None and field.hex:
        return hex(value) if value else "0"
    return str(value)


def _all_ints(value) -> bool:
    return all(type(v) is int for v in (value if isinstance(value, tuple) else (value,)))


def clear_caches() -> None:
    _macs.clear()
    _ipv4s.clear()
