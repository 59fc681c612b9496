"""watchdog's inotify observer with the kernel's queue overflow reported, symlinks
followed as the walk follows them (:mod:`assetd.watchgroups`), its reader paced while
files are written and a file's events folded into its close; and the process's inotify
watches as the kernel counts them."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
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
)
from watchdog.observers.inotify_c import (
    DEFAULT_EVENT_BUFFER_SIZE,
    InotifyConstants,
    InotifyEvent,
    InotifyFD,
)

from assetd.walk import Ident
from assetd.watchgroups import FollowingWatchGroup, ReportingWatchGroup

__all__ = [
    "OverflowReportingObserver",
    "count_folders",
    "fold_into_close",
    "inotify_watch_count",
    "inotify_watched_inodes",
    "read_int",
    "watch_limit_reached",
]


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
        group = FollowingWatchGroup if self.watch.follow_symlink else ReportingWatchGroup
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


# A file's events that its close after writing, later in the same read, says again:
# the look the close asks for sees what they would have.
_FOLDED = InotifyConstants.IN_CREATE | InotifyConstants.IN_MODIFY | InotifyConstants.IN_ATTRIB


def fold_into_close(events: list[InotifyEvent]) -> list[InotifyEvent]:
    """``events`` without a file's create, writes and attribute changes that its close
    after writing follows in the same list, with nothing else of that file between.

    A file written at once (a copy, an extraction, a generator's output) is four events
    for the kernel and one for assetd: each event costs watchdog's three threads their
    share of the GIL, and a burst's would be most of them. Events are hints (a look at
    the path), so the close alone asks for the same look. A folder's events are kept:
    watchdog watches a new folder on its create.
    """
    out: list[InotifyEvent] = []
    closing: set[tuple[int, bytes]] = set()  # files closed later on, nothing between
    for event in reversed(events):
        key = (event.wd, event.name)
        if event.is_directory:
            pass
        elif event.is_close_write:
            closing.add(key)
        elif event.mask & _FOLDED and key in closing:
            continue
        else:
            closing.discard(key)  # a rename or a delete between: kept apart
        out.append(event)
    out.reverse()
    return out


class _PacedInotifyFD(InotifyFD):
    """An inotify instance whose reader takes its time while files are being written,
    and folds a file's events into its close (:func:`fold_into_close`)."""

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
        return fold_into_close(events)

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


def count_folders(path: str, follow_symlinks: bool = False, most: int | None = None) -> int:
    """The folders under ``path``, itself included: the inotify watches it needs (one
    per folder, however many paths lead to it; a symlink loop adds none). With ``most``,
    counting stops once past it (the answer is then ``most + 1``)."""
    seen: set[Ident] = set()
    todo = [os.fsencode(path)]
    while todo and (most is None or len(seen) <= most):
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
