"""Watch events to hints, file system detection, and a watch set over a real folder."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)
from watchdog.observers.inotify import InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent

from assetd.config import RootConfig
from assetd.hints import Hint, HintKind
from assetd.inotify import OverflowReportingObserver
from assetd.paths import ExcludeMatcher
from assetd.watcher import WatchSet, filesystem_type, make_hint, wants_polling
from tests.conftest import make_root, python, wait_for, write

PREFIX = b"/r/"


class Hints:
    """A watch set's sink that keeps every hint (watchdog's threads call it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[Hint] = []

    def __call__(self, hint: Hint) -> bool:
        with self._lock:
            self._seen.append(hint)
        return True

    def __contains__(self, hint: Hint) -> bool:
        with self._lock:
            return hint in self._seen

    def paths(self) -> set[bytes]:
        with self._lock:
            return {h.path for h in self._seen}


EXCLUDE = ExcludeMatcher(["*.part", "**/.git/**"])


@pytest.mark.parametrize(
    ("event", "hint"),
    [
        (FileCreatedEvent("/r/a.png"), Hint(HintKind.CHANGED, b"/r/a.png")),
        (FileModifiedEvent("/r/a.png"), Hint(HintKind.CHANGED, b"/r/a.png")),
        (FileDeletedEvent("/r/a.png"), Hint(HintKind.CHANGED, b"/r/a.png")),
        (FileClosedEvent("/r/a.png"), Hint(HintKind.CLOSED, b"/r/a.png")),
        (FileOpenedEvent("/r/a.png"), None),
        (FileClosedNoWriteEvent("/r/a.png"), None),
        (FileMovedEvent("/r/a", "/r/b"), Hint(HintKind.MOVED, b"/r/a", b"/r/b")),
        (DirMovedEvent("/r/d", "/r/e"), Hint(HintKind.DIR_MOVED, b"/r/d", b"/r/e")),
        (DirCreatedEvent("/r/d"), Hint(HintKind.DIR_CHANGED, b"/r/d")),
        (DirDeletedEvent("/r/d"), Hint(HintKind.DIR_CHANGED, b"/r/d")),
        (DirModifiedEvent("/r/d"), None),
        (FileCreatedEvent("/r/x.part"), None),
        (FileCreatedEvent("/r/sub/.git/objects/ab"), None),
        (DirCreatedEvent("/r/sub/.git"), None),
        (FileMovedEvent("/r/x.part", "/r/x.png"), Hint(HintKind.MOVED, b"/r/x.part", b"/r/x.png")),
        (FileMovedEvent("/r/x.part", "/r/y.part"), None),
        # A rename whose other half is outside the tree (watchdog's full events).
        (FileMovedEvent("", "/r/in.bin"), Hint(HintKind.CLOSED, b"/r/in.bin")),
        (DirMovedEvent("", "/r/in"), Hint(HintKind.DIR_ARRIVED, b"/r/in")),
        (FileMovedEvent("", "/r/in.part"), None),
        (FileMovedEvent("/r/out.bin", ""), Hint(HintKind.CHANGED, b"/r/out.bin")),
        (DirMovedEvent("/r/out", ""), Hint(HintKind.DIR_CHANGED, b"/r/out")),
        (FileCreatedEvent("/elsewhere/a"), None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, FileSystemEvent) else str(v),
)
def test_event_to_hint(event: FileSystemEvent, hint: Hint | None) -> None:
    """Each watchdog event maps to at most one hint; excluded paths map to none."""
    assert make_hint(event, EXCLUDE, PREFIX) == hint


def test_filesystem_type_from_mountinfo(tmp_path: Path) -> None:
    """The longest mount point holding the path decides its file system type."""
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "40 22 0:50 / /srv/share rw - nfs4 server:/export rw\n"
        "41 22 0:51 / /srv/share\\040two rw - fuse.sshfs host: rw\n"
    )
    assert filesystem_type("/srv/share/models/x", str(info)) == "nfs4"
    assert filesystem_type("/srv/share two/a", str(info)) == "fuse.sshfs"
    assert filesystem_type("/srv/shared", str(info)) == "ext4"
    assert filesystem_type("/x", str(tmp_path / "absent")) == ""


def test_mount_points_are_unescaped_as_bytes(tmp_path: Path) -> None:
    """mountinfo escapes only space, tab, newline and backslash (as \\ooo octal); every
    other byte of a mount point is raw, UTF-8 or not, and stays exactly as it is."""
    info = tmp_path / "mountinfo"
    info.write_bytes(
        b"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        b"40 22 0:50 / /mnt/mod\xc3\xa8les rw - nfs4 server:/models rw\n"
        b"41 22 0:51 / /mnt/mod\xc3\xa8les\\040x rw - cifs //host/x rw\n"
        b"42 22 0:52 / /mnt/raw\xff rw - 9p tag rw\n"
        b"43 22 0:53 / /mnt/back\\134slash\\011tab rw - fuse.sshfs host: rw\n"
    )
    assert filesystem_type("/mnt/mod\u00e8les/sdxl/x", str(info)) == "nfs4"
    assert filesystem_type("/mnt/mod\u00e8les x/a", str(info)) == "cifs"
    assert filesystem_type(os.fsdecode(b"/mnt/raw\xff/a"), str(info)) == "9p"
    assert filesystem_type("/mnt/back\\slash\ttab/a", str(info)) == "fuse.sshfs"
    assert filesystem_type("/mnt/mode\u0300les/x", str(info)) == "ext4"  # another spelling
    assert filesystem_type("/mnt/mod\u00e8les\\040x/a", str(info)) == "ext4"  # not a space


def test_polling_is_chosen_by_setting() -> None:
    """watch = polling always polls; inotify never does."""
    assert wants_polling(RootConfig("a", "/tmp", watch="polling")) is True
    assert wants_polling(RootConfig("a", "/tmp", watch="inotify")) is False


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the point
def test_a_dead_emitter_thread_is_noticed_and_the_root_watched_again(tmp_path: Path) -> None:
    """An exception ends watchdog's emitter thread with a traceback and nothing more (a
    libfaketime clock step did it here, inside ``time.sleep``): the root monitor sees the
    thread gone, watches the root again and asks for a rescan, and events flow again."""
    root = make_root(tmp_path, "r")
    hints = Hints()
    states: list[str] = []
    rescans: list[str] = []
    watchers = WatchSet(
        [root],
        hints,
        on_state=lambda _root, state, _message: states.append(state),
        on_rescan=rescans.append,
        on_offline=lambda _root: None,
        check_interval=0.05,
    )
    watchers.start()
    try:
        observer = watchers.states["r"].observer
        assert observer is not None
        (emitter,) = observer.emitters

        def fail(*_args: object, **_kwargs: object) -> None:
            raise OSError(22, "Invalid argument")

        emitter.queue_events = fail  # type: ignore[method-assign]
        (tmp_path / "r" / "wake.png").write_bytes(b"x")  # the emitter's next read raises
        wait_for(lambda: "watch_failed" in states and states[-1] == "online", 10, "re-armed")
        assert rescans == ["r"]
        assert watchers.states["r"].observer is not observer
        new = tmp_path / "r" / "after.png"
        new.write_bytes(b"y")
        wait_for(lambda: Hint(HintKind.CLOSED, os.fsencode(new)) in hints, 10, "a hint again")
    finally:
        watchers.stop()


QUEUE_KNOB = Path("/proc/sys/fs/inotify/max_queued_events")


@pytest.mark.skipif(
    not os.access(QUEUE_KNOB, os.W_OK), reason="lowering fs.inotify.max_queued_events needs root"
)
def watch_with_a_small_queue(root: RootConfig, hints: Hints, rescans: list[str]) -> WatchSet:
    """A started WatchSet whose inotify queue holds 64 events; the system's limit is put
    back at once (a new limit applies to inotify instances made after it is set)."""
    old = QUEUE_KNOB.read_text()
    QUEUE_KNOB.write_text("64")
    try:
        watchers = WatchSet(
            [root], hints, on_state=lambda *_: None, on_rescan=rescans.append,
            on_offline=lambda _root: None, check_interval=0.05,
        )  # fmt: skip
        watchers.start()
    finally:
        QUEUE_KNOB.write_text(old)
    return watchers


def test_reading_files_under_a_root_does_not_fill_the_event_queue(tmp_path: Path) -> None:
    """Opening and reading files changes nothing, so it must not cost queue space: a pass
    hashing a root (or a program loading models from it) would otherwise overflow the
    kernel's event queue and force a rescan of the whole root. With a 64-event queue,
    reading 200 files and listing 20 folders leaves the queue with room to spare, and the
    write that follows arrives as the first and only hint."""
    root = make_root(tmp_path, "r")
    files = [
        write(Path(root.path) / f"d{i % 20:02}" / f"f{i:03}.bin", b"%d" % i) for i in range(200)
    ]
    hints = Hints()
    rescans: list[str] = []
    watchers = watch_with_a_small_queue(root, hints, rescans)
    try:
        for folder in sorted({f.parent for f in files}):
            os.listdir(folder)
        for path in files:
            path.read_bytes()
        new = write(Path(root.path) / "after.png", b"written")
        wait_for(lambda: Hint(HintKind.CLOSED, os.fsencode(new)) in hints, 10, "the write's hint")
        assert hints.paths() == {os.fsencode(new)}
        assert watchers.overflows == 0 and rescans == []
    finally:
        watchers.stop()


def test_an_overflow_reported_by_the_kernel_asks_for_a_rescan_of_its_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's IN_Q_OVERFLOW (wd -1), as watchdog's reading thread receives it,
    reaches the watch set through the watch group's overflow hook, not through watchdog's
    log: with watchdog's loggers silenced the root is still rescanned, once per overflow,
    and the other root is left alone."""
    monkeypatch.setattr(logging.getLogger("watchdog"), "disabled", True)
    roots = [make_root(tmp_path, "r"), make_root(tmp_path, "s")]
    rescans: list[str] = []
    watchers = WatchSet(
        roots, Hints(), on_state=lambda *_: None, on_rescan=rescans.append,
        on_offline=lambda _root: None, check_interval=0.05,
    )  # fmt: skip
    watchers.start()
    try:
        observer = watchers.states["r"].observer
        assert isinstance(observer, OverflowReportingObserver)
        overflow = InotifyEvent(-1, InotifyConstants.IN_Q_OVERFLOW, 0, b"")
        observer._inotify_fd.handle_event(overflow)
        observer._inotify_fd.handle_event(overflow)
        assert rescans == ["r", "r"]
        assert watchers.overflows == 2
    finally:
        watchers.stop()


@pytest.mark.skipif(
    not os.access(QUEUE_KNOB, os.W_OK), reason="lowering fs.inotify.max_queued_events needs root"
)
def test_a_real_overflow_rescans_the_root_and_events_flow_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 64-event kernel queue and watchdog's reading thread held on the first event,
    200 new files overflow the queue: once the thread reads on, the root is rescanned,
    and a file written later in a folder made during the burst still arrives as a hint
    (watchdog re-added the watches)."""
    gate, held = threading.Event(), threading.Event()
    on_event = InotifyWatchGroup.on_event

    def held_once(group: InotifyWatchGroup, event: InotifyEvent) -> None:
        if not held.is_set():
            held.set()
            gate.wait(10)
        on_event(group, event)

    monkeypatch.setattr(InotifyWatchGroup, "on_event", held_once)
    root = make_root(tmp_path, "r")
    hints = Hints()
    rescans: list[str] = []
    watchers = watch_with_a_small_queue(root, hints, rescans)
    try:
        write(Path(root.path) / "first.bin")
        wait_for(held.is_set, 10, "the reading thread at the first event")
        for i in range(200):
            write(Path(root.path) / f"f{i:03}.bin", b"%d" % i)
        (Path(root.path) / "new").mkdir()  # its event is lost: only re-adding watches it
        assert rescans == []
        gate.set()
        wait_for(lambda: rescans, 10, "a rescan after the overflow")
        assert set(rescans) == {"r"} and watchers.overflows >= 1
        after = write(Path(root.path) / "new" / "after.png", b"written")
        wait_for(lambda: Hint(HintKind.CLOSED, os.fsencode(after)) in hints, 10, "a hint again")
    finally:
        gate.set()
        watchers.stop()


CATALOG_MODULES = (
    "peewee", "playhouse", "sqlite3", "psycopg", "assetd.db", "assetd.schema",
    "assetd.catalog", "assetd.ingest", "assetd.reconciler", "assetd.seeder",
    "assetd.service", "assetd.relay", "assetd.verify",
)  # fmt: skip


def test_importing_the_watcher_loads_no_catalog() -> None:
    """The watcher turns events into hints and knows nothing of the catalog: importing it
    in a fresh interpreter loads neither peewee, nor a database driver, nor any module
    of the catalog or the writer."""
    loaded = python(
        "import sys, assetd.watcher\n"
        f"names = {CATALOG_MODULES!r}\n"
        "print(' '.join(sorted(m for m in sys.modules"
        " if any(m == n or m.startswith(n + '.') for n in names))))"
    )
    assert loaded == ""
