"""python-ovs's poller on poll(2), so that descriptors above 1023 work.

python-ovs waits with select(2) (its stand-in for eventlet), which refuses descriptors from
FD_SETSIZE on; a process holding many connections (the REST API's) hands new OVSDB sessions
such descriptors, and their threads would die in select(). python-ovs makes the class it
polls with a module attribute meant to be replaced when nothing green-threads select; a
python-ovs that stops reading it stops start-up (and tests/unit/test_ovsdb_poll.py).
"""
from __future__ import annotations

import dis
import select

from ovs import poller


class _Poll:
    """select.poll, but a descriptor registered twice waits for both, as python-ovs expects."""

    def __init__(self):
        self._poll = select.poll()
        self._events: dict[int, int] = {}

    def register(self, fd, events: int) -> None:
        fd = fd if isinstance(fd, int) else fd.fileno()
        self._events[fd] = self._events.get(fd, 0) | events
        self._poll.register(fd, self._events[fd])

    def poll(self, timeout: int):
        return self._poll.poll(timeout)


def use_poll() -> None:
    reset = getattr(poller.Poller, "_Poller__reset", None)
    if reset is None or "SelectPoll" not in {
            i.argval for i in dis.get_instructions(reset) if i.opname == "LOAD_GLOBAL"}:
        raise RuntimeError("python-ovs's Poller no longer makes its poll object from "
                           "ovs.poller.SelectPoll: ovsdb/poll.py is written for the python-ovs "
                           "of constraints.txt")
    poller.SelectPoll = _Poll
