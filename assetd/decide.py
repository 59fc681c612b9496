"""What a stat means for a catalog row: the pure decision at the heart of every pass.

No I/O here. The seeder and the reconciler stat a path, load its cache state, and ask
:func:`decide` what happened; they then act on the answer.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["CachedState", "Decision", "FileStat", "Outcome", "decide", "unchanged"]

# FileStat and CachedState are named tuples rather than frozen dataclasses: a pass makes
# one of each per file, and a tuple is built and compared in C, several times faster.


class FileStat(NamedTuple):
    """The parts of a stat that say whether a file's content may have changed."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def from_os(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class CachedState(NamedTuple):
    """What the catalog remembers of one file location."""

    id: int
    path: bytes
    root: str
    asset_id: int
    stat: FileStat
    needs_verify: bool
    is_missing: bool
    hash: str | None = None  # the hash of the location's asset


class Outcome(enum.Enum):
    """What happened at a path since the catalog last looked."""

    NOTHING = "nothing"  # no file, no live row: nothing to do
    UNCHANGED = "unchanged"  # same stat, hash trusted
    VERIFY = "verify"  # same size and mtime but a reason to re-hash; no change to report yet
    NEW = "new"
    MODIFIED = "modified"
    MISSING = "missing"
    RESTORED = "restored"
    # The file of a location at another path, found at this one (a move the watchers
    # could not pair, or made while no daemon ran): :mod:`assetd.moves` pairs them.
    MOVED = "moved"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    rehash: bool = False


_NOTHING = Decision(Outcome.NOTHING)
_UNCHANGED = Decision(Outcome.UNCHANGED)
_NEW = Decision(Outcome.NEW, rehash=True)
_MISSING = Decision(Outcome.MISSING)
_MODIFIED = Decision(Outcome.MODIFIED, rehash=True)
_VERIFY = Decision(Outcome.VERIFY, rehash=True)
_RESTORED = Decision(Outcome.RESTORED, rehash=False)
_RESTORED_REHASH = Decision(Outcome.RESTORED, rehash=True)


def decide(stat: FileStat | None, state: CachedState | None) -> Decision:
    """Compare a file's stat (None: no regular file there) with its cache state."""
    if stat is None:
        if state is None or state.is_missing:
            return _NOTHING
        return _MISSING
    if state is None:
        return _NEW
    cached = state.stat
    if unchanged(stat, cached, state.needs_verify, state.is_missing):
        return _UNCHANGED
    identity_moved = stat != cached  # inode, device or ctime too: replaced, or only chmod
    if state.is_missing:
        return _RESTORED_REHASH if identity_moved or state.needs_verify else _RESTORED
    if stat[:2] != cached[:2]:  # size or mtime: the content changed
        return _MODIFIED
    return _VERIFY  # same size and mtime, but moved identity or a stale hash


def unchanged(stat: FileStat, stored: tuple[Any, ...], needs_verify: Any, is_missing: Any) -> bool:
    """:func:`decide`'s UNCHANGED, read straight off a catalog row: a live location with
    a trusted hash whose stored stat is the file's. A restart asks this of every file, and
    needs a whole :class:`CachedState` only when the answer is no. (A row whose inode or
    device is stored as a negative number never matches here: :func:`decide` sees it.)"""
    return stat == stored and not needs_verify and not is_missing
