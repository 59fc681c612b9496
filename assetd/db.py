"""The catalog: connection, schema upgrades, the change log and every named query.

Paths are bytes throughout. Prefix tests are byte ranges (``prefix <= path < upper``),
exact and case-sensitive on SQLite and PostgreSQL alike, and answered from the index.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import peewee as pw

from assetd import drivers
from assetd.config import sqlite_file
from assetd.decide import CachedState, FileStat
from assetd.drivers import POSTGRES_SCHEMES
from assetd.exceptions import (
    CatalogError,
    CatalogUnavailableError,
    InvalidRequestError,
    NotFoundError,
    RootOwnedError,
    SchemaError,
)
from assetd.jsontext import dumps
from assetd.paths import auto_tags, path_json, prefix_upper_bound
from assetd.schema import SCHEMA_VERSION, Models, define_models, migrations, to_i64

__all__ = [
    "CHUNK",
    "INSERT_PARAMS",
    "STORED_STAT",
    "Catalog",
    "Change",
    "ChangeListener",
    "StateRow",
    "chunks",
    "insert_statements",
    "location_json",
    "open_database",
    "shown_url",
    "stat_params",
    "state_of_row",
]

CHUNK = 2000  # rows per IN (...) list and per write batch
WRITE_LOCK = 0x61737364  # the advisory lock of a shared catalog's writers ("assd")
CHANGE_CHANNEL = "assetd_change"  # NOTIFY channel: a transaction committed changes
BUSY_TIMEOUT_S = 30.0
MISSING_TAG = "missing"
_THE_LOG = "name = 'change'"  # the change log's row of sequence_counter


class Change(NamedTuple):
    """One committed change, as the change log keeps it and the feed sends it."""

    seq: int
    root: str
    body: bytes  # the message as JSON, without "type" and "seq"

    def json(self) -> bytes:
        """The whole feed message as JSON, spliced rather than encoded again."""
        return b'{"type":"change","seq":%d,%s' % (self.seq, self.body[1:])

    def message(self) -> dict[str, Any]:
        return {"type": "change", "seq": self.seq, **json.loads(self.body)}


ChangeListener = Callable[[list[Change]], None]

log = logging.getLogger(__name__)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Parameters per multi-row INSERT: the least limit any SQLite build has (999 before 3.32).
INSERT_PARAMS = 999
_ONE_ROW_INSERT = re.compile(r"(INSERT INTO .+? VALUES )(\([^()]*\))", re.DOTALL)


def insert_statements(sql: str, rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, list[Any]]]:
    """The statements that insert ``rows`` with ``sql`` (``INSERT ... VALUES (?, ...)``,
    one row's values): each carries as many rows as :data:`INSERT_PARAMS` allows.

    One statement of many rows runs SQLite's program once, where ``executemany`` runs
    it, and resets it, per row: a cold index spends half as long in its inserts.
    """
    match = _ONE_ROW_INSERT.fullmatch(sql)
    if match is None:
        raise ValueError(f"not a one-row INSERT ... VALUES: {sql!r}")
    head, row = match.groups()
    for part in chunks(rows, max(1, INSERT_PARAMS // max(1, row.count("?")))):
        yield head + ", ".join([row] * len(part)), [value for r in part for value in r]


def _prefix_ranges(prefixes: Sequence[bytes]) -> tuple[str, list[bytes]]:
    """SQL matching a location under any of ``prefixes`` (byte ranges), and its params."""
    ranges = " OR ".join("(l.file_path >= ? AND l.file_path < ?)" for _ in prefixes)
    return ranges, [b for p in prefixes for b in (p, prefix_upper_bound(p))]


def _first(exc: BaseException) -> BaseException:
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


def _said(exc: BaseException) -> str:
    """An error's message on one line (libpq's run over several)."""
    return " ".join(str(exc).split())


@contextmanager
def _unavailable() -> Iterator[None]:
    """The database could not be reached or is busy: an error that passes (the callers
    retry), not a bug."""
    try:
        yield
    except (pw.OperationalError, pw.InterfaceError) as exc:
        raise CatalogUnavailableError(
            f"the catalog cannot be reached: {_said(_first(exc))}"
        ) from exc


def open_database(url: str) -> pw.Database:
    """A peewee database for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite:"):
        file = sqlite_file(url)
        if file is not None:
            os.makedirs(os.path.dirname(file), exist_ok=True)
        return _Sqlite(
            file or url.split(":///", 1)[-1],
            timeout=BUSY_TIMEOUT_S,
            lock_type="IMMEDIATE",  # take the write lock at BEGIN: no deadlocked upgrades
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": int(BUSY_TIMEOUT_S * 1000),
                "synchronous": "full",  # a sent sequence number must survive a power cut
            },
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
        with _unavailable():
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
            with _unavailable():
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


class Catalog:
    """One catalog database. Readers may use it from any thread; writes serialise."""

    def __init__(
        self,
        url: str,
        *,
        now: Callable[[], float] = time.time,
        upgrade: bool = True,
        node: str | None = None,
    ) -> None:
        self.url = url
        self.node = node or socket.gethostname()  # the owner of the roots it registers
        self.shared = url.startswith(POSTGRES_SCHEMES)  # several nodes may write
        self._clock = now
        self._floor = 0.0  # the catalog's time never goes back: see now()
        self.db = open_database(url)
        self.sqlite = isinstance(self.db, pw.SqliteDatabase)  # the embedded default
        self.m: Models = define_models(self.db)
        self._write_lock = threading.RLock()
        self._depth = 0
        self._pending: list[tuple[str, int, bytes | None, dict[str, Any] | None]] = []
        self._published: list[Change] = []
        self.listeners: list[ChangeListener] = []
        # (newest changes to keep, oldest age in seconds to keep); None: keep everything.
        self.retention: tuple[int | None, float | None] = (None, None)
        try:
            if upgrade:
                self._upgrade()
            elif self.schema_version() != SCHEMA_VERSION:
                raise SchemaError(
                    f"catalog {shown_url(url)} is not at schema version {SCHEMA_VERSION}"
                )
            self.catalog_id = self.m.Info.get_by_id("catalog_id").value
            self._floor = self.m.Change.select(pw.fn.MAX(self.m.Change.ts)).scalar() or 0.0
        except (pw.DatabaseError, sqlite3.Error, OSError) as exc:
            raise CatalogError(f"cannot open catalog {shown_url(url)}: {_said(exc)}") from exc

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

    def close(self) -> None:
        if isinstance(self.db, _Postgres):
            self.db.close_all()
        else:
            self.db.close()

    # -- raw SQL for the hot paths --------------------------------------------------
    # Building SQL through peewee costs ~100 µs a statement; the per-file paths of a pass
    # use these instead. Statements are written with ``?`` and run on either engine.

    def _sql(self, text: str) -> str:
        return text if self.db.param == "?" else text.replace("?", self.db.param)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with _unavailable():
                cursor = self.db.cursor()
                for batch in chunks(rows, 2000):
                    cursor.executemany(self._sql(sql), batch)

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` with ``sql``, one row's ``INSERT ... VALUES (?, ...)``: on
        SQLite in statements of many rows (:func:`insert_statements`). psycopg already
        sends an ``executemany`` in one pipeline, and a PostgreSQL catalog took its tags
        about 8% faster that way than in statements of many rows."""
        if not self.sqlite:
            self.execute_many(sql, rows)
        elif rows:
            with _unavailable():
                cursor = self.db.cursor()
                for text, params in insert_statements(sql, rows):
                    cursor.execute(self._sql(text), params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with _unavailable():
            return list(self.db.execute_sql(self._sql(sql), tuple(params)).fetchall())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement that returns no rows; the number of rows it changed."""
        with _unavailable():
            return int(self.db.execute_sql(self._sql(sql), tuple(params)).rowcount)

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

    # -- schema ---------------------------------------------------------------------

    def schema_version(self) -> int:
        if not self.db.table_exists("catalog_info"):
            return 0
        row = self.m.Info.get_or_none(self.m.Info.key == "schema_version")
        return int(row.value) if row else 0

    def _upgrade(self) -> None:
        with self.db.atomic():
            self._lock_writers()  # nodes starting together: one creates, the others wait
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"catalog {shown_url(self.url)} has schema version {version}, newer than the "
                    f"{SCHEMA_VERSION} this assetd knows; upgrade assetd to open it"
                )
            for number, _what, step in migrations():
                if number > version:
                    step(self.db, self.m)
            if version < SCHEMA_VERSION:
                self._upsert(self.m.Info, self.m.Info.key, key="schema_version",
                             value=str(SCHEMA_VERSION))  # fmt: skip
            if version == 0:
                self.m.Info.create(key="catalog_id", value=uuid.uuid4().hex)

    def _upsert(self, model: Any, conflict: Any, **values: Any) -> None:
        """Insert a row, or update the one with the same ``conflict`` column (SQLite and
        PostgreSQL alike; peewee's replace() is SQLite's and MySQL's only)."""
        update = {getattr(model, k): v for k, v in values.items() if k != conflict.name}
        model.insert(**values).on_conflict(conflict_target=[conflict], update=update).execute()

    def _lock_writers(self) -> None:
        """On a shared catalog, one writing transaction at a time across all the nodes.

        SQLite has one writer by nature (the write lock, taken at BEGIN). On PostgreSQL
        the same rule keeps every check-then-write of a batch sound when two nodes hash
        the same content at once, and keeps sequence numbers in commit order; the lock
        is the transaction's and goes with its commit or rollback.
        """
        if self.shared:
            self.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))

    # -- transactions and the change log --------------------------------------------

    @contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction; the changes it logs are published after it commits."""
        with self._write_lock:
            self._depth += 1
            try:
                if self._depth == 1:
                    self._pending = []
                with self.db.atomic():
                    if self._depth == 1:
                        self._lock_writers()
                    yield
                    if self._depth == 1 and self._pending:
                        self._published = self._flush_log()
            except (pw.OperationalError, pw.InterfaceError, CatalogUnavailableError) as exc:
                self._published = []  # rolled back: nothing of it may be sent
                if self._depth > 1:
                    raise
                if isinstance(self.db, _Postgres):
                    self.db.drop_if_broken()
                cause = exc.__cause__ if isinstance(exc, CatalogUnavailableError) else exc
                raise CatalogUnavailableError(
                    f"cannot write the catalog: {_said(_first(cause or exc))}"
                ) from exc
            except BaseException:
                self._published = []
                raise
            finally:
                self._depth -= 1
        if self._depth == 0 and self._published:
            published, self._published = self._published, []
            for listener in list(self.listeners):
                listener(published)

    def log(
        self,
        op: str,
        location_id: int,
        old_path: bytes | None = None,
        *,
        location: dict[str, Any] | None = None,
    ) -> None:
        """Record a change to a location in the current transaction.

        The location is rendered when the transaction is about to commit, so the
        message shows the committed state; pass ``location`` for a row being deleted.
        """
        assert self._depth > 0, "log() outside write()"
        self._pending.append((op, location_id, old_path, location))

    def _flush_log(self) -> list[Change]:
        # Render after every write of the transaction, so tags are the committed ones.
        pending, self._pending = self._pending, []
        rendered = self.render_locations([loc_id for _, loc_id, _, given in pending if not given])
        # Plain SQL on this path, as for every statement a commit of the live path runs:
        # peewee's query building took a quarter of the writer thread's time under load.
        self.execute(
            f"UPDATE sequence_counter SET value = value + ? WHERE {_THE_LOG}", [len(pending)]
        )
        last = self.latest_seq()
        ts = self.now()
        rows: list[tuple[Any, ...]] = []
        changes: list[Change] = []
        for seq, (op, loc_id, old_path, given) in enumerate(pending, start=last - len(pending) + 1):
            location = given or rendered[loc_id]
            body: dict[str, Any] = {"op": op, "location": location}
            if old_path is not None:
                old = path_json(old_path)
                body["old_path"] = old["path"]
                if "path_bytes_b64" in old:
                    body["old_path_bytes_b64"] = old["path_bytes_b64"]
            encoded = dumps(body)
            rows.append((seq, ts, op, location["root"], encoded.decode()))
            changes.append(Change(seq, location["root"], encoded))
        self.insert_many(
            'INSERT INTO "change" (seq, ts, op, root, body) VALUES (?, ?, ?, ?, ?)', rows
        )
        if self.shared:  # every node's feed relays it, once this transaction commits
            self.query("SELECT pg_notify(?, ?)", [CHANGE_CHANNEL, str(last)])
        keep, max_age = self.retention
        if keep is not None or max_age is not None:
            self.trim_changes(keep, max_age, latest=last)  # index range deletes; usually empty
        return changes

    def latest_seq(self) -> int:
        ((value,),) = self.query(f"SELECT value FROM sequence_counter WHERE {_THE_LOG}")
        return int(value)

    def oldest_seq(self) -> int:
        """The first sequence number still in the log (latest + 1 when it is empty)."""
        # One statement, one snapshot: read apart, a change committed in between could
        # make an empty log look trimmed.
        low, latest = self.query(
            "SELECT MIN(seq), (SELECT value FROM sequence_counter WHERE name = 'change') "
            'FROM "change"'
        )[0]
        return int(low) if low is not None else int(latest) + 1

    def trim_changes(
        self, keep: int | None = None, max_age_s: float | None = None, *, latest: int | None = None
    ) -> int:
        """Forget logged changes beyond the newest ``keep`` or older than ``max_age_s``
        (``latest``: the newest sequence number, when the caller knows it)."""
        if keep is None and max_age_s is None:
            return 0
        deleted = 0
        with self.write():
            if keep is not None:
                newest = self.latest_seq() if latest is None else latest
                deleted += self.execute('DELETE FROM "change" WHERE seq <= ?', [newest - keep])
            if max_age_s is not None:
                deleted += self.execute(
                    'DELETE FROM "change" WHERE ts < ?', [self.now() - max_age_s]
                )
        return deleted

    def change_rows_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Logged changes after ``seq``, oldest first, as the feed sends them."""
        rows = self.query(
            'SELECT seq, root, body FROM "change" WHERE seq > ? ORDER BY seq LIMIT ?', [seq, limit]
        )
        return [
            Change(int(q), r or "", b.encode() if isinstance(b, str) else b) for q, r, b in rows
        ]

    def changes_since(self, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Logged changes after ``seq``, oldest first, as feed messages."""
        C = self.m.Change
        rows = C.select(C.seq, C.body).where(C.seq > seq).order_by(C.seq).limit(limit)
        return [{"type": "change", "seq": r.seq, **json.loads(r.body)} for r in rows]

    # -- reading locations ----------------------------------------------------------

    _STATE_SQL = (
        "SELECT l.id, l.file_path, l.root, l.asset_id, l.size, l.mtime_ns, l.ctime_ns, l.inode, "
        "l.device, l.needs_verify, l.is_missing, a.hash FROM cache_state l{index} "
        "JOIN asset a ON a.id = l.asset_id "
    )
    # A pass's merge needs no hash: without the join a restart reads its rows in half
    # the time (100,000 rows: 0.34 s against 0.66 s).
    _BARE_STATE_SQL = (
        "SELECT l.id, l.file_path, l.root, l.asset_id, l.size, l.mtime_ns, l.ctime_ns, l.inode, "
        "l.device, l.needs_verify, l.is_missing, NULL FROM cache_state l{index} "
    )

    def _pending_index(self) -> str:
        """SQLite's planner, without statistics, prefers the path index for a root's range
        over the small partial index of pending rows; tell it. (PostgreSQL has stats.)"""
        return " INDEXED BY cache_state_pending" if self.sqlite else ""

    def _states(
        self, where: str, params: Sequence[Any], index: str = "", *, sql: str = _STATE_SQL
    ) -> list[CachedState]:
        return [state_of_row(r) for r in self.query(sql.format(index=index) + where, params)]

    def get_states(
        self, paths: Sequence[bytes], *, with_hash: bool = True
    ) -> dict[bytes, CachedState]:
        """The cache states at these paths (``hash`` None unless ``with_hash``)."""
        sql = self._STATE_SQL if with_hash else self._BARE_STATE_SQL
        found: dict[bytes, CachedState] = {}
        for batch in chunks(list(paths)):
            where = f"WHERE l.file_path IN ({_marks(batch)})"
            found.update((s.path, s) for s in self._states(where, batch, sql=sql))
        return found

    def get_state(self, path: bytes) -> CachedState | None:
        return self.get_states([path]).get(path)

    def iter_rows(
        self,
        prefix: bytes,
        *,
        page: int = 2000,
        span: tuple[bytes | None, bytes | None] = (None, None),
    ) -> Iterator[StateRow]:
        """Every location under ``prefix`` (missing ones too), in path order, streamed, as
        raw rows (:data:`StateRow`: :func:`state_of_row` makes a state of one); only
        those in ``span`` (``[low, high)``, None: unbounded) when given. A restart's merge
        reads one of these per file and needs a whole state only for the few that
        changed."""
        low, high, op = prefix, prefix_upper_bound(prefix), ">="
        if span[0] is not None and span[0] > low:
            low = span[0]
        if span[1] is not None and span[1] < high:
            high = span[1]
        sql = self._BARE_STATE_SQL.format(index="")
        while True:
            rows = self.query(
                sql + f"WHERE l.file_path {op} ? AND l.file_path < ? ORDER BY l.file_path LIMIT ?",
                [low, high, page],
            )
            if not self.sqlite:  # SQLite hands BLOBs over as bytes already
                rows = [(r[0], bytes(r[1]), *r[2:]) for r in rows]
            yield from rows
            if len(rows) < page:
                return
            low, op = rows[-1][1], ">"

    def max_location_id(self) -> int:
        """The highest location id: at least the number of locations, and instant."""
        (high,) = self.query("SELECT MAX(id) FROM cache_state", [])[0]
        return int(high or 0)

    def quantiles(self, prefix: bytes, parts: int, least: int) -> list[bytes]:
        """Paths that cut the locations under ``prefix`` into ``parts`` runs of about
        the same length; none when there are fewer than ``least`` of them."""
        where = "WHERE file_path >= ? AND file_path < ?"
        bounds = [prefix, prefix_upper_bound(prefix)]
        (count,) = self.query(f"SELECT COUNT(*) FROM cache_state {where}", bounds)[0]
        if count < max(least, parts):
            return []
        cuts: list[bytes] = []
        step = count // parts
        for _ in range(1, parts):  # each from the last cut: one pass over the index in all
            rows = self.query(
                f"SELECT file_path FROM cache_state {where} ORDER BY file_path LIMIT 1 OFFSET ?",
                [*bounds, step],
            )
            bounds[0] = bytes(rows[0][0])
            cuts.append(bounds[0])
        return sorted(set(cuts))

    def pending_states(
        self, prefixes: Sequence[bytes], *, after: int = 0, limit: int = CHUNK
    ) -> list[CachedState]:
        """Live locations under ``prefixes`` with no or a stale hash, by id after ``after``."""
        return self._live_states_under(
            prefixes, "l.needs_verify", after, limit, self._pending_index()
        )

    def verify_states(
        self, prefixes: Sequence[bytes], *, after: int = 0, limit: int = CHUNK
    ) -> list[CachedState]:
        """Live, hashed locations under ``prefixes`` (what ``verify`` re-hashes), by id."""
        return self._live_states_under(
            prefixes, "a.hash IS NOT NULL AND NOT l.needs_verify", after, limit
        )

    def _live_states_under(
        self, prefixes: Sequence[bytes], condition: str, after: int, limit: int, index: str = ""
    ) -> list[CachedState]:
        if not prefixes:
            return []
        ranges, bounds = _prefix_ranges(prefixes)
        return self._states(
            f"WHERE {condition} AND NOT l.is_missing AND l.id > ? AND ({ranges}) "
            "ORDER BY l.id LIMIT ?",
            [after, *bounds, limit],
            index,
        )

    def sample_ids(self, prefixes: Sequence[bytes], count: int) -> list[int]:
        """The ids of ``count`` live, hashed locations under ``prefixes``, at random, sorted."""
        if not prefixes or count <= 0:
            return []
        ranges, bounds = _prefix_ranges(prefixes)
        rows = self.query(
            "SELECT l.id FROM cache_state l JOIN asset a ON a.id = l.asset_id "
            f"WHERE a.hash IS NOT NULL AND NOT l.needs_verify AND NOT l.is_missing AND ({ranges}) "
            "ORDER BY random() LIMIT ?",
            [*bounds, count],
        )
        return sorted(r[0] for r in rows)

    def states_by_id(self, ids: Sequence[int]) -> list[CachedState]:
        found: list[CachedState] = []
        for batch in chunks(list(ids)):
            found += self._states(f"WHERE l.id IN ({_marks(batch)}) ORDER BY l.id", batch)
        return found

    def count_pending_hash(self, prefixes: Sequence[bytes]) -> tuple[int, int]:
        """How many live locations under ``prefixes`` wait for a hash, and their bytes."""
        if not prefixes:
            return 0, 0
        ranges, bounds = _prefix_ranges(prefixes)
        index = self._pending_index()
        ((count, size),) = self.query(
            f"SELECT COUNT(l.id), COALESCE(SUM(l.size), 0) FROM cache_state l{index} "
            f"WHERE l.needs_verify AND NOT l.is_missing AND ({ranges})",
            bounds,
        )
        return int(count), int(size)

    def _under(self, prefix: bytes) -> Any:
        L = self.m.Location
        return (L.file_path >= prefix) & (L.file_path < prefix_upper_bound(prefix))

    def _outside_all(self, prefixes: Sequence[bytes]) -> Any:
        """Paths under none of ``prefixes``, as the ranges between them: index range scans,
        so a prune costs what lies outside the roots, not the size of the catalog."""
        L = self.m.Location
        cond: Any = None
        low: bytes | None = None
        for prefix in sorted(set(prefixes)):
            gap = (
                L.file_path < prefix
                if low is None
                else (L.file_path >= low) & (L.file_path < prefix)
            )
            cond = gap if cond is None else (cond | gap)
            low = max(low or b"", prefix_upper_bound(prefix))
        tail = L.file_path >= low
        return tail if cond is None else (cond | tail)

    def _under_any(self, prefixes: Sequence[bytes]) -> Any:
        cond: Any = None
        for prefix in prefixes:
            cond = self._under(prefix) if cond is None else (cond | self._under(prefix))
        return cond if cond is not None else pw.SQL("1 = 0")

    _LOCATION_SQL = (
        "SELECT l.id, l.file_path, l.root, l.asset_id, a.hash, l.size, l.mtime_ns, "
        "a.mime_type, l.is_missing, l.needs_verify FROM cache_state l "
        "JOIN asset a ON a.id = l.asset_id "
    )

    def render_locations(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Location JSON objects (CONTRACT.md *Location*) by location id."""
        rows: list[tuple[Any, ...]] = []
        for batch in chunks(sorted(set(ids))):
            rows += self.query(self._LOCATION_SQL + f"WHERE l.id IN ({_marks(batch)})", batch)
        return dict(zip((r[0] for r in rows), self._rendered(rows), strict=True))

    def _rendered(self, rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """Rows of :attr:`_LOCATION_SQL` as Location JSON objects, in order."""
        tags = self.tags_of({r[3] for r in rows})
        return [location_json(r[1:], tags.get(r[3], [])) for r in rows]

    def tags_of(self, asset_ids: Iterable[int]) -> dict[int, list[str]]:
        """Every tag (user and automatic, once each, sorted) by asset id."""
        found: dict[int, set[str]] = {}
        for batch in chunks(sorted(set(asset_ids))):
            marks = _marks(batch)
            for asset_id, name in self.query(
                f"SELECT asset_id, name FROM tag WHERE asset_id IN ({marks})", batch
            ):
                found.setdefault(asset_id, set()).add(name)
        return {asset_id: sorted(names) for asset_id, names in found.items()}

    def list_locations(
        self,
        *,
        root: str | None = None,
        tag: str | None = None,
        include_missing: bool = False,
        missing_only: bool = False,
        limit: int | None = None,
        after: bytes | None = None,
    ) -> tuple[list[dict[str, Any]], bytes | None]:
        """A page of locations in path order, and the path to continue after (or None).

        Plain SQL, not peewee's models: a page is a hundred rows read per request, and
        building a model object for each took half the request's time.
        """
        where: list[str] = []
        params: list[Any] = []
        if missing_only:
            where.append("l.is_missing")
        elif not include_missing:
            where.append("NOT l.is_missing")
        if root is not None:
            where.append("l.root = ?")
            params.append(root)
        if tag is not None:
            where.append(self._has_tag(tag))
            params.append(tag)
        if after is not None:
            where.append("l.file_path > ?")
            params.append(after)
        sql = self._LOCATION_SQL + (f"WHERE {' AND '.join(where)} " if where else "")
        sql += "ORDER BY l.file_path"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit + 1)
        rows = self.query(sql, params)
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        return self._rendered(rows), (bytes(rows[-1][1]) if more else None)

    RARE_TAG = 5000  # assets: below this, a tag filter starts from the tag's index

    def _has_tag(self, tag: str) -> str:
        """The condition "the location's asset has the tag" (one ``?``: the tag), shaped
        for the planner.

        A page is read in path order. A tag on many assets is met soon along that
        order, so each location is checked (EXISTS). A rare tag may be met only far
        along, so its few assets are fetched from the tag index first and sorted (IN):
        either way a page costs milliseconds, at a million locations too.
        """
        some = f"SELECT 1 FROM tag WHERE name = ? LIMIT {self.RARE_TAG}"
        ((count,),) = self.query(f"SELECT COUNT(*) FROM ({some}) t", [tag])
        if count < self.RARE_TAG:
            return "l.asset_id IN (SELECT asset_id FROM tag WHERE name = ?)"
        return "EXISTS (SELECT 1 FROM tag t WHERE t.asset_id = l.asset_id AND t.name = ?)"

    def root_counts(self) -> dict[str, tuple[int, int]]:
        """Root name → (live locations, missing locations)."""
        L = self.m.Location
        counts: dict[str, list[int]] = {}
        query = L.select(L.root, L.is_missing, pw.fn.COUNT(L.id)).group_by(L.root, L.is_missing)
        for root, is_missing, n in query.tuples():
            counts.setdefault(root, [0, 0])[1 if is_missing else 0] = n
        return {root: (live, missing) for root, (live, missing) in counts.items()}

    # -- assets: automatic tags and the missing mark --------------------------------

    def refresh_assets(self, asset_ids: Iterable[int]) -> None:
        """Recompute the automatic tags of these assets from all their locations.

        Needed when a location leaves an asset; a location joining one only adds
        (:meth:`add_auto_tags`), and one going missing or coming back only changes
        the missing mark (:meth:`update_missing_marks`).
        """
        L, T = self.m.Location, self.m.Tag
        roots = self.root_prefixes()
        ids = sorted(set(asset_ids))
        for batch in chunks(ids):
            wanted: dict[int, set[str]] = {asset_id: set() for asset_id in batch}
            query = L.select(L.asset, L.file_path, L.root).where(L.asset.in_(list(batch)))
            for asset_id, path, root in query.tuples():
                wanted[asset_id] |= self.folder_tags(roots, root, bytes(path))
            have = self._auto_tags(batch)
            for asset_id in batch:
                gone = have[asset_id] - wanted[asset_id] - {MISSING_TAG}
                if gone:
                    T.delete().where(
                        (T.asset == asset_id) & (T.origin == "auto") & T.name.in_(sorted(gone))
                    ).execute()
            self.insert_auto_tags(
                (a, n) for a in batch for n in wanted[a] - have[a] - {MISSING_TAG}
            )
        self.update_missing_marks(ids)

    def add_auto_tags(self, locations: Iterable[tuple[int, str, bytes]]) -> None:
        """Add the folder tags of (asset id, root, path) locations that joined their assets."""
        roots = self.root_prefixes()
        wanted: dict[int, set[str]] = {}
        for asset_id, root, path in locations:
            wanted.setdefault(asset_id, set()).update(self.folder_tags(roots, root, path))
        for batch in chunks(sorted(wanted)):
            have = self._auto_tags(batch)
            self.insert_auto_tags((a, n) for a in batch for n in wanted[a] - have[a])

    def update_missing_marks(self, asset_ids: Iterable[int]) -> None:
        """Mark with the automatic tag ``missing`` exactly the assets with no live location."""
        for batch in chunks(sorted(set(asset_ids))):
            ids, marks = list(batch), _marks(batch)
            live_rows = self.query(
                f"SELECT DISTINCT asset_id FROM cache_state WHERE asset_id IN ({marks}) "
                "AND NOT is_missing",
                ids,
            )
            live = {r[0] for r in live_rows}
            dead = [a for a in ids if a not in live]
            tagged = self.query(
                f"SELECT asset_id FROM tag WHERE asset_id IN ({marks}) AND origin = 'auto' "
                "AND name = ?",
                [*ids, MISSING_TAG],
            )
            marked = {r[0] for r in tagged}
            revived = sorted(live & marked)
            if revived:
                self.execute_many(
                    "DELETE FROM tag WHERE asset_id = ? AND origin = 'auto' AND name = ?",
                    [(a, MISSING_TAG) for a in revived],
                )
                self.execute_many(
                    "UPDATE asset SET missing_since = NULL WHERE id = ?", [(a,) for a in revived]
                )
            self.insert_auto_tags((a, MISSING_TAG) for a in dead if a not in marked)
            self.execute_many(
                "UPDATE asset SET missing_since = ? WHERE id = ? AND missing_since IS NULL",
                [(self.now(), a) for a in dead if a not in marked],
            )

    @staticmethod
    def folder_tags(roots: dict[str, bytes], root: str, path: bytes) -> set[str]:
        """The automatic tags one location gives its asset: root name and folder names."""
        prefix = roots.get(root)
        if prefix is not None and path.startswith(prefix):
            return auto_tags(root, prefix, path)
        return {root}

    def _auto_tags(self, asset_ids: Sequence[int]) -> dict[int, set[str]]:
        have: dict[int, set[str]] = {asset_id: set() for asset_id in asset_ids}
        rows = self.query(
            f"SELECT asset_id, name FROM tag WHERE asset_id IN ({_marks(asset_ids)}) "
            "AND origin = 'auto'",
            list(asset_ids),
        )
        for asset_id, name in rows:
            have[asset_id].add(name)
        return have

    def insert_auto_tags(self, pairs: Iterable[tuple[int, str]]) -> None:
        """(asset id, tag name) rows of automatic tags, in bulk."""
        rows = [(a, n) for a, n in pairs]
        self.insert_many("INSERT INTO tag (asset_id, name, origin) VALUES (?, ?, 'auto')", rows)

    def root_prefixes(self) -> dict[str, bytes]:
        """Root name → prefix, as last registered by a scan."""
        return {
            name: bytes(prefix) for name, prefix in self.query("SELECT name, prefix FROM root_info")
        }

    def register_roots(self, roots: Iterable[tuple[str, bytes]]) -> None:
        """Remember each root's prefix (automatic tags come from it) and claim the root
        for this node.

        On a catalog shared by several nodes, a root name belongs to one node: a name
        another node holds under another path is refused, and so is a path that overlaps
        another node's root (a path is one location in the whole catalog), with
        :class:`RootOwnedError`. The same name at the same path passes to this node (a
        host renamed, or a root moved between hosts).
        """
        Root = self.m.Root
        wanted = list(roots)
        with self.write():
            others = {
                r.name: (bytes(r.prefix), r.node)
                for r in Root.select()
                if self.shared and r.node is not None and r.node != self.node
            }
            for name, prefix in wanted:
                self._check_claim(name, prefix, others)
            for name, prefix in wanted:
                if name in others:
                    log.warning(
                        "root %r at %s passes from node %r to this node, %r",
                        name, os.fsdecode(prefix), others[name][1], self.node,
                    )  # fmt: skip
                self._upsert(Root, Root.name, name=name, prefix=prefix, node=self.node)

    def _check_claim(self, name: str, prefix: bytes, others: dict[str, tuple[bytes, str]]) -> None:
        if name in others and others[name][0] != prefix:
            held, node = others[name]
            raise RootOwnedError(
                f"root {name!r} belongs to node {node!r} (at {os.fsdecode(held)}); "
                f"node {self.node!r} cannot have it at {os.fsdecode(prefix)}: "
                "give this root another name"
            )
        for other, (held, node) in others.items():
            if other != name and (prefix.startswith(held) or held.startswith(prefix)):
                raise RootOwnedError(
                    f"root {name!r} ({os.fsdecode(prefix)}) overlaps root {other!r} of node "
                    f"{node!r} ({os.fsdecode(held)}): on a shared catalog a path is one "
                    "location, so the roots of different nodes must not overlap"
                )

    def _others_roots(self) -> Any:
        """The names of the roots other nodes own (a subquery).

        Empty on a catalog of one machine: there every root is this daemon's, even when
        the host was renamed since it was registered.
        """
        Root = self.m.Root
        if not self.shared:
            return Root.select(Root.name).where(pw.SQL("1 = 0"))
        return Root.select(Root.name).where(Root.node.is_null(False) & (Root.node != self.node))

    # -- the named queries: missing, restore, prune, cleanup ------------------------

    def mark_missing(self, ids: Sequence[int]) -> int:
        """Soft-delete these live locations; returns how many were live."""
        L = self.m.Location
        count = 0
        with self.write():
            for batch in chunks(list(ids)):
                rows = L.select(L.id, L.asset).where(L.id.in_(list(batch)) & ~L.is_missing)
                live = list(rows.tuples())
                if not live:
                    continue
                L.update(is_missing=True, missing_since=self.now()).where(
                    L.id.in_([loc_id for loc_id, _ in live])
                ).execute()
                self.update_missing_marks(asset_id for _, asset_id in live)
                for loc_id, _ in live:
                    self.log("missing", loc_id)
                count += len(live)
        return count

    def mark_missing_under(self, prefix: bytes) -> int:
        """Mark missing every live location under ``prefix`` (a root gone offline)."""
        L = self.m.Location
        return self.mark_missing(
            [r.id for r in L.select(L.id).where(~L.is_missing & self._under(prefix))]
        )

    def mark_cache_states_missing_outside_prefixes(self, prefixes: Sequence[bytes]) -> int:
        """Mark missing every live location outside all ``prefixes``; ``[]`` marks nothing."""
        if not prefixes:
            return 0
        L = self.m.Location
        mine = ~L.root.in_(self._others_roots())  # another node's locations are its own
        query = L.select(L.id).where(~L.is_missing & self._outside_all(prefixes) & mine)
        return self.mark_missing([r.id for r in query])

    def mark_assets_missing_outside_prefixes(self, prefixes: Sequence[bytes]) -> int:
        """Like the location query above; returns the assets left with no live location."""
        L, A = self.m.Location, self.m.Asset
        mine = ~L.root.in_(self._others_roots())
        query = L.select(L.asset).where(~L.is_missing & self._outside_all(prefixes) & mine)
        query = query.distinct()
        touched = [r.asset_id for r in query] if prefixes else []
        self.mark_cache_states_missing_outside_prefixes(prefixes)
        if not touched:
            return 0
        return A.select().where(A.id.in_(touched) & A.missing_since.is_null(False)).count()

    def mark_missing_outside_prefixes_safely(self, prefixes: Sequence[bytes]) -> int:
        """A prune that refuses to run with no prefixes at all (that would forget everything)."""
        if not prefixes:
            raise CatalogError("refusing to prune with no root configured")
        return self.mark_cache_states_missing_outside_prefixes(prefixes)

    def restore_cache_states_by_paths(
        self, paths: Sequence[bytes], stats: dict[bytes, FileStat] | None = None
    ) -> int:
        """Make these missing locations live again; ``[]`` returns 0.

        With ``stats``, a location whose file's stat changed takes the new stat and
        ``needs_verify``, so that it is re-hashed.
        """
        with self.write():
            return self.restore_states(list(self.get_states(paths).values()), stats or {})

    def restore_states(self, states: Sequence[CachedState], stats: dict[bytes, FileStat]) -> int:
        """Restore the missing ones among ``states`` (already read), logging each."""
        missing = [s for s in states if s.is_missing]
        if not missing:
            return 0
        with self.write():
            changed = [
                (s.id, stats[s.path]) for s in missing if stats.get(s.path, s.stat) != s.stat
            ]
            self.set_stats([(loc, stat, True, None) for loc, stat in changed])
            self.execute_many(
                "UPDATE cache_state SET is_missing = ?, missing_since = NULL WHERE id = ?",
                [(False, s.id) for s in missing],
            )
            self.update_missing_marks(s.asset_id for s in missing)
            for state in missing:
                self.log("restored", state.id)
        return len(missing)

    def move_locations(self, moves: Sequence[tuple[bytes, bytes, str]]) -> int:
        """Rename live locations in place: (old path, new path, new root), one transaction.

        The location keeps its id and asset, so tags follow; each is logged as ``moved``.
        A move whose old path is not live, or whose new path is already cataloged, is
        skipped (the caller re-examines both paths instead). Returns how many moved.
        """
        with self.write():
            olds = self.get_states([old for old, _, _ in moves])
            taken = self.get_states([new for _, new, _ in moves])
            rows = []
            for old, new, root in moves:
                state = olds.get(old)
                if state is None or state.is_missing or new in taken:
                    continue
                rows.append((new, root, state.id, state.asset_id, old))
            self.execute_many(
                "UPDATE cache_state SET file_path = ?, root = ? WHERE id = ?",
                [(new, root, loc) for new, root, loc, _, _ in rows],
            )
            self.refresh_assets(asset_id for _, _, _, asset_id, _ in rows)
            for _, _, loc_id, _, old in rows:
                self.log("moved", loc_id, old_path=old)
        return len(rows)

    def set_stats(self, rows: Sequence[tuple[int, FileStat, bool, int | None]]) -> None:
        """(location id, stat, needs_verify, asset id or None to keep it), in bulk."""
        columns = "size = ?, mtime_ns = ?, ctime_ns = ?, inode = ?, device = ?, needs_verify = ?"
        self.execute_many(
            f"UPDATE cache_state SET {columns} WHERE id = ?",
            [(*stat_params(st), verify, loc) for loc, st, verify, asset in rows if asset is None],
        )
        self.execute_many(
            f"UPDATE cache_state SET {columns}, asset_id = ? WHERE id = ?",
            [
                (*stat_params(st), verify, asset, loc)
                for loc, st, verify, asset in rows
                if asset is not None
            ],
        )

    def live_locations(self, ids: Sequence[int]) -> dict[int, tuple[int, str, bytes]]:
        """Location id → (asset id, root, path), for the live ones among ``ids``."""
        found: dict[int, tuple[int, str, bytes]] = {}
        for batch in chunks(list(ids)):
            rows = self.query(
                "SELECT id, asset_id, root, file_path FROM cache_state "
                f"WHERE id IN ({_marks(batch)}) AND NOT is_missing",
                batch,
            )
            found.update((loc, (asset, root, bytes(path))) for loc, asset, root, path in rows)
        return found

    def assets_by_hash(self, hashes: Iterable[str]) -> list[tuple[str, int]]:
        """(hash, asset id) for the hashes the catalog knows."""
        found: list[tuple[str, int]] = []
        for batch in chunks(sorted(set(hashes))):
            sql = f"SELECT hash, id FROM asset WHERE hash IN ({_marks(batch)})"
            found += [(h, a) for h, a in self.query(sql, batch)]
        return found

    def asset_info(self, ids: Sequence[int]) -> dict[int, tuple[str | None, str | None, int]]:
        """Asset id → (hash, mime type, number of locations)."""
        found: dict[int, tuple[str | None, str | None, int]] = {}
        for batch in chunks(list(ids)):
            rows = self.query(
                "SELECT a.id, a.hash, a.mime_type, "
                "(SELECT COUNT(*) FROM cache_state l WHERE l.asset_id = a.id) "
                f"FROM asset a WHERE a.id IN ({_marks(batch)})",
                batch,
            )
            found.update((a, (h, m, n)) for a, h, m, n in rows)
        return found

    def live_paths_under(self, prefix: bytes) -> list[bytes]:
        """The paths of live locations under ``prefix``, in order."""
        L = self.m.Location
        query = (
            L.select(L.file_path).where(~L.is_missing & self._under(prefix)).order_by(L.file_path)
        )
        return [bytes(r.file_path) for r in query]

    def get_unreferenced_unhashed_asset_ids(self) -> list[int]:
        """Assets with no hash and no live location (and none on another node's roots)."""
        A = self.m.Asset
        query = A.select(A.id).where(
            A.hash.is_null()
            & ~pw.fn.EXISTS(self._live_location_of(A))
            & ~pw.fn.EXISTS(self._others_location_of(A))
        )
        return [r.id for r in query.order_by(A.id)]

    def _live_location_of(self, A: Any) -> Any:
        L = self.m.Location
        return L.select(L.id).where((L.asset == A.id) & ~L.is_missing)

    def _others_location_of(self, A: Any) -> Any:
        """A location of the asset on another node's root: that node decides about it."""
        L = self.m.Location
        return L.select(L.id).where((L.asset == A.id) & L.root.in_(self._others_roots()))

    def cleanup_unreferenced_assets(
        self, missing_older_than: float | None = None, *, dry_run: bool = False
    ) -> int:
        """The only hard delete; returns the number of assets deleted.

        Deletes assets with no hash and no live location; with ``missing_older_than``
        (seconds), also every asset that has had no live location for longer than that.
        Their locations and tags go with them, each location logged as ``removed``.
        """
        A, L, T = self.m.Asset, self.m.Location, self.m.Tag
        with self.write():
            doomed = set(self.get_unreferenced_unhashed_asset_ids())
            if missing_older_than is not None:
                cutoff = self.now() - missing_older_than
                old = A.select(A.id).where(
                    (A.missing_since < cutoff)
                    & ~pw.fn.EXISTS(self._live_location_of(A))
                    & ~pw.fn.EXISTS(self._others_location_of(A))
                )
                doomed.update(r.id for r in old)
            if dry_run or not doomed:
                return len(doomed)
            for batch in chunks(sorted(doomed)):
                ids = list(batch)
                locs = L.select(L.id).where(L.asset.in_(ids)).order_by(L.file_path)
                for loc_id, location in self.render_locations(r.id for r in locs).items():
                    self.log("removed", loc_id, location=location)
                T.delete().where(T.asset.in_(ids)).execute()
                L.delete().where(L.asset.in_(ids)).execute()
                A.delete().where(A.id.in_(ids)).execute()
        return len(doomed)

    # -- what people say about assets: tags and metadata ----------------------------

    def _asset_at(self, path: bytes) -> int:
        L = self.m.Location
        row = L.get_or_none(L.file_path == path)
        if row is None:
            raise NotFoundError(f"{os.fsdecode(path)} is not in the catalog")
        return int(row.asset_id)

    def change_tags(
        self, path: bytes, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        """Add and remove user tags of the asset at ``path``; returns all its tags."""
        T, L = self.m.Tag, self.m.Location
        add, remove = [_valid_tag(t) for t in add], [_valid_tag(t) for t in remove]
        with self.write():
            asset_id = self._asset_at(path)
            user = T.select(T.name).where((T.asset == asset_id) & (T.origin == "user"))
            have = {r.name for r in user}
            new = sorted(set(add) - have - set(remove))
            gone = sorted(have & (set(remove) - set(add)))
            if new:
                T.insert_many(
                    [{"asset": asset_id, "name": n, "origin": "user"} for n in new]
                ).execute()
            if gone:
                T.delete().where(
                    (T.asset == asset_id) & (T.origin == "user") & T.name.in_(gone)
                ).execute()
            if new or gone:
                for row in L.select(L.id).where(L.asset == asset_id).order_by(L.file_path):
                    self.log("tagged", row.id)
        return self.tags_of([asset_id]).get(asset_id, [])

    def change_metadata(
        self, path: bytes, set_: dict[str, Any] | None = None, unset: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Set and unset user metadata keys of the asset at ``path``; returns all of it."""
        A = self.m.Asset
        with self.write():
            asset = A.get_by_id(self._asset_at(path))
            metadata = json.loads(asset.user_metadata)
            if set_ or unset:
                metadata.update(set_ or {})
                for key in unset:
                    metadata.pop(key, None)
                A.update(user_metadata=json.dumps(metadata, sort_keys=True)).where(
                    A.id == asset.id
                ).execute()
        return dict(metadata)

    def merge_user_data(self, source: int, target: int) -> None:
        """Copy the user tags and metadata of asset ``source`` onto ``target`` (target wins)."""
        A, T = self.m.Asset, self.m.Tag
        tags = T.select(T.name).where((T.asset == source) & (T.origin == "user"))
        have = T.select(T.name).where((T.asset == target) & (T.origin == "user"))
        new = {r.name for r in tags} - {r.name for r in have}
        if new:
            T.insert_many([{"asset": target, "name": n, "origin": "user"} for n in new]).execute()
        src, dst = A.get_by_id(source), A.get_by_id(target)
        merged = {**json.loads(src.user_metadata), **json.loads(dst.user_metadata)}
        if merged != json.loads(dst.user_metadata):
            A.update(user_metadata=json.dumps(merged, sort_keys=True)).where(
                A.id == target
            ).execute()


def _utf8(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else bytes(text)


def _marks(items: Sequence[Any]) -> str:
    """Placeholders for an ``IN (...)`` list."""
    return ", ".join("?" * len(items))


# A cache state as the catalog's reading queries return it: (id, path, root, asset id,
# size, mtime_ns, ctime_ns, inode, device, needs_verify, is_missing, hash); inode and
# device as stored (signed 64-bit), the flags as the engine gives them (0/1 or bools).
StateRow = tuple[Any, ...]
STORED_STAT = slice(4, 9)  # a row's size, mtime_ns, ctime_ns, inode, device

_U64 = 1 << 64  # as from_i64: an unsigned number stored as a signed BIGINT


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


def location_json(values: Sequence[Any], tags: list[str]) -> dict[str, Any]:
    """A *Location* from (path, root, asset id, hash, size, mtime_ns, mime, missing, verify)."""
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


def _valid_tag(tag: str) -> str:
    name = tag.strip()
    if not name or len(name) > 128 or any(ord(c) < 32 for c in name):
        raise InvalidRequestError(f"invalid tag {tag!r}: 1–128 printable characters")
    return name
