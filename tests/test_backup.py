"""``assetd backup FILE``: a consistent copy of a live catalog, and a restore that works."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from assetd.catalog import Catalog
from assetd.catalog.schema import SCHEMA_VERSION
from tests.harness import locations_by_path, run_cli, wait_for, write


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content, to prove a command changed nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_line_error(proc: Any, code: int) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return str(lines[0])


@pytest.fixture
def scanned(tmp_path: Path) -> tuple[Path, str]:
    """A root of a few files and the SQLite catalog ``assetd scan`` made of it."""
    for i in range(10):
        write(tmp_path / "r" / f"f{i}.txt", f"file {i}\n")
    url = f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"
    proc = run_cli("scan", "--db", url, "--root", f"r={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "r", url


def test_a_backup_while_the_daemon_writes_is_whole(make_daemon: Any, tmp_path: Path) -> None:
    """Copied while files are being created and the daemon commits them, the backup
    passes quick_check, opens as a catalog, and holds every location committed before
    it began; nothing but the backup is left in its folder."""
    root = tmp_path / "r"
    for i in range(30):
        write(root / "old" / f"f{i}.txt", f"old {i}\n")
    d = make_daemon({"r": root}).start()
    stop = threading.Event()

    def create_files() -> None:
        i = 0
        while not stop.is_set():
            write(root / "new" / f"n{i}.txt", f"new {i}\n")
            i += 1

    writer = threading.Thread(target=create_files)
    writer.start()
    try:
        wait_for(lambda: len(d.items()) > 40, what="the daemon committing new files")
        # On a loaded machine the daemon may commit nothing while one backup runs; take
        # another (each in a folder of its own) until one overlapped the daemon's writes.
        for attempt in range(5):
            committed = set(d.items())
            target = tmp_path / f"backups{attempt}" / "assetd.db"
            target.parent.mkdir()
            proc = run_cli("backup", *d.args(), str(target))
            assert proc.returncode == 0, proc.stderr
            if len(d.items()) > len(committed):
                break
        else:
            raise AssertionError("the daemon wrote nothing during any of 5 backups")
    finally:
        stop.set()
        writer.join()
    summary = json.loads(proc.stdout)
    assert summary["backup"] == str(target) and summary["bytes"] == target.stat().st_size
    assert summary["schema"] == SCHEMA_VERSION
    assert os.listdir(target.parent) == ["assetd.db"]
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    conn.close()
    copy = Catalog(f"sqlite:///{target}")
    try:
        backed_up = locations_by_path(copy)
    finally:
        copy.close()
    assert committed <= set(backed_up)
    assert summary["locations"] == len(backed_up)


def test_a_backup_over_an_existing_file_is_refused(
    scanned: tuple[Path, str], tmp_path: Path
) -> None:
    """FILE exists: exit 2, one line, and neither FILE nor anything beside it changes."""
    _, url = scanned
    target = write(tmp_path / "out" / "there.db", b"keep me")
    before = listing(tmp_path)
    line = one_line_error(run_cli("backup", "--db", url, str(target)), 2)
    assert str(target) in line and "exists" in line
    assert listing(tmp_path) == before


def test_a_backup_into_a_missing_folder_is_refused(
    scanned: tuple[Path, str], tmp_path: Path
) -> None:
    """FILE's folder must exist: exit 2, one line, nothing made."""
    _, url = scanned
    before = listing(tmp_path)
    line = one_line_error(run_cli("backup", "--db", url, str(tmp_path / "no" / "x.db")), 2)
    assert "is not a folder" in line
    assert listing(tmp_path) == before and not (tmp_path / "no").exists()


def test_a_postgresql_catalog_is_pointed_at_pg_dump(tmp_path: Path) -> None:
    """A PostgreSQL URL: exit 2 with one line showing a pg_dump command, password hidden."""
    url = "postgresql://assetd:secret@db.example/assetd"
    line = one_line_error(run_cli("backup", "--db", url, str(tmp_path / "x.dump")), 2)
    assert f"pg_dump --format=custom --file={tmp_path / 'x.dump'}" in line
    assert "secret" not in line
    assert os.listdir(tmp_path) == []


def test_a_catalog_not_made_yet_has_no_backup(tmp_path: Path) -> None:
    """No catalog file: exit 1, one line; nothing is made, the catalog's folder neither."""
    url = f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"
    line = one_line_error(run_cli("backup", "--db", url, str(tmp_path / "x.db")), 1)
    assert "does not exist" in line
    assert os.listdir(tmp_path) == []


def test_a_damaged_catalog_is_not_backed_up(scanned: tuple[Path, str], tmp_path: Path) -> None:
    """A catalog cut in half: exit 1 with the recovery in the line, and no file (whole or
    partial) where the backup would have been."""
    _, url = scanned
    db = Path(url.removeprefix("sqlite:///"))
    os.truncate(db, db.stat().st_size // 2)
    (tmp_path / "out").mkdir()
    line = one_line_error(run_cli("backup", "--db", url, str(tmp_path / "out" / "x.db")), 1)
    assert "assetd scan" in line and "assetd backup FILE" in line
    assert os.listdir(tmp_path / "out") == []


def test_a_restored_backup_brings_back_tags_and_metadata(
    scanned: tuple[Path, str], tmp_path: Path, make_daemon: Any
) -> None:
    """Tag and metadata set, backup, catalog deleted, backup copied in its place: ``ls``
    shows the tag, ``meta`` the metadata, and a daemon starts on it."""
    root, url = scanned
    db = Path(url.removeprefix("sqlite:///"))
    path = str(root / "f3.txt")
    flags = ["--db", url, "--root", f"r={root}"]
    assert run_cli("tag", "add", path, "favourite", *flags).returncode == 0
    assert run_cli("meta", path, "note=keep this", "stars:=5", *flags).returncode == 0
    target = tmp_path / "assetd-backup.db"
    assert run_cli("backup", *flags, str(target)).returncode == 0

    for leftover in db.parent.iterdir():
        leftover.unlink()
    shutil.copy(target, db)

    listed = run_cli("ls", "--json", *flags)
    assert listed.returncode == 0, listed.stderr
    items = {item["path"]: item for item in map(json.loads, listed.stdout.splitlines())}
    assert len(items) == 10 and "favourite" in items[path]["tags"]
    meta = run_cli("meta", path, *flags)
    assert meta.returncode == 0, meta.stderr
    assert json.loads(meta.stdout) == {"note": "keep this", "stars": 5}

    d = make_daemon({"r": root}, database=url).start()
    assert "favourite" in d.until(root / "f3.txt", "listed", lambda item: True)["tags"]
    assert d.status()["state"] in ("IDLE", "RUNNING")
