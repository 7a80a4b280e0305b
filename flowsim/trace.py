"""What a switch did with one packet, step by step, for tests and for the live trace. Pure."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CtEvent:
    """One ct action: where it looked, what it returned and what it changed."""
    zone: int
    commit: bool
    state_before: str  # ct_state as ovs-ofctl prints it, "-trk" for an untracked packet
    state_after: str
    recirculate_to: int | None  # the table the tracked copy continues in; None: none
    nat: str | None = None  # the translation applied, e.g. "ipv4_src 10.0.0.1 -> 192.0.2.1"
    committed: str | None = None  # "new connection", or what a commit changed on an old one
    mark: int = 0  # the connection's ct_mark and ct_label after this ct
    label: int = 0


@dataclass
class TtlEvent:
    """A dec_ttl: an expired TTL stops the packet (OVS sends no packet-in by default)."""
    ttl_before: int
    expired: bool


@dataclass
class Step:
    """One table lookup. entry None: no flow matched."""
    table_id: int
    entry: object  # FlowEntry | None
    recirculation: int = 0  # 0: the packet as received; n: its n-th pass after a ct(table=)
    conj_id: int | None = None  # the conjunction whose clauses all matched, selecting entry
    events: list = field(default_factory=list)  # CtEvent and TtlEvent, in action order
