"""A follower's wait for the leader's flows (cluster/leader_wait.py) when it is elected itself
during the wait: it stops asking and waits for its own switches, instead of looking for a
leader other than itself until its timeout runs out (a replica restarted after kill -9 follows
its dead namesake's lease for up to the TTL, then leads: every write it took meanwhile waited
the whole timeout)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from cluster.leader_wait import LeaderWait
from controller.fabric import Fabric
from controller.leadership import Term
from model import Store
from tests.unit.test_roles import Elected

ME = "vm:8686"


class Namesake(Elected):
    """The election as a restarted replica sees it: the leader key still holds its dead
    predecessor's record, under its own name; ``elect()``: that lease expired, it won."""

    name = ME

    def __init__(self):
        super().__init__(Term(ME, 4), False)

    def members(self):
        return [{"name": ME, "api": "http://127.0.0.1:1", "advertise": "tcp:127.0.0.1:1",
                 "leader": self._term is not None}]

    def elect(self, after: float) -> threading.Timer:
        timer = threading.Timer(after, lambda: self.set(term=Term(ME, 9), leads=True))
        timer.start()
        return timer


def test_elected_during_the_wait_it_returns_at_once_to_wait_on_its_own():
    election = Namesake()
    election.elect(0.2)
    started = time.monotonic()
    assert LeaderWait(election)({"h1"}, 5, {}, timeout=5) is None
    assert time.monotonic() - started < 1, "waited for a leader other than itself"


def test_a_dead_namesake_on_the_leader_key_is_not_asked_and_not_taken_for_us():
    election = Namesake()
    started = time.monotonic()
    assert LeaderWait(election)({"h1"}, 5, {}, timeout=0.3) is False
    assert time.monotonic() - started >= 0.3


def test_the_fabric_then_waits_for_its_own_switches(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    election = Namesake()
    fabric = Fabric(store, "tcp:127.0.0.1:6653", leadership=election)
    fabric.wait_on_leader = LeaderWait(election)
    fabric.ovsdb_sessions["h1"] = SimpleNamespace(synced=True, ports=None)
    switch = SimpleNamespace(applied_revision=-1, applied_ports_version=0,
                             programs=lambda: True)
    fabric.switches["h1"] = switch
    election.elect(0.2)

    def programmed():  # the new leader's session applies the revision a little later
        time.sleep(0.4)
        switch.applied_revision = 5
        fabric._wake_waiters()
    started = time.monotonic()  # before the thread's sleep starts
    threading.Thread(target=programmed).start()
    assert fabric.wait_programmed({"h1"}, 5, timeout=5)
    assert 0.4 <= time.monotonic() - started < 1.5
    # Elected but its switch not there yet: it answers False at the timeout, not True.
    fabric.switches["h1"] = SimpleNamespace(applied_revision=-1, applied_ports_version=0)
    assert not fabric.wait_programmed({"h1"}, 6, timeout=0.3)
    store.close()
