"""verify: re-hashing catches content that changed where stat shows nothing."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import blake3

from assetd.catalog import Catalog
from assetd.hashing import HashResult
from assetd.verify import MB, verify
from tests.conftest import OLD_NS, run_cli, write


def same_size_same_mtime(path: Path, content: bytes) -> None:
    """Replace a file's content keeping its size and mtime (a copy tool that keeps times)."""
    before = path.stat()
    assert len(content) == before.st_size
    path.write_bytes(content)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def hide_from_stat(db: Path, path: Path) -> None:
    """Make the catalog's stat match the file as it is now: what a file system whose
    ctime says nothing (or a disk that rots) leaves behind. Only a re-hash can tell."""
    st = path.stat()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE cache_state SET ctime_ns = ?, inode = ? WHERE file_path = ?",
            (st.st_ctime_ns, st.st_ino, os.fsencode(path)),
        )


def cli(tmp_path: Path, *args: str) -> Any:
    db = f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"
    proc = run_cli(*args, "--db", db, "--root", f"r={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_same_size_same_mtime_replacement_is_caught_by_the_next_scan(tmp_path: Path) -> None:
    # The changed ctime and inode are part of a file's identity: a plain scan re-hashes.
    path = write(tmp_path / "r" / "model.bin", b"A" * 1000, OLD_NS)
    cli(tmp_path, "scan")
    same_size_same_mtime(path, b"B" * 1000)
    summary = cli(tmp_path, "scan")
    assert summary["hashed"] == 1
    listed = run_cli("ls", "--json", "--db", f"sqlite:///{tmp_path / 'state' / 'assetd.db'}")
    item = json.loads(listed.stdout)
    assert item["hash"] == "blake3:" + blake3.blake3(b"B" * 1000).hexdigest()


def test_verify_catches_what_stat_cannot_and_logs_modified(tmp_path: Path) -> None:
    keep = [write(tmp_path / "r" / f"k{i}.bin", b"k%d" % i, OLD_NS) for i in range(5)]
    path = write(tmp_path / "r" / "model.bin", b"A" * 1000, OLD_NS)
    cli(tmp_path, "scan")
    same_size_same_mtime(path, b"B" * 1000)
    db = tmp_path / "state" / "assetd.db"
    hide_from_stat(db, path)
    assert cli(tmp_path, "scan")["hashed"] == 0  # invisible to a pass now
    summary = cli(tmp_path, "verify", "--rate", "0")
    assert (summary["verified"], summary["mismatched"], summary["errors"]) == (6, 1, 0)
    assert summary["bytes"] == 1000 + sum(p.stat().st_size for p in keep)
    catalog = Catalog(f"sqlite:///{db}")
    try:
        changes = catalog.changes_since(0, 1000)
        last = [(c["op"], c["location"]["path"]) for c in changes[-2:]]
        assert last == [("modified", str(path)), ("hashed", str(path))]
        assert changes[-1]["location"]["hash"].endswith(blake3.blake3(b"B" * 1000).hexdigest())
    finally:
        catalog.close()
    again = cli(tmp_path, "verify", "--rate", "0")
    assert again["mismatched"] == 0 and again["verified"] == 6


def test_verify_sample_reads_that_many(tmp_path: Path) -> None:
    for i in range(20):
        write(tmp_path / "r" / f"f{i}.bin", b"%d" % i, OLD_NS)
    cli(tmp_path, "scan")
    summary = cli(tmp_path, "verify", "--sample", "7", "--rate", "0")
    assert summary["verified"] == 7


def test_verify_keeps_to_its_rate(tmp_path: Path, catalog: Catalog) -> None:
    """At 1 MB/s, 3 MB of files take 3 s of (fake) time: the limiter sleeps the rest."""
    from assetd.config import RootConfig
    from assetd.seeder import AssetSeeder

    for i in range(3):
        write(tmp_path / "r" / f"f{i}.bin", b"x" * MB, OLD_NS)
    root = RootConfig("r", str(tmp_path / "r"))
    seeder = AssetSeeder(catalog, [root])
    assert seeder.start(None) and seeder.wait(60)
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def hasher(path: bytes, follow_symlinks: bool = False) -> HashResult:
        from assetd.hashing import hash_file

        now[0] += 0.1  # reading takes a tenth of a second here
        return hash_file(path, follow_symlinks=follow_symlinks)

    summary = verify(
        catalog,
        [root.prefix],
        write=lambda fn, *a: fn(*a),
        rate_bytes_s=1 * MB,
        hasher=hasher,
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert summary.verified == 3
    assert abs(sum(slept) - (3.0 - 0.3)) < 1e-9
    assert abs(summary.seconds - 3.0) < 1e-9


def test_verify_through_a_running_daemon_is_reported_on_its_feed(
    tmp_path: Path, make_daemon: Any
) -> None:
    path = write(tmp_path / "r" / "model.bin", b"A" * 1000, OLD_NS)
    daemon = make_daemon()
    cli(tmp_path, "scan")
    same_size_same_mtime(path, b"C" * 1000)  # while no daemon watches
    hide_from_stat(Path(daemon.db.removeprefix("sqlite:///")), path)
    daemon.start()
    assert daemon.item(path)["hash"] == "blake3:" + blake3.blake3(b"A" * 1000).hexdigest()
    before = daemon.catalog.latest_seq()
    proc = run_cli("verify", *daemon.args())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mismatched"] == 1
    assert daemon.ops(before) == ["modified", "hashed"]
    assert daemon.item(path)["hash"] == "blake3:" + blake3.blake3(b"C" * 1000).hexdigest()
