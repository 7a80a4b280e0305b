"""Keeps CPython's cyclic garbage collector from pausing the controller for long.

The flow tables are hundreds of thousands of long-lived objects. A full collection walks all
of them, for a time that grows with the fabric (bench/scale.py measures it), during which no
switch or request is served. They hold no reference cycles (reference counting frees them),
so the collector has nothing to find there. Every FREEZE_INTERVAL_S the young garbage is
collected once and everything alive is moved to the permanent generation (gc.freeze), which
the collector no longer walks: a full collection then costs what the last interval allocated.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time

LOG = logging.getLogger(__name__)
FREEZE_INTERVAL_S = 30.0


def freeze_long_lived() -> float:
    """Collects what is garbage now, then freezes the rest; returns the seconds it took."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


def keep_pauses_short(interval: float = FREEZE_INTERVAL_S) -> threading.Thread:
    def run() -> None:
        while True:
            time.sleep(interval)
            took = freeze_long_lived()
            LOG.debug("heap: %d objects frozen (%.1f ms)", gc.get_freeze_count(), took * 1000)

    thread = threading.Thread(target=run, name="heap-freezer", daemon=True)
    thread.start()
    return thread


_paused = 0
_paused_lock = threading.Lock()


@contextlib.contextmanager
def collection_paused():
    """No cyclic collection while a whole table is compiled and sent: those allocations make
    no cycles, and a collection in the middle walks every object of every table (it made
    compiling 10,000 flows about 1.5 times slower). Then the young generations are collected
    once (garbage made meanwhile is not frozen for good) and the survivors frozen, so that
    the full collection the allocations have earned does not walk every table right after.
    Nests across threads."""
    global _paused
    with _paused_lock:
        _paused += 1
        gc.disable()
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0:
                gc.collect(1)
                gc.freeze()
                gc.enable()
