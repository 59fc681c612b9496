"""The catalog: connection, schema upgrades, the change log and every named query.

Paths are bytes throughout. Prefix tests are byte ranges (``prefix <= path < upper``),
exact and case-sensitive on SQLite and PostgreSQL alike, and answered from the index.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import peewee as pw
from playhouse.db_url import connect as connect_url

from assetd.decide import CachedState, FileStat
from assetd.exceptions import CatalogError, InvalidRequestError, NotFoundError, SchemaError
from assetd.paths import auto_tags, path_json, prefix_upper_bound
from assetd.schema import SCHEMA_VERSION, Models, U64Field, define_models, migrations

__all__ = ["CHUNK", "Catalog", "ChangeListener", "chunks", "open_database", "stat_columns"]

CHUNK = 500  # rows per IN (...) list and per write batch
BUSY_TIMEOUT_S = 30.0
MISSING_TAG = "missing"

ChangeListener = Callable[[list[dict[str, Any]]], None]


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def open_database(url: str) -> pw.Database:
    """A peewee database for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return connect_url(
            url,
            timeout=BUSY_TIMEOUT_S,
            lock_type="IMMEDIATE",  # take the write lock at BEGIN: no deadlocked upgrades
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": int(BUSY_TIMEOUT_S * 1000),
                "synchronous": "full",  # a sent sequence number must survive a power cut
            },
        )
    try:
        return connect_url(url)
    except (RuntimeError, ValueError, ImportError) as exc:
        raise CatalogError(f"cannot use database {url!r}: {exc}") from exc


class Catalog:
    """One catalog database. Readers may use it from any thread; writes serialise."""

    def __init__(self, url: str, *, now: Callable[[], float] = time.time) -> None:
        self.url = url
        self.now = now
        self.db = open_database(url)
        self.m: Models = define_models(self.db)
        self._write_lock = threading.RLock()
        self._depth = 0
        self._pending: list[tuple[str, int, bytes | None, dict[str, Any] | None]] = []
        self._published: list[dict[str, Any]] = []
        self.listeners: list[ChangeListener] = []
        # (newest changes to keep, oldest age in seconds to keep); None: keep everything.
        self.retention: tuple[int | None, float | None] = (None, None)
        try:
            self._upgrade()
            self.catalog_id = self.m.Info.get_by_id("catalog_id").value
        except (pw.DatabaseError, sqlite3.Error, OSError) as exc:
            raise CatalogError(f"cannot open catalog {url}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    # -- schema ---------------------------------------------------------------------

    def schema_version(self) -> int:
        if not self.db.table_exists("catalog_info"):
            return 0
        row = self.m.Info.get_or_none(self.m.Info.key == "schema_version")
        return int(row.value) if row else 0

    def _upgrade(self) -> None:
        with self.db.atomic():
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"catalog {self.url} has schema version {version}, newer than the "
                    f"{SCHEMA_VERSION} this assetd knows; upgrade assetd to open it"
                )
            for number, _what, step in migrations():
                if number > version:
                    step(self.db, self.m)
            if version < SCHEMA_VERSION:
                self.m.Info.replace(key="schema_version", value=str(SCHEMA_VERSION)).execute()
            if version == 0:
                self.m.Info.create(key="catalog_id", value=uuid.uuid4().hex)

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
                    yield
                    if self._depth == 1 and self._pending:
                        self._published = self._flush_log()
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

    def _flush_log(self) -> list[dict[str, Any]]:
        # Render after every write of the transaction, so tags are the committed ones.
        pending, self._pending = self._pending, []
        rendered = self.render_locations([loc_id for _, loc_id, _, given in pending if not given])
        Seq = self.m.Sequence
        Seq.update(value=Seq.value + len(pending)).where(Seq.name == "change").execute()
        last = Seq.get_by_id("change").value
        ts = self.now()
        rows, messages = [], []
        for seq, (op, loc_id, old_path, given) in enumerate(pending, start=last - len(pending) + 1):
            location = given or rendered[loc_id]
            body: dict[str, Any] = {"op": op, "location": location}
            if old_path is not None:
                old = path_json(old_path)
                body["old_path"] = old["path"]
                if "path_bytes_b64" in old:
                    body["old_path_bytes_b64"] = old["path_bytes_b64"]
            root = location["root"]
            rows.append({"seq": seq, "ts": ts, "op": op, "root": root, "body": json.dumps(body)})
            messages.append({"type": "change", "seq": seq, **body})
        for batch in chunks(rows, 100):
            self.m.Change.insert_many(batch).execute()
        keep, max_age = self.retention
        if keep is not None or max_age is not None:
            self.trim_changes(keep, max_age)  # two index range deletes; usually empty
        return messages

    def latest_seq(self) -> int:
        return int(self.m.Sequence.get_by_id("change").value)

    def oldest_seq(self) -> int:
        """The first sequence number still in the log (latest + 1 when it is empty)."""
        C = self.m.Change
        low = C.select(pw.fn.MIN(C.seq)).scalar()
        return int(low) if low is not None else self.latest_seq() + 1

    def trim_changes(self, keep: int | None = None, max_age_s: float | None = None) -> int:
        """Forget logged changes beyond the newest ``keep`` or older than ``max_age_s``."""
        C = self.m.Change
        cond = None
        if keep is not None:
            cond = C.seq <= self.latest_seq() - keep
        if max_age_s is not None:
            old = C.ts < self.now() - max_age_s
            cond = old if cond is None else (cond | old)
        if cond is None:
            return 0
        with self.write():
            return int(C.delete().where(cond).execute())

    def changes_since(self, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Logged changes after ``seq``, oldest first, as feed messages."""
        C = self.m.Change
        rows = C.select(C.seq, C.body).where(C.seq > seq).order_by(C.seq).limit(limit)
        return [{"type": "change", "seq": r.seq, **json.loads(r.body)} for r in rows]

    # -- reading locations ----------------------------------------------------------

    def _state(self, row: Any) -> CachedState:
        stat = FileStat(row.size, row.mtime_ns, row.ctime_ns, row.inode, row.device)
        return CachedState(
            id=row.id,
            path=bytes(row.file_path),
            root=row.root,
            asset_id=row.asset_id,
            stat=stat,
            needs_verify=row.needs_verify,
            is_missing=row.is_missing,
            hash=row.asset.hash,
        )

    def _states_query(self) -> Any:
        L, A = self.m.Location, self.m.Asset
        return L.select(L, A.id, A.hash).join(A)

    def get_states(self, paths: Sequence[bytes]) -> dict[bytes, CachedState]:
        L = self.m.Location
        found: dict[bytes, CachedState] = {}
        for batch in chunks(list(paths)):
            for row in self._states_query().where(L.file_path.in_(list(batch))):
                state = self._state(row)
                found[state.path] = state
        return found

    def get_state(self, path: bytes) -> CachedState | None:
        return self.get_states([path]).get(path)

    def get_states_by_id(self, ids: Sequence[int]) -> list[CachedState]:
        L = self.m.Location
        found: list[CachedState] = []
        for batch in chunks(list(ids)):
            found.extend(self._state(r) for r in self._states_query().where(L.id.in_(list(batch))))
        return found

    def iter_states(self, prefix: bytes, *, page: int = 2000) -> Iterator[CachedState]:
        """Every location under ``prefix`` (missing ones too), in path order, streamed."""
        L = self.m.Location
        low, high = prefix, prefix_upper_bound(prefix)
        first = True
        while True:
            cond = (L.file_path >= low) if first else (L.file_path > low)
            query = (
                self._states_query()
                .where(cond & (L.file_path < high))
                .order_by(L.file_path)
                .limit(page)
            )
            rows = [self._state(r) for r in query]
            yield from rows
            if len(rows) < page:
                return
            low, first = rows[-1].path, False

    def pending_hash_ids(
        self, prefixes: Sequence[bytes], *, after: int = 0, limit: int = CHUNK
    ) -> list[int]:
        """Live locations under ``prefixes`` whose hash is absent or stale."""
        L = self.m.Location
        query = (
            L.select(L.id)
            .where(L.needs_verify & ~L.is_missing & (L.id > after) & self._under_any(prefixes))
            .order_by(L.id)
            .limit(limit)
        )
        return [r.id for r in query]

    def count_pending_hash(self, prefixes: Sequence[bytes]) -> int:
        L = self.m.Location
        return L.select().where(L.needs_verify & ~L.is_missing & self._under_any(prefixes)).count()

    def _under(self, prefix: bytes) -> Any:
        L = self.m.Location
        return (L.file_path >= prefix) & (L.file_path < prefix_upper_bound(prefix))

    def _under_any(self, prefixes: Sequence[bytes]) -> Any:
        cond: Any = None
        for prefix in prefixes:
            cond = self._under(prefix) if cond is None else (cond | self._under(prefix))
        return cond if cond is not None else pw.SQL("1 = 0")

    def render_locations(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Location JSON objects (CONTRACT.md *Location*) by location id."""
        L, A = self.m.Location, self.m.Asset
        wanted = sorted(set(ids))
        rows: list[Any] = []
        for batch in chunks(wanted):
            query = L.select(L, A.id, A.hash, A.mime_type).join(A).where(L.id.in_(list(batch)))
            rows.extend(query)
        tags = self.tags_of({r.asset_id for r in rows})
        return {r.id: self._location_json(r, tags.get(r.asset_id, [])) for r in rows}

    def _location_json(self, row: Any, tags: list[str]) -> dict[str, Any]:
        return {
            **path_json(bytes(row.file_path)),
            "root": row.root,
            "asset_id": row.asset_id,
            "hash": row.asset.hash,
            "size": row.size,
            "mtime_ns": row.mtime_ns,
            "mime_type": row.asset.mime_type,
            "is_missing": row.is_missing,
            "needs_verify": row.needs_verify,
            "tags": tags,
        }

    def tags_of(self, asset_ids: Iterable[int]) -> dict[int, list[str]]:
        """Every tag (user and automatic, once each, sorted) by asset id."""
        T = self.m.Tag
        found: dict[int, set[str]] = {}
        for batch in chunks(sorted(set(asset_ids))):
            for row in T.select(T.asset, T.name).where(T.asset.in_(list(batch))).tuples():
                found.setdefault(row[0], set()).add(row[1])
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
        """A page of locations in path order, and the path to continue after (or None)."""
        L, A, T = self.m.Location, self.m.Asset, self.m.Tag
        query = L.select(L, A.id, A.hash, A.mime_type).join(A).order_by(L.file_path)
        if missing_only:
            query = query.where(L.is_missing)
        elif not include_missing:
            query = query.where(~L.is_missing)
        if root is not None:
            query = query.where(L.root == root)
        if tag is not None:
            has_tag = T.select(T.id).where((T.asset == L.asset) & (T.name == tag))
            query = query.where(pw.fn.EXISTS(has_tag))
        if after is not None:
            query = query.where(L.file_path > after)
        if limit is not None:
            query = query.limit(limit + 1)
        rows = list(query)
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        tags = self.tags_of({r.asset_id for r in rows})
        items = [self._location_json(r, tags.get(r.asset_id, [])) for r in rows]
        return items, (bytes(rows[-1].file_path) if more else None)

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
                wanted[asset_id] |= self._folder_tags(roots, root, bytes(path))
            have = self._auto_tags(batch)
            for asset_id in batch:
                gone = have[asset_id] - wanted[asset_id] - {MISSING_TAG}
                if gone:
                    T.delete().where(
                        (T.asset == asset_id) & (T.origin == "auto") & T.name.in_(sorted(gone))
                    ).execute()
            self._insert_auto((a, n) for a in batch for n in wanted[a] - have[a] - {MISSING_TAG})
        self.update_missing_marks(ids)

    def add_auto_tags(self, locations: Iterable[tuple[int, str, bytes]]) -> None:
        """Add the folder tags of (asset id, root, path) locations that joined their assets."""
        roots = self.root_prefixes()
        wanted: dict[int, set[str]] = {}
        for asset_id, root, path in locations:
            wanted.setdefault(asset_id, set()).update(self._folder_tags(roots, root, path))
        for batch in chunks(sorted(wanted)):
            have = self._auto_tags(batch)
            self._insert_auto((a, n) for a in batch for n in wanted[a] - have[a])

    def update_missing_marks(self, asset_ids: Iterable[int]) -> None:
        """Mark with the automatic tag ``missing`` exactly the assets with no live location."""
        L, A, T = self.m.Location, self.m.Asset, self.m.Tag
        for batch in chunks(sorted(set(asset_ids))):
            ids = list(batch)
            live_query = L.select(L.asset).where(L.asset.in_(ids) & ~L.is_missing).distinct()
            live = {r.asset_id for r in live_query}
            dead = [a for a in ids if a not in live]
            tagged = T.select(T.asset).where(
                T.asset.in_(ids) & (T.origin == "auto") & (T.name == MISSING_TAG)
            )
            marked = {r.asset_id for r in tagged}
            if live & marked:
                T.delete().where(
                    T.asset.in_(sorted(live & marked))
                    & (T.origin == "auto")
                    & (T.name == MISSING_TAG)
                ).execute()
            if live:
                A.update(missing_since=None).where(
                    A.id.in_(sorted(live)) & A.missing_since.is_null(False)
                ).execute()
            self._insert_auto((a, MISSING_TAG) for a in dead if a not in marked)
            if dead:
                A.update(missing_since=self.now()).where(
                    A.id.in_(dead) & A.missing_since.is_null()
                ).execute()

    @staticmethod
    def _folder_tags(roots: dict[str, bytes], root: str, path: bytes) -> set[str]:
        prefix = roots.get(root)
        if prefix is not None and path.startswith(prefix):
            return auto_tags(root, prefix, path)
        return {root}

    def _auto_tags(self, asset_ids: Sequence[int]) -> dict[int, set[str]]:
        T = self.m.Tag
        have: dict[int, set[str]] = {asset_id: set() for asset_id in asset_ids}
        rows = T.select(T.asset, T.name).where(T.asset.in_(list(asset_ids)) & (T.origin == "auto"))
        for asset_id, name in rows.tuples():
            have[asset_id].add(name)
        return have

    def _insert_auto(self, pairs: Iterable[tuple[int, str]]) -> None:
        rows = [{"asset": a, "name": n, "origin": "auto"} for a, n in pairs]
        for batch in chunks(rows, 200):
            self.m.Tag.insert_many(batch).execute()

    def root_prefixes(self) -> dict[str, bytes]:
        """Root name → prefix, as last registered by a scan."""
        return {r.name: bytes(r.prefix) for r in self.m.Root.select()}

    def register_roots(self, roots: Iterable[tuple[str, bytes]]) -> None:
        """Remember each root's prefix, so automatic tags can be derived from paths."""
        with self.write():
            for name, prefix in roots:
                self.m.Root.replace(name=name, prefix=prefix).execute()

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

    def mark_cache_states_missing_outside_prefixes(self, prefixes: Sequence[bytes]) -> int:
        """Mark missing every live location outside all ``prefixes``; ``[]`` marks nothing."""
        if not prefixes:
            return 0
        L = self.m.Location
        query = L.select(L.id).where(~L.is_missing & ~self._under_any(prefixes))
        return self.mark_missing([r.id for r in query])

    def mark_assets_missing_outside_prefixes(self, prefixes: Sequence[bytes]) -> int:
        """Like the location query above; returns the assets left with no live location."""
        L, A = self.m.Location, self.m.Asset
        query = L.select(L.asset).where(~L.is_missing & ~self._under_any(prefixes)).distinct()
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
        L = self.m.Location
        count = 0
        with self.write():
            for state in self.get_states(paths).values():
                if not state.is_missing:
                    continue
                changes: dict[str, Any] = {"is_missing": False, "missing_since": None}
                new = (stats or {}).get(state.path)
                if new is not None and new != state.stat:
                    changes.update(stat_columns(new), needs_verify=True)
                L.update(**changes).where(L.id == state.id).execute()
                self.update_missing_marks([state.asset_id])
                self.log("restored", state.id)
                count += 1
        return count

    def move_locations(self, moves: Sequence[tuple[bytes, bytes, str]]) -> int:
        """Rename live locations in place: (old path, new path, new root), one transaction.

        The location keeps its id and asset, so tags follow; each is logged as ``moved``.
        A move whose old path is not live, or whose new path is already cataloged, is
        skipped (the caller re-examines both paths instead). Returns how many moved.
        """
        L = self.m.Location
        with self.write():
            olds = self.get_states([old for old, _, _ in moves])
            taken = self.get_states([new for _, new, _ in moves])
            rows = []
            for old, new, root in moves:
                state = olds.get(old)
                if state is None or state.is_missing or new in taken:
                    continue
                rows.append((new, root, state.id, state.asset_id, old))
            sql = (
                f"UPDATE {L._meta.table_name} SET file_path = {self.db.param}, "
                f"root = {self.db.param} WHERE id = {self.db.param}"
            )
            for batch in chunks(rows):
                self.db.cursor().executemany(
                    sql, [(new, root, loc) for new, root, loc, _, _ in batch]
                )
            self.refresh_assets(asset_id for _, _, _, asset_id, _ in rows)
            for _, _, loc_id, _, old in rows:
                self.log("moved", loc_id, old_path=old)
        return len(rows)

    def set_stats(self, rows: Sequence[tuple[int, FileStat, bool, int | None]]) -> None:
        """(location id, stat, needs_verify, asset id or None to keep it), in bulk."""
        L = self.m.Location
        p = self.db.param
        names = ("size", "mtime_ns", "ctime_ns", "inode", "device", "needs_verify")
        columns = ", ".join(f"{name} = {{p}}" for name in names)
        keep = f"UPDATE {L._meta.table_name} SET {columns.format(p=p)} WHERE id = {p}"
        move = (
            f"UPDATE {L._meta.table_name} SET {columns.format(p=p)}, asset_id = {p} WHERE id = {p}"
        )
        same = [
            (*_stat_params(st), verify, loc) for loc, st, verify, asset in rows if asset is None
        ]
        moved = [
            (*_stat_params(st), verify, asset, loc)
            for loc, st, verify, asset in rows
            if asset is not None
        ]
        cursor = self.db.cursor()
        for sql, params in ((keep, same), (move, moved)):
            for batch in chunks(params):
                cursor.executemany(sql, batch)

    def live_paths_under(self, prefix: bytes) -> list[bytes]:
        """The paths of live locations under ``prefix``, in order."""
        L = self.m.Location
        query = (
            L.select(L.file_path).where(~L.is_missing & self._under(prefix)).order_by(L.file_path)
        )
        return [bytes(r.file_path) for r in query]

    def get_unreferenced_unhashed_asset_ids(self) -> list[int]:
        """Assets with no hash and no live location."""
        A = self.m.Asset
        query = A.select(A.id).where(A.hash.is_null() & ~pw.fn.EXISTS(self._live_location_of(A)))
        return [r.id for r in query.order_by(A.id)]

    def _live_location_of(self, A: Any) -> Any:
        L = self.m.Location
        return L.select(L.id).where((L.asset == A.id) & ~L.is_missing)

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
                    (A.missing_since < cutoff) & ~pw.fn.EXISTS(self._live_location_of(A))
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


def stat_columns(stat: FileStat) -> dict[str, int]:
    """A stat as the location table's columns."""
    return {
        "size": stat.size,
        "mtime_ns": stat.mtime_ns,
        "ctime_ns": stat.ctime_ns,
        "inode": stat.inode,
        "device": stat.device,
    }


def _stat_params(stat: FileStat) -> tuple[int | None, ...]:
    """A stat as SQL parameters for raw statements (inode and device as signed 64-bit)."""
    return (
        stat.size,
        stat.mtime_ns,
        stat.ctime_ns,
        U64Field().db_value(stat.inode),
        U64Field().db_value(stat.device),
    )


def _valid_tag(tag: str) -> str:
    name = tag.strip()
    if not name or len(name) > 128 or any(ord(c) < 32 for c in name):
        raise InvalidRequestError(f"invalid tag {tag!r}: 1–128 printable characters")
    return name
