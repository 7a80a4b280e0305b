"""Tables of flows and their difference. Flow and the actions are the codec's (openflow)."""
from __future__ import annotations

from dataclasses import dataclass, field

from openflow.actions import move, output, set_field
from openflow.flow import OFPP_IN_PORT, Flow

__all__ = ["OFPP_IN_PORT", "Flow", "FlowDiff", "diff", "move", "output", "set_field", "table_of"]


def table_of(flows: list[Flow]) -> dict[tuple, Flow]:
    return {f.key: f for f in flows}


@dataclass
class FlowDiff:
    """What turns the installed table into the desired one: adds (new or rewritten) and deletes."""

    add: list[Flow] = field(default_factory=list)
    delete: list[Flow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.add or self.delete)

    def __len__(self) -> int:
        return len(self.add) + len(self.delete)


def diff(desired: dict[tuple, Flow], installed: dict[tuple, Flow]) -> FlowDiff:
    result = FlowDiff()
    for key, flow in desired.items():
        current = installed.get(key)
        if current is None or current.body != flow.body:
            result.add.append(flow)
    for key, flow in installed.items():
        if key not in desired:
            result.delete.append(flow)
    return result
