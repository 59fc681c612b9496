"""The catalog's part: readable, sound, a schema this assetd knows, room on its disk, a
state directory it can write."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

from assetd.catalog.readonly import (
    count_locations,
    open_read_only,
    problems,
    recovery,
    stored_schema_version,
)
from assetd.doctor.findings import Finding, fail, ok, warn
from assetd.drivers import sqlite_file

__all__ = [
    "GiB",
    "MiB",
    "check_catalog",
    "check_disk",
    "check_state_dir",
    "postgres_info",
    "schema_verdict",
    "space_verdict",
]

MiB = 1 << 20
GiB = 1 << 30
FAIL_FREE_BYTES = 100 * MiB  # below this, a burst of changes can fill the disk
WARN_FREE_BYTES = 1 * GiB


def schema_verdict(version: int, known: int) -> Finding:
    """The schema version a catalog records, against the one this assetd writes."""
    if version > known:
        return fail(
            "catalog",
            f"schema version {version}: made by a newer assetd "
            f"(this one knows {known}) and cannot be opened by it",
            "upgrade assetd (pip install --upgrade assetd) or use another catalog (--db)",
        )
    if version == 0:
        return ok("catalog", "no tables yet: set up on next start")
    if version < known:
        return ok(
            "catalog",
            f"schema version {version}: upgraded to {known} on "
            "next start (assetd backup FILE first keeps a way back)",
        )
    return ok("catalog", f"schema version {version}, this assetd's")


def check_catalog(url: str) -> list[Finding]:
    """The catalog can be read, passes ``PRAGMA quick_check``, and has a schema this
    assetd can use."""
    from assetd.catalog.schema import SCHEMA_VERSION

    path = sqlite_file(url)
    if path is None:
        return _check_other_catalog(url, SCHEMA_VERSION)
    if not os.path.exists(path):
        return [ok("catalog", f"{path} not made yet; assetd run or scan makes it")]
    try:
        conn = open_read_only(path)
        try:
            found = problems(conn)
            version = stored_schema_version(conn) if not found else 0
            locations = count_locations(conn) if not found else 0
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) not in (
            sqlite3.SQLITE_CORRUPT,
            sqlite3.SQLITE_NOTADB,
        ):
            return [
                fail(
                    "catalog",
                    f"cannot read {path}: {exc}",
                    "run doctor as the user assetd runs as; that user must be able "
                    "to read and write the file and its folder",
                )
            ]
        found = [str(exc)]
    if found:
        return [fail("catalog", f"{path} is damaged: {'; '.join(found)}", recovery(path))]
    return [
        ok("catalog", f"{path} passes quick_check ({locations} locations)"),
        schema_verdict(version, SCHEMA_VERSION),
    ]


def _check_other_catalog(url: str, known: int) -> list[Finding]:
    """A PostgreSQL catalog: reachable, and its schema version (the server checks its
    own files)."""
    from assetd.catalog.engine import said, shown_url

    if not url.startswith(("postgres:", "postgresql:")):
        return [ok("catalog", f"{shown_url(url)}: not checked (not SQLite or PostgreSQL)")]
    try:
        info = postgres_info(url)
    except ImportError:
        return [
            fail(
                "catalog",
                "PostgreSQL needs the psycopg driver",
                "pip install 'assetd[postgres]'",
            )
        ]
    except Exception as exc:  # psycopg's errors (and libpq's) share no base with ours
        return [
            fail(
                "catalog",
                f"cannot reach {shown_url(url)}: {said(exc)}",
                "check that the server runs and the URL's user, password, host, "
                "port and database (pg_isready -d URL)",
            )
        ]
    if info is None:
        return [ok("catalog", f"{shown_url(url)} has no catalog yet; assetd run or scan makes it")]
    return [
        ok("catalog", f"{shown_url(url)} answers"),
        schema_verdict(int(info.get("schema_version", 0)), known),
    ]


def postgres_info(url: str) -> dict[str, str] | None:
    """The catalog's ``catalog_info`` rows, read in a read-only session; None without one."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        if conn.execute("SELECT to_regclass('catalog_info')").fetchone() == (None,):
            return None
        return {k: v for k, v in conn.execute("SELECT key, value FROM catalog_info")}


def space_verdict(folder: str, free: int, catalog_bytes: int) -> Finding:
    """Free space where the catalog lives: an upgrade or a big pass may need its size again."""
    said = (
        f"{free / GiB:.2f} GiB free in {folder} (the catalog takes {catalog_bytes / MiB:.1f} MiB)"
    )
    fix = (
        "free space there, or move the catalog: stop assetd, move the file, point "
        "[daemon] database (or --db) at it, start"
    )
    if free < FAIL_FREE_BYTES:
        return fail("disk", f"only {said}: writes to the catalog will fail", fix)
    if free < WARN_FREE_BYTES or free < 2 * catalog_bytes:
        return warn("disk", f"only {said}", fix)
    return ok("disk", said)


def check_disk(
    url: str, *, statvfs: Callable[[str], os.statvfs_result] = os.statvfs
) -> list[Finding]:
    path = sqlite_file(url)
    if path is None:
        return []
    folder = _existing(os.path.dirname(path))
    st = statvfs(folder)
    size = sum(os.path.getsize(f) for f in (path, path + "-wal") if os.path.isfile(f))
    return [space_verdict(folder, st.f_bavail * st.f_frsize, size)]


def _existing(path: str) -> str:
    """``path``, or its nearest folder that exists."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def check_state_dir(url: str, *, access: Callable[[str, int], bool] = os.access) -> list[Finding]:
    """The catalog's folder can be written (the catalog, its WAL, the runtime file), or made."""
    path = sqlite_file(url)
    if path is None:
        return []
    folder = os.path.dirname(path)
    fix = (
        f"make it the assetd user's: mkdir -p {folder} && chown assetd: {folder} (under "
        "systemd, StateDirectory=assetd does this for /var/lib/assetd), or choose another "
        "--db"
    )
    if os.path.isdir(folder):
        if not access(folder, os.W_OK | os.X_OK):
            return [fail("state-dir", f"{folder} cannot be written by this user", fix)]
        if os.path.exists(path) and not access(path, os.R_OK | os.W_OK):
            return [fail("state-dir", f"{path} cannot be written by this user", fix)]
        return [ok("state-dir", f"{folder} is writable")]
    if os.path.exists(folder):
        return [fail("state-dir", f"{folder} is not a folder", fix)]
    parent = _existing(folder)
    if os.path.isdir(parent) and access(parent, os.W_OK | os.X_OK):
        return [ok("state-dir", f"{folder} does not exist yet; assetd makes it on first start")]
    return [
        fail(
            "state-dir",
            f"{folder} does not exist and {parent} cannot be written by this user",
            fix,
        )
    ]
