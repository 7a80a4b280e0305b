"""A flow entry as plain, hashable data, so that desired and installed tables can be diffed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

OFPP_IN_PORT = 0xFFFFFFF8

# Actions are tuples so that they compare and hash:
#   ("output", port) | ("set_field", field, value) | ("move", src_field, dst_field, n_bits)
Action = tuple
MatchValue = Union[int, str, tuple]


def output(port: int) -> Action:
    return ("output", port)


def set_field(name: str, value: Any) -> Action:
    return ("set_field", name, value)


def move(src: str, dst: str, n_bits: int) -> Action:
    return ("move", src, dst, n_bits)


@dataclass(frozen=True, slots=True)  # slots: no per-flow __dict__
class Flow:
    table: int
    priority: int
    match: tuple[tuple[str, MatchValue], ...]
    cookie: int
    actions: tuple[Action, ...] = ()
    write_metadata: int | None = None
    goto: int | None = None

    @staticmethod
    def make(table: int, priority: int, cookie: int, match: dict | None = None,
             actions: tuple | list = (), write_metadata: int | None = None,
             goto: int | None = None) -> "Flow":
        return Flow(table, priority, tuple(sorted((match or {}).items())), cookie,
                    tuple(actions), write_metadata, goto)

    @property
    def key(self) -> tuple:
        """What identifies a flow in a switch: table, priority and match."""
        return (self.table, self.priority, self.match)

    @property
    def body(self) -> tuple:
        """What a flow does and who owns it: a changed body means the flow must be rewritten."""
        return (self.cookie, self.actions, self.write_metadata, self.goto)


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
