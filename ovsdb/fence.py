"""The OVSDB fence: only the current leader's transactions commit on a host's database. Pure.

Each replica that leads writes its term's generation in the host's Open_vSwitch row
(``external_ids:ovsfabric-generation``) when it takes the term, and only if what is there is
lower; every transaction it sends after that verifies the value it read there (an OVSDB
"wait" on the column, python-ovs's Row.verify) and is planned only while that value is its
own. A deposed leader's transaction still in flight then fails at the server, whose copy holds
the successor's higher generation, and its retry sees that generation and gives up: the
replica stops writing (docs/replicas.md, "Roles and fencing").
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

GENERATION_KEY = "ovsfabric-generation"  # on the Open_vSwitch row's external_ids


@dataclass(frozen=True)
class Writer:
    """Who this replica is for the host's database now. ``leads`` false: it writes nothing;
    ``generation`` None: no fence (a single controller, which writes as it always did)."""

    leads: bool
    generation: int | None = None


STANDALONE = Writer(True, None)


class Verdict(Enum):
    UNFENCED = "unfenced"  # no generation: write without a fence (a single controller)
    CLAIM = "claim"  # the host holds a lower generation or none: write ours, verified
    HOLDS = "holds"  # the host holds ours: write, verified
    FENCED = "fenced"  # the host holds a higher one: a later leader's; write nothing
    FOLLOWER = "follower"  # this replica does not lead: write nothing


def seen_generation(external_ids) -> int | None:
    """The generation the host's Open_vSwitch row holds; None if it holds none (or something
    that is not a generation: claimed over like none)."""
    value = (external_ids or {}).get(GENERATION_KEY)
    try:
        generation = int(value)
    except (TypeError, ValueError):
        return None
    return generation if generation >= 0 else None


def verdict(writer: Writer, seen: int | None) -> Verdict:
    if not writer.leads:
        return Verdict.FOLLOWER
    if writer.generation is None:
        return Verdict.UNFENCED
    if seen is None or seen < writer.generation:
        return Verdict.CLAIM
    if seen == writer.generation:
        return Verdict.HOLDS
    return Verdict.FENCED


class Fenced(Exception):
    """The host's database holds a later leader's generation: this replica must not write."""

    def __init__(self, ours: int, seen: int):
        super().__init__(f"fenced: the host holds generation {seen}, a later leader's "
                         f"(ours is {ours})")
        self.ours = ours
        self.seen = seen
