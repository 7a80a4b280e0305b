"""Network creates in progress on this host: from the IPAM's gateway request to CreateNetwork.

CreateNetwork is told the subnet of its pool but not the pool, and the pool may carry the
fabric network's name (``--ipam-opt ovsfabric.network=NAME``). The gateway request, which
Docker sends just before CreateNetwork on every create, notes its pool here and CreateNetwork
takes the note. Nothing is made in the controller before CreateNetwork, so a create that fails
at any step leaves nothing behind.

The notes live in memory only. A plugin restarted between the two calls (milliseconds apart)
refuses the create rather than guess; Docker then releases the pool and a second attempt
succeeds. A daemon restart replays gateway requests with no CreateNetwork after them: those
notes, of pools already bound to a Docker network here, give way to the others and expire.
"""
from __future__ import annotations

import ipaddress
import threading
import time

from .errors import PluginError
from .naming import OPTION, Pool

NOTE_LIFETIME = 30.0  # seconds; a create's calls follow each other within milliseconds


class PendingCreates:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._notes: list[tuple[float, Pool, bool]] = []  # (when, pool, already bound)
        self._lock = threading.Lock()

    def note(self, pool: Pool, bound: bool) -> None:
        """``bound``: the pool's network is a Docker network of this host already (a replay,
        or a second create that CreateNetwork will refuse)."""
        with self._lock:
            self._expire()
            self._notes.append((self._clock(), pool, bound))

    def take(self, subnet: ipaddress.IPv4Network, name: str | None) -> Pool:
        """The pool of the create of a network with ``subnet`` (``name`` from ``-o``)."""
        with self._lock:
            self._expire()
            notes = [(pool, bound) for _, pool, bound in self._notes if pool.subnet == subnet]
            fresh = [pool for pool, bound in notes if not bound]
            chosen = _choose(fresh or [pool for pool, _ in notes], subnet, name)
            index = next(i for i, (_, pool, _) in enumerate(self._notes) if pool == chosen)
            del self._notes[index]
            return chosen

    def _expire(self) -> None:
        oldest = self._clock() - NOTE_LIFETIME
        self._notes = [note for note in self._notes if note[0] >= oldest]


def _choose(pools: list[Pool], subnet, name: str | None) -> Pool:
    if not pools:
        raise PluginError(f"no address pool with subnet {subnet} was requested from the "
                          f"ovsfabric IPAM just before (did the plugin restart during the "
                          f"create?): create the network again")
    if name is not None:
        if chosen := [p for p in pools if p.name == name] or [p for p in pools if not p.name]:
            return chosen[0]
        raise PluginError(f"the IPAM option {OPTION} names {pools[0].name}, the driver option "
                          f"{name}: give the same name to both")
    distinct = sorted({p.name or "(none)" for p in pools})
    if len(distinct) > 1:
        raise PluginError(f"several networks with subnet {subnet} are being created on this "
                          f"host ({OPTION} {', '.join(distinct)}): give -o {OPTION}=NAME as well")
    return pools[0]
