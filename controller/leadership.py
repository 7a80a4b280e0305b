"""Who programs the fabric: the leadership interface the fabric asks, and the single process.

A leadership object says which replica leads, in which term, and which OpenFlow targets the
hosts' switches must know. The etcd election (cluster/election.py) implements it without being
imported here (the fabric only calls the methods below); ``Standalone`` is the one process
with its SQLite state, which always leads and asks the switches for no role at all (they keep
OpenFlow's default, EQUAL), so a single controller behaves on the wire exactly as before.

Methods of a leadership object:

- ``start()``, ``stop()``
- ``term() -> Term | None``: the current leader's term as this replica knows it (None: none
  known, or no terms at all: Standalone)
- ``leads() -> bool``: this replica is the leader now
- ``controllers() -> list[str]``: every replica's OpenFlow advertise target, sorted
- ``subscribe(callback)``: ``callback()`` after any change of term, leadership or members;
  called from another thread, it must be quick
- ``members() -> list[dict]``: ``{name, api, advertise, leader}`` per replica
- ``status() -> dict``

The decisions the fabric takes from them are pure functions here (``wanted_role``,
``may_program``), so that they are tested without a switch (docs/replicas.md, "Roles and
fencing").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# OpenFlow 1.3 controller roles (ofp_controller_role), as OVS takes them in a ROLE_REQUEST.
ROLE_NOCHANGE, ROLE_EQUAL, ROLE_MASTER, ROLE_SLAVE = 0, 1, 2, 3
ROLE_NAMES = {ROLE_NOCHANGE: "nochange", ROLE_EQUAL: "equal", ROLE_MASTER: "master",
              ROLE_SLAVE: "slave"}
GENERATION_MAX = 2 ** 64 - 1  # generation_id is a uint64 on the wire


@dataclass(frozen=True)
class Term:
    """One leader's term: who leads, and the generation of the election that made it leader
    (strictly greater for every later term: the OpenFlow generation_id and the OVSDB fence)."""

    leader: str
    generation: int


@dataclass(frozen=True)
class Role:
    """What a replica asks a switch to make it: ``role`` (ROLE_MASTER or ROLE_SLAVE) with the
    term's ``generation`` as generation_id."""

    role: int
    generation: int

    def __str__(self) -> str:
        return f"{ROLE_NAMES.get(self.role, self.role)}@{self.generation}"


def wanted_role(term: Term | None, leads: bool) -> Role | None:
    """The role request a switch connection needs: none without a term (Standalone keeps
    EQUAL, OpenFlow's default); MASTER with the term's generation when this replica leads,
    SLAVE with it otherwise (a SLAVE still reads flows; OVS refuses its flow mods, bundles
    and packet-outs)."""
    if term is None:
        return None
    if not 0 <= term.generation <= GENERATION_MAX:
        raise ValueError(f"generation {term.generation} does not fit OpenFlow's generation_id")
    return Role(ROLE_MASTER if leads else ROLE_SLAVE, term.generation)


def may_program(term: Term | None, leads: bool, confirmed: Role | None) -> bool:
    """Whether a switch session may send flow mods and packet-outs now: only the leader, and,
    when there are terms, only once the switch answered the MASTER request of this very term
    (its ROLE_REPLY). A deposed leader (``leads`` false) stops at once, whatever it had."""
    if not leads:
        return False
    wanted = wanted_role(term, leads)
    return wanted is None or confirmed == wanted


class Standalone:
    """The single process: it always leads, has no terms and one controller target."""

    def __init__(self, name: str = "standalone", api: str = "", advertise: str = ""):
        self.name = name
        self.api = api
        self.advertise = advertise
        self._callbacks: list[Callable[[], None]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def term(self) -> Term | None:
        return None

    def leads(self) -> bool:
        return True

    def controllers(self) -> list[str]:
        return [self.advertise]

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)  # nothing ever changes: never called

    def members(self) -> list[dict]:
        return [{"name": self.name, "api": self.api, "advertise": self.advertise,
                 "leader": True}]

    def status(self) -> dict:
        return {"kind": "standalone", "name": self.name, "leader": self.name, "term": None,
                "leads": True, "members": self.members()}
