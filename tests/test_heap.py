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
