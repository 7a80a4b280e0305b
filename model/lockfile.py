"""One writer per state file: an OS lock held as long as the process lives.

flock is released by the kernel on any exit, kill -9 included, so a crash never leaves a
stale lock; the file only records the holder's PID for the message.
"""
from __future__ import annotations

import fcntl
import os

from .errors import Conflict


class StateInUse(Conflict):
    pass


def hold(state_path: str) -> int:
    """Locks ``<state_path>.lock`` for this process; returns the descriptor to keep open."""
    path = os.path.abspath(state_path) + ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StateInUse(f"state file {state_path} is in use by another ovsfabric serve "
                         f"(pid {holder}); stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
