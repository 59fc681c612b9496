"""watchdog observers, one per root, turning events into hints; and the roots' health.

Handlers only enqueue. Each root is watched with inotify, or polled on network and FUSE
file systems (or when configured so). A root whose folder vanishes or is replaced (an
unmounted disk) is reported offline and re-armed when it is back; a root whose watches
cannot be added (the inotify watch limit) falls back to polling.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver

from assetd.config import RootConfig
from assetd.hints import Hint, HintKind, look
from assetd.inotify import (
    OverflowReportingObserver,
    count_folders,
    inotify_watch_count,
    inotify_watched_inodes,
    read_int,
    watch_limit_reached,
)
from assetd.loops import LoopFilter, LoopFreeListing
from assetd.paths import ExcludeMatcher

__all__ = [
    "NETWORK_FS",
    "RootState",
    "WatchSet",
    "filesystem_type",
    "is_network_fs",
    "make_hint",
    "wants_polling",
]

log = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"

# File systems where inotify sees only this host's changes, or nothing: poll them.
NETWORK_FS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre",
    "davfs", "fuse", "fuseblk", "sshfs", "virtiofs",
}  # fmt: skip

# The events a hint comes from. watchdog asks inotify for only these, so opening and
# reading a file (a pass hashing it, a program loading a model) costs no queue space:
# with every event asked for, a pass hashing a large root would overflow the kernel's
# queue with its own reads, and every overflow costs a rescan of the root.
WATCHED_EVENTS = [
    FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent, FileMovedEvent,
    DirMovedEvent, FileModifiedEvent, FileAttribEvent, FileClosedEvent,
]  # fmt: skip


def filesystem_type(path: str, mountinfo: str = MOUNTINFO) -> str:
    """The type of the file system holding ``path`` (``fuse.sshfs`` style for FUSE)."""
    target = os.fsencode(path)
    best, kind = b"", ""
    try:
        with open(mountinfo, "rb") as fh:
            for line in fh:
                fields = line.split()
                dash = fields.index(b"-")
                mount_point = _unescape_mount_field(fields[4])
                if _holds(mount_point, target) and len(mount_point) >= len(best):
                    best, kind = mount_point, os.fsdecode(fields[dash + 1])
    except (OSError, ValueError, IndexError):
        return ""
    return kind


# The kernel writes space, tab, newline and backslash in mountinfo as \ooo octal; every
# other byte of the name is as it is on disk (UTF-8 or not), so only these are undone.
_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def _unescape_mount_field(field: bytes) -> bytes:
    return _OCTAL_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field)


def _holds(mount_point: bytes, path: bytes) -> bool:
    return path == mount_point or path.startswith(mount_point.rstrip(b"/") + b"/")


def is_network_fs(kind: str) -> bool:
    """Whether a file system of this type (``filesystem_type``) is polled under ``auto``."""
    return kind in NETWORK_FS or kind.split(".")[0] in NETWORK_FS


def wants_polling(root: RootConfig, mountinfo: str = MOUNTINFO) -> bool:
    if root.watch != "auto":
        return root.watch == "polling"
    return is_network_fs(filesystem_type(root.path, mountinfo))


def make_hint(event: FileSystemEvent, exclude: ExcludeMatcher, prefix: bytes) -> Hint | None:
    """The hint for one watchdog event, or None when it asks for nothing."""
    src = os.fsencode(event.src_path)
    kind = event.event_type
    if kind in ("opened", "closed_no_write"):
        return None
    if event.is_directory and kind in ("modified", "attrib"):
        return None  # a child changed: its own event follows
    if kind == "moved" and not event.dest_path:
        kind = "deleted"  # renamed out of the watched tree: gone from here
    elif kind == "moved" and not event.src_path:
        # Renamed in from outside the watched tree: a file arrives complete.
        dest = os.fsencode(event.dest_path)
        if _excluded(exclude, prefix, dest, event.is_directory):
            return None
        return Hint(HintKind.DIR_ARRIVED if event.is_directory else HintKind.CLOSED, dest)
    elif kind == "moved":
        dest = os.fsencode(event.dest_path)
        if _excluded(exclude, prefix, src, event.is_directory) and _excluded(
            exclude, prefix, dest, event.is_directory
        ):
            return None
        return Hint(HintKind.DIR_MOVED if event.is_directory else HintKind.MOVED, src, dest)
    if _excluded(exclude, prefix, src, event.is_directory):
        return None
    if event.is_directory:
        return Hint(HintKind.DIR_CHANGED, src)
    return look(src, kind == "closed")


def _excluded(exclude: ExcludeMatcher, prefix: bytes, path: bytes, is_dir: bool) -> bool:
    if not path.startswith(prefix):
        return True
    return bool(exclude) and exclude.excludes(path[len(prefix) :], is_dir=is_dir)


class _Handler(FileSystemEventHandler):
    """Turns each event into a hint and hands it on; nothing slow happens here."""

    def __init__(
        self,
        root: RootConfig,
        sink: Callable[[Hint], bool],
        on_root_event: Callable[[], None],
        on_new_folder: Callable[[str, bytes], None],
        follow_symlinks: bool = False,
    ) -> None:
        self.root = root
        self.on_new_folder = on_new_folder
        self.exclude = ExcludeMatcher(root.exclude)
        self.sink = sink
        self.on_root_event = on_root_event
        self.root_path = os.fsencode(root.path)
        self.loops = LoopFilter(root.prefix) if follow_symlinks else None

    def dispatch(self, event: FileSystemEvent) -> None:
        if self.loops is None:
            self._dispatch(event)
        else:
            for real in self.loops.real(event):
                self._dispatch(real)

    def _dispatch(self, event: FileSystemEvent) -> None:
        if os.fsencode(event.src_path) == self.root_path and event.event_type in (
            "deleted",
            "moved",
        ):
            self.on_root_event()
            return
        hint = make_hint(event, self.exclude, self.root.prefix)
        if hint is not None:
            self.sink(hint)
        if event.is_directory and event.event_type in ("created", "moved"):
            folder = event.dest_path if event.event_type == "moved" else event.src_path
            if folder:  # (a folder renamed out of the tree has no new place here)
                self.on_new_folder(self.root.name, os.fsencode(folder))


@dataclass
class RootState:
    """How one root is watched right now."""

    root: RootConfig
    state: str = "offline"  # online | offline | polling | watch_failed
    message: str | None = None
    identity: tuple[int, int] | None = None  # (device, inode) of the root folder
    observer: BaseObserver | None = None


class WatchSet:
    """The observers of every root, and a small monitor of the roots' folders.

    ``on_state(root, state, message)`` reports a root's state change;
    ``on_rescan(root_name)`` asks for a scan of that root (events were lost, or it is back);
    ``on_offline(root)`` asks for the root's live locations to be marked missing.
    """

    def __init__(
        self,
        roots: Sequence[RootConfig],
        sink: Callable[[Hint], bool],
        *,
        on_state: Callable[[RootConfig, str, str | None], None],
        on_rescan: Callable[[str], None],
        on_offline: Callable[[RootConfig], None],
        follow_symlinks: bool = False,
        check_interval: float = 1.0,
    ) -> None:
        self.sink = sink
        self.on_state = on_state
        self.on_rescan = on_rescan
        self.on_offline = on_offline
        self.follow_symlinks = follow_symlinks
        self.check_interval = check_interval
        self.states: dict[str, RootState] = {r.name: RootState(r) for r in roots}
        self.overflows = 0
        self._new_folders: set[tuple[str, bytes]] = set()  # (root, folder) since the last check
        self._folders_lock = threading.Lock()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._monitor = threading.Thread(target=self._watch_roots, name="assetd-roots", daemon=True)

    def start(self) -> None:
        """Arm every root that is online now, then keep an eye on them."""
        with self._lock:
            for state in self.states.values():
                self._arm(state, initial=True)
        self._monitor.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._monitor.is_alive():
            self._monitor.join(5)
        with self._lock:
            for state in self.states.values():
                self._disarm(state)

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return {name: s.state for name, s in self.states.items()}

    # -- arming ---------------------------------------------------------------------

    def _arm(self, state: RootState, initial: bool = False) -> None:
        root = state.root
        try:
            st = os.stat(root.path)
        except OSError as exc:
            self._set(state, "offline", f"{root.path}: {exc.strerror}")
            return
        if not os.path.isdir(root.path):
            self._set(state, "offline", f"{root.path} is not a folder")
            return
        state.identity = (st.st_dev, st.st_ino)
        polling = wants_polling(root)
        try:
            before = inotify_watch_count()
            state.observer = self._observe(root, polling)
            if polling:
                self._set(state, "polling", None)
            elif not self._check_watches(state, inotify_watch_count() - before):
                self._set(state, "online", None)
        except OSError as exc:
            if exc.errno == errno.ENOSPC and not polling:
                # Refused outright: the watches it had are given back by now, so asking
                # the limit again would find room.
                self._check_watches(state, 0, refused=True)
            else:
                self._set(state, "watch_failed", f"cannot watch {root.path}: {exc.strerror}")
                return
        if not initial:
            self.on_rescan(root.name)

    def _check_watches(self, state: RootState, got: int, refused: bool = False) -> bool:
        """watchdog skips folders it cannot watch without a word, or (newer) refuses the
        root: count, and poll if short.

        True when the root fell back to polling.
        """
        root = state.root
        if not refused and not watch_limit_reached(root.path):
            return False  # nothing was refused for the limit: every folder has its watch
        needed = count_folders(root.path, self.follow_symlinks)
        if got >= needed:
            return False
        self._poll_instead(
            state, f"root {root.name!r} needs {needed} watches and got {got}", needed
        )
        return True

    def _poll_instead(self, state: RootState, what: str, needed: int) -> None:
        """Past the inotify watch limit: say so in one actionable line, and poll the root."""
        limit = read_int("/proc/sys/fs/inotify/max_user_watches")
        message = (
            f"inotify watch limit reached: {what} (fs.inotify.max_user_watches is {limit}); "
            f"polling this root instead. Raise it (sysctl fs.inotify.max_user_watches="
            f"{max(2 * needed, 524288)}) and reload"
        )
        log.warning(message)
        self._disarm(state)
        state.observer = self._observe(state.root, polling=True)
        self._set(state, "polling", message)

    def _observe(self, root: RootConfig, polling: bool) -> BaseObserver:
        if polling:
            from watchdog.observers.polling import PollingObserverVFS

            # watchdog's own polling stats with os.stat, following every symlink (and
            # round every loop) whatever follow_symlinks says.
            observer: BaseObserver = PollingObserverVFS(
                os.stat if self.follow_symlinks else os.lstat,
                LoopFreeListing(self.follow_symlinks),
                polling_interval=1.0,
            )
        else:
            observer = OverflowReportingObserver(functools.partial(self._overflowed, root.name))
        handler = _Handler(
            root, self.sink, self._wake.set, self._note_new_folder, self.follow_symlinks
        )
        observer.schedule(
            handler,
            root.path,
            recursive=True,
            event_filter=WATCHED_EVENTS,
            follow_symlink=self.follow_symlinks,
        )
        observer.name = f"assetd-watch-{root.name}"
        try:
            observer.start()
        except OSError:
            observer.stop()
            raise
        return observer

    def _disarm(self, state: RootState) -> None:
        if state.observer is not None:
            state.observer.stop()
            state.observer.join(5)
            state.observer = None

    def _set(self, state: RootState, new: str, message: str | None) -> None:
        changed = (state.state, state.message) != (new, message)
        state.state, state.message = new, message
        if changed:
            self.on_state(state.root, new, message)

    # -- the monitor ----------------------------------------------------------------

    def _watch_roots(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.check_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                for state in self.states.values():
                    self._check(state)
                self._check_new_folders()

    def _check(self, state: RootState) -> None:
        try:
            st = os.stat(state.root.path)
            identity: tuple[int, int] | None = (
                (st.st_dev, st.st_ino) if os.path.isdir(state.root.path) else None
            )
        except OSError:
            identity = None
        armed = state.state in ("online", "polling")
        if armed and identity != state.identity:
            # Gone, or replaced (an unmounted disk leaves its empty mount point behind).
            self._disarm(state)
            self._set(state, "offline", f"{state.root.path} vanished or was replaced")
            self.on_offline(state.root)
            state.identity = None
        elif armed and state.observer is not None and not _still_watching(state.observer):
            # An exception in watchdog's threads ends them with a traceback and nothing
            # more: the root would stay "online" and hear nothing again (the state change
            # is logged as a warning by the daemon).
            self._disarm(state)
            self._set(state, "watch_failed", "the observer stopped; re-arming and rescanning")
            self._arm(state)
        if state.state in ("offline", "watch_failed") and identity is not None:
            self._arm(state)

    def _note_new_folder(self, root_name: str, folder: bytes) -> None:
        with self._folders_lock:
            self._new_folders.add((root_name, folder))

    def _check_new_folders(self) -> None:
        """New folders need new watches, which watchdog may fail to add without a word.

        The kernel lists the inode of every watch this process holds: a new folder whose
        inode is not among them is not watched.
        """
        with self._folders_lock:
            grown, self._new_folders = self._new_folders, set()
        if not grown:
            return
        watched = set(inotify_watched_inodes())
        for name, folder in sorted(grown):
            state = self.states.get(name)
            if state is None or state.state != "online" or not _unwatched(folder, watched):
                continue
            what = f"root {name!r} cannot watch its new folder {os.fsdecode(folder)}"
            self._poll_instead(state, what, len(watched) + 1)
            self.on_rescan(name)

    def _overflowed(self, root_name: str) -> None:
        """The root's inotify queue overflowed (each root has its own): rescan that root."""
        self.overflows += 1
        log.warning("inotify queue of root %r overflowed: events were lost; rescanning", root_name)
        # No lock here: this runs on the thread that reads the kernel, which disarming
        # joins while holding the lock. A root not online is rescanned when re-armed.
        state = self.states.get(root_name)
        if state is not None and state.state == "online":
            self.on_rescan(root_name)


def _still_watching(observer: BaseObserver) -> bool:
    """The observer's thread and every emitter's (the one reading the kernel) are alive."""
    return observer.is_alive() and all(emitter.is_alive() for emitter in observer.emitters)


def _unwatched(folder: bytes, watched: set[int]) -> bool:
    try:
        st = os.stat(folder)
    except OSError:
        return False  # gone again: nothing to watch
    return st.st_ino not in watched
