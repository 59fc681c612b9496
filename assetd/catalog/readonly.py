"""A SQLite catalog file read without writing anything: for ``doctor`` and ``backup``."""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

__all__ = [
    "count_locations",
    "open_read_only",
    "problems",
    "recovery",
    "stored_schema_version",
    "writer_present",
]


def writer_present(path: str) -> bool:
    """Whether a connection may be writing: a WAL catalog keeps its ``-wal`` and ``-shm``
    files while any connection has it open (the last one to close removes them)."""
    return os.path.exists(path + "-wal") and os.path.exists(path + "-shm")


def open_read_only(path: str) -> sqlite3.Connection:
    """A read-only connection that creates no file.

    Even read-only, SQLite makes the ``-wal`` and ``-shm`` files of a WAL database that
    has none, and leaves them behind: owned by whoever ran the command (root, say), they
    would lock the daemon's user out of its own catalog. With no writer there is no WAL
    to read, so the file is opened as immutable; with one, its files are used as they are.
    """
    options = "mode=ro" if writer_present(path) else "mode=ro&immutable=1"
    return sqlite3.connect(f"file:{quote(path)}?{options}", uri=True, check_same_thread=False)


def problems(conn: sqlite3.Connection, most: int = 3) -> list[str]:
    """What ``PRAGMA quick_check`` finds wrong (none: the file is sound); a file too
    damaged to check raises ``sqlite3.DatabaseError``."""
    rows = [row[0] for row in conn.execute(f"PRAGMA quick_check({int(most)})")]
    return [] if rows == ["ok"] else rows


def stored_schema_version(conn: sqlite3.Connection) -> int:
    """The schema version the catalog records (``catalog_info``), 0 for a catalog not set up."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'catalog_info'").fetchone():
        return 0
    row = conn.execute("SELECT value FROM catalog_info WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def count_locations(conn: sqlite3.Connection) -> int:
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'cache_state'").fetchone():
        return 0
    return int(conn.execute("SELECT count(*) FROM cache_state").fetchone()[0])


def recovery(path: str) -> str:
    """What to do with a damaged catalog file: the files' part comes back from disk, the
    users' part (tags, metadata) only from a backup."""
    return (
        f"stop assetd, move {path} aside (with its -wal and -shm files), then `assetd scan` "
        "(or start assetd) rebuilds the catalog from the files on disk; user tags and "
        "metadata come back only from a backup made with `assetd backup FILE` (copy it "
        f"over {path} instead, then start assetd)"
    )
