"""A flow entry as plain, hashable data, so that desired and installed tables can be diffed.

Actions are tuples so that they compare and hash; openflow.actions declares them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

OFPP_IN_PORT = 0xFFFFFFF8

Action = tuple  # see openflow.actions
MatchValue = Union[int, str, tuple]


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
