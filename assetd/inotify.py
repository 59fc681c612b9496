"""watchdog's inotify observer with the kernel's queue overflow reported and symlinks
followed as the walk follows them, and the process's inotify watches as the kernel
counts them."""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from watchdog.events import FileSystemEvent
from watchdog.observers.api import (
    DEFAULT_EMITTER_TIMEOUT,
    BaseObserver,
    EventQueue,
    ObservedWatch,
)
from watchdog.observers.inotify import (
    GroupedInotifyEvent,
    InotifyEmitter,
    InotifyWatchGroup,
)
from watchdog.observers.inotify_c import (
    DEFAULT_EVENT_BUFFER_SIZE,
    InotifyConstants,
    InotifyEvent,
    InotifyFD,
    Mask,
    WatchDescriptor,
)

from assetd.walk import Ident, branch_above

__all__ = [
    "OverflowReportingObserver",
    "count_folders",
    "inotify_watch_count",
    "inotify_watched_inodes",
    "read_int",
    "watch_limit_reached",
]


def _nothing() -> None:
    pass


@dataclass(eq=False)
class _ReportingWatchGroup(InotifyWatchGroup):
    """A watch group that, once watchdog has re-added its watches after the kernel's
    IN_Q_OVERFLOW, says so: watchdog itself only logs it, and the events are gone."""

    on_overflow: Callable[[], None] = _nothing

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
class _FollowingWatchGroup(_ReportingWatchGroup):
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


class _ReportingEmitter(InotifyEmitter):
    def __init__(
        self,
        event_queue: EventQueue,
        watch: ObservedWatch,
        *,
        timeout: float = DEFAULT_EMITTER_TIMEOUT,
        event_filter: list[type[FileSystemEvent]] | None = None,
        inotify_fd: InotifyFD | None = None,
        on_overflow: Callable[[], None],
    ) -> None:
        super().__init__(
            event_queue, watch, timeout=timeout, event_filter=event_filter, inotify_fd=inotify_fd
        )
        self.on_overflow = on_overflow

    def build_and_queue_event(
        self, event: GroupedInotifyEvent, *, full_events: bool = False
    ) -> None:
        # With full events, a rename whose other half is outside this tree stays a move
        # with an empty side: a file renamed in is complete (a download's last step), not
        # a file being created, and a file renamed out is gone, not deleted.
        super().build_and_queue_event(event, full_events=True)

    def on_thread_start(self) -> None:
        # InotifyEmitter.on_thread_start, with the group that reports overflow (and
        # follows symlinks as the walk does).
        group = _FollowingWatchGroup if self.watch.follow_symlink else _ReportingWatchGroup
        self._inotify = group(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
            on_overflow=self.on_overflow,
        )


# While a file is being written, its reader waits this long between reads, so that the
# kernel folds the file's many IN_MODIFY events into one (it merges an event with the
# last one queued, if equal). A read of many events is never followed by a wait: other
# writers are busy too, and their events do not fold.
PACE_S = 0.1
PACE_MAX_EVENTS = 64


class _PacedInotifyFD(InotifyFD):
    """An inotify instance whose reader takes its time while files are being written."""

    def __init__(self) -> None:
        super().__init__()
        self._closing = threading.Event()
        self._writing: set[tuple[Any, bytes]] = set()  # (watch, name) modified in the last read

    def read_events(
        self, *, event_buffer_size: int = DEFAULT_EVENT_BUFFER_SIZE
    ) -> list[InotifyEvent]:
        events = super().read_events(event_buffer_size=event_buffer_size)
        writing = {(e.wd, e.name) for e in events if e.is_modify}
        if len(events) <= PACE_MAX_EVENTS and writing & self._writing:
            self._closing.wait(PACE_S)
        self._writing = writing
        return events

    def close(self) -> None:
        self._closing.set()
        super().close()


class OverflowReportingObserver(BaseObserver):
    """watchdog's ``InotifyObserver`` (one inotify instance of its own, so a small
    ``max_queued_events`` set before it is made applies to it), calling ``on_overflow``
    on the kernel's reading thread after each IN_Q_OVERFLOW of its queue; its reader is
    paced while files are being written (:class:`_PacedInotifyFD`)."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        self._inotify_fd = _PacedInotifyFD()
        self._inotify_fd.start()
        super().__init__(_ReportingEmitter, inotify_fd=self._inotify_fd, on_overflow=on_overflow)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._inotify_fd.stop()
        self._inotify_fd.join()


def inotify_watched_inodes(fdinfo: str = "/proc/self/fdinfo") -> list[int]:
    """The inode of every inotify watch this process holds, from the kernel's fdinfo."""
    inodes: list[int] = []
    try:
        fds = os.listdir(fdinfo)
    except OSError:
        return inodes
    for fd in fds:
        try:
            with open(os.path.join(fdinfo, fd), "rb") as fh:
                for line in fh:
                    if line.startswith(b"inotify wd:"):
                        inodes.append(int(line.split(b" ino:", 1)[1].split(b" ", 1)[0], 16))
        except (OSError, IndexError, ValueError):
            continue
    return inodes


def inotify_watch_count(fdinfo: str = "/proc/self/fdinfo") -> int:
    """How many inotify watches this process holds."""
    return len(inotify_watched_inodes(fdinfo))


def watch_limit_reached(path: str) -> bool:
    """Whether the inotify watch limit refuses one more watch right now.

    Asked once after arming: if one more is granted, watchdog was refused none for the
    limit, and counting the root's folders (a walk of the whole tree) is not needed.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return ctypes.get_errno() in (errno.EMFILE, errno.ENFILE, errno.ENOSPC)
    try:
        if libc.inotify_add_watch(fd, os.fsencode(path), _IN_ONLYDIR | _IN_ATTRIB) >= 0:
            return False
        return ctypes.get_errno() == errno.ENOSPC
    finally:
        os.close(fd)


_IN_ATTRIB, _IN_ONLYDIR = 0x00000004, 0x01000000


def count_folders(path: str, follow_symlinks: bool = False) -> int:
    """The folders under ``path``, itself included: the inotify watches it needs (one
    per folder, however many paths lead to it; a symlink loop adds none)."""
    seen: set[Ident] = set()
    todo = [os.fsencode(path)]
    while todo:
        folder = todo.pop()
        try:
            st = os.stat(folder, follow_symlinks=follow_symlinks)
            if (st.st_dev, st.st_ino) in seen:
                continue
            with os.scandir(folder) as entries:  # a folder that cannot be read has no watch
                todo += [e.path for e in entries if e.is_dir(follow_symlinks=follow_symlinks)]
        except OSError:
            continue
        seen.add((st.st_dev, st.st_ino))
    return len(seen)


def read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None
