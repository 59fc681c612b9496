"""The scan's progress bar: files while registering, bytes with rate and ETA while hashing."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from assetd.progress import ProgressBar
from tests.conftest import REPO, write


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_unless_on_a_terminal() -> None:
    """Piped output gets no bar at all."""
    stream = io.StringIO()
    bar = ProgressBar.for_stream(stream)
    bar.on_event(
        "assets.seed.progress",
        {"phase": "registering", "scanned": 5, "created": 5, "marked_missing": 0},
    )
    bar.close()
    assert stream.getvalue() == ""


def test_bar_counts_files_then_bytes() -> None:
    """Registering shows files; hashing shows bytes against the total, with a rate."""
    out = Terminal()
    bar = ProgressBar.for_stream(out)
    bar.on_event(
        "assets.seed.progress",
        {"phase": "registering", "scanned": 10, "created": 10, "marked_missing": 0},
    )
    hashing = {
        "phase": "hashing",
        "hashed": 3,
        "to_hash": 10,
        "hashed_bytes": 3 << 20,
        "to_hash_bytes": 10 << 20,
    }
    bar.on_event("assets.seed.progress", hashing)
    bar.on_event("assets.seed.completed", {**hashing, "hashed": 10, "hashed_bytes": 10 << 20})
    bar.close()
    text = out.getvalue()
    assert "scanning" in text and "10 files" in text
    assert "hashing" in text and "10.0M/10.0M" in text and "files=10/10" in text


def test_scan_draws_a_bar_on_a_real_terminal(tmp_path: Path) -> None:
    """`assetd scan` on a pseudo-terminal draws the bar on stderr and ends with the summary."""
    for i in range(20):
        write(tmp_path / "r" / f"f{i}", os.urandom(4096))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "assetd",
            "scan",
            "--db",
            f"sqlite:///{tmp_path / 'c.db'}",
            "--root",
            f"r={tmp_path / 'r'}",
        ],
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    os.close(follower)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert b"hashing" in drawn and b"80.0k/80.0k" in drawn
    assert b'"hashed": 20' in proc.stdout.splitlines()[-1]
