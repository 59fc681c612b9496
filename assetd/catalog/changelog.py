"""Write transactions and the change log: commit, then tell.

Every change a transaction records is numbered and stored with it; listeners hear of
them only after the commit. The log has one reader, :meth:`ChangeLog.since`, which the
live feed's replay, the relay of a shared catalog and the tests all use.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import peewee as pw

from assetd.catalog.engine import drop_if_broken, first_error, said
from assetd.catalog.sql import Store
from assetd.exceptions import CatalogUnavailableError
from assetd.jsontext import dumps
from assetd.paths import path_json

__all__ = ["CHANGE_CHANNEL", "Change", "ChangeListener", "ChangeLog"]

CHANGE_CHANNEL = "assetd_change"  # NOTIFY channel: a transaction committed changes
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
        """The whole feed message, decoded."""
        return dict(json.loads(self.json()))


ChangeListener = Callable[[list[Change]], None]


class _Pending(NamedTuple):
    """A change logged in the open transaction, not yet numbered."""

    op: str
    location_id: int
    old_path: bytes | None = None
    location: dict[str, Any] | None = None  # rendered already; else at commit
    built: tuple[str, bytes] | None = None  # (root, whole body as JSON) built elsewhere


# Location JSON objects by location id, rendered in the committing transaction.
Renderer = Callable[[Iterable[int]], dict[int, dict[str, Any]]]


class ChangeLog:
    """Write transactions, the changes they record, and the log they are kept in."""

    def __init__(self, store: Store, render: Renderer) -> None:
        self.store = store
        self._render = render
        self._lock = threading.RLock()
        self._depth = 0
        self._pending: list[_Pending] = []
        self._published: list[Change] = []
        self.listeners: list[ChangeListener] = []
        # (newest changes to keep, oldest age in seconds to keep); None: keep everything.
        self.retention: tuple[int | None, float | None] = (None, None)

    @contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction; the changes it logs are published after it commits."""
        db = self.store.db
        with self._lock:
            self._depth += 1
            try:
                if self._depth == 1:
                    self._pending = []
                with db.atomic():
                    if self._depth == 1:
                        self.store.lock_writers()
                    yield
                    if self._depth == 1 and self._pending:
                        self._published = self._flush()
            except (pw.OperationalError, pw.InterfaceError, CatalogUnavailableError) as exc:
                self._published = []  # rolled back: nothing of it may be sent
                if self._depth > 1:
                    raise
                drop_if_broken(db)
                cause = exc.__cause__ if isinstance(exc, CatalogUnavailableError) else exc
                raise CatalogUnavailableError(
                    f"cannot write the catalog: {said(first_error(cause or exc))}"
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
        message shows the committed state; pass ``location`` for a row being deleted,
        or one already rendered.
        """
        assert self._depth > 0, "log() outside write()"
        self._pending.append(_Pending(op, location_id, old_path, location))

    def log_built(self, op: str, location_id: int, root: str, body: bytes) -> None:
        """Record a change whose body (the message as JSON without ``type`` and ``seq``)
        was built before the transaction, away from the writer (:mod:`assetd.prepare`)."""
        assert self._depth > 0, "log_built() outside write()"
        self._pending.append(_Pending(op, location_id, built=(root, body)))

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """A savepoint in the open transaction: when the block raises, what it wrote and
        the changes it logged are undone, and the error goes on (the transaction lives)."""
        assert self._depth > 0, "attempt() outside write()"
        mark = len(self._pending)
        try:
            with self.store.db.atomic():  # nested: a savepoint
                yield
        except BaseException:
            del self._pending[mark:]
            raise

    def _flush(self) -> list[Change]:
        # Render after every write of the transaction, so tags are the committed ones.
        store = self.store
        pending, self._pending = self._pending, []
        rendered = self._render(
            [p.location_id for p in pending if p.location is None and p.built is None]
        )
        store.execute(
            f"UPDATE sequence_counter SET value = value + ? WHERE {_THE_LOG}", [len(pending)]
        )
        last = self.latest_seq()
        ts = store.now()
        rows: list[tuple[Any, ...]] = []
        changes: list[Change] = []
        first = last - len(pending) + 1
        for seq, (op, loc_id, old_path, given, built) in enumerate(pending, start=first):
            if built is not None:
                root, encoded = built
                rows.append((seq, ts, op, root, encoded.decode()))
                changes.append(Change(seq, root, encoded))
                continue
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
        store.insert_many(
            'INSERT INTO "change" (seq, ts, op, root, body) VALUES (?, ?, ?, ?, ?)', rows
        )
        if store.shared:  # every node's feed relays it, once this transaction commits
            store.query("SELECT pg_notify(?, ?)", [CHANGE_CHANNEL, str(last)])
        keep, max_age = self.retention
        if keep is not None or max_age is not None:
            self.trim(keep, max_age, latest=last)  # index range deletes; usually empty
        return changes

    def latest_seq(self) -> int:
        ((value,),) = self.store.query(f"SELECT value FROM sequence_counter WHERE {_THE_LOG}")
        return int(value)

    def oldest_seq(self) -> int:
        """The first sequence number still in the log (latest + 1 when it is empty)."""
        # One statement, one snapshot: read apart, a change committed in between could
        # make an empty log look trimmed.
        low, latest = self.store.query(
            f'SELECT MIN(seq), (SELECT value FROM sequence_counter WHERE {_THE_LOG}) FROM "change"'
        )[0]
        return int(low) if low is not None else int(latest) + 1

    def newest_time(self) -> float:
        """When the newest change still logged was made (0 for an empty log)."""
        ((ts,),) = self.store.query('SELECT MAX(ts) FROM "change"')
        return float(ts or 0.0)

    def trim(
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
                deleted += self.store.execute(
                    'DELETE FROM "change" WHERE seq <= ?', [newest - keep]
                )
            if max_age_s is not None:
                deleted += self.store.execute(
                    'DELETE FROM "change" WHERE ts < ?', [self.store.now() - max_age_s]
                )
        return deleted

    def since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Logged changes after ``seq``, oldest first, as the feed sends them."""
        rows = self.store.query(
            'SELECT seq, root, body FROM "change" WHERE seq > ? ORDER BY seq LIMIT ?', [seq, limit]
        )
        return [
            Change(int(q), r or "", b.encode() if isinstance(b, str) else bytes(b))
            for q, r, b in rows
        ]
