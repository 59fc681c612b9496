"""The catalog: the only place that holds SQL and the layout of its rows.

Paths are bytes throughout. Prefix tests are byte ranges (``prefix <= path < upper``),
exact and case-sensitive on SQLite and PostgreSQL alike, and answered from the index.

:class:`Catalog` is the façade; each concern is a part of its own, reached as an
attribute by the code that needs more than the named operations:

=============  ===============================================================
``store``      the database, raw SQL on either engine, the catalog's clock
``changes``    write transactions and the change log (commit, then tell)
``locations``  cache states for the passes, Location JSON for the clients
``tags``       automatic tags, user tags and user metadata
``roots``      root prefixes and which node owns each
``lifecycle``  missing, restore, move, prune, cleanup
``assets``     content identity: seed assets, hashes, locations joining them
``comfyrefs``  locations as ComfyUI's asset API sees them, and its own writes
=============  ===============================================================
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from functools import cached_property
from typing import TYPE_CHECKING, Any

import peewee as pw

from assetd.catalog.assets import Assets
from assetd.catalog.changelog import CHANGE_CHANNEL, Change, ChangeListener, ChangeLog
from assetd.catalog.engine import close_database, open_database, said, shown_url, what_to_do
from assetd.catalog.lifecycle import Lifecycle
from assetd.catalog.locations import Locations
from assetd.catalog.order import Cursor
from assetd.catalog.roots import Roots
from assetd.catalog.schema import SCHEMA_VERSION, Models, migrations
from assetd.catalog.sql import Store
from assetd.catalog.tags import Layer, Tags
from assetd.decide import CachedState, FileStat
from assetd.exceptions import CatalogError, SchemaError

if TYPE_CHECKING:
    from assetd.catalog.comfyrefs import ComfyRefs

__all__ = ["CHANGE_CHANNEL", "Catalog", "Change", "ChangeListener", "shown_url"]


class Catalog:
    """One catalog database. Readers may use it from any thread; writes serialise."""

    def __init__(
        self,
        url: str,
        *,
        now: Callable[[], float] = time.time,
        upgrade: bool = True,
        node: str | None = None,
        layer: Layer | None = None,
    ) -> None:
        self.url = url
        self.layer = layer
        self.db = open_database(url)
        self.store = store = Store(self.db, url, node=node, now=now)
        self.changes = ChangeLog(store, render=lambda ids: self.locations.render(ids))
        self.roots = Roots(store, self.changes)
        self.tags = Tags(store, self.changes, self.roots, layer)
        self.locations = Locations(store, self.tags.at, layer.describe if layer else None)
        self.lifecycle = Lifecycle(store, self.changes, self.locations, self.tags, self.roots)
        self.assets = Assets(store, self.changes, self.locations, self.tags, self.roots)
        try:
            if upgrade:
                self._upgrade()
            elif self.schema_version() != SCHEMA_VERSION:
                raise SchemaError(
                    f"catalog {shown_url(url)} is not at schema version {SCHEMA_VERSION}"
                )
            self.catalog_id = store.models.Info.get_by_id("catalog_id").value
            store.not_before(self.changes.newest_time())
        except (pw.DatabaseError, sqlite3.Error, OSError) as exc:
            message = said(exc)
            raise CatalogError(
                f"cannot open catalog {shown_url(url)}: {message}; {what_to_do(url, message)}"
            ) from exc

    def set_layer(self, layer: Layer | None) -> None:
        """Tag by other rules from now on (a reloaded configuration); the next
        :meth:`register_roots` retags what the old rules tagged."""
        self.layer = self.tags.layer = layer
        self.locations.describe_with(layer.describe if layer is not None else None)

    @cached_property
    def comfyrefs(self) -> ComfyRefs:
        """Locations as ComfyUI's asset API sees them: made on first use, for only a
        daemon serving that API needs them."""
        from assetd.catalog.comfyrefs import ComfyRefs

        return ComfyRefs(self.store, self.changes, self.locations, self.tags, self.roots)

    @property
    def node(self) -> str:
        return self.store.node

    @property
    def shared(self) -> bool:
        """Several nodes may write (a PostgreSQL catalog)."""
        return self.store.shared

    @property
    def sqlite(self) -> bool:
        return self.store.sqlite

    @property
    def models(self) -> Models:
        """The peewee models bound to this catalog's database."""
        return self.store.models

    @property
    def listeners(self) -> list[ChangeListener]:
        """Called with each commit's changes, after it committed."""
        return self.changes.listeners

    @property
    def retention(self) -> tuple[int | None, float | None]:
        """(newest changes to keep, oldest age in seconds to keep); None: keep all."""
        return self.changes.retention

    @retention.setter
    def retention(self, value: tuple[int | None, float | None]) -> None:
        self.changes.retention = value

    def now(self) -> float:
        return self.store.now()

    def close(self) -> None:
        close_database(self.db)

    def close_thread(self) -> None:
        """Close the calling thread's connection, for a thread that is ending (the
        others', on SQLite, would close only when the garbage collector gets to them)."""
        self.db.close()

    # -- schema ---------------------------------------------------------------------

    def schema_version(self) -> int:
        if not self.db.table_exists("catalog_info"):
            return 0
        Info = self.store.models.Info
        row = Info.get_or_none(Info.key == "schema_version")
        return int(row.value) if row else 0

    def _upgrade(self) -> None:
        store, Info = self.store, self.store.models.Info
        with self.db.atomic():
            store.lock_writers()  # nodes starting together: one creates, the others wait
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"catalog {shown_url(self.url)} has schema version {version}, newer than "
                    f"the {SCHEMA_VERSION} this assetd knows; upgrade assetd to open it"
                )
            for number, _what, step in migrations():
                if number > version:
                    step(self.db, store.models)
            if version < SCHEMA_VERSION:
                store.upsert(Info, Info.key, key="schema_version", value=str(SCHEMA_VERSION))
            if version == 0:
                Info.create(key="catalog_id", value=uuid.uuid4().hex)

    # -- raw SQL, for scripts and tests ---------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.store.query(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.store.execute(sql, params)

    # -- the change log -------------------------------------------------------------

    def write(self) -> AbstractContextManager[None]:
        """One write transaction; the changes it logs are published after it commits."""
        return self.changes.write()

    def latest_seq(self) -> int:
        return self.changes.latest_seq()

    def oldest_seq(self) -> int:
        return self.changes.oldest_seq()

    def change_rows_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Logged changes after ``seq``, oldest first, as the feed sends them."""
        return self.changes.since(seq, limit)

    def changes_since(self, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Logged changes after ``seq``, oldest first, as decoded feed messages."""
        return [change.message() for change in self.changes.since(seq, limit)]

    def trim_changes(
        self, keep: int | None = None, max_age_s: float | None = None, *, latest: int | None = None
    ) -> int:
        return self.changes.trim(keep, max_age_s, latest=latest)

    # -- reading --------------------------------------------------------------------

    def get_states(
        self, paths: Sequence[bytes], *, with_hash: bool = True
    ) -> dict[bytes, CachedState]:
        return self.locations.get_states(paths, with_hash=with_hash)

    def get_state(self, path: bytes) -> CachedState | None:
        return self.locations.get_state(path)

    def list_locations(self, **filters: Any) -> tuple[list[dict[str, Any]], Cursor | None]:
        """A page of Location objects in the order asked, and where to continue."""
        return self.locations.list(**filters)

    def location_detail(self, path: bytes) -> dict[str, Any]:
        return self.locations.detail(path)

    def render_locations(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        return self.locations.render(ids)

    def root_counts(self) -> dict[str, tuple[int, int]]:
        return self.locations.root_counts()

    def tags_of(self, asset_ids: Iterable[int]) -> dict[int, list[str]]:
        return self.tags.of(asset_ids)

    def mime_type_of(self, asset_id: int) -> str | None:
        """The mime type of an asset's content."""
        return self.assets.info([asset_id]).get(asset_id, (None, None, 0))[1]

    def generation_of(self, asset_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Asset id → what made it, for the ComfyUI outputs among them:
        ``{"models": [{"name", "category"}...], "prompt": text | None}``."""
        return self.assets.generations(list(asset_ids))

    # -- what people say ------------------------------------------------------------

    def change_tags(
        self, path: bytes, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        return self.tags.change(path, add, remove)

    def change_metadata(
        self, path: bytes, set_: dict[str, Any] | None = None, unset: Iterable[str] = ()
    ) -> dict[str, Any]:
        return self.tags.change_metadata(path, set_, unset)

    # -- roots ----------------------------------------------------------------------

    def register_roots(self, roots: Iterable[tuple[str, bytes]]) -> None:
        """Remember the roots; when the layer's rules are not those the catalog last
        tagged by (a ComfyUI install configured, changed or gone), retag every location."""
        wanted = list(roots)
        self.roots.register(wanted)
        rules = self.layer.rules_id() if self.layer is not None else ""
        stale = self.tags.stale_roots([name for name, _ in wanted], rules)
        if stale:  # a write only then: every pass registers its roots
            with self.changes.write():
                self.tags.retag(stale, rules)

    def root_prefixes(self) -> dict[str, bytes]:
        return self.roots.prefixes()

    # -- the named queries: missing, restore, move, prune, cleanup ------------------

    def mark_missing(self, ids: Sequence[int]) -> int:
        return self.lifecycle.mark_missing(ids)

    def mark_missing_under(self, prefix: bytes) -> int:
        return self.lifecycle.mark_missing_under(prefix)

    def mark_cache_states_missing_outside_prefixes(self, prefixes: Sequence[bytes]) -> int:
        return self.lifecycle.mark_cache_states_missing_outside_prefixes(prefixes)

    def mark_assets_missing_outside_prefixes(self, prefixes: Sequence[bytes]) -> int:
        return self.lifecycle.mark_assets_missing_outside_prefixes(prefixes)

    def mark_missing_outside_prefixes_safely(self, prefixes: Sequence[bytes]) -> int:
        return self.lifecycle.mark_missing_outside_prefixes_safely(prefixes)

    def restore_cache_states_by_paths(
        self, paths: Sequence[bytes], stats: dict[bytes, FileStat] | None = None
    ) -> int:
        return self.lifecycle.restore_cache_states_by_paths(paths, stats)

    def move_locations(self, moves: Sequence[tuple[bytes, bytes, str]]) -> int:
        return self.lifecycle.move_locations(moves)

    def get_unreferenced_unhashed_asset_ids(self) -> list[int]:
        return self.lifecycle.get_unreferenced_unhashed_asset_ids()

    def cleanup_unreferenced_assets(
        self, missing_older_than: float | None = None, *, dry_run: bool = False
    ) -> int:
        return self.lifecycle.cleanup_unreferenced_assets(missing_older_than, dry_run=dry_run)
