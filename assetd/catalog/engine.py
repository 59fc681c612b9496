"""Opening a catalog's database: SQLite by default, PostgreSQL by URL, any peewee URL else.

Errors that pass (a lock held too long, a full disk, a lost server) become
:class:`~assetd.exceptions.CatalogUnavailableError`, which every writer retries.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee as pw

from assetd import drivers
from assetd.drivers import POSTGRES_SCHEMES, sqlite_file
from assetd.exceptions import CatalogError, CatalogUnavailableError

__all__ = [
    "BUSY_TIMEOUT_S",
    "SQLITE_PRAGMAS",
    "close_database",
    "drop_if_broken",
    "first_error",
    "open_database",
    "said",
    "shown_url",
    "unavailable",
    "what_to_do",
]

BUSY_TIMEOUT_S = 30.0

# Every connection to a SQLite catalog, in this order (the page size must come before
# the first write of a new file; an existing catalog keeps the one it was made with).
SQLITE_PRAGMAS: dict[str, object] = {
    # Pages of 16 KiB: a pass's inserts land in index pages all over the file, and each
    # page a transaction changed is one frame in the log, written with two calls and
    # copied back at the checkpoint; with larger pages there are a quarter as many.
    "page_size": 16384,
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": int(BUSY_TIMEOUT_S * 1000),
    "synchronous": "full",  # a sent sequence number must survive a power cut
    # 4 MiB of pages (the default is 2 MiB): a batch of a few thousand rows changes more
    # pages than 2 MiB hold, and a changed page pushed out of the cache goes to the log
    # before its commit, to be written there again by the commit.
    "cache_size": -4096,
    # The statement journal a multi-row insert keeps (to undo just that statement) in
    # memory, not in a temporary file written page by page.
    "temp_store": "memory",
}


def first_error(exc: BaseException) -> BaseException:
    """The error that started it: SQLite rolls back by itself on a full disk, so the
    driver's own rollback then fails with a message that hides the reason."""
    while isinstance(exc.__context__, pw.DatabaseError | sqlite3.DatabaseError):
        exc = exc.__context__
    return exc


def shown_url(url: str) -> str:
    """A database URL fit for a log or a message: without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def what_to_do(url: str, message: str) -> str:
    """The advice that goes after an error opening the catalog at ``url``."""
    if "malformed" in message or "not a database" in message:
        from assetd.catalog.readonly import recovery

        return f"the catalog file is damaged: {recovery(sqlite_file(url) or url)}"
    folder = os.path.dirname(sqlite_file(url) or "")
    if folder and _read_only(folder):
        return (
            f"{folder} is on a read-only file system: choose a writable place with --db or "
            "[daemon] database, or mount it writable"
        )
    if "unable to open" in message or "readonly" in message or "read-only" in message:
        return (
            "check that its folder exists and that this user may write there, or choose "
            "another with --db or [daemon] database"
        )
    if url.startswith(POSTGRES_SCHEMES):
        return "check [daemon] database (or --db) and that the server runs and lets you in"
    return "check [daemon] database (or --db)"


def _read_only(folder: str) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def said(exc: BaseException) -> str:
    """An error's message on one line (libpq's run over several)."""
    return " ".join(str(exc).split())


@contextmanager
def unavailable() -> Iterator[None]:
    """The database could not be reached or is busy: an error that passes (the callers
    retry), not a bug."""
    try:
        yield
    except (pw.OperationalError, pw.InterfaceError) as exc:
        raise CatalogUnavailableError(
            f"the catalog cannot be reached: {said(first_error(exc))}"
        ) from exc


def open_database(url: str) -> pw.Database:
    """A peewee database for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite:"):
        file = sqlite_file(url)
        if file is not None:
            try:
                os.makedirs(os.path.dirname(file), exist_ok=True)
            except OSError as exc:
                raise CatalogError(
                    f"cannot make the catalog's folder {os.path.dirname(file)}: "
                    f"{exc.strerror or exc}; choose another place with --db or "
                    "[daemon] database"
                ) from exc
        return _Sqlite(
            file or url.split(":///", 1)[-1],
            timeout=BUSY_TIMEOUT_S,
            lock_type="IMMEDIATE",  # take the write lock at BEGIN: no deadlocked upgrades
            pragmas=SQLITE_PRAGMAS,
        )
    if url.startswith(POSTGRES_SCHEMES):
        if drivers.kept_out():
            raise CatalogError(
                f"this process was started for a SQLite catalog; {shown_url(url)} needs "
                "another run of assetd"
            )
        try:
            import psycopg  # noqa: F401  (the driver: peewee would fall back to psycopg2)
        except ImportError as exc:
            raise CatalogError(
                "PostgreSQL needs the psycopg driver: pip install 'assetd[postgres]'"
            ) from exc
        return _postgres(url)
    try:
        from playhouse.db_url import connect as connect_url  # it imports every backend

        return connect_url(url)
    except (RuntimeError, ValueError, ImportError) as exc:
        raise CatalogError(f"cannot use database {shown_url(url)!r}: {exc}") from exc


class _Sqlite(pw.SqliteDatabase):
    """peewee's SQLite; a statement that cannot run now (locked past the busy timeout,
    disk full, I/O) raises :class:`CatalogUnavailableError`: callers retry it."""

    def execute_sql(self, sql: str, params: Any = None, commit: Any = None) -> Any:
        with unavailable():
            return super().execute_sql(sql, params)


class _Postgres(pw.PostgresqlDatabase):
    """peewee's PostgreSQL through psycopg 3, dropping a connection the server broke, and
    closing those of threads that have ended.

    After the server went away (restarted, failed over), the old connection is dead; it
    is closed on the first error, outside a transaction at once and otherwise when the
    transaction has unwound, so that the next statement connects again.

    peewee gives each thread a connection of its own and never closes it when the thread
    ends; a daemon that starts a thread per pass would pile up server connections. So
    each connection is remembered with its thread, and those of ended threads are closed
    whenever another is opened, and all of them by :meth:`close_all`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owners: list[tuple[threading.Thread, Any]] = []
        self._owners_lock = threading.Lock()

    def _connect(self) -> Any:
        conn = super()._connect()  # type: ignore[misc]  # (peewee has no stubs for it)
        with self._owners_lock:
            ended = [(t, c) for t, c in self._owners if not t.is_alive()]
            self._owners = [(t, c) for t, c in self._owners if t.is_alive() and not c.closed]
            self._owners.append((threading.current_thread(), conn))
        for _, old in ended:
            with contextlib.suppress(Exception):
                old.close()
        return conn

    def close_all(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
        with self._owners_lock:
            owners, self._owners = self._owners, []
        for _, conn in owners:
            with contextlib.suppress(Exception):
                conn.close()

    def execute_sql(self, sql: str, params: Any = None, commit: Any = None) -> Any:
        try:
            with unavailable():
                return super().execute_sql(sql, params)
        except CatalogUnavailableError:
            if not self.in_transaction():
                self.drop_if_broken()
            raise

    def drop_if_broken(self) -> None:
        state = getattr(self, "_state")  # noqa: B009 (peewee's per-thread connection state)
        conn = state.conn
        if conn is not None and (conn.closed or conn.broken):
            with contextlib.suppress(Exception):
                conn.close()
            state.reset()


def _postgres(url: str) -> pw.Database:
    """``postgresql://user:password@host:port/database?option=value`` (libpq's options,
    such as ``sslmode``, pass through)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    params: dict[str, Any] = dict(parse_qsl(parts.query))
    for key, value in (("user", parts.username), ("password", parts.password)):
        if value:
            params[key] = unquote(value)
    if parts.hostname:
        params["host"] = parts.hostname
    if parts.port:
        params["port"] = parts.port
    params.setdefault("connect_timeout", 10)
    return _Postgres(unquote(parts.path.lstrip("/")) or None, prefer_psycopg3=True, **params)


def close_database(db: pw.Database) -> None:
    """Close ``db``: on PostgreSQL, every thread's connection."""
    if isinstance(db, _Postgres):
        db.close_all()
    else:
        db.close()


def drop_if_broken(db: pw.Database) -> None:
    """After a failed transaction, drop this thread's connection if the server broke it."""
    if isinstance(db, _Postgres):
        db.drop_if_broken()
