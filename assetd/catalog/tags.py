"""What is said about assets and places: automatic tags, user tags and user metadata.

A location's tags are its asset's user tags, the asset's ``missing`` mark, and the
automatic tags of that location alone (its root, its folders): a copy placed elsewhere
does not carry the tags of the first place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from assetd.catalog.changelog import ChangeLog
from assetd.catalog.roots import Roots
from assetd.catalog.sql import CHUNK, Store, chunks, marks
from assetd.exceptions import AutomaticTagError, InvalidRequestError
from assetd.paths import folder_tags

__all__ = ["MISSING_TAG", "Layer", "Place", "PlaceTags", "Tags"]

MISSING_TAG = "missing"

# (location id, root, path): where a location is, all its automatic tags depend on.
Place = tuple[int, str, bytes]


class Layer(Protocol):
    """Rules over the roots that tag files by where they are (a ComfyUI install's
    categories): the tags and the Location fields they give one path, and an id that
    changes when the rules do."""

    def category_tags(self, path: bytes) -> set[str]: ...

    def describe(self, path: bytes) -> dict[str, Any]: ...

    def rules_id(self) -> str: ...


def _valid_tag(tag: str) -> str:
    name = tag.strip()
    if not name or len(name) > 128 or any(ord(c) < 32 for c in name):
        raise InvalidRequestError(f"invalid tag {tag!r}: 1–128 printable characters")
    return name


class PlaceTags:
    """The automatic tags of a path: its root and folder names, and the layer's category.

    They come from the folder alone (and, for a layer's categories, the extension), and
    a batch of files shares few folders: each (root, folder, extension) is worked out once.
    """

    def __init__(self, roots: dict[str, bytes], layer: Layer | None) -> None:
        self.roots = roots  # root name → prefix, as the catalog registered them
        self.layer = layer
        self._known: dict[tuple[str, bytes, bytes], tuple[str, ...]] = {}

    def __call__(self, root: str, path: bytes) -> tuple[str, ...]:
        cut = path.rfind(b"/") + 1
        dot = path.rfind(b".")
        kind = (root, path[:cut], path[dot:].lower() if dot > cut else b"")
        names = self._known.get(kind)
        if names is None:
            found = folder_tags(self.roots, root, path[:cut])
            if self.layer is not None:
                found |= self.layer.category_tags(path)
            names = self._known[kind] = tuple(sorted(found))
        return names


class Tags:
    """The tags of locations and assets, and the user metadata of assets."""

    def __init__(
        self, store: Store, changes: ChangeLog, roots: Roots, layer: Layer | None = None
    ) -> None:
        self.store = store
        self.changes = changes
        self.roots = roots
        self.layer = layer

    def of(self, asset_ids: Iterable[int]) -> dict[int, list[str]]:
        """The tags of assets themselves (user tags and ``missing``), sorted, by asset id."""
        found: dict[int, set[str]] = {}
        for batch in chunks(sorted(set(asset_ids))):
            rows = self.store.query(
                f"SELECT asset_id, name FROM tag WHERE asset_id IN ({marks(batch)})", batch
            )
            for asset_id, name in rows:
                found.setdefault(asset_id, set()).add(name)
        return {asset_id: sorted(names) for asset_id, names in found.items()}

    def at(self, locations: Iterable[tuple[int, int]]) -> dict[int, tuple[list[str], list[str]]]:
        """(every tag, the user tags), each sorted, of (location id, asset id) locations,
        by location id."""
        pairs = dict(locations)
        by_asset: dict[int, tuple[set[str], set[str]]] = {a: (set(), set()) for a in pairs.values()}
        for batch in chunks(sorted(by_asset)):
            rows = self.store.query(
                f"SELECT asset_id, name, origin FROM tag WHERE asset_id IN ({marks(batch)})",
                batch,
            )
            for asset_id, name, origin in rows:
                by_asset[asset_id][0 if origin == "user" else 1].add(name)
        own: dict[int, set[str]] = {loc: set() for loc in pairs}
        for batch in chunks(sorted(pairs)):
            rows = self.store.query(
                f"SELECT location_id, name FROM location_tag WHERE location_id IN ({marks(batch)})",
                batch,
            )
            for loc, name in rows:
                own[loc].add(name)
        found = {}
        for loc, asset_id in pairs.items():
            user, marked = by_asset[asset_id]  # marked: ``missing``
            found[loc] = (sorted(user | marked | own[loc]), sorted(user))
        return found

    # -- automatic tags and the missing mark ----------------------------------------

    def place(self, places: Iterable[Place]) -> dict[int, tuple[str, ...]]:
        """Give new locations the automatic tags of their place; returns them by id."""
        tags_at = PlaceTags(self.roots.prefixes(), self.layer)
        given = {loc: tags_at(root, path) for loc, root, path in places}
        self.insert_placed(given)
        return given

    def insert_placed(self, given: dict[int, tuple[str, ...]]) -> None:
        """Store automatic tags already worked out (:class:`PlaceTags`), by location id."""
        self.store.insert_many(
            "INSERT INTO location_tag (location_id, name) VALUES (?, ?)",
            [(loc, name) for loc, names in given.items() for name in names],
        )

    def relocate(self, places: Sequence[Place]) -> None:
        """Locations that moved take the automatic tags of their new place."""
        ids = [loc for loc, _, _ in places]
        for batch in chunks(ids):
            self.store.execute(
                f"DELETE FROM location_tag WHERE location_id IN ({marks(batch)})", batch
            )
        self.place(places)

    def stale_roots(self, roots: Sequence[str], rules: str) -> list[str]:
        """Those of ``roots`` whose locations were last tagged by other rules (a read)."""
        keys = {f"tag_rules:{name}": name for name in roots}  # a root is one node's
        if not keys:
            return []
        have = dict(
            self.store.query(
                f"SELECT key, value FROM catalog_info WHERE key IN ({marks(list(keys))})",
                list(keys),
            )
        )
        return sorted(name for key, name in keys.items() if have.get(key, "") != rules)

    def retag(self, roots: Sequence[str], rules: str) -> None:
        """Give every location of ``roots`` the automatic tags of the current ``rules``,
        and remember that they did."""
        Info = self.store.models.Info
        for name in roots:
            after = 0
            while True:
                rows = self.store.query(
                    "SELECT id, root, file_path FROM cache_state WHERE root = ? AND id > ? "
                    "ORDER BY id LIMIT ?",
                    [name, after, CHUNK],
                )
                if not rows:
                    break
                self.relocate([(loc, root, bytes(path)) for loc, root, path in rows])
                after = rows[-1][0]
            self.store.upsert(Info, Info.key, key=f"tag_rules:{name}", value=rules)

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
            store.insert_many(
                "INSERT INTO tag (asset_id, name, origin) VALUES (?, ?, 'auto')",
                [(a, MISSING_TAG) for a in dead if a not in marked],
            )
            store.execute_many(
                "UPDATE asset SET missing_since = ? WHERE id = ? AND missing_since IS NULL",
                [(store.now(), a) for a in dead if a not in marked],
            )

    # -- what people say ------------------------------------------------------------

    def _at(self, path: bytes) -> tuple[int, int]:
        """(location id, asset id) at ``path``."""
        rows = self.store.query("SELECT id, asset_id FROM cache_state WHERE file_path = ?", [path])
        if not rows:
            raise self.store.not_found(path)
        return int(rows[0][0]), int(rows[0][1])

    def _user(self, asset_id: int) -> set[str]:
        rows = self.store.query(
            "SELECT name FROM tag WHERE asset_id = ? AND origin = 'user'", [asset_id]
        )
        return {r[0] for r in rows}

    def change(self, path: bytes, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add and remove user tags of the asset at ``path``; returns the location's tags.

        Removing a tag the location has only automatically (its root, a folder,
        ``missing``) is refused with :class:`AutomaticTagError`, and nothing changes: it
        would come back, so saying "done" would mislead.
        """
        add, remove = [_valid_tag(t) for t in add], [_valid_tag(t) for t in remove]
        with self.changes.write():
            loc_id, asset_id = self._at(path)
            have = self._user(asset_id)
            tags, _ = self.at([(loc_id, asset_id)])[loc_id]
            automatic = sorted((set(remove) - set(add) - have) & set(tags))
            if automatic:
                raise AutomaticTagError(
                    f"{', '.join(automatic)}: automatic at {os.fsdecode(path)} (its root, a "
                    "folder or the missing mark gives it); only user tags can be removed"
                )
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
                for (other,) in rows:
                    self.changes.log("tagged", other)
            return self.at([(loc_id, asset_id)])[loc_id][0]

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
            _, asset_id = self._at(path)
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
