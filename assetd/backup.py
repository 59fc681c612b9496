"""``assetd backup FILE``: a consistent copy of a SQLite catalog, made while a daemon writes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from typing import Any

from assetd.catalog.engine import shown_url
from assetd.catalog.readonly import (
    count_locations,
    open_read_only,
    problems,
    recovery,
    stored_schema_version,
    writer_present,
)
from assetd.drivers import sqlite_file
from assetd.exceptions import CatalogError, UsageError

__all__ = ["STEP_PAGES", "backup_catalog"]

# Pages copied per step. The copy reads one snapshot (a read transaction held across the
# steps), which in WAL mode never blocks the daemon's writes; steps only keep each call
# short, so that an interrupt is seen soon.
STEP_PAGES = 1024

# A writer that appears while a catalog with none is copied (the copy then read the main
# file alone) makes the copy start again; this many times at most.
ATTEMPTS = 3


def backup_catalog(database_url: str, target: str) -> dict[str, Any]:
    """Copy the catalog at ``database_url`` to ``target`` (which must not exist), checked
    with ``PRAGMA quick_check``; what was copied, as ``backup`` prints it."""
    source = sqlite_file(database_url)
    if source is None:
        raise UsageError(_not_sqlite(database_url, target))
    target = os.path.abspath(target)
    folder = os.path.dirname(target)
    if os.path.lexists(target):
        raise UsageError(f"{target} exists already; name a new file for the backup")
    if not os.path.isdir(folder):
        raise UsageError(f"{folder} is not a folder; make it first, or name a file elsewhere")
    if not os.path.exists(source):
        raise CatalogError(f"catalog {source} does not exist: there is nothing to back up yet")
    fd, part = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".part")
    os.close(fd)
    try:
        summary = _copy_checked(source, part)
        _publish(part, target)
    except BaseException:
        for leftover in (part, part + "-journal", part + "-wal", part + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise
    return {"backup": target, "bytes": os.path.getsize(target), **summary}


def _not_sqlite(url: str, target: str) -> str:
    if url.startswith(("postgres:", "postgresql:")):
        return (
            "a PostgreSQL catalog is backed up with PostgreSQL's own tools, for example: "
            f"pg_dump --format=custom --file={target} '{shown_url(url)}'"
        )
    return f"only a SQLite catalog file can be backed up this way, not {shown_url(url)}"


def _copy_checked(source: str, part: str) -> dict[str, Any]:
    try:
        for _ in range(ATTEMPTS):
            had_writer = writer_present(source)
            _copy(source, part)
            if had_writer or not writer_present(source):
                break
        dst = sqlite3.connect(part)
        try:
            found = problems(dst)
            if found:
                raise CatalogError(
                    f"catalog {source} is damaged ({found[0]}); the backup is not kept. "
                    f"To recover: {recovery(source)}"
                )
            summary = {"schema": stored_schema_version(dst), "locations": count_locations(dst)}
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        raise CatalogError(
            f"catalog {source} cannot be read ({exc}); the backup is not kept. "
            f"To recover: {recovery(source)}"
        ) from exc
    return summary


def _copy(source: str, part: str) -> None:
    """One snapshot of ``source`` into the empty file ``part``."""
    src = open_read_only(source)
    src.isolation_level = None
    dst = sqlite3.connect(part)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts here
        src.backup(dst, pages=STEP_PAGES)
        src.execute("COMMIT")
    finally:
        dst.close()
        src.close()


def _publish(part: str, target: str) -> None:
    """Make the copy durable, then give it its name: a crash leaves no half file named so."""
    fd = os.open(part, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(part, target)  # fails if target appeared meanwhile: never overwrite a file
    except FileExistsError:
        raise UsageError(f"{target} appeared during the backup; the backup is not kept") from None
    except OSError:  # a file system without hard links
        os.rename(part, target)
    else:
        os.unlink(part)
    folder = os.open(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
