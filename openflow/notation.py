"""Flows printed the way ovs-ofctl prints them, so that operators read one notation. Pure."""
from __future__ import annotations

from flows.flow import OFPP_IN_PORT, Flow

from .vocabulary import FIELDS

# In a set_field, ovs-ofctl keeps the OXM name but for tun_id.
_SET_FIELD_NAMES = {"tunnel_id": "tun_id"}
_SHORTHANDS = {(0x0806, None): "arp", (0x0800, None): "ip", (0x0800, 1): "icmp",
               (0x0800, 6): "tcp", (0x0800, 17): "udp"}


def _value(field: str, value) -> str:
    if isinstance(value, tuple):
        return f"{_value(field, value[0])}/{_value(field, value[1])}"
    if isinstance(value, int) and field in FIELDS and FIELDS[field].hex:
        return hex(value) if value else "0"
    return str(value)


def format_match(flow: Flow) -> str:
    fields = dict(flow.match)
    parts = []
    key = (fields.get("eth_type"), fields.get("ip_proto"))
    if key in _SHORTHANDS:
        parts.append(_SHORTHANDS[key])
        fields.pop("eth_type")
        fields.pop("ip_proto", None)
    elif (key[0], None) in _SHORTHANDS:
        parts.append(_SHORTHANDS[(key[0], None)])
        fields.pop("eth_type")
    elif "eth_type" in fields:
        fields["dl_type"] = hex(fields.pop("eth_type"))
    for name, value in sorted(fields.items()):
        known = FIELDS.get(name)
        parts.append(f"{known.ofctl or name if known else name}={_value(name, value)}")
    return ",".join(parts)


def format_action(action: tuple) -> str:
    kind = action[0]
    if kind == "output":
        return "IN_PORT" if action[1] == OFPP_IN_PORT else f"output:{action[1]}"
    if kind == "set_field":
        field = action[1]
        return f"set_field:{_value(field, action[2])}->{_SET_FIELD_NAMES.get(field, field)}"
    if kind == "move":
        src, dst = (FIELDS[f].nxm_name if f in FIELDS else f for f in action[1:3])
        return f"move:{src}[]->{dst}[]"
    return str(action[1]) if len(action) > 1 else kind


def format_actions(flow: Flow) -> str:
    parts = [format_action(a) for a in flow.actions]
    if flow.write_metadata is not None:
        parts.append(f"write_metadata:{_value('metadata', flow.write_metadata)}")
    if flow.goto is not None:
        parts.append(f"goto_table:{flow.goto}")
    return ",".join(parts) or "drop"
