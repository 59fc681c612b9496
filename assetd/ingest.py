"""Writing what a pass saw into the catalog: observations in batches, then hashes.

The seeder and the reconciler share these two steps. Each call is one short write
transaction; no stat or hash call ever happens inside one.
"""

from __future__ import annotations

import mimetypes
import os
import stat as stat_mod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, NamedTuple

from assetd.config import RootConfig
from assetd.db import Catalog, chunks, location_json, stat_params
from assetd.decide import CachedState, Decision, FileStat, Outcome, decide
from assetd.hashing import HashOutcome, HashResult, hash_one
from assetd.hashpool import HashPool
from assetd.paths import ExcludeMatcher, root_for_path

__all__ = [
    "HashOutcome",
    "Observation",
    "Tally",
    "apply_hashes",
    "apply_observations",
    "guess_mime",
    "look_again",
    "observe",
    "regular_stat",
    "restore_paths",
    "write_current",
]


@cache
def _mime_table() -> mimetypes.MimeTypes:
    """Only the built-in table: /etc/mime.types differs between machines, answers must
    not. Built on first use (a few milliseconds that most commands never need)."""
    table = mimetypes.MimeTypes(filenames=())
    table.add_type("application/x-safetensors", ".safetensors", strict=False)
    table.add_type("application/x-gguf", ".gguf", strict=False)
    return table


def guess_mime(path: bytes) -> str | None:
    return _mime_table().guess_type(os.fsdecode(path), strict=False)[0]


class Observation(NamedTuple):
    """One path looked at: what is on disk, what the catalog had, and what it means."""

    path: bytes
    root: str
    stat: FileStat | None
    state: CachedState | None
    decision: Decision


def observe(
    path: bytes, root: str, stat: FileStat | None, state: CachedState | None
) -> Observation:
    return Observation(path, root, stat, state, decide(stat, state))


@dataclass
class Tally:
    """Counts of what a pass did, in the vocabulary of the progress events."""

    scanned: int = 0
    total: int = 0
    created: int = 0
    skipped: int = 0
    modified: int = 0
    hashed: int = 0
    marked_missing: int = 0
    restored: int = 0
    to_hash: int = 0
    to_hash_bytes: int = 0
    hashed_bytes: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


# How many times a path another writer keeps changing is looked at again before the
# other writer is left to it (it has seen the path more recently).
LOOKS = 3


def apply_observations(
    catalog: Catalog, observations: Sequence[Observation], tally: Tally, *, check: bool = True
) -> list[Observation]:
    """Write one batch of observations in one transaction, logging each change.

    Each observation was decided on a cache state read before this transaction. A path
    whose row has changed since (the live path wrote it while a pass walked, or another
    process did) is not written: its decision is out of date. Those observations are
    returned, for the caller to look at again (:func:`write_current`). Without
    ``check``, the caller vouches that no one else can have written these paths since it
    read them (the live path: it reads and writes on the one writer thread).
    """
    stats: list[tuple[int, FileStat, bool, int | None]] = []
    missing: list[int] = []
    restored: list[CachedState] = []
    rehash: dict[bytes, FileStat] = {}  # restored paths whose file changed while missing
    with catalog.write():
        stale: list[Observation] = []
        if check:
            observations, stale = _still_current(catalog, observations)
        new = [o for o in observations if o.decision.outcome is Outcome.NEW]
        for obs in observations:
            outcome, state, stat = obs.decision.outcome, obs.state, obs.stat
            if outcome is Outcome.UNCHANGED:
                tally.skipped += 1
            elif outcome in (Outcome.MODIFIED, Outcome.VERIFY):
                assert stat is not None and state is not None
                stats.append((state.id, stat, True, None))
                if outcome is Outcome.MODIFIED:
                    tally.modified += 1
                    catalog.log("modified", state.id)
            elif outcome is Outcome.MISSING:
                assert state is not None
                missing.append(state.id)
            elif outcome is Outcome.RESTORED:
                assert stat is not None and state is not None
                if obs.decision.rehash:
                    rehash[state.path] = stat
                restored.append(state)
        catalog.set_stats(stats)
        tally.restored += catalog.restore_states(restored, rehash)
        if missing:
            tally.marked_missing += catalog.mark_missing(missing)
        if new:
            _insert_new(catalog, new)
            tally.created += len(new)
    return stale


def _still_current(
    catalog: Catalog, observations: Sequence[Observation]
) -> tuple[list[Observation], list[Observation]]:
    """Split a batch into the observations whose cache state is still the catalog's and
    those whose state has changed since it was read (inside the write transaction, so
    the answer holds until it commits)."""
    idle = (Outcome.UNCHANGED, Outcome.NOTHING)  # they write nothing: no need to check
    current = [o for o in observations if o.decision.outcome in idle]
    stale: list[Observation] = []
    acting = [o for o in observations if o.decision.outcome not in idle]
    if not acting:
        return current, stale
    now = catalog.get_states([o.path for o in acting], with_hash=False)
    for obs in acting:
        then = obs.state._replace(hash=None) if obs.state is not None else None
        (current if then == now.get(obs.path) else stale).append(obs)
    return current, stale


def _apply(catalog: Catalog, observations: Sequence[Observation]) -> list[Observation]:
    return apply_observations(catalog, observations, Tally())


def write_current(
    catalog: Catalog,
    observations: Sequence[Observation],
    follow_symlinks: bool,
    write: Callable[[Sequence[Observation]], list[Observation]],
) -> None:
    """``write`` the observations (an :func:`apply_observations`, one way or another);
    the paths another writer changed meanwhile are observed afresh, their stat and row
    now, and written again: :data:`LOOKS` times at most, then the other writer, which
    saw them later, has the last word."""
    for _ in range(LOOKS):
        stale = write(observations)
        if not stale:
            return
        states = catalog.get_states([o.path for o in stale])
        observations = [
            observe(o.path, o.root, regular_stat(o.path, follow_symlinks), states.get(o.path))
            for o in stale
        ]


def _insert_new(catalog: Catalog, new: Sequence[Observation]) -> None:
    """One unhashed seed asset and one location per new file, in bulk, each logged."""
    now = catalog.now()
    prefixes = catalog.root_prefixes()
    files = [(o, o.stat) for o in new if o.stat is not None]
    asset_ids = catalog.allocate_ids("asset", len(files))
    mimes = [guess_mime(o.path) for o, _ in files]
    catalog.insert_many(
        "INSERT INTO asset (id, hash, size_bytes, mime_type, user_metadata, created_at) "
        "VALUES (?, NULL, ?, ?, '{}', ?)",
        [(a, st.size, mime, now) for a, (_, st), mime in zip(asset_ids, files, mimes, strict=True)],
    )
    location_ids = catalog.allocate_ids("cache_state", len(files))
    catalog.insert_many(
        "INSERT INTO cache_state (id, file_path, root, asset_id, size, mtime_ns, ctime_ns, "
        "inode, device, needs_verify, is_missing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (loc, o.path, o.root, a, *stat_params(st), True, False)
            for loc, a, (o, st) in zip(location_ids, asset_ids, files, strict=True)
        ],
    )
    tags: list[tuple[int, str]] = []
    # Automatic tags come from the folder alone, and a batch's files share few folders.
    by_folder: dict[tuple[str, bytes], tuple[str, ...]] = {}
    for loc, a, (o, st), mime in zip(location_ids, asset_ids, files, mimes, strict=True):
        folder = (o.root, o.path[: o.path.rfind(b"/") + 1])
        names = by_folder.get(folder)
        if names is None:
            names = by_folder[folder] = tuple(sorted(catalog.folder_tags(prefixes, *folder)))
        tags += [(a, name) for name in names]
        values = (o.path, o.root, a, None, st.size, st.mtime_ns, mime, False, True)
        catalog.log("added", loc, location=location_json(values, list(names)))
    catalog.insert_auto_tags(tags)


def apply_hashes(catalog: Catalog, outcomes: Sequence[HashOutcome], tally: Tally) -> None:
    """Write one batch of hash outcomes in one transaction.

    Each hashed location joins the asset of its content: an unhashed seed asset takes
    the hash when no asset has it yet; otherwise the location moves to the asset that
    has it (a seed left behind is deleted, its user data merged), or to a new asset
    when the content at the path changed. Reads are a few queries per batch and the
    updates run in bulk.
    """
    with catalog.write():
        for item in outcomes:
            if item.error is not None:
                tally.errors.append({"path": item.state.path, "message": item.error})
        wanted = [i for i in outcomes if i.error is None]
        live = catalog.live_locations([i.state.id for i in wanted])
        gone = [i.state.id for i in wanted if i.state.id in live and i.result is None]
        if gone:
            tally.marked_missing += catalog.mark_missing(gone)
        done = [(i, i.result) for i in wanted if i.state.id in live and i.result is not None]
        if not done:
            return
        book = _Book.load(
            catalog, [live[i.state.id][0] for i, _ in done], [r.hash for _, r in done]
        )
        for item, result in done:
            tally.hashed += 1
            tally.hashed_bytes += result.stat.size
            asset_id, root, path = live[item.state.id]
            book.settle(catalog, item.state.id, asset_id, root, path, result)
        book.flush(catalog)


@dataclass
class _Book:
    """The assets one batch of hash results touches: read once, kept current in memory."""

    hashes: dict[int, str | None]  # asset id -> hash
    mimes: dict[int, str | None]
    counts: dict[int, int]  # asset id -> number of locations
    by_hash: dict[str, int]
    new_hashes: list[tuple[str, int, int]] = field(default_factory=list)  # (hash, size, asset)
    stats: list[tuple[int, FileStat, bool, int | None]] = field(default_factory=list)
    joined: list[tuple[int, str, bytes]] = field(default_factory=list)  # (asset, root, path)
    left: set[int] = field(default_factory=set)  # assets a location moved away from
    seeds: list[tuple[int, int]] = field(default_factory=list)  # (seed asset, its successor)

    @classmethod
    def load(cls, catalog: Catalog, asset_ids: list[int], hashes: list[str]) -> _Book:
        known = dict(catalog.assets_by_hash(hashes))
        ids = sorted(set(asset_ids) | set(known.values()))
        info = catalog.asset_info(ids)
        return cls(
            hashes={a: h for a, (h, _, _) in info.items()},
            mimes={a: m for a, (_, m, _) in info.items()},
            counts={a: n for a, (_, _, n) in info.items()},
            by_hash=known,
        )

    def settle(
        self,
        catalog: Catalog,
        loc_id: int,
        current: int,
        root: str,
        path: bytes,
        result: HashResult,
    ) -> None:
        """Decide which asset the location belongs to now; log ``hashed`` when that changed."""
        if self.hashes.get(current) == result.hash:
            self.stats.append((loc_id, result.stat, result.racy, None))
            return
        target = self.by_hash.get(result.hash)
        alone = self.counts.get(current, 0) == 1
        if target is None and self.hashes.get(current) is None and alone:
            # An unhashed seed asset takes its hash: same asset, nothing moves.
            self.new_hashes.append((result.hash, result.stat.size, current))
            self.hashes[current], self.by_hash[result.hash] = result.hash, current
            self.stats.append((loc_id, result.stat, result.racy, None))
            catalog.log("hashed", loc_id)
            return
        if target is None:
            target = catalog.m.Asset.insert(
                hash=result.hash,
                size_bytes=result.stat.size,
                mime_type=self.mimes.get(current) or guess_mime(path),
                created_at=catalog.now(),
            ).execute()
            self.by_hash[result.hash], self.hashes[target], self.counts[target] = (
                target,
                result.hash,
                0,
            )
        self.stats.append((loc_id, result.stat, result.racy, target))
        self.counts[current] -= 1
        self.counts[target] += 1
        self.joined.append((target, root, path))
        if self.hashes.get(current) is None and self.counts[current] == 0:
            self.seeds.append((current, target))  # the duplicate seed of known content goes
        else:
            self.left.add(current)
        catalog.log("hashed", loc_id)

    def flush(self, catalog: Catalog) -> None:
        A, T = catalog.m.Asset, catalog.m.Tag
        # In hash order: the unique index takes them left to right, not at random pages
        # (a cold index's hashing transactions took a fifth less time).
        catalog.execute_many(
            "UPDATE asset SET hash = ?, size_bytes = ? WHERE id = ?", sorted(self.new_hashes)
        )
        catalog.set_stats(self.stats)
        seed_ids = [seed for seed, _ in self.seeds]
        if seed_ids:
            tagged = T.select(T.asset).where(T.asset.in_(seed_ids) & (T.origin == "user"))
            noted = A.select(A.id).where(A.id.in_(seed_ids) & (A.user_metadata != "{}"))
            with_data = {r.asset_id for r in tagged} | {r.id for r in noted}
            for seed, successor in self.seeds:
                if seed in with_data:
                    catalog.merge_user_data(seed, successor)
            for batch in chunks(seed_ids):
                T.delete().where(T.asset.in_(list(batch))).execute()
                A.delete().where(A.id.in_(list(batch))).execute()
        catalog.add_auto_tags(self.joined)
        catalog.refresh_assets(self.left - set(seed_ids))
        catalog.update_missing_marks({target for target, _, _ in self.joined})


def restore_paths(
    catalog: Catalog, paths: Sequence[bytes], *, follow_symlinks: bool = False
) -> int:
    """Restore the missing locations among ``paths`` whose files exist again, then hash them.

    A location whose stat changed while it was missing takes the new stat and is
    re-hashed before this returns, so it joins the asset of its current content.
    """
    stats: dict[bytes, FileStat] = {}
    for path in paths:
        if (stat := regular_stat(path, follow_symlinks)) is not None:
            stats[path] = stat
    restored = catalog.restore_cache_states_by_paths(list(stats), stats)
    stale = [
        s for s in catalog.get_states(list(stats)).values() if s.needs_verify and not s.is_missing
    ]
    if stale:
        pool = HashPool(follow_symlinks=follow_symlinks)
        try:
            outcomes = pool.run(stale)
        finally:
            pool.close()
        apply_hashes(catalog, outcomes, Tally())
    return restored


def look_again(
    catalog: Catalog, roots: Sequence[RootConfig], path: bytes, *, follow_symlinks: bool = False
) -> None:
    """Bring the catalog's entry for ``path`` up to the disk now, its hash included.

    Someone who tags or describes the file at a path means the content there now. If it
    changed since the catalog last looked (no daemon is running, or the write is still
    settling), the tag would land on the earlier content and stay with it. A path
    outside the roots, or excluded, is left as it is.
    """
    root = root_for_path(path, roots)
    if root is None or ExcludeMatcher(root.exclude).excludes(
        path[len(root.prefix) :], is_dir=False
    ):
        return
    seen = observe(path, root.name, regular_stat(path, follow_symlinks), catalog.get_state(path))
    if seen.decision.outcome not in (Outcome.UNCHANGED, Outcome.NOTHING):
        write_current(catalog, [seen], follow_symlinks, partial(_apply, catalog))
    state = catalog.get_state(path)
    if state is not None and state.needs_verify and not state.is_missing:
        apply_hashes(catalog, [hash_one(state, follow_symlinks=follow_symlinks)], Tally())


def regular_stat(path: bytes, follow_symlinks: bool) -> FileStat | None:
    """The stat of the regular file at ``path``; None for anything else, or nothing."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        return None
    return FileStat.from_os(st) if stat_mod.S_ISREG(st.st_mode) else None
