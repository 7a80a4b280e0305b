"""python-ovs's poller on poll(2), so that descriptors above 1023 work.

python-ovs waits with select(2) (its stand-in for eventlet), which refuses descriptors from
FD_SETSIZE on; a process holding many connections (the REST API's) hands new OVSDB sessions
such descriptors, and their threads would die in select(). python-ovs makes the class it
polls with a module attribute meant to be replaced when nothing green-threads select.
"""
from __future__ import annotations

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
    poller.SelectPoll = _Poll
