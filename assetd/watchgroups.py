"""watchdog's inotify watch groups: one that reports the kernel's queue overflow (and
never lets a rename's first half hold up the events behind it), and one that follows
symlinks as the walk does (each folder once, never round a loop)."""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from watchdog.observers.inotify import InotifyWatchGroup
from watchdog.observers.inotify_c import (
    InotifyConstants,
    InotifyEvent,
    Mask,
    WatchDescriptor,
)
from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
from watchdog.utils.delayed_queue import DelayedQueue

from assetd.walk import Ident, branch_above

__all__ = ["FollowingWatchGroup", "PassingDelayedQueue", "ReportingWatchGroup"]

T = TypeVar("T")


def _nothing() -> None:
    pass


class PassingDelayedQueue(DelayedQueue[T], Generic[T]):
    """watchdog's queue of events, where a delayed event (a rename's ``IN_MOVED_FROM``,
    held half a second for its other half) no longer holds up those behind it.

    In watchdog's own queue every event waits behind a held one, so a file renamed
    into a root soon after another left it (to another root: its other half never
    comes here) waited up to half a second to be seen. Events are only hints here, each
    a look at the path as it is by then, so their order across paths does not matter;
    the held events keep theirs, and a held one that is due goes before newer events.
    """

    def __init__(self, delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(delay)
        self._clock = clock
        # ``_queue`` (the base class's, which ``find`` and ``remove`` search) holds the
        # delayed events only; the others go straight through this one.
        self._passing: collections.deque[tuple[T, float]] = collections.deque()

    def put(self, element: T, *, delay: bool = False) -> None:
        with self._lock:
            if delay:
                self._queue.append((element, self._clock(), True))
            else:
                self._passing.append((element, self._clock()))
            self._not_empty.notify()

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._passing.clear()

    def get(self) -> T | None:
        with self._not_empty:
            while not self._closed:
                wait: float | None = None  # until the held event at the head is due
                if self._queue:
                    held, at, _ = self._queue[0]
                    wait = at + self.delay - self._clock()
                    if wait <= 0 and not (self._passing and self._passing[0][1] < at):
                        self._queue.popleft()
                        return held
                if self._passing:
                    return self._passing.popleft()[0]
                self._not_empty.wait(wait)
            return None


class _PassingGrouper(InotifyMoveEventGrouper):
    """watchdog's pairing of rename halves, over a :class:`PassingDelayedQueue`."""

    def __init__(self) -> None:
        super().__init__()
        self._queue = PassingDelayedQueue(self.delay)


@dataclass(eq=False)
class ReportingWatchGroup(InotifyWatchGroup):
    """A watch group that, once watchdog has re-added its watches after the kernel's
    IN_Q_OVERFLOW, says so: watchdog itself only logs it, and the events are gone. Its
    events pass a held rename half (:class:`PassingDelayedQueue`)."""

    on_overflow: Callable[[], None] = _nothing
    _move_event_grouper: InotifyMoveEventGrouper = field(
        default_factory=_PassingGrouper, init=False
    )

    def on_queue_overflow(self) -> None:
        super().on_queue_overflow()
        if self.is_active:  # not while the emitter is stopping
            self.on_overflow()


_NAMED_CHANGES = (
    InotifyConstants.IN_CREATE
    | InotifyConstants.IN_MOVED_TO
    | InotifyConstants.IN_DELETE
    | InotifyConstants.IN_MOVED_FROM
)


Branch = tuple[Ident, ...]  # the folders above one, as a walk has them
Folder = tuple[bytes, Branch]  # a folder to watch, and its branch


@dataclass(eq=False)
class FollowingWatchGroup(ReportingWatchGroup):
    """The watch group of a root whose symlinks are followed: it watches the folders
    the walk (``walk.walk_root``) enters, each once, under the path the walk gives it.

    watchdog walks with ``os.walk(followlinks=True)``, which goes round a symlink loop
    until the path is too long; and the kernel gives a folder already watched the same
    watch descriptor again, so watchdog's map from descriptor to path ends up with the
    deepest path round the loop, under which every later event in that folder is
    reported. Here a folder already on the branch is not entered (a loop: the walk
    reports it), and a folder already watched is not watched again under a second path
    (a real folder's own path comes before any path through a symlink).
    """

    _wd_of_ident: dict[Ident, WatchDescriptor] = field(default_factory=dict, init=False)
    _ident_of_wd: dict[WatchDescriptor, Ident] = field(default_factory=dict, init=False)
    # Each symlink to a folder seen: True when followed, False for a loop.
    _links: dict[bytes, bool] = field(default_factory=dict, init=False)

    @property
    def _prefix(self) -> bytes:
        return self.path if self.path.endswith(b"/") else self.path + b"/"

    def on_event(self, event: InotifyEvent) -> None:
        named = self.is_recursive and event.name and not event.is_directory
        if named and event.mask & _NAMED_CHANGES:
            event = self._as_folder(event)
        super().on_event(event)

    def _as_folder(self, event: InotifyEvent) -> InotifyEvent:
        """A symlink to a folder, followed, is a folder: its creation is a folder's (it
        is watched, and surveyed, which reports a loop), and so is its removal or its
        renaming (the locations under it go missing, or move)."""
        with self._lock:
            path = self._build_event_source_path(event)
            if path is None:
                return event
            if event.is_create or event.is_moved_to:
                if not (os.path.islink(path) and os.path.isdir(path)):
                    self._links.pop(path, None)
                    return event
                if event.is_moved_to and self._source_for_move(event.cookie) is None:
                    # From outside the root: a creation, not a move, or watchdog lists the
                    # new folder with os.walk, round the loop if it is one.
                    moved_in = event.mask & ~InotifyConstants.IN_MOVED_TO
                    created = Mask(moved_in | InotifyConstants.IN_CREATE)
                    event = dataclasses.replace(event, mask=created)
            elif event.is_delete:
                if not self._links.pop(path, False):
                    return event
                self._unwatch(path)
            elif not self._links.get(path, False):
                return event
        return dataclasses.replace(event, mask=Mask(event.mask | InotifyConstants.IN_ISDIR))

    def _add_all_callbacks(self, path: bytes) -> None:
        if not self.is_recursive or not os.path.isdir(path):
            super()._add_all_callbacks(path)
            return
        above = branch_above(self._prefix, path, follow_symlinks=True)
        if above is None:
            return  # beyond a loop: the walk never comes here
        for link in [link for link in self._links if _at_or_under(link, path)]:
            del self._links[link]
        # Real folders first: a folder reached both ways is watched under its own path.
        todo = collections.deque([(path, above)])
        while todo:
            self._watch_tree(*todo.popleft(), todo)

    def _watch_tree(self, top: bytes, above: Branch, links: collections.deque[Folder]) -> None:
        """Watch ``top`` and the real folders under it; the symlinked folders met go to
        ``links``, each with its branch."""
        stack: list[Folder] = [(top, above)]
        while stack:
            folder, branch = stack.pop()
            ident = self._enter(folder, branch, is_link=folder == top and os.path.islink(top))
            if ident is None:
                continue
            below = (*branch, ident)
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, below))
                        elif entry.is_symlink() and entry.is_dir():
                            links.append((entry.path, below))
            except OSError:
                continue

    def _enter(self, folder: bytes, branch: Branch, is_link: bool) -> Ident | None:
        """Watch ``folder`` if the walk enters it and it is not watched yet; its
        (device, inode) when it is to be listed."""
        try:
            ident = _stat_ident(folder)
        except OSError:
            if folder == self.path:
                raise
            return None
        if is_link:
            self._links[folder] = ident not in branch
        if ident in branch or self._watching(ident):
            return None
        self._watch(folder, ident)
        return ident

    def _watching(self, ident: Ident) -> bool:
        """Whether this folder is watched already, under a path that still leads to it."""
        wd = self._wd_of_ident.get(ident)
        if wd is None:
            return False
        path = self._active_callbacks_by_watch.get(wd)
        if path is not None and _ident(path) == ident:
            return True
        # Its path leads elsewhere now (moved out, its link removed): watch it afresh.
        if path is not None:
            self._remove_callbacks([wd])
        self._wd_of_ident.pop(ident, None)
        return False

    def _watch(self, folder: bytes, ident: Ident) -> None:
        self._add_callback(folder)
        wd = self._active_callbacks_by_path.get(folder)
        if wd is not None:
            self._wd_of_ident[ident] = wd
            self._ident_of_wd[wd] = ident

    def _unwatch(self, path: bytes) -> None:
        """Stop watching the folders under a removed link: their paths lead nowhere now."""
        gone = [wd for p, wd in self._active_callbacks_by_path.items() if _at_or_under(p, path)]
        if gone:
            self._remove_callbacks(gone)

    def _remove_watch_internally(self, wd: WatchDescriptor) -> None:
        super()._remove_watch_internally(wd)
        ident = self._ident_of_wd.pop(wd, None)
        if ident is not None and self._wd_of_ident.get(ident) == wd:
            del self._wd_of_ident[ident]

    def _move_watches(self, move_src_path: bytes, move_dst_path: bytes) -> bool:
        for link in [link for link in self._links if _at_or_under(link, move_src_path)]:
            self._links[move_dst_path + link[len(move_src_path) :]] = self._links.pop(link)
        return super()._move_watches(move_src_path, move_dst_path)

    def _recursive_simulate(self, src_path: bytes) -> list[InotifyEvent]:
        """Creations for what a new folder already holds, as watchdog makes them, but
        never round a loop: only folders watched (or real) are listed."""
        events: list[InotifyEvent] = []
        stack = [src_path]
        while stack:
            folder = stack.pop()
            wd = self._active_callbacks_by_path.get(folder)
            if wd is None and os.path.islink(folder):
                continue  # a loop, or a folder watched under its other path
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue
            for entry in entries:
                if entry.is_symlink() and entry.path in self._links:
                    if not self._links[entry.path]:
                        continue  # a loop: the survey of the new folder reports it
                    is_dir = True
                else:
                    is_dir = entry.is_dir(follow_symlinks=False)
                if wd is not None:
                    mask = InotifyConstants.IN_CREATE
                    events.append(
                        InotifyEvent(
                            wd,
                            Mask(mask | InotifyConstants.IN_ISDIR) if is_dir else mask,
                            0,
                            entry.name,
                        )
                    )
                if is_dir:
                    stack.append(entry.path)
        return events


def _at_or_under(path: bytes, folder: bytes) -> bool:
    return path == folder or path.startswith(folder + b"/")


def _ident(path: bytes) -> Ident | None:
    try:
        return _stat_ident(path)
    except OSError:
        return None


def _stat_ident(path: bytes) -> Ident:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)
