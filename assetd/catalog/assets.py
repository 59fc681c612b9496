"""Content: new files become unhashed seed assets; hashed files join the asset of their content."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from assetd.catalog.part import Part
from assetd.catalog.sql import chunks, marks, stat_params
from assetd.decide import FileStat
from assetd.hashing import HashResult
from assetd.mime import guess_mime
from assetd.paths import file_name

__all__ = ["Assets", "NewFile", "ReadyFile"]

# (path, root, stat, mime type) of a file the catalog has no location for.
NewFile = tuple[bytes, str, FileStat, str | None]


class ReadyFile(NamedTuple):
    """A new file with its rows worked out away from the writer (:mod:`assetd.prepare`)."""

    path: bytes
    root: str
    stat: FileStat  # as hashed, when it was
    mime: str | None
    hash: str | None  # None: hashed later (a large file, or one that could not be read)
    verify: bool  # its location waits for a hash: none yet, or one taken while it was written
    generation: str | None
    tags: tuple[str, ...]  # its automatic tags
    known: int | None  # the asset of its content, which the catalog had already
    # Its ``added`` change as JSON, cut where its new asset's id goes; None: the change is
    # rendered at commit (content the catalog had, which may carry user tags).
    body: tuple[bytes, bytes] | None


class Assets(Part):
    """Where content identity is written: seed assets, hashes, and locations joining them."""

    def insert_new(
        self, files: Sequence[NewFile], hashed: Mapping[bytes, HashResult] | None = None
    ) -> None:
        """One unhashed seed asset and one location per new file, in bulk, each logged.

        A file whose hash is in ``hashed`` (by path) then joins the asset of its content
        at once, and its one ``added`` change carries the hash.
        """
        hashed = hashed or {}
        store = self.store
        now = store.now()
        asset_ids = store.allocate_ids("asset", len(files))
        store.insert_many(
            "INSERT INTO asset (id, hash, size_bytes, mime_type, user_metadata, created_at) "
            "VALUES (?, NULL, ?, ?, '{}', ?)",
            [(a, st.size, mime, now) for a, (_, _, st, mime) in zip(asset_ids, files, strict=True)],
        )
        location_ids = store.allocate_ids("cache_state", len(files))
        store.insert_many(
            "INSERT INTO cache_state (id, file_path, file_name, root, asset_id, size, mtime_ns, "
            "ctime_ns, inode, device, needs_verify, is_missing, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (loc, path, file_name(path), root, a, *stat_params(st), True, False, now)
                for loc, a, (path, root, st, _) in zip(location_ids, asset_ids, files, strict=True)
            ],
        )
        given = self.tags.place(
            (loc, root, path) for loc, (path, root, _, _) in zip(location_ids, files, strict=True)
        )
        for loc, a, (path, root, st, mime) in zip(location_ids, asset_ids, files, strict=True):
            if path in hashed:
                continue
            values = (path, root, a, None, st.size, st.mtime_ns, mime, False, True)
            location = self.locations.json(values, list(given[loc]), [])
            self.changes.log("added", loc, location=location)
        if hashed:
            done = [
                (loc, hashed[path])
                for loc, (path, _, _, _) in zip(location_ids, files, strict=True)
                if path in hashed
            ]
            self.join_hashes(done, log=False)
            for loc, _ in done:
                self.changes.log("added", loc)  # rendered at commit: with its hash

    def insert_ready(self, files: Sequence[ReadyFile]) -> None:
        """Each file as one location, of new content or of the content the catalog had,
        with one ``added`` change: the rows and change bodies come built, this only
        writes them. Raises :class:`RowConflict` when a path or a hash has a row by now
        (another writer was first): the caller then takes the way that looks first."""
        store = self.store
        now = store.now()
        fresh = store.allocate_ids("asset", sum(1 for f in files if f.known is None))
        ids = iter(fresh)
        asset_of: list[int] = []
        made: list[bool] = []  # the file's row made its asset: its built body holds
        rows: list[tuple[Any, ...]] = []
        first: dict[str, int] = {}  # content new in this batch: hash → its asset
        for f in files:
            if f.known is not None:
                asset_of.append(f.known)
                made.append(False)
            elif f.hash is not None and f.hash in first:
                asset_of.append(first[f.hash])  # the same new content twice
                made.append(False)
                next(ids)
            else:
                asset_id = next(ids)
                if f.hash is not None:
                    first[f.hash] = asset_id
                rows.append((asset_id, f.hash, f.stat.size, f.mime, now, f.generation))
                asset_of.append(asset_id)
                made.append(True)
        store.insert_many(
            "INSERT INTO asset (id, hash, size_bytes, mime_type, user_metadata, created_at, "
            "generation) VALUES (?, ?, ?, ?, '{}', ?, ?)",
            rows,
        )
        location_ids = store.allocate_ids("cache_state", len(files))
        store.insert_many(
            "INSERT INTO cache_state (id, file_path, file_name, root, asset_id, size, mtime_ns, "
            "ctime_ns, inode, device, needs_verify, is_missing, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    loc,
                    f.path,
                    file_name(f.path),
                    f.root,
                    a,
                    *stat_params(f.stat),
                    f.verify,
                    False,
                    now,
                )
                for loc, a, f in zip(location_ids, asset_of, files, strict=True)
            ],
        )
        self.tags.insert_placed({loc: f.tags for loc, f in zip(location_ids, files, strict=True)})
        for loc, a, f, own in zip(location_ids, asset_of, files, made, strict=True):
            if f.body is not None and own:
                head, tail = f.body
                self.changes.log_built("added", loc, f.root, b"%s%d%s" % (head, a, tail))
            else:
                self.changes.log("added", loc)  # rendered at commit, with its content's tags
        known = [(f.generation, f.known) for f in files if f.known is not None and f.generation]
        store.execute_many(
            "UPDATE asset SET generation = ? WHERE id = ? AND generation IS NULL", known
        )
        joined = {f.known for f in files if f.known is not None}
        if joined:
            self.tags.update_missing_marks(joined)

    def join_hashes(
        self, done: Sequence[tuple[int, HashResult]], *, log: bool = True
    ) -> list[tuple[int, HashResult]]:
        """Each (location id, hash result) of a live location joins the asset of its
        content; returns those, the others (gone meanwhile) are left out.

        An unhashed seed asset takes the hash when no asset has it yet; otherwise the
        location moves to the asset that has it (a seed left behind is deleted, its user
        data merged), or to a new asset when the content at the path changed. Reads are
        a few queries per batch and the updates run in bulk.
        """
        live = self.locations.live_locations([loc for loc, _ in done])
        done = [(loc, r) for loc, r in done if loc in live]
        if not done:
            return []
        asset_ids, hashes = [live[loc][0] for loc, _ in done], [r.hash for _, r in done]
        book = _JoinBatch.load(self, asset_ids, hashes, log=log)
        for loc, result in done:
            asset_id, _, path = live[loc]
            book.settle(self, loc, asset_id, path, result)
        book.flush(self)
        return done

    def by_hash(self, hashes: Sequence[str]) -> list[tuple[str, int]]:
        """(hash, asset id) for the hashes the catalog knows."""
        found: list[tuple[str, int]] = []
        for batch in chunks(sorted(set(hashes))):
            sql = f"SELECT hash, id FROM asset WHERE hash IN ({marks(batch)})"
            found += [(h, a) for h, a in self.store.query(sql, batch)]
        return found

    def info(self, ids: Sequence[int]) -> dict[int, tuple[str | None, str | None, int]]:
        """Asset id → (hash, mime type, number of locations)."""
        found: dict[int, tuple[str | None, str | None, int]] = {}
        for batch in chunks(list(ids)):
            rows = self.store.query(
                "SELECT a.id, a.hash, a.mime_type, "
                "(SELECT COUNT(*) FROM cache_state l WHERE l.asset_id = a.id) "
                f"FROM asset a WHERE a.id IN ({marks(batch)})",
                batch,
            )
            found.update((a, (h, m, n)) for a, h, m, n in rows)
        return found

    def generations(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Asset id → what made it (models and prompt), for those that are ComfyUI outputs."""
        found: dict[int, dict[str, Any]] = {}
        for batch in chunks(sorted(set(ids))):
            rows = self.store.query(
                f"SELECT id, generation FROM asset WHERE id IN ({marks(batch)}) "
                "AND generation IS NOT NULL",
                batch,
            )
            for asset_id, text in rows:
                value = _decoded(text)
                if value is not None:
                    found[asset_id] = value
        return found

    def _create(self, result: HashResult, mime: str | None) -> int:
        (asset_id,) = self.store.allocate_ids("asset", 1)
        self.store.execute(
            "INSERT INTO asset (id, hash, size_bytes, mime_type, user_metadata, created_at, "
            "generation) VALUES (?, ?, ?, ?, '{}', ?, ?)",
            [asset_id, result.hash, result.stat.size, mime, self.store.now(), result.generation],
        )
        return asset_id

    def _delete_seeds(self, seeds: Sequence[tuple[int, int]]) -> None:
        """Delete seed assets whose one location joined known content; their user data
        goes to the asset it joined."""
        ids = [seed for seed, _ in seeds]
        with_data: set[int] = set()
        for batch in chunks(ids):
            in_ids = marks(batch)
            with_data.update(
                r[0]
                for r in self.store.query(
                    f"SELECT asset_id FROM tag WHERE asset_id IN ({in_ids}) AND origin = 'user'",
                    batch,
                )
            )
            with_data.update(
                r[0]
                for r in self.store.query(
                    f"SELECT id FROM asset WHERE id IN ({in_ids}) AND user_metadata != '{{}}'",
                    batch,
                )
            )
        for seed, successor in seeds:
            if seed in with_data:
                self.tags.merge_user_data(seed, successor)
        for batch in chunks(ids):
            self.store.execute(f"DELETE FROM tag WHERE asset_id IN ({marks(batch)})", batch)
            self.store.execute(f"DELETE FROM asset WHERE id IN ({marks(batch)})", batch)


@dataclass
class _JoinBatch:
    """The assets one batch of hash results touches: read once, kept current in memory."""

    hashes: dict[int, str | None]  # asset id -> hash
    mimes: dict[int, str | None]
    counts: dict[int, int]  # asset id -> number of locations
    by_hash: dict[str, int]
    # (hash, size, generation, asset)
    new_hashes: list[tuple[str, int, str | None, int]] = field(default_factory=list)
    # (generation, asset): content known already, which may have been hashed without it
    generations: list[tuple[str, int]] = field(default_factory=list)
    stats: list[tuple[int, FileStat, bool, int | None]] = field(default_factory=list)
    joined: set[int] = field(default_factory=set)  # assets a location moved to
    left: set[int] = field(default_factory=set)  # assets a location moved away from
    seeds: list[tuple[int, int]] = field(default_factory=list)  # (seed asset, its successor)
    log: bool = True  # log each location whose asset changed as ``hashed``

    @classmethod
    def load(
        cls, assets: Assets, asset_ids: list[int], hashes: list[str], *, log: bool
    ) -> _JoinBatch:
        known = dict(assets.by_hash(hashes))
        info = assets.info(sorted(set(asset_ids) | set(known.values())))
        return cls(
            hashes={a: h for a, (h, _, _) in info.items()},
            mimes={a: m for a, (_, m, _) in info.items()},
            counts={a: n for a, (_, _, n) in info.items()},
            by_hash=known,
            log=log,
        )

    def settle(
        self,
        assets: Assets,
        loc_id: int,
        current: int,
        path: bytes,
        result: HashResult,
    ) -> None:
        """Decide which asset the location belongs to now; log ``hashed`` when that changed."""
        if self.hashes.get(current) == result.hash:
            self.stats.append((loc_id, result.stat, result.racy, None))
            if result.generation is not None:
                self.generations.append((result.generation, current))
            return
        target = self.by_hash.get(result.hash)
        alone = self.counts.get(current, 0) == 1
        if target is None and self.hashes.get(current) is None and alone:
            # An unhashed seed asset takes its hash: same asset, nothing moves.
            self.new_hashes.append((result.hash, result.stat.size, result.generation, current))
            self.hashes[current], self.by_hash[result.hash] = result.hash, current
            self.stats.append((loc_id, result.stat, result.racy, None))
            if self.log:
                assets.changes.log("hashed", loc_id)
            return
        if target is not None and result.generation is not None:
            self.generations.append((result.generation, target))
        if target is None:
            target = assets._create(result, self.mimes.get(current) or guess_mime(path))
            self.by_hash[result.hash], self.hashes[target], self.counts[target] = (
                target,
                result.hash,
                0,
            )
        self.stats.append((loc_id, result.stat, result.racy, target))
        self.counts[current] -= 1
        self.counts[target] += 1
        self.joined.add(target)
        if self.hashes.get(current) is None and self.counts[current] == 0:
            self.seeds.append((current, target))  # the duplicate seed of known content goes
        else:
            self.left.add(current)
        if self.log:
            assets.changes.log("hashed", loc_id)

    def flush(self, assets: Assets) -> None:
        # In hash order: the unique index takes them left to right, not at random pages.
        assets.store.execute_many(
            "UPDATE asset SET hash = ?, size_bytes = ?, generation = ? WHERE id = ?",
            sorted(self.new_hashes, key=lambda row: row[0]),
        )
        assets.store.execute_many(
            "UPDATE asset SET generation = ? WHERE id = ? AND generation IS NULL", self.generations
        )
        assets.locations.set_stats(self.stats)
        if self.seeds:
            assets._delete_seeds(self.seeds)
        seed_ids = {seed for seed, _ in self.seeds}
        assets.tags.update_missing_marks(self.joined | (self.left - seed_ids))


def _decoded(text: object) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
