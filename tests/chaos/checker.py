"""An independent look at the disk and at the catalog file, for the chaos tests.

Nothing here uses assetd's code: the disk is walked with ``os.walk`` and hashed with
``blake3`` directly, and the catalog is read with the standard ``sqlite3`` module, so a
bug in assetd cannot hide itself from the check.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

import blake3


def disk_hashes(*roots: Path) -> dict[bytes, str]:
    """Every regular file under the roots (symlinks not followed) and its BLAKE3."""
    out: dict[bytes, str] = {}
    for root in roots:
        for folder, _dirs, files in os.walk(os.fsencode(root)):
            for name in files:
                path = os.path.join(folder, name)
                try:
                    if not stat.S_ISREG(os.lstat(path).st_mode):
                        continue
                    with open(path, "rb") as fh:
                        out[path] = "blake3:" + blake3.blake3(fh.read()).hexdigest()
                except FileNotFoundError:
                    continue  # deleted while we looked: the caller polls again
    return out


def connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def catalog_hashes(db: Path) -> dict[bytes, str | None]:
    """Every live location in the catalog and its asset's hash (None: not hashed yet)."""
    with connect(db) as conn:
        rows = conn.execute(
            "SELECT l.file_path, a.hash FROM cache_state l JOIN asset a ON a.id = l.asset_id "
            "WHERE NOT l.is_missing"
        ).fetchall()
    return {bytes(path): hash_ for path, hash_ in rows}


def integrity(db: Path) -> str:
    with connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def sequence_problems(db: Path) -> list[str]:
    """Gaps, repeats or a counter out of step in the change log (empty: all is well)."""
    with connect(db) as conn:
        seqs = [r[0] for r in conn.execute('SELECT seq FROM "change" ORDER BY seq')]
        counter = conn.execute(
            "SELECT value FROM sequence_counter WHERE name = 'change'"
        ).fetchone()[0]
    problems = []
    if len(set(seqs)) != len(seqs):
        problems.append("a sequence number repeats")
    if seqs and seqs != list(range(seqs[0], seqs[-1] + 1)):
        missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
        problems.append(f"gaps at {missing[:10]}")
    if seqs and seqs[-1] != counter:
        problems.append(f"last seq {seqs[-1]} but the counter says {counter}")
    return problems


def asset_at(db: Path, path: Path) -> int | None:
    with connect(db) as conn:
        row = conn.execute(
            "SELECT asset_id FROM cache_state WHERE file_path = ?", (os.fsencode(path),)
        ).fetchone()
    return row[0] if row else None


def user_tags(db: Path, asset_id: int) -> set[str]:
    with connect(db) as conn:
        rows = conn.execute(
            "SELECT name FROM tag WHERE asset_id = ? AND origin = 'user'", (asset_id,)
        ).fetchall()
    return {r[0] for r in rows}


def wait_converged(db: Path, *roots: Path, timeout: float, what: str) -> None:
    """Poll until the catalog equals the disk; on timeout, say how they still differ."""
    deadline = time.monotonic() + timeout
    while diff := differences(db, *roots):
        if time.monotonic() > deadline:
            shown = "".join(f"\n  {d}" for d in diff[:10])
            raise AssertionError(f"timed out after {timeout}s waiting for {what}:{shown}")
        time.sleep(0.05)


def differences(db: Path, *roots: Path) -> list[str]:
    """How the catalog differs from the disk (empty: it has converged)."""
    disk, catalog = disk_hashes(*roots), catalog_hashes(db)
    out = [f"not cataloged: {p!r}" for p in sorted(disk.keys() - catalog.keys())]
    out += [
        f"live in the catalog, gone from disk: {p!r}" for p in sorted(catalog.keys() - disk.keys())
    ]
    out += [
        f"hash {catalog[p]} in the catalog, {disk[p]} on disk: {p!r}"
        for p in sorted(disk.keys() & catalog.keys())
        if catalog[p] != disk[p]
    ]
    return out
