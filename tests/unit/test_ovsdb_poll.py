"""OVSDB sessions wait on descriptors above select()'s limit, as a busy controller gives them."""
from __future__ import annotations

import os
import resource
import threading
import time

import pytest
from ovs import poller

from ovsdb import poll

HIGH_FD = 1500  # above FD_SETSIZE (1024)


@pytest.fixture
def high_pipe():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= HIGH_FD:
        pytest.skip("the hard limit on open files is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH_FD + 1, hard))
    read_end, write_end = os.pipe()
    os.dup2(read_end, HIGH_FD)
    os.close(read_end)
    try:
        yield HIGH_FD, write_end
    finally:
        os.close(HIGH_FD)
        os.close(write_end)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_descriptor_above_1023_wakes_the_poller(high_pipe):
    read_end, write_end = high_pipe
    poll.use_poll()
    waiter = poller.Poller()
    waiter.fd_wait(read_end, poller.POLLOUT)  # registered twice: both events count
    waiter.fd_wait(read_end, poller.POLLIN)
    waiter.timer_wait(5000)
    threading.Timer(0.1, os.write, (write_end, b"x")).start()
    start = time.monotonic()
    waiter.block()
    assert time.monotonic() - start < 2


def test_python_ovs_polls_with_what_use_poll_puts_in_place():
    poll.use_poll()
    assert isinstance(poller.Poller().poll, poll._Poll)


def test_a_python_ovs_that_polls_otherwise_stops_the_start(monkeypatch):
    def reset(self):
        self.poll = object()
    monkeypatch.setattr(poller.Poller, "_Poller__reset", reset)
    with pytest.raises(RuntimeError, match="constraints.txt"):
        poll.use_poll()
