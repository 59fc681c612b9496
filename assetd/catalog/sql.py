"""Raw SQL on either engine, and the layout of the rows the catalog's queries return.

Building SQL through peewee costs far more than the statement itself on the per-file
paths of a pass, so those paths write plain statements with ``?`` placeholders; the
store rewrites them for the engine's paramstyle. Rows come back as tuples in the
layouts below, turned into the catalog's types here and nowhere else.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import peewee as pw

from assetd.catalog.engine import shown_url, unavailable
from assetd.catalog.schema import Models, define_models, to_i64
from assetd.decide import CachedState, FileStat
from assetd.drivers import POSTGRES_SCHEMES
from assetd.exceptions import NotFoundError
from assetd.paths import path_json, prefix_upper_bound

__all__ = [
    "BARE_STATE_SQL",
    "CHUNK",
    "INSERT_PARAMS",
    "LOCATION_SQL",
    "STATE_SQL",
    "STORED_STAT",
    "RowConflict",
    "StateRow",
    "Store",
    "chunks",
    "insert_statements",
    "location_json",
    "marks",
    "prefix_ranges",
    "stat_params",
    "state_of_row",
]

CHUNK = 2000  # rows per IN (...) list and per write batch
WRITE_LOCK = 0x61737364  # the advisory lock of a shared catalog's writers ("assd")


def _variable_limit() -> int:
    """Parameters one SQLite statement may take in this build (999 before 3.32, 32766
    since); fewer, larger statements run SQLite's program fewer times."""
    connection = sqlite3.connect(":memory:")
    try:
        return int(connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    finally:
        connection.close()


# Parameters per multi-row INSERT: a write batch of locations fits in one statement.
INSERT_PARAMS = min(_variable_limit(), 32766)
_ONE_ROW_INSERT = re.compile(r"(INSERT INTO .+? VALUES )(\([^()]*\))", re.DOTALL)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def marks(items: Sequence[Any]) -> str:
    """Placeholders for an ``IN (...)`` list."""
    return ", ".join("?" * len(items))


def prefix_ranges(prefixes: Sequence[bytes]) -> tuple[str, list[bytes]]:
    """SQL matching a location under any of ``prefixes`` (byte ranges), and its params."""
    ranges = " OR ".join("(l.file_path >= ? AND l.file_path < ?)" for _ in prefixes)
    return ranges, [b for p in prefixes for b in (p, prefix_upper_bound(p))]


def insert_statements(sql: str, rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, list[Any]]]:
    """The statements that insert ``rows`` with ``sql`` (``INSERT ... VALUES (?, ...)``,
    one row's values): each carries as many rows as :data:`INSERT_PARAMS` allows.

    One statement of many rows runs SQLite's program once, where ``executemany`` runs
    it, and resets it, per row.
    """
    match = _ONE_ROW_INSERT.fullmatch(sql)
    if match is None:
        raise ValueError(f"not a one-row INSERT ... VALUES: {sql!r}")
    head, row = match.groups()
    for part in chunks(rows, max(1, INSERT_PARAMS // max(1, row.count("?")))):
        yield head + ", ".join([row] * len(part)), [value for r in part for value in r]


class RowConflict(Exception):
    """An insert met a row that is already there (a path or a hash is unique)."""


@contextmanager
def _conflicts() -> Iterator[None]:
    """Unique-key violations, whichever driver raised them, as :class:`RowConflict`."""
    try:
        yield
    except Exception as exc:
        # peewee's, sqlite3's and psycopg's (UniqueViolation) share the DB-API name.
        if any(cls.__name__ == "IntegrityError" for cls in type(exc).__mro__):
            raise RowConflict(str(exc)) from exc
        raise


class Store:
    """One database and the primitives every part of the catalog writes with.

    ``node`` names the daemon that owns the roots it registers; ``shared`` says several
    nodes may write (PostgreSQL). :meth:`now` is the catalog's clock.
    """

    def __init__(
        self, db: pw.Database, url: str, *, node: str | None, now: Callable[[], float]
    ) -> None:
        self.db = db
        self.url = url
        self.node = node or socket.gethostname()
        self.shared = url.startswith(POSTGRES_SCHEMES)
        self.sqlite = isinstance(db, pw.SqliteDatabase)  # the embedded default
        self.models: Models = define_models(db)
        self._clock = now
        self._floor = 0.0  # the catalog's time never goes back: see now()

    def now(self) -> float:
        """Wall-clock time for the catalog's records, never earlier than one already made.

        If the clock jumps back, time stands still for the catalog until the clock has
        caught up: change times stay in order, and a location marked missing during the
        jump does not look a day older than it is once the clock is put right (which
        would let ``cleanup --missing-older-than`` delete it early).
        """
        t = self._clock()
        if t < self._floor:
            return self._floor
        self._floor = t
        return t

    def not_found(self, path: bytes) -> NotFoundError:
        """The error for a path this catalog does not have, naming the catalog (another
        configuration may name another one)."""
        return NotFoundError(f"{os.fsdecode(path)} is not in the catalog {shown_url(self.url)}")

    def not_before(self, t: float) -> None:
        """The clock never goes back past ``t`` (the newest time already recorded)."""
        self._floor = max(self._floor, t)

    def _sql(self, text: str) -> str:
        return text if self.db.param == "?" else text.replace("?", self.db.param)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with unavailable():
            return list(self.db.execute_sql(self._sql(sql), tuple(params)).fetchall())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement that returns no rows; the number of rows it changed."""
        with unavailable():
            return int(self.db.execute_sql(self._sql(sql), tuple(params)).rowcount)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with unavailable(), _conflicts():
                cursor = self.db.cursor()
                for batch in chunks(rows):
                    cursor.executemany(self._sql(sql), batch)

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` with ``sql``, one row's ``INSERT ... VALUES (?, ...)``: on
        SQLite in statements of many rows (:func:`insert_statements`); psycopg already
        sends an ``executemany`` in one pipeline, which PostgreSQL takes faster."""
        if not self.sqlite:
            self.execute_many(sql, rows)
        elif rows:
            with unavailable(), _conflicts():
                cursor = self.db.cursor()
                for text, params in insert_statements(sql, rows):
                    cursor.execute(self._sql(text), params)

    def allocate_ids(self, table: str, count: int) -> list[int]:
        """``count`` fresh ids for ``table``; insert them before allocating again.

        SQLite hands out max(id) + 1, and the write lock (taken at BEGIN) keeps anyone
        else from inserting meanwhile; PostgreSQL draws them from the table's sequence.
        """
        if count == 0:
            return []
        if isinstance(self.db, pw.PostgresqlDatabase):
            sequence = f"pg_get_serial_sequence('{table}', 'id')"
            rows = self.query(f"SELECT nextval({sequence}) FROM generate_series(1, ?)", [count])
            return [int(r[0]) for r in rows]
        (top,) = self.query(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')[0]
        return list(range(int(top) + 1, int(top) + 1 + count))

    def upsert(self, model: Any, conflict: Any, **values: Any) -> None:
        """Insert a row, or update the one with the same ``conflict`` column (SQLite and
        PostgreSQL alike; peewee's replace() is SQLite's and MySQL's only)."""
        update = {getattr(model, k): v for k, v in values.items() if k != conflict.name}
        model.insert(**values).on_conflict(conflict_target=[conflict], update=update).execute()

    def lock_writers(self) -> None:
        """On a shared catalog, one writing transaction at a time across all the nodes.

        SQLite has one writer by nature (the write lock, taken at BEGIN). On PostgreSQL
        the same rule keeps every check-then-write of a batch sound when two nodes hash
        the same content at once, and keeps sequence numbers in commit order; the lock
        is the transaction's and goes with its commit or rollback.
        """
        if self.shared:
            self.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))


# -- the layout of rows ---------------------------------------------------------------

# A cache state as the reading queries return it: (id, path, root, asset id, size,
# mtime_ns, ctime_ns, inode, device, needs_verify, is_missing, hash); inode and device
# as stored (signed 64-bit), the flags as the engine gives them (0/1 or bools).
StateRow = tuple[Any, ...]
STORED_STAT = slice(4, 9)  # a row's size, mtime_ns, ctime_ns, inode, device
_STATE_COLUMNS = (
    "SELECT l.id, l.file_path, l.root, l.asset_id, l.size, l.mtime_ns, l.ctime_ns, l.inode, "
    "l.device, l.needs_verify, l.is_missing, "
)
STATE_SQL = _STATE_COLUMNS + "a.hash FROM cache_state l{index} JOIN asset a ON a.id = l.asset_id "
# A pass's merge needs no hash: without the join a restart reads its rows much faster.
BARE_STATE_SQL = _STATE_COLUMNS + "NULL FROM cache_state l{index} "
# A *Location* row: (id, path, root, asset id, hash, size, mtime_ns, mime, missing, verify).
LOCATION_SQL = (
    "SELECT l.id, l.file_path, l.root, l.asset_id, a.hash, l.size, l.mtime_ns, "
    "a.mime_type, l.is_missing, l.needs_verify FROM cache_state l "
    "JOIN asset a ON a.id = l.asset_id "
)
_U64 = 1 << 64  # an unsigned number stored as a signed BIGINT


def state_of_row(r: StateRow) -> CachedState:
    """The :class:`CachedState` of one row (positional and inlined: a pass builds many)."""
    return CachedState(
        r[0],
        bytes(r[1]),
        r[2],
        r[3],
        FileStat(
            r[4], r[5], r[6], r[7] + _U64 if r[7] < 0 else r[7], r[8] + _U64 if r[8] < 0 else r[8]
        ),
        bool(r[9]),
        bool(r[10]),
        r[11],
    )


def location_json(values: Sequence[Any], tags: list[str], user_tags: list[str]) -> dict[str, Any]:
    """A *Location* from (path, root, asset id, hash, size, mtime_ns, mime, missing, verify),
    its tags and, among them, those a user gave (the others are automatic)."""
    path, root, asset_id, digest, size, mtime_ns, mime, is_missing, needs_verify = values
    return {
        **path_json(bytes(path)),
        "root": root,
        "asset_id": asset_id,
        "hash": digest,
        "size": size,
        "mtime_ns": mtime_ns,
        "mime_type": mime,
        "is_missing": bool(is_missing),
        "needs_verify": bool(needs_verify),
        "tags": tags,
        "user_tags": user_tags,
    }


def stat_params(stat: FileStat) -> tuple[int | None, ...]:
    """A stat as SQL parameters for raw statements (inode and device as signed 64-bit)."""
    return (
        stat.size,
        stat.mtime_ns,
        stat.ctime_ns,
        to_i64(stat.inode),
        to_i64(stat.device),
    )
