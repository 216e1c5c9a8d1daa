"""The garbage collector kept off what a bulk task found in place.

Validating and sending allocate many short-lived objects, so Python's collector runs often, and each of
its full collections walks every object of the process. In an Airflow task that is Airflow's own heap,
hundreds of thousands of objects that live until the task ends: measured, these walks took 30% of a
100,000-row dry run. ``gc.freeze()`` sets what exists aside for the duration; what the pass itself
allocates is still collected, less often (``YOUNG_OBJECTS``): at 2,000 sends/s the collector's pauses
stalled the event loop for up to a tenth of each second.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_thresholds = gc.get_threshold()
_ours = False  # whether the outermost entry froze a heap nobody had frozen (then it unfreezes it)
# Young objects allocated before a collection (Python's default: 700). Several hundred sends in flight keep
# thousands of objects alive that every young collection would walk again; 20,000 is a few MB at most.
YOUNG_OBJECTS = 20_000


@contextmanager
def existing_objects_frozen() -> Iterator[None]:
    """Within it, the collector skips the objects that existed when it was entered (nested use is fine:
    they are released when the outermost one ends, unless the heap was frozen before it began: gc cannot
    unfreeze only some objects, so they then stay frozen with the others, as whoever froze them intended)."""
    global _depth, _thresholds, _ours
    with _lock:
        if _depth == 0:
            # Airflow's LocalExecutor freezes the heap before it forks: what someone else froze stays frozen.
            _ours = gc.get_freeze_count() == 0
            gc.freeze()
            _thresholds = gc.get_threshold()
            gc.set_threshold(YOUNG_OBJECTS, *_thresholds[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_thresholds)
                if _ours:
                    gc.unfreeze()
