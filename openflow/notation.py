"""Flows printed the way ovs-ofctl prints them, so that operators read one notation. Pure."""
from __future__ import annotations

from . import actions, values
from .flow import Flow
from .vocabulary import FIELDS

_SHORTHANDS = {(0x0806, None): "arp", (0x0800, None): "ip", (0x0800, 1): "icmp",
               (0x0800, 6): "tcp", (0x0800, 17): "udp"}


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
        parts.append(f"{known.ofctl or name if known else name}={values.text(name, value)}")
    return ",".join(parts)


def format_action(action: tuple) -> str:
    return actions.notation(action)


def format_actions(flow: Flow) -> str:
    parts = [format_action(a) for a in flow.actions]
    if flow.write_metadata is not None:
        parts.append(f"write_metadata:{values.text('metadata', flow.write_metadata)}")
    if flow.goto is not None:
        parts.append(f"goto_table:{flow.goto}")
    return ",".join(parts) or "drop"
