"""Which vanished location a newly seen file is: moves paired by file identity.

Events are hints, and watchdog pairs a rename's two halves only when both arrive on one
inotify instance, in time, in folders it already watches. A move across roots, into a
folder created just before, or while no daemon ran, shows up as a path that vanished
and a path that appeared. The same (device, inode, size, mtime_ns) on one filesystem is
the same file: the catalog moves the location, and nothing is read again. No I/O here;
the callers stat the paths and fetch the candidate rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from assetd.decide import CachedState, FileStat

__all__ = ["Identity", "identity", "pair"]


class Identity(NamedTuple):
    """What makes a file the same file after a rename: a rename keeps all four."""

    device: int
    inode: int
    size: int
    mtime_ns: int


def identity(stat: FileStat) -> Identity:
    return Identity(stat.device, stat.inode, stat.size, stat.mtime_ns)


def pair(
    appeared: Iterable[tuple[bytes, FileStat]],
    candidates: Sequence[tuple[CachedState, FileStat | None]],
) -> dict[bytes, CachedState]:
    """Pair files that appeared with the catalog locations they moved from.

    ``appeared`` holds (path, stat) of files at paths the catalog has no location for;
    ``candidates`` holds catalog locations with the stat of their own path now (None:
    no regular file there). A candidate pairs with an appeared file when its stored
    identity is the file's and its own path no longer holds a file: if it still does,
    the new path is a second name of the same inode (a hard link), not a move. Each
    candidate pairs at most once; live candidates before missing ones (a missing one
    is a file that left the roots and came back), then the older location. Returns
    new path -> the location that moved there.
    """
    vanished: dict[Identity, list[CachedState]] = {}
    order = sorted(candidates, key=lambda c: (c[0].is_missing, c[0].id))
    for state, now in order:
        if now is None:
            vanished.setdefault(identity(state.stat), []).append(state)
    moved: dict[bytes, CachedState] = {}
    for path, stat in sorted(appeared):
        waiting = vanished.get(identity(stat))
        while waiting:
            state = waiting.pop(0)
            if state.path != path:
                moved[path] = state
                break
    return moved
