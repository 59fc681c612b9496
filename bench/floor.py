"""The floor under a cold index: the SQL the catalog needs for a tree, run bare.

    python -m bench.floor DB FOLDER ROOT_NAME [--two-writes]

Makes an empty catalog at DB with assetd's own schema and settings (WAL,
``synchronous=FULL``, foreign keys), then writes, with nothing but ``sqlite3``, the
rows a cold index of FOLDER leaves, committed in batches as a pass commits them: per
small file an asset with its hash, a location, its automatic tags and one ``added``
change; per large file (``LARGE_FILE`` and up) an unhashed asset, its location, tags and
``added``, then, in later transactions, its hash, the location's stat and a ``hashed``
change. No walking, no hashing, no deciding: every row, JSON body and (random) hash is
built before the clock starts, so what is timed is SQLite executing the statements and
committing. Prints the seconds on stdout.

A cold index cannot be faster than this with this catalog: whatever assetd does
beyond it is its own cost. ``--two-writes`` writes every file the way the design did
before 2026-12 (registered, then hashed: two writes and two changes per file).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from assetd.catalog import Catalog
from assetd.catalog.engine import SQLITE_PRAGMAS
from assetd.catalog.sql import CHUNK, insert_statements, location_json, stat_params
from assetd.decide import FileStat
from assetd.hashing import LARGE_FILE
from assetd.jsontext import dumps
from assetd.mime import guess_mime
from assetd.paths import auto_tags, file_name

Batch = list[tuple[str, list[tuple[object, ...]]]]

SEED = (
    "INSERT INTO asset (id, hash, size_bytes, mime_type, user_metadata, created_at) "
    "VALUES (?, NULL, ?, ?, '{}', ?)"
)
LOCATION = (
    "INSERT INTO cache_state (id, file_path, file_name, root, asset_id, size, mtime_ns, "
    "ctime_ns, inode, device, needs_verify, is_missing, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
TAG = "INSERT INTO location_tag (location_id, name) VALUES (?, ?)"
CHANGE = 'INSERT INTO "change" (seq, ts, op, root, body) VALUES (?, ?, ?, ?, ?)'
COUNTER = "UPDATE sequence_counter SET value = ? WHERE name = 'change'"
HASHED_SEED = (
    "INSERT INTO asset (id, hash, size_bytes, mime_type, user_metadata, created_at, generation) "
    "VALUES (?, ?, ?, ?, '{}', ?, NULL)"
)
HASH = "UPDATE asset SET hash = ?, size_bytes = ? WHERE id = ?"
STAT = (
    "UPDATE cache_state SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ?, device = ?, "
    "needs_verify = ? WHERE id = ?"
)


def files(folder: Path) -> Iterator[tuple[bytes, os.stat_result]]:
    for top, _dirs, names in os.walk(os.fsencode(folder)):
        for name in names:
            path = os.path.join(top, name)
            yield path, os.lstat(path)


def batches(
    folder: Path, root: str, two_writes: bool, size: int = CHUNK
) -> tuple[list[Batch], list[Batch]]:
    """The statements of the registering and the hashing transactions, rows built."""

    top = os.fsencode(folder)
    entries = sorted(files(folder))
    register: list[Batch] = []
    hashing: list[Batch] = []
    seq = 0
    for start in range(0, len(entries), size):
        chunk = entries[start : start + size]
        ids = range(start + 1, start + 1 + len(chunk))
        seeds, assets, locations, tags, added, stats, hashes, hashed = ([] for _ in range(8))
        for i, (path, st) in zip(ids, chunk, strict=True):
            # The rows as assetd makes them (its tags, mime type and Location JSON); only
            # the writing below is done without it.
            names = sorted(auto_tags(root, top + b"/", path))
            mime = guess_mime(path)
            stat = stat_params(FileStat.from_os(st))
            digest = "blake3:" + os.urandom(32).hex()
            once = not two_writes and st.st_size < LARGE_FILE
            if once:
                assets.append((i, digest, st.st_size, mime, time.time()))
            else:
                seeds.append((i, st.st_size, mime, time.time()))
            locations.append(
                (i, path, file_name(path), root, i, *stat, not once, False, time.time())
            )
            tags += [(i, name) for name in names]
            values = (path, root, i, digest if once else None, st.st_size, st.st_mtime_ns, mime)
            body = _body("added", (*values, False, not once), names)
            seq += 1
            added.append((seq, time.time(), "added", root, body))
            if not once:
                hashes.append((digest, st.st_size, i))
                stats.append((*stat, False, i))
                values = (*values[:3], digest, *values[4:])
                hashed.append(
                    (time.time(), "hashed", root, _body("hashed", (*values, False, False), names))
                )
        register.append(
            [
                (SEED, seeds),
                (HASHED_SEED, assets),
                (LOCATION, locations),
                (TAG, tags),
                (CHANGE, added),
                (COUNTER, [(seq,)]),
            ]
        )
        if hashed:
            numbered = [(seq + n, *row) for n, row in enumerate(hashed, start=1)]
            seq += len(hashed)
            hashing.append([(HASH, hashes), (STAT, stats), (CHANGE, numbered), (COUNTER, [(seq,)])])
    return register, hashing


def _body(op: str, values: tuple[object, ...], tags: list[str]) -> str:
    return dumps({"op": op, "location": location_json(values, tags, [])}).decode()


def floor(db: Path, folder: Path, root: str, two_writes: bool = False, size: int = CHUNK) -> float:
    Catalog(f"sqlite:///{db}").close()  # assetd's schema, indexes and pragmas
    register, hashing = batches(folder, root, two_writes, size)
    connection = sqlite3.connect(db, isolation_level=None)
    for name, value in SQLITE_PRAGMAS.items():
        connection.execute(f"PRAGMA {name} = {value}")
    started = time.perf_counter()
    # A pass registers its files, and hashes the large ones after.
    for transaction in register + hashing:
        connection.execute("BEGIN IMMEDIATE")
        for sql, rows in transaction:
            if not rows:
                continue
            if sql.startswith("INSERT"):  # as the catalog inserts: many rows a statement
                for text, params in insert_statements(sql, rows):
                    connection.execute(text, params)
            else:
                connection.executemany(sql, rows)
        connection.execute("COMMIT")
    seconds = time.perf_counter() - started
    connection.close()
    return seconds


if __name__ == "__main__":
    two = "--two-writes" in sys.argv[4:]
    size = next((int(a[8:]) for a in sys.argv[4:] if a.startswith("--batch=")), CHUNK)
    print(f"{floor(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], two, size):.4f}")
