"""How often the cyclic garbage collector runs in every assetd process.

CPython collects its youngest generation after every 700 new container objects. A pass
makes millions of short-lived tuples and lists, thousands of them alive at once (a batch
of 2,000 observations, their rows, their change messages): at that pace the collector
examines each live batch again and again, promotes it, and examines it once more in the
older generations, for almost no garbage (reference counting frees nearly everything
assetd makes); docs/performance.md has what a cold index spent in it, before and
after. Reference cycles are still collected, a little later:
at most :data:`YOUNG` objects' worth of them wait for the next young collection.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG", "pace", "paced"]

YOUNG = 20_000  # new container objects between two collections of the youngest generation


def pace() -> None:
    """Collect the youngest generation every :data:`YOUNG` objects (the older ones keep
    CPython's pace relative to it)."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, oldest)


def paced() -> bool:
    """True when :func:`pace` has set this process's collector."""
    return gc.get_threshold()[0] == YOUNG
