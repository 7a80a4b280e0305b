"""Port and Interface rows as plain values, converted once per version of each row.

python-ovs converts a column from its wire form on every attribute access, so reading every
port of a large bridge, and planning a change, would cost time that grows with the bridge at
every change of the database (each endpoint makes two or three). The IDL tells which rows
changed (``forget`` is called from its notify hook), so the values of the others are reused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Interface:
    uuid: object
    name: str
    type: str
    options: Mapping[str, str]
    external_ids: Mapping[str, str]
    ofport: int  # -1 until OVS has given it one
    ofport_request: list
    error: str | None
    mac_in_use: str | None = None


@dataclass(frozen=True)
class Port:
    name: str
    interfaces: tuple  # python-ovs Interface rows


class RowCache:
    def __init__(self) -> None:
        # uuid -> (the row object the value was made from, the value). A reconnection makes
        # new row objects, so a value is used only for the very row it was made from.
        self._values: dict = {}

    def forget(self, uuid) -> None:
        self._values.pop(uuid, None)

    def port(self, row) -> Port:
        return self._get(row, lambda r: Port(r.name, tuple(r.interfaces)))

    def interface(self, row) -> Interface:
        return self._get(row, _interface)

    def _get(self, row, convert):
        hit = self._values.get(row.uuid)
        if hit is not None and hit[0] is row:
            return hit[1]
        value = convert(row)
        self._values[row.uuid] = (row, value)
        return value


def _interface(row) -> Interface:
    return Interface(row.uuid, row.name, row.type, dict(row.options), dict(row.external_ids),
                     row.ofport[0] if row.ofport else -1, list(row.ofport_request),
                     row.error[0] if row.error else None,
                     row.mac_in_use[0] if getattr(row, "mac_in_use", None) else None)
