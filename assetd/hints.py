"""Hints: where to look again, as the watchers hand them to the reconciler.

A hint never says what changed, only where the disk may differ from the catalog now.
This module knows nothing of the catalog, so that the watchers import only it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Hint", "HintKind", "look"]


class HintKind(enum.Enum):
    CHANGED = "changed"  # created, modified, deleted, attributes: look again
    CLOSED = "closed"  # complete (closed after writing, renamed in): look, and hash at once
    MOVED = "moved"  # a file renamed to ``dest``
    DIR_MOVED = "dir_moved"  # a folder renamed to ``dest``
    DIR_CHANGED = "dir_changed"  # a folder created or deleted: look at everything under it
    DIR_ARRIVED = "dir_arrived"  # a folder renamed in: as DIR_CHANGED, its files complete


@dataclass(frozen=True, slots=True)
class Hint:
    """Where to look again, and how."""

    kind: HintKind
    path: bytes
    dest: bytes | None = None


def look(path: bytes, complete: bool) -> Hint:
    """A look at the file at ``path``; ``complete``: known complete, hash it at once."""
    return Hint(HintKind.CLOSED if complete else HintKind.CHANGED, path)
