"""Faults around a running daemon: the catalog's disk full or locked, a root's permissions
revoked, a root replaced by a symlink or a file. Each time the daemon reports, keeps
serving reads, and catches up once the fault is gone; nothing is lost."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import checker
from tests.conftest import OLD_NS, WITHOUT_DAC_CAPS, hashed, run_cli, wait_for, write

pytestmark = pytest.mark.chaos

LOCKED_S = 3.0  # how long another process holds the catalog's write lock


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the catalog here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free space)."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.timeout(180)
def test_catalog_disk_full_reported_then_caught_up(tmp_path: Path, make_daemon: Any) -> None:
    root = tmp_path / "r"
    first = [write(root / f"a{i}.png", f"a{i}", OLD_NS) for i in range(5)]
    with small_tmpfs(tmp_path / "state", "3m") as state:
        daemon = make_daemon().start()
        filler = fill(state)
        later = [write(root / "later" / f"b{i}.png", f"b{i}" * 500) for i in range(30)]

        def reported() -> bool:
            status = daemon.status()
            return not status["catalog"]["writable"] and "full" in status["errors"][0]["message"]

        wait_for(reported, 30, "the status to report the full disk")
        listed = run_cli("ls", "--json", *daemon.args())  # reads keep working
        assert listed.returncode == 0, listed.stderr
        assert {str(p) for p in first} <= {
            line.split('"')[3] for line in listed.stdout.splitlines()
        }

        filler.unlink()
        for path in later:
            daemon.until(path, "cataloged and hashed after space returned", hashed, timeout=60)
        catalog = daemon.status()["catalog"]
        assert (catalog["writable"], catalog["error"]) == (True, None)
        db = daemon.db_path
        assert checker.integrity(db) == "ok"
        assert checker.sequence_problems(db) == []
        assert checker.differences(db, root) == []
        assert "cannot write the catalog" in daemon.log_text()
        daemon.stop()


@pytest.mark.timeout(120)
def test_catalog_locked_by_another_process_for_seconds(tmp_path: Path, make_daemon: Any) -> None:
    root = tmp_path / "r"
    write(root / "a.png", "a", OLD_NS)
    daemon = make_daemon().start()
    db = daemon.db_path
    locker = sqlite3.connect(db, timeout=30, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(20):
            write(root / f"n{i}.png", f"n{i}")
        # While the lock is held the daemon still answers (its reads see the WAL).
        assert daemon.status()["state"] in ("IDLE", "RUNNING")
        time.sleep(LOCKED_S)  # the fault's duration, not a wait for something
        assert checker.differences(db, root) != []  # nothing could be written meanwhile
    finally:
        locker.execute("COMMIT")
        locker.close()
    checker.wait_converged(db, root, timeout=60, what="the catalog to catch up")
    assert checker.sequence_problems(db) == []
    daemon.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("replacement", ["symlink", "file"])
def test_root_replaced_by_a_symlink_or_a_file(
    tmp_path: Path, make_daemon: Any, replacement: str
) -> None:
    """A file: the root is offline, every location missing. A symlink to a folder: the
    root's own path is the configured one and is followed (a disk moved and linked back
    into place), so what is there now is cataloged under the root's path, nothing else."""
    root = tmp_path / "r"
    files = [write(root / f"f{i}.png", f"c{i}", OLD_NS) for i in range(10)]
    daemon = make_daemon().start()
    daemon.catalog.change_tags(os.fsencode(files[0]), add=["fav"])
    os.rename(root, tmp_path / "away")
    if replacement == "symlink":
        elsewhere = tmp_path / "elsewhere"
        write(elsewhere / "f0.png", "other content", OLD_NS)
        os.symlink(elsewhere, root)

        def relinked() -> bool:
            items = daemon.items()
            return all(items[str(f)]["is_missing"] for f in files[1:]) and hashed(
                items[str(files[0])]
            )

        wait_for(relinked, 20, "the linked folder's content under the root's path")
        assert set(daemon.items()) == {str(f) for f in files}
        root_state = {r["name"]: r for r in daemon.status()["roots"]}["r"]
        assert root_state["online"] is True
    else:
        root.write_text("not a folder")
        wait_for(lambda: all(i["is_missing"] for i in daemon.items().values()), 20, "all missing")
        root_state = {r["name"]: r for r in daemon.status()["roots"]}["r"]
        assert root_state["online"] is False
    assert daemon.proc is not None and daemon.proc.poll() is None  # still running
    root.unlink()
    os.rename(tmp_path / "away", root)
    wait_for(lambda: not checker.differences(daemon.db_path, root), 20, "the original back")
    assert "fav" in daemon.item(files[0])["tags"]
    write(root / "after.png", "x")
    daemon.until(root / "after.png", "watched again", hashed)
    daemon.stop()


@pytest.mark.timeout(120)
def test_root_permissions_revoked_then_restored(tmp_path: Path, make_daemon: Any) -> None:
    root = tmp_path / "r"
    files = [write(root / "sub" / f"f{i}.png", f"c{i}", OLD_NS) for i in range(10)]
    daemon = make_daemon()
    prefix = WITHOUT_DAC_CAPS if os.geteuid() == 0 else ()
    daemon.start(prefix=prefix)
    os.chmod(root / "sub", 0o000)
    try:
        # A rescan now cannot list the folder: its rows must stay exactly as they were.
        assert daemon.proc is not None
        seed = run_cli("scan", *daemon.args())
        assert seed.returncode == 0, seed.stderr
        items = daemon.items()
        assert all(not items[str(f)]["is_missing"] for f in files)
        assert "sub" in " ".join(e.get("path", "") for e in daemon.status()["errors"])
    finally:
        os.chmod(root / "sub", 0o755)
    write(root / "sub" / "new.png", "n")
    daemon.until(root / "sub" / "new.png", "seen after access returned", hashed)
    seed = run_cli("scan", *daemon.args())
    assert seed.returncode == 0, seed.stderr
    assert checker.differences(daemon.db_path, root) == []
    daemon.stop()
