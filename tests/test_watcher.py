"""Watch events to hints, and file system detection: pure parts of the watcher."""

from __future__ import annotations

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

from assetd.config import RootConfig
from assetd.paths import ExcludeMatcher
from assetd.reconciler import Hint, HintKind
from assetd.watcher import filesystem_type, make_hint, wants_polling

PREFIX = b"/r/"
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


def test_polling_is_chosen_by_setting() -> None:
    """watch = polling always polls; inotify never does."""
    assert wants_polling(RootConfig("a", "/tmp", watch="polling")) is True
    assert wants_polling(RootConfig("a", "/tmp", watch="inotify")) is False
