"""A location's life: missing, restored, moved, pruned; and cleanup, the one hard delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import peewee as pw

from assetd.catalog.part import Part
from assetd.catalog.sql import chunks, marks, stat_params
from assetd.decide import CachedState, FileStat
from assetd.exceptions import CatalogError
from assetd.mime import guess_mime
from assetd.paths import file_name, prefix_upper_bound

__all__ = ["Lifecycle"]


class Lifecycle(Part):
    """Soft deletes and their undoing, moves, prunes and cleanup, each change logged."""

    def _under(self, prefix: bytes) -> Any:
        L = self.store.models.Location
        return (L.file_path >= prefix) & (L.file_path < prefix_upper_bound(prefix))

    def _outside_all(self, prefixes: Sequence[bytes]) -> Any:
        """Paths under none of ``prefixes``, as the ranges between them: index range scans,
        so a prune costs what lies outside the roots, not the size of the catalog."""
        L = self.store.models.Location
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

    # -- missing ----------------------------------------------------------------------

    def mark_missing(self, ids: Sequence[int]) -> int:
        """Soft-delete these live locations; returns how many were live."""
        L = self.store.models.Location
        count = 0
        with self.changes.write():
            for batch in chunks(list(ids)):
                rows = L.select(L.id, L.asset).where(L.id.in_(list(batch)) & ~L.is_missing)
                live = list(rows.tuples())
                if not live:
                    continue
                L.update(is_missing=True, missing_since=self.store.now()).where(
                    L.id.in_([loc_id for loc_id, _ in live])
                ).execute()
                self.tags.update_missing_marks(asset_id for _, asset_id in live)
                for loc_id, _ in live:
                    self.changes.log("missing", loc_id)
                count += len(live)
        return count

    def mark_missing_under(self, prefix: bytes) -> int:
        """Mark missing every live location under ``prefix`` (a root gone offline)."""
        L = self.store.models.Location
        return self.mark_missing(
            [r.id for r in L.select(L.id).where(~L.is_missing & self._under(prefix))]
        )

    def mark_cache_states_missing_outside_prefixes(self, prefixes: Sequence[bytes]) -> int:
        """Mark missing every live location outside all ``prefixes``; ``[]`` marks nothing."""
        if not prefixes:
            return 0
        L = self.store.models.Location
        mine = ~L.root.in_(self.roots.others())  # another node's locations are its own
        query = L.select(L.id).where(~L.is_missing & self._outside_all(prefixes) & mine)
        return self.mark_missing([r.id for r in query])

    def mark_assets_missing_outside_prefixes(self, prefixes: Sequence[bytes]) -> int:
        """Like the location query above; returns the assets left with no live location."""
        L, A = self.store.models.Location, self.store.models.Asset
        mine = ~L.root.in_(self.roots.others())
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

    # -- restore and move -------------------------------------------------------------

    def restore_cache_states_by_paths(
        self, paths: Sequence[bytes], stats: dict[bytes, FileStat] | None = None
    ) -> int:
        """Make these missing locations live again; ``[]`` returns 0.

        With ``stats``, a location whose file's stat changed takes the new stat and
        ``needs_verify``, so that it is re-hashed.
        """
        with self.changes.write():
            states = list(self.locations.get_states(paths).values())
            return self.restore_states(states, stats or {})

    def restore_states(self, states: Sequence[CachedState], stats: dict[bytes, FileStat]) -> int:
        """Restore the missing ones among ``states`` (already read), logging each."""
        missing = [s for s in states if s.is_missing]
        if not missing:
            return 0
        with self.changes.write():
            changed = [
                (s.id, stats[s.path]) for s in missing if stats.get(s.path, s.stat) != s.stat
            ]
            self.locations.set_stats([(loc, stat, True, None) for loc, stat in changed])
            self.store.execute_many(
                "UPDATE cache_state SET is_missing = ?, missing_since = NULL WHERE id = ?",
                [(False, s.id) for s in missing],
            )
            self.tags.update_missing_marks(s.asset_id for s in missing)
            for state in missing:
                self.changes.log("restored", state.id)
        return len(missing)

    def move_locations(self, moves: Sequence[tuple[bytes, bytes, str]]) -> int:
        """Rename live locations in place: (old path, new path, new root), one transaction.

        The location keeps its id and asset, so tags follow; each is logged as ``moved``.
        A move whose old path is not live, or whose new path is already cataloged, is
        skipped (the caller re-examines both paths instead). Returns how many moved.
        """
        with self.changes.write():
            olds = self.locations.get_states([old for old, _, _ in moves])
            taken = self.locations.get_states([new for _, new, _ in moves])
            rows = []
            for old, new, root in moves:
                state = olds.get(old)
                if state is None or state.is_missing or new in taken:
                    continue
                rows.append((new, root, state.id, state.asset_id, old))
            self.store.execute_many(
                "UPDATE cache_state SET file_path = ?, file_name = ?, root = ? WHERE id = ?",
                [(new, file_name(new), root, loc) for new, root, loc, _, _ in rows],
            )
            self.tags.relocate([(loc, root, new) for new, root, loc, _, _ in rows])
            self._type_by_new_names([(asset, new) for new, _, _, asset, _ in rows])
            for _, _, loc_id, _, old in rows:
                self.changes.log("moved", loc_id, old_path=old)
        return len(rows)

    def move_states(
        self, moves: Sequence[tuple[CachedState, bytes, str, FileStat, CachedState | None]]
    ) -> int:
        """Locations whose file was found at another path: (state as read, new path, new
        root, the file's stat there, the location the file displaced there or None), one
        transaction.

        The location keeps its id, asset and hash, and takes the new path and stat (a
        rename changes the ctime, and nothing else that says the content changed); a
        missing one is live again. Each is logged as one ``moved``. A displaced location
        stood for content that is gone from disk: it is deleted, logged as ``removed``,
        and its asset keeps its user data (``missing`` if it has no live location left).
        A move whose new path is cataloged otherwise meanwhile is skipped. Returns how
        many moved.
        """
        with self.changes.write():
            taken = self.locations.get_states([m[1] for m in moves], with_hash=False)
            rows = [
                m
                for m in moves
                if m[1] not in taken or (m[4] is not None and taken[m[1]].id == m[4].id)
            ]
            gone = [m[4] for m in rows if m[4] is not None]
            if gone:
                self._retire(gone)
            self.store.execute_many(
                "UPDATE cache_state SET file_path = ?, file_name = ?, root = ?, size = ?, "
                "mtime_ns = ?, ctime_ns = ?, inode = ?, device = ?, is_missing = ?, "
                "missing_since = NULL WHERE id = ?",
                [
                    (new, file_name(new), root, *stat_params(st), False, s.id)
                    for s, new, root, st, _ in rows
                ],
            )
            self.tags.relocate([(s.id, root, new) for s, new, root, _, _ in rows])
            self._type_by_new_names([(s.asset_id, new) for s, new, _, _, _ in rows])
            self.tags.update_missing_marks(s.asset_id for s, *_ in rows if s.is_missing)
            for state, *_ in rows:
                self.changes.log("moved", state.id, old_path=state.path)
        return len(rows)

    def _type_by_new_names(self, moved: Sequence[tuple[int, bytes]]) -> None:
        """Content that had no type by its old name (``model.part``) takes the one its
        new name gives (``model.safetensors``): a download finished by a rename."""
        typed = [(mime, asset) for asset, path in moved if (mime := guess_mime(path))]
        self.store.execute_many(
            "UPDATE asset SET mime_type = ? WHERE id = ? AND mime_type IS NULL", typed
        )

    def _retire(self, states: Sequence[CachedState]) -> None:
        """Delete these locations (their paths now hold other files), each logged."""
        ids = [s.id for s in states]
        for loc_id, location in self.locations.render(ids).items():
            self.changes.log("removed", loc_id, location=location)
        for batch in chunks(ids):
            self.store.execute(f"DELETE FROM cache_state WHERE id IN ({marks(batch)})", batch)
        self.tags.update_missing_marks(s.asset_id for s in states)

    # -- cleanup ----------------------------------------------------------------------

    def _live_location_of(self, A: Any) -> Any:
        L = self.store.models.Location
        return L.select(L.id).where((L.asset == A.id) & ~L.is_missing)

    def _others_location_of(self, A: Any) -> Any:
        """A location of the asset on another node's root: that node decides about it."""
        L = self.store.models.Location
        return L.select(L.id).where((L.asset == A.id) & L.root.in_(self.roots.others()))

    def get_unreferenced_unhashed_asset_ids(self) -> list[int]:
        """Assets with no hash and no live location (and none on another node's roots)."""
        A = self.store.models.Asset
        query = A.select(A.id).where(
            A.hash.is_null()
            & ~pw.fn.EXISTS(self._live_location_of(A))
            & ~pw.fn.EXISTS(self._others_location_of(A))
        )
        return [r.id for r in query.order_by(A.id)]

    def cleanup_unreferenced_assets(
        self, missing_older_than: float | None = None, *, dry_run: bool = False
    ) -> int:
        """The only hard delete; returns the number of assets deleted.

        Deletes assets with no hash and no live location; with ``missing_older_than``
        (seconds), also every asset that has had no live location for longer than that.
        Their locations and tags go with them, each location logged as ``removed``.
        """
        A, L, T = self.store.models.Asset, self.store.models.Location, self.store.models.Tag
        with self.changes.write():
            doomed = set(self.get_unreferenced_unhashed_asset_ids())
            if missing_older_than is not None:
                cutoff = self.store.now() - missing_older_than
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
                for loc_id, location in self.locations.render(r.id for r in locs).items():
                    self.changes.log("removed", loc_id, location=location)
                T.delete().where(T.asset.in_(ids)).execute()
                L.delete().where(L.asset.in_(ids)).execute()
                A.delete().where(A.id.in_(ids)).execute()
        return len(doomed)
