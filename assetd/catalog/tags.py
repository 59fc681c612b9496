"""What is said about assets: automatic tags, user tags and user metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from assetd.catalog.changelog import ChangeLog
from assetd.catalog.roots import Roots
from assetd.catalog.sql import Store, chunks, marks
from assetd.exceptions import InvalidRequestError, NotFoundError
from assetd.paths import auto_tags

__all__ = ["MISSING_TAG", "Tags", "folder_tags"]

MISSING_TAG = "missing"


def folder_tags(roots: dict[str, bytes], root: str, path: bytes) -> set[str]:
    """The automatic tags one location gives its asset: root name and folder names."""
    prefix = roots.get(root)
    if prefix is not None and path.startswith(prefix):
        return auto_tags(root, prefix, path)
    return {root}


def _valid_tag(tag: str) -> str:
    name = tag.strip()
    if not name or len(name) > 128 or any(ord(c) < 32 for c in name):
        raise InvalidRequestError(f"invalid tag {tag!r}: 1–128 printable characters")
    return name


class Tags:
    """The tags and metadata of assets."""

    def __init__(self, store: Store, changes: ChangeLog, roots: Roots) -> None:
        self.store = store
        self.changes = changes
        self.roots = roots

    def of(self, asset_ids: Iterable[int]) -> dict[int, list[str]]:
        """Every tag (user and automatic, once each, sorted) by asset id."""
        found: dict[int, set[str]] = {}
        for batch in chunks(sorted(set(asset_ids))):
            rows = self.store.query(
                f"SELECT asset_id, name FROM tag WHERE asset_id IN ({marks(batch)})", batch
            )
            for asset_id, name in rows:
                found.setdefault(asset_id, set()).add(name)
        return {asset_id: sorted(names) for asset_id, names in found.items()}

    # -- automatic tags and the missing mark ----------------------------------------

    def refresh(self, asset_ids: Iterable[int]) -> None:
        """Recompute the automatic tags of these assets from all their locations.

        Needed when a location leaves an asset; a location joining one only adds
        (:meth:`add_auto`), and one going missing or coming back only changes the
        missing mark (:meth:`update_missing_marks`).
        """
        roots = self.roots.prefixes()
        ids = sorted(set(asset_ids))
        for batch in chunks(ids):
            wanted: dict[int, set[str]] = {asset_id: set() for asset_id in batch}
            rows = self.store.query(
                f"SELECT asset_id, file_path, root FROM cache_state "
                f"WHERE asset_id IN ({marks(batch)})",
                list(batch),
            )
            for asset_id, path, root in rows:
                wanted[asset_id] |= folder_tags(roots, root, bytes(path))
            have = self._auto(batch)
            for asset_id in batch:
                gone = sorted(have[asset_id] - wanted[asset_id] - {MISSING_TAG})
                if gone:
                    self.store.execute(
                        f"DELETE FROM tag WHERE asset_id = ? AND origin = 'auto' "
                        f"AND name IN ({marks(gone)})",
                        [asset_id, *gone],
                    )
            self.insert_auto((a, n) for a in batch for n in wanted[a] - have[a] - {MISSING_TAG})
        self.update_missing_marks(ids)

    def add_auto(self, locations: Iterable[tuple[int, str, bytes]]) -> None:
        """Add the folder tags of (asset id, root, path) locations that joined their assets."""
        roots = self.roots.prefixes()
        wanted: dict[int, set[str]] = {}
        for asset_id, root, path in locations:
            wanted.setdefault(asset_id, set()).update(folder_tags(roots, root, path))
        for batch in chunks(sorted(wanted)):
            have = self._auto(batch)
            self.insert_auto((a, n) for a in batch for n in wanted[a] - have[a])

    def update_missing_marks(self, asset_ids: Iterable[int]) -> None:
        """Mark with the automatic tag ``missing`` exactly the assets with no live location."""
        store = self.store
        for batch in chunks(sorted(set(asset_ids))):
            ids, in_ids = list(batch), marks(batch)
            live_rows = store.query(
                f"SELECT DISTINCT asset_id FROM cache_state WHERE asset_id IN ({in_ids}) "
                "AND NOT is_missing",
                ids,
            )
            live = {r[0] for r in live_rows}
            dead = [a for a in ids if a not in live]
            tagged = store.query(
                f"SELECT asset_id FROM tag WHERE asset_id IN ({in_ids}) AND origin = 'auto' "
                "AND name = ?",
                [*ids, MISSING_TAG],
            )
            marked = {r[0] for r in tagged}
            revived = sorted(live & marked)
            if revived:
                store.execute_many(
                    "DELETE FROM tag WHERE asset_id = ? AND origin = 'auto' AND name = ?",
                    [(a, MISSING_TAG) for a in revived],
                )
                store.execute_many(
                    "UPDATE asset SET missing_since = NULL WHERE id = ?", [(a,) for a in revived]
                )
            self.insert_auto((a, MISSING_TAG) for a in dead if a not in marked)
            store.execute_many(
                "UPDATE asset SET missing_since = ? WHERE id = ? AND missing_since IS NULL",
                [(store.now(), a) for a in dead if a not in marked],
            )

    def _auto(self, asset_ids: Sequence[int]) -> dict[int, set[str]]:
        have: dict[int, set[str]] = {asset_id: set() for asset_id in asset_ids}
        rows = self.store.query(
            f"SELECT asset_id, name FROM tag WHERE asset_id IN ({marks(asset_ids)}) "
            "AND origin = 'auto'",
            list(asset_ids),
        )
        for asset_id, name in rows:
            have[asset_id].add(name)
        return have

    def insert_auto(self, pairs: Iterable[tuple[int, str]]) -> None:
        """(asset id, tag name) rows of automatic tags, in bulk."""
        rows = [(a, n) for a, n in pairs]
        self.store.insert_many(
            "INSERT INTO tag (asset_id, name, origin) VALUES (?, ?, 'auto')", rows
        )

    # -- what people say ------------------------------------------------------------

    def _asset_at(self, path: bytes) -> int:
        rows = self.store.query("SELECT asset_id FROM cache_state WHERE file_path = ?", [path])
        if not rows:
            raise NotFoundError(f"{os.fsdecode(path)} is not in the catalog")
        return int(rows[0][0])

    def _user(self, asset_id: int) -> set[str]:
        rows = self.store.query(
            "SELECT name FROM tag WHERE asset_id = ? AND origin = 'user'", [asset_id]
        )
        return {r[0] for r in rows}

    def change(self, path: bytes, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add and remove user tags of the asset at ``path``; returns all its tags."""
        add, remove = [_valid_tag(t) for t in add], [_valid_tag(t) for t in remove]
        with self.changes.write():
            asset_id = self._asset_at(path)
            have = self._user(asset_id)
            new = sorted(set(add) - have - set(remove))
            gone = sorted(have & (set(remove) - set(add)))
            self.store.insert_many(
                "INSERT INTO tag (asset_id, name, origin) VALUES (?, ?, 'user')",
                [(asset_id, n) for n in new],
            )
            if gone:
                self.store.execute(
                    f"DELETE FROM tag WHERE asset_id = ? AND origin = 'user' "
                    f"AND name IN ({marks(gone)})",
                    [asset_id, *gone],
                )
            if new or gone:
                rows = self.store.query(
                    "SELECT id FROM cache_state WHERE asset_id = ? ORDER BY file_path", [asset_id]
                )
                for (loc_id,) in rows:
                    self.changes.log("tagged", loc_id)
        return self.of([asset_id]).get(asset_id, [])

    def _metadata(self, asset_id: int) -> dict[str, Any]:
        ((text,),) = self.store.query("SELECT user_metadata FROM asset WHERE id = ?", [asset_id])
        return dict(json.loads(text))

    def _set_metadata(self, asset_id: int, metadata: dict[str, Any]) -> None:
        self.store.execute(
            "UPDATE asset SET user_metadata = ? WHERE id = ?",
            [json.dumps(metadata, sort_keys=True), asset_id],
        )

    def change_metadata(
        self, path: bytes, set_: dict[str, Any] | None = None, unset: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Set and unset user metadata keys of the asset at ``path``; returns all of it."""
        with self.changes.write():
            asset_id = self._asset_at(path)
            metadata = self._metadata(asset_id)
            if set_ or unset:
                metadata.update(set_ or {})
                for key in unset:
                    metadata.pop(key, None)
                self._set_metadata(asset_id, metadata)
        return metadata

    def merge_user_data(self, source: int, target: int) -> None:
        """Copy the user tags and metadata of asset ``source`` onto ``target`` (target wins)."""
        new = self._user(source) - self._user(target)
        self.store.insert_many(
            "INSERT INTO tag (asset_id, name, origin) VALUES (?, ?, 'user')",
            [(target, n) for n in sorted(new)],
        )
        have = self._metadata(target)
        merged = {**self._metadata(source), **have}
        if merged != have:
            self._set_metadata(target, merged)
