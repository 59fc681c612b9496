"""Every error a user can cause ends in one line that says what happened and what to do."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import OLD_NS, run_cli, write

Setup = Callable[[Path], list[str]]


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    """A real catalog of a few files, made by ``assetd scan``."""
    for i in range(40):
        write(tmp_path / "r" / f"f{i:02}.bin", b"x" * (1000 + i), OLD_NS)
    db = tmp_path / "good.db"
    proc = run_cli("scan", "--db", f"sqlite:///{db}", "--root", f"r={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr
    return db


@pytest.fixture
def read_only_folder(tmp_path: Path, catalog_file: Path) -> Iterator[Path]:
    """A folder on a read-only file system holding a copy of the catalog."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a file system here: {mounted.stderr.strip()!r}")
    try:
        shutil.copy(catalog_file, folder / "c.db")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def db_flags(tmp_path: Path, db: Path) -> list[str]:
    return ["--db", f"sqlite:///{db}", "--root", f"r={tmp_path / 'r'}"]


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.match(r"(\d{4}-\d\d-\d\d [\d:.]+ )?assetd: ", lines[0]), lines[0]
    return lines[0]


def test_a_bad_configuration_says_which_key(tmp_path: Path) -> None:
    """An unknown key: exit 2, the file and the key named."""
    conf = tmp_path / "a.toml"
    conf.write_text('[feed]\nlisten = "127.0.0.1:1"\ncolour = "red"\n')
    proc = run_cli("ls", "--config", str(conf))
    assert proc.returncode == 2
    assert "colour" in one_line(proc) and str(conf.name) in one_line(proc)


def test_a_catalog_cut_in_half_says_how_to_recover(tmp_path: Path, catalog_file: Path) -> None:
    """A catalog file cut in half: exit 1, the line says it is damaged, how to rebuild it
    from disk, and that user data comes back only from a backup."""
    half = tmp_path / "half.db"
    data = catalog_file.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    proc = run_cli("ls", *db_flags(tmp_path, half))
    assert proc.returncode == 1
    line = one_line(proc)
    assert "damaged" in line and f"move {half} aside" in line
    assert "assetd scan" in line and "assetd backup" in line


def test_a_file_that_is_not_a_catalog(tmp_path: Path) -> None:
    """A file of other bytes named as the catalog is called damaged, never overwritten."""
    junk = write(tmp_path / "junk.db", b"not a database " * 1000)
    before = junk.read_bytes()
    proc = run_cli("scan", *db_flags(tmp_path, junk))
    assert proc.returncode == 1 and "damaged" in one_line(proc)
    assert junk.read_bytes() == before


def test_a_catalog_that_cannot_be_opened(tmp_path: Path) -> None:
    """A catalog path that is a folder: what to check, and how to choose another."""
    (tmp_path / "dir.db").mkdir()
    line = one_line(run_cli("ls", *db_flags(tmp_path, tmp_path / "dir.db")))
    assert "--db or [daemon] database" in line


def test_a_catalog_on_a_read_only_disk(tmp_path: Path, read_only_folder: Path) -> None:
    """A catalog on a read-only file system: the line says so, and what to do."""
    proc = run_cli("scan", *db_flags(tmp_path, read_only_folder / "c.db"))
    assert proc.returncode == 1
    line = one_line(proc)
    assert "read-only file system" in line and "--db" in line


def test_a_state_directory_that_cannot_be_made(tmp_path: Path) -> None:
    """The catalog's folder cannot be made (a file is in the way): the folder is named."""
    blocker = write(tmp_path / "state", b"a file, not a folder")
    proc = run_cli(
        "run", *db_flags(tmp_path, blocker / "sub" / "assetd.db"), "--listen", "127.0.0.1:0"
    )
    assert proc.returncode == 1
    line = one_line(proc)
    assert f"cannot make the catalog's folder {blocker}/sub" in line and "--db" in line


def test_a_database_server_that_does_not_answer(tmp_path: Path) -> None:
    """A PostgreSQL URL nobody listens on: the server's answer, and what to check; the
    password is never shown."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    proc = run_cli("ls", "--db", f"postgresql://me:secret@127.0.0.1:{port}/assetd")
    assert proc.returncode == 1
    line = one_line(proc)
    assert "secret" not in line and "check [daemon] database" in line


def test_a_root_that_is_not_a_folder_is_offline_not_fatal(tmp_path: Path) -> None:
    """A root that names a file is reported offline in one warning; the scan goes on."""
    afile = write(tmp_path / "afile", b"x")
    proc = run_cli("scan", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--root", f"r={afile}")
    assert proc.returncode == 0
    assert "is offline" in one_line(proc) and "not a folder" in one_line(proc)
