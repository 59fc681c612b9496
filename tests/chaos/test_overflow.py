"""Forced overflow: the kernel's inotify queue at 64 events, then a 50,000-file burst.

Watchdog alone loses nearly all of these events; assetd notices IN_Q_OVERFLOW and
rescans, so every file ends in the catalog with its hash (checked independently).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import checker

KNOB = Path("/proc/sys/fs/inotify/max_queued_events")
BURST = 50_000


@pytest.mark.chaos
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    not os.access(KNOB, os.W_OK),
    reason="fs.inotify.max_queued_events cannot be lowered here (needs root); "
    "the kernel overflow path is not exercised",
)
def test_a_50000_file_burst_through_a_64_event_queue_ends_complete(
    tmp_path: Path, make_daemon: Any
) -> None:
    old = KNOB.read_text()
    try:
        KNOB.write_text("64")
        daemon = make_daemon().start()  # its inotify instance gets the small queue
    finally:
        KNOB.write_text(old)  # instances created before keep theirs
    assert KNOB.read_text() == old
    burst = tmp_path / "r" / "burst"
    burst.mkdir()
    for i in range(BURST):
        folder = burst / f"d{i // 1000:02}"
        if i % 1000 == 0:
            folder.mkdir()
        (folder / f"f{i:05}.png").write_bytes(b"%d" % i)
    db = Path(daemon.db.removeprefix("sqlite:///"))
    try:
        checker.wait_converged(db, tmp_path / "r", timeout=240, what="all 50,000 cataloged")
    except AssertionError as exc:  # the daemon's account of its passes says why
        log = daemon.log_text().splitlines()
        said = [line for line in log if any(w in line for w in ("seed", "WARNING", "ERROR"))]
        passes = "\n".join(said[-40:])
        raise AssertionError(f"{exc}\nwhat the daemon logged:\n{passes}") from None
    daemon.wait_log("overflow")
    assert len(checker.catalog_hashes(db)) == BURST
    assert checker.sequence_problems(db) == []
    daemon.stop()
