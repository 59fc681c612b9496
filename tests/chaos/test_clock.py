"""The clock jumping backwards (a bad NTP step, a VM restored from a snapshot).

The daemon runs under libfaketime (Debian's ``faketime``), whose offset is re-read from a
file on every call, so the test moves the daemon's wall clock while it runs; the
monotonic clock is left alone, as the kernel leaves it in a real clock step.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import checker
from tests.conftest import OLD_NS, hashed, run_cli, write

pytestmark = pytest.mark.chaos

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


@pytest.mark.skipif(
    not LIBFAKETIME.exists(), reason="libfaketime is not installed (apt-get install faketime)"
)
@pytest.mark.timeout(120)
def test_clock_jumping_back_a_day_and_forward_again(tmp_path: Path, make_daemon: Any) -> None:
    root = tmp_path / "r"
    keep = [write(root / f"k{i}.png", f"k{i}", OLD_NS) for i in range(5)]
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    daemon = make_daemon().start(
        env={
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(offset),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
    )
    db = Path(daemon.db.removeprefix("sqlite:///"))
    write(root / "before.png", "before")
    daemon.until(root / "before.png", "hashed before the jump", hashed)

    offset.write_text("-1d\n")  # the clock steps back a day
    write(root / "during.png", "during")
    os.rename(keep[0], root / "renamed.png")
    keep[1].unlink()
    write(keep[2], "changed")
    checker.wait_converged(db, root, timeout=30, what="the catalog to follow the disk")
    assert daemon.item(keep[1])["is_missing"]

    offset.write_text("+0\n")  # and is put right again
    write(root / "after.png", "after")
    daemon.until(root / "after.png", "hashed after the jump", hashed)

    assert checker.sequence_problems(db) == []
    with sqlite3.connect(db) as conn:
        stamps = [ts for (ts,) in conn.execute('SELECT ts FROM "change" ORDER BY seq')]
        (missing_since,) = conn.execute(
            "SELECT missing_since FROM cache_state WHERE file_path = ?", (os.fsencode(keep[1]),)
        ).fetchone()
    assert stamps == sorted(stamps)  # change times stay in order
    assert missing_since >= stamps[0]  # not a day in the past
    # Missing for seconds, not a day: a cleanup of what is missing for half a day keeps it.
    cleaned = run_cli("cleanup", "--missing-older-than", "0.5", *daemon.args())
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout) == {"deleted": 0}
    assert daemon.item(keep[1]) is not None
    daemon.stop()
