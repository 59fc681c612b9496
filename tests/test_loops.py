"""Symlink loops with follow_symlinks on: the live path catalogs only the paths the walk
gives, and says once per loop what to do about it."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileMovedEvent,
)
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent
from watchdog.utils.dirsnapshot import DirectorySnapshot

from assetd.config import RootConfig
from assetd.hints import Hint, HintKind
from assetd.inotify import count_folders
from assetd.loops import LoopFilter, LoopFreeListing
from assetd.watcher import WatchSet
from tests.conftest import OLD_NS, hashed, make_root, run_cli, wait_for, write

FOLLOW = {"follow_symlinks": True}


def looped_tree(base: Path) -> dict[str, Path]:
    """A root ``r`` with three loops (to the root, to the folder itself, to the folder
    by its name) and a link to a folder outside it; the real files by name."""
    r = base / "r"
    files = {
        "b": write(r / "sub" / "b.txt", "b", OLD_NS),
        "f": write(r / "a" / "f.txt", "f", OLD_NS),
        "o": write(base / "outside" / "o.txt", "o", OLD_NS),
    }
    (r / "sub" / "loop").symlink_to("..")
    (r / "sub" / "self").symlink_to(".")
    (r / "a" / "l").symlink_to("../a")
    (r / "link").symlink_to(base / "outside")
    return files


LOOPS = ("sub/loop", "sub/self", "a/l")


def listed(d: Any) -> dict[str, dict[str, Any]]:
    """The live locations, as ``assetd ls --json`` prints them."""
    proc = run_cli("ls", "--json", *d.cli_args())
    assert proc.returncode == 0, proc.stderr
    return {item["path"]: item for item in map(json.loads, proc.stdout.splitlines())}


def loop_warnings(d: Any, path: Path) -> int:
    return len(re.findall(re.escape(f"{path}: symlink loop -> "), d.log_text()))


def test_loops_at_startup_and_events_in_looped_folders(tmp_path: Path, make_daemon: Any) -> None:
    """Loops present at startup: each warned about once, saying what to do; the catalog
    holds the real paths only, and files created, changed and deleted in the looped
    folders afterwards (and in a folder reached by a symlink) land on their real paths."""
    files = looped_tree(tmp_path)
    r = tmp_path / "r"
    d = make_daemon(settings=FOLLOW).start()
    real = {str(files["b"]), str(files["f"]), str(r / "link" / "o.txt")}
    assert set(listed(d)) == real
    for loop in LOOPS:
        assert loop_warnings(d, r / loop) == 1, d.log_text()
    assert "not followed; remove the link or exclude it" in d.log_text()
    assert "Overwritten" not in d.log_text()  # watchdog's warning for a folder watched twice
    new = write(r / "sub" / "new.txt", "new")
    d.until(new, "cataloged at its real path", hashed)
    write(files["b"], "b, longer now")
    d.until(files["b"], "re-hashed", lambda i: hashed(i) and i["size"] == len("b, longer now"))
    files["f"].unlink()
    d.until(files["f"], "missing", lambda i: i["is_missing"])
    write(tmp_path / "outside" / "p.txt", "p")  # through the link: under the link's path
    d.until(r / "link" / "p.txt", "cataloged under the link", hashed)
    live = listed(d)
    real |= {str(new), str(r / "link" / "p.txt")}
    assert set(live) == real - {str(files["f"])}
    assert max(len(p) for p in live) <= max(len(p) for p in real)
    assert set(d.items()) == real  # nothing else, missing or not
    for loop in LOOPS:
        assert loop_warnings(d, r / loop) == 1  # not again for the events
    assert d.stop() == 0


def test_a_loop_made_while_the_daemon_runs(tmp_path: Path, make_daemon: Any) -> None:
    """``ln -s .. sub/loop``, a folder moved in with a loop inside, and a loop moved in,
    while the daemon runs: one warning each, no path round them, and later files land
    on their real paths."""
    r = tmp_path / "r"
    b = write(r / "sub" / "b.txt", "b", OLD_NS)
    package = tmp_path / "elsewhere" / "pkg"
    write(package / "x.txt", "x", OLD_NS)
    (package / "up").symlink_to("..")
    d = make_daemon(settings=FOLLOW).start()
    (r / "sub" / "loop").symlink_to("..")
    d.wait_log(f"{r / 'sub' / 'loop'}: symlink loop")
    os.rename(package, r / "pkg")
    d.until(r / "pkg" / "x.txt", "cataloged", hashed)
    d.wait_log(f"{r / 'pkg' / 'up'}: symlink loop")
    (tmp_path / "elsewhere" / "back").symlink_to(r)
    os.rename(tmp_path / "elsewhere" / "back", r / "sub" / "back")
    d.wait_log(f"{r / 'sub' / 'back'}: symlink loop")
    c = write(r / "sub" / "c.txt", "c")
    d.until(c, "cataloged at its real path", hashed)
    y = write(r / "pkg" / "y.txt", "y")
    d.until(y, "cataloged at its real path", hashed)
    assert set(listed(d)) == {str(b), str(c), str(r / "pkg" / "x.txt"), str(y)}
    for loop in ("sub/loop", "pkg/up", "sub/back"):
        assert loop_warnings(d, r / loop) == 1
    assert d.stop() == 0


def test_a_folder_linked_twice_in_the_root(tmp_path: Path, make_daemon: Any) -> None:
    """A symlink to a folder beside it is no loop: the pass gives both paths, a file
    written in the folder afterwards lands on its own path, not on a made-up one, and a
    link made, renamed and removed live is a folder made, renamed and removed."""
    r = tmp_path / "r"
    b = write(r / "sub" / "b.txt", "b", OLD_NS)
    (r / "alias").symlink_to("sub")
    d = make_daemon(settings=FOLLOW).start()
    assert set(listed(d)) == {str(b), str(r / "alias" / "b.txt")}
    c = write(r / "sub" / "c.txt", "c")
    d.until(c, "cataloged at its own path", hashed)
    (r / "later").symlink_to("sub")  # made live: surveyed like a new folder
    linked = d.until(r / "later" / "c.txt", "cataloged under the new link", hashed)
    (r / "later").rename(r / "renamed")  # moved like a folder: the same location
    moved = d.until(r / "renamed" / "c.txt", "moved with its link", hashed)
    assert moved["asset_id"] == linked["asset_id"] and d.item(r / "later" / "c.txt") is None
    (r / "renamed").unlink()
    d.until(r / "renamed" / "c.txt", "missing with its link", lambda i: i["is_missing"])
    allowed = {str(b), str(c), *(str(r / "alias" / n) for n in ("b.txt", "c.txt"))}
    # The link's other file may be marked a moment later: wait for the settled catalog.

    def settled() -> dict[str, dict[str, Any]] | None:
        found = listed(d)
        return found if str(c) in found and set(found) <= allowed else None

    live = wait_for(settled, timeout=20, what="only the real paths and the remaining link live")
    assert str(c) in live
    assert "symlink loop" not in d.log_text()
    assert d.stop() == 0


@pytest.mark.parametrize("follow", [True, False])
def test_a_polled_root_with_a_loop(tmp_path: Path, make_daemon: Any, follow: bool) -> None:
    """A polled root goes round no loop either (watchdog's polling stats every entry with
    os.stat, symlinks followed whatever the setting): real paths only, one warning when
    symlinks are followed, none when they are not (the walk does not enter links)."""
    files = looped_tree(tmp_path)
    r = tmp_path / "r"
    d = make_daemon(settings={"follow_symlinks": follow}, watch="polling").start()
    d.wait_log("root r: polling")
    new = write(r / "sub" / "new.txt", "new")
    d.until(new, "polled at its real path", hashed)
    real = {str(files["b"]), str(files["f"]), str(new)}
    if follow:
        real.add(str(r / "link" / "o.txt"))
    assert set(listed(d)) == real
    assert set(d.items()) == real
    for loop in LOOPS:
        assert loop_warnings(d, r / loop) == (1 if follow else 0)
    assert d.stop() == 0


# -- at the seams ------------------------------------------------------------------------


def test_each_folder_is_watched_once_under_its_real_path(tmp_path: Path) -> None:
    """The inotify watch group enters what the walk enters: no folder round a loop, a
    folder reached twice watched under its own path, one kernel watch per folder; and
    the same again when watchdog re-adds the watches after the kernel's queue overflowed."""
    looped_tree(tmp_path)
    r = tmp_path / "r"
    (r / "alias").symlink_to("sub")
    root = make_root(tmp_path, "r")
    watchers = WatchSet(
        [root], lambda _hint: True, on_state=lambda *_: None, on_rescan=lambda _name: None,
        on_offline=lambda _root: None, follow_symlinks=True,
    )  # fmt: skip
    watchers.start()
    try:
        observer = watchers.states["r"].observer
        assert observer is not None
        (emitter,) = observer.emitters
        group = emitter._inotify  # type: ignore[attr-defined]
        expected = {os.fsencode(r)} | {os.fsencode(r / p) for p in ("sub", "a", "link")}
        assert set(group._active_callbacks_by_path) == expected
        assert len(set(group._active_callbacks_by_watch.values())) == len(expected)
        overflow = InotifyEvent(-1, InotifyConstants.IN_Q_OVERFLOW, 0, b"")
        observer._inotify_fd.handle_event(overflow)  # type: ignore[attr-defined]
        assert set(group._active_callbacks_by_path) == expected  # watched afresh, the same
    finally:
        watchers.stop()
    assert count_folders(str(r), follow_symlinks=True) == 4
    assert count_folders(str(r), follow_symlinks=False) == 3


class Hints:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[Hint] = []

    def __call__(self, hint: Hint) -> bool:
        with self._lock:
            self.seen.append(hint)
        return True

    def paths(self) -> set[bytes]:
        with self._lock:
            return {p for h in self.seen for p in (h.path, h.dest) if p is not None}


def test_hints_never_name_a_path_round_a_loop(tmp_path: Path) -> None:
    """Files written in a looped folder, a loop made, a folder with a loop moved in, a
    loop moved in, and a link renamed so that it becomes a loop: every hint names a real
    path, and each new loop is a folder to survey (which reports it)."""
    looped_tree(tmp_path)
    r = tmp_path / "r"
    write(r / "b" / "in-b.txt", "in b", OLD_NS)
    (r / "a" / "to-b").symlink_to("../b")
    root = make_root(tmp_path, "r")
    hints = Hints()
    watchers = WatchSet(
        [root], hints, on_state=lambda *_: None, on_rescan=lambda _name: None,
        on_offline=lambda _root: None, follow_symlinks=True,
    )  # fmt: skip
    watchers.start()
    try:
        new = write(r / "sub" / "new.txt", "new")
        wait_for(lambda: Hint(HintKind.CLOSED, os.fsencode(new)) in hints.seen, 10, "the hint")
        (r / "sub" / "again").symlink_to("..")
        again = Hint(HintKind.DIR_CHANGED, os.fsencode(r / "sub" / "again"))
        wait_for(lambda: again in hints.seen, 10, "the new loop, as a folder to survey")
        package = write(tmp_path / "elsewhere" / "pkg" / "x.txt", "x").parent
        (package / "up").symlink_to("..")
        os.rename(package, r / "pkg")
        (tmp_path / "elsewhere" / "back").symlink_to(r)
        (tmp_path / "elsewhere" / "back").rename(r / "sub" / "back")
        (r / "a" / "to-b").rename(r / "b" / "to-b")  # "../b" from b: b itself
        last = write(r / "last.txt", "last")
        wait_for(lambda: Hint(HintKind.CLOSED, os.fsencode(last)) in hints.seen, 10, "the end")
    finally:
        watchers.stop()
    surveyed = {  # (a folder renamed in from outside is one that arrived: surveyed too)
        h.path for h in hints.seen if h.kind in (HintKind.DIR_CHANGED, HintKind.DIR_ARRIVED)
    }
    assert {os.fsencode(r / p) for p in ("pkg", "sub/back", "a/to-b", "b/to-b")} <= surveyed
    assert not [h for h in hints.seen if h.kind is HintKind.DIR_MOVED]
    for path in hints.paths():
        rel = path[len(root.prefix) :]
        assert not re.search(rb"(^|/)(loop|self|l|again|up|back)/", rel), path
        assert not rel.startswith(b"b/to-b/"), path


def test_polling_snapshots_list_nothing_round_a_loop(tmp_path: Path) -> None:
    """watchdog's snapshot with the listing the watcher gives it: the real paths only."""
    looped_tree(tmp_path)
    r = str(tmp_path / "r")
    followed = DirectorySnapshot(r, stat=os.stat, listdir=LoopFreeListing(True))
    rel = {os.path.relpath(str(p), r) for p in followed.paths}
    assert rel == {
        ".",
        "sub",
        "sub/b.txt",
        *LOOPS,
        "a",
        "a/f.txt",
        "link",
        "link/o.txt",
        "sub/self",
    }
    plain = DirectorySnapshot(r, stat=os.lstat, listdir=LoopFreeListing(False))
    assert {os.path.relpath(str(p), r) for p in plain.paths} == {
        ".",
        "sub",
        "sub/b.txt",
        *LOOPS,
        "a",
        "a/f.txt",
        "link",
    }


def test_events_round_a_loop_are_dropped(tmp_path: Path) -> None:
    """What watchdog makes up from os.walk of a moved folder is dropped when its path
    goes round a loop, or is a loop; the rest, and what the kernel reported, pass; a
    folder moved onto a loop has left its path, and its new one is surveyed."""
    looped_tree(tmp_path)
    r = tmp_path / "r"
    loops = LoopFilter(RootConfig("r", str(r)).prefix)
    fake, real = str(r / "sub" / "loop" / "sub" / "b.txt"), str(r / "sub" / "b.txt")
    for dropped in (
        FileCreatedEvent(fake, is_synthetic=True),
        DirCreatedEvent(str(r / "sub" / "loop"), is_synthetic=True),
        FileMovedEvent(real, fake, is_synthetic=True),
    ):
        assert loops.real(dropped) == []
    for kept in (
        FileCreatedEvent(real, is_synthetic=True),
        DirCreatedEvent(str(r / "link"), is_synthetic=True),
        FileCreatedEvent(fake),
        DirMovedEvent(str(r / "a"), str(r / "b")),
    ):
        assert loops.real(kept) == [kept]
    onto_loop = DirMovedEvent(str(r / "to-sub"), str(r / "sub" / "self"))
    assert loops.real(onto_loop) == [
        DirDeletedEvent(str(r / "to-sub")),
        DirCreatedEvent(str(r / "sub" / "self")),
    ]
