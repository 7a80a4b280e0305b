"""The heap thread's freeze: garbage is collected first, the survivors leave the collector's
walks (so a full collection costs what was allocated since)."""
from __future__ import annotations

import gc
import weakref

from controller.heap import freeze_long_lived


class Node:
    pass


def test_garbage_is_collected_before_the_rest_is_frozen():
    gc.unfreeze()
    try:
        cycle = Node()
        cycle.self = cycle  # only the cyclic collector can free it
        gone = weakref.ref(cycle)
        kept = Node()
        del cycle
        freeze_long_lived()
        assert gone() is None
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects()), "frozen objects are not walked"
    finally:
        gc.unfreeze()


def test_collection_stays_paused_until_the_last_pass_ends():
    from controller.heap import collection_paused
    gc.unfreeze()
    try:
        assert gc.isenabled()
        with collection_paused():
            with collection_paused():  # another switch's pass, overlapping
                assert not gc.isenabled()
            assert not gc.isenabled(), "still paused while the first pass runs"
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0, "what the passes built is frozen"
    finally:
        gc.unfreeze()
