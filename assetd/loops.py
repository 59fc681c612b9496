"""The live path kept off symlink loops where watchdog walks with ``os.walk``/``os.stat``.

watchdog's polling snapshot stats every entry with ``os.stat`` and lists every folder
it finds, and its synthetic events (what a folder moved in already holds) come from
``os.walk`` of the folder, symlink and all: both go round a loop, under paths that no
walk of the root gives (``sub/loop/sub/loop/...``). The walk's rule holds here too: a
folder already on the branch is not entered (``walk.walk_root`` reports it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from watchdog.events import DirCreatedEvent, DirDeletedEvent, FileSystemEvent

from assetd.walk import Ident, branch_above

__all__ = ["LoopFilter", "LoopFreeListing"]


class LoopFreeListing:
    """``os.scandir`` for watchdog's ``DirectorySnapshot``, which lists folders depth
    first: a folder already on the branch (round a loop) lists as empty.

    One per snapshot taker (it keeps the branch of the listing in progress).
    """

    def __init__(self, follow_symlinks: bool) -> None:
        self.follow_symlinks = follow_symlinks
        self._branch: list[tuple[str, Ident]] = []  # the folders being listed, outermost first

    def __call__(self, folder: str | None) -> Iterator[os.DirEntry[str]]:
        assert folder is not None
        while self._branch and not folder.startswith(self._branch[-1][0].rstrip("/") + "/"):
            self._branch.pop()  # listed: depth first, the next folder is not below it
        st = os.stat(folder, follow_symlinks=self.follow_symlinks)
        ident = (st.st_dev, st.st_ino)
        if any(ident == above for _, above in self._branch):
            return iter(())
        self._branch.append((folder, ident))
        return os.scandir(folder)


class LoopFilter:
    """watchdog's events for a root whose symlinks are followed, as the walk has the
    paths: an event round a loop is dropped, a folder moved onto a loop has left."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        # The branch of each folder asked about, for one run of synthetic events: they
        # come in bursts, many from each folder.
        self._branches: dict[bytes, tuple[Ident, ...] | None] = {}

    def real(self, event: FileSystemEvent) -> list[FileSystemEvent]:
        """The events to act on in place of ``event``."""
        if not event.is_synthetic:
            self._branches.clear()  # the disk may have changed since
            whole = event.event_type == "moved" and event.src_path and event.dest_path
            if whole and event.is_directory and self._loop(event):
                # A link renamed so that it leads to a folder above it: its locations are
                # gone from the old path, and the survey of the new one reports the loop.
                return [DirDeletedEvent(event.src_path), DirCreatedEvent(event.dest_path)]
            return [event]
        # Made up by watchdog from os.walk of a folder moved in: it may go round a loop.
        return [] if self._loop(event) else [event]

    def _loop(self, event: FileSystemEvent) -> bool:
        """Whether the event's path goes round a loop, or is a folder that is one."""
        path = os.fsencode(event.dest_path if event.event_type == "moved" else event.src_path)
        folder = path.rpartition(b"/")[0]
        if folder not in self._branches:
            self._branches[folder] = branch_above(self.prefix, path, follow_symlinks=True)
        above = self._branches[folder]
        if above is None:
            return True
        if not event.is_directory:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False  # gone: the hint finds nothing there
        return (st.st_dev, st.st_ino) in above
