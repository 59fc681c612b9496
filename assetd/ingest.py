"""Writing what a pass saw into the catalog: observations in batches, then hashes.

The seeder and the reconciler share these two steps. Each call is one short write
transaction; no stat or hash call ever happens inside one.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import stat as stat_mod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from assetd.db import Catalog, stat_columns
from assetd.decide import CachedState, Decision, FileStat, Outcome, decide
from assetd.hashing import FileChangedError, HashResult, NotRegularFileError, hash_file

__all__ = [
    "HashOutcome",
    "Observation",
    "Tally",
    "apply_hashes",
    "apply_observations",
    "guess_mime",
    "hash_one",
    "hash_states",
    "observe",
    "restore_paths",
]

# Only the built-in table: /etc/mime.types differs between machines, answers must not.
_MIME = mimetypes.MimeTypes(filenames=())
_MIME.add_type("application/x-safetensors", ".safetensors", strict=False)
_MIME.add_type("application/x-gguf", ".gguf", strict=False)


def guess_mime(path: bytes) -> str | None:
    return _MIME.guess_type(os.fsdecode(path), strict=False)[0]


@dataclass(frozen=True, slots=True)
class Observation:
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
    errors: list[dict[str, Any]] = field(default_factory=list)


def apply_observations(catalog: Catalog, observations: Sequence[Observation], tally: Tally) -> None:
    """Write one batch of observations in one transaction, logging each change."""
    L, A = catalog.m.Location, catalog.m.Asset
    touched: set[int] = set()
    new: list[dict[str, Any]] = []
    with catalog.write():
        for obs in observations:
            outcome, state, stat = obs.decision.outcome, obs.state, obs.stat
            if outcome is Outcome.UNCHANGED:
                tally.skipped += 1
            elif outcome is Outcome.NEW:
                assert stat is not None
                asset_id = A.insert(
                    hash=None,
                    size_bytes=stat.size,
                    mime_type=guess_mime(obs.path),
                    created_at=catalog.now(),
                ).execute()
                new.append(
                    {
                        "file_path": obs.path,
                        "root": obs.root,
                        "asset": asset_id,
                        **stat_columns(stat),
                    }
                )
                touched.add(asset_id)
            elif outcome in (Outcome.MODIFIED, Outcome.VERIFY):
                assert stat is not None and state is not None
                L.update(**stat_columns(stat), needs_verify=True).where(L.id == state.id).execute()
                if outcome is Outcome.MODIFIED:
                    tally.modified += 1
                    catalog.log("modified", state.id)
            elif outcome is Outcome.MISSING:
                assert state is not None
                tally.marked_missing += catalog.mark_missing([state.id])
            elif outcome is Outcome.RESTORED:
                assert stat is not None and state is not None
                columns: dict[str, Any] = {"is_missing": False, "missing_since": None}
                if obs.decision.rehash:
                    columns.update(stat_columns(stat), needs_verify=True)
                L.update(**columns).where(L.id == state.id).execute()
                touched.add(state.asset_id)
                tally.restored += 1
                catalog.log("restored", state.id)
        if new:
            inserted = L.insert_many(new).returning(L.id, L.file_path).tuples().execute()
            ids = {bytes(path): loc_id for loc_id, path in inserted}
            for row in new:
                catalog.log("added", ids[row["file_path"]])
            catalog.add_auto_tags((r["asset"], r["root"], r["file_path"]) for r in new)
            tally.created += len(new)
        catalog.update_missing_marks(touched)


@dataclass(frozen=True, slots=True)
class HashOutcome:
    """What hashing one location found: a hash, the file gone, or an error to report."""

    state: CachedState
    result: HashResult | None = None
    gone: bool = False
    error: str | None = None


def hash_one(
    state: CachedState,
    *,
    follow_symlinks: bool = False,
    hasher: Callable[..., HashResult] = hash_file,
) -> HashOutcome:
    """Hash the file of one location; never raises for a bad file."""
    try:
        return HashOutcome(state, hasher(state.path, follow_symlinks=follow_symlinks))
    except (FileNotFoundError, NotADirectoryError, NotRegularFileError):
        return HashOutcome(state, gone=True)
    except FileChangedError:
        return HashOutcome(state, error="kept changing while being hashed; will retry")
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return HashOutcome(state, gone=True)
        return HashOutcome(state, error=exc.strerror or str(exc))


def hash_states(
    states: Iterable[CachedState],
    *,
    pool: Executor,
    follow_symlinks: bool = False,
    hasher: Callable[..., HashResult] = hash_file,
) -> list[HashOutcome]:
    """Hash the files of these locations in ``pool``."""
    return list(
        pool.map(lambda s: hash_one(s, follow_symlinks=follow_symlinks, hasher=hasher), states)
    )


def apply_hashes(catalog: Catalog, outcomes: Sequence[HashOutcome], tally: Tally) -> None:
    """Write one batch of hash outcomes in one transaction."""
    L = catalog.m.Location
    settled = _Settled()
    with catalog.write():
        for item in outcomes:
            if item.error is not None:
                tally.errors.append({"path": item.state.path, "message": item.error})
                continue
            current = L.get_or_none(L.id == item.state.id)
            if current is None or current.is_missing:
                continue  # deleted or marked missing meanwhile: nothing to settle
            if item.gone or item.result is None:
                tally.marked_missing += catalog.mark_missing([item.state.id])
                continue
            tally.hashed += 1
            _settle(catalog, current, item.result, settled)
        catalog.add_auto_tags(settled.joined)
        catalog.refresh_assets(settled.left - settled.deleted)
        catalog.update_missing_marks({asset_id for asset_id, _, _ in settled.joined})


@dataclass
class _Settled:
    """Asset bookkeeping gathered over a batch, applied once at its end."""

    joined: list[tuple[int, str, bytes]] = field(default_factory=list)  # (asset, root, path)
    left: set[int] = field(default_factory=set)  # assets a location moved away from
    deleted: set[int] = field(default_factory=set)


def _settle(catalog: Catalog, location: Any, result: HashResult, settled: _Settled) -> None:
    """Attach a location to the asset of its content, keeping every tag where it belongs."""
    L, A = catalog.m.Location, catalog.m.Asset
    current = A.get_by_id(location.asset_id)
    columns = {**stat_columns(result.stat), "needs_verify": result.racy}
    if current.hash == result.hash:
        L.update(**columns).where(L.id == location.id).execute()
        return
    target = A.get_or_none(A.hash == result.hash)
    alone = L.select().where(L.asset == current.id).count() == 1
    if target is None and current.hash is None and alone:
        # An unhashed seed asset takes its hash: same asset, nothing moves.
        A.update(hash=result.hash, size_bytes=result.stat.size).where(A.id == current.id).execute()
        L.update(**columns).where(L.id == location.id).execute()
        catalog.log("hashed", location.id)
        return
    if target is None:
        target = A.create(
            hash=result.hash,
            size_bytes=result.stat.size,
            mime_type=current.mime_type or guess_mime(bytes(location.file_path)),
            created_at=catalog.now(),
        )
    L.update(asset=target.id, **columns).where(L.id == location.id).execute()
    settled.joined.append((target.id, location.root, bytes(location.file_path)))
    if current.hash is None and alone:
        # The duplicate seed asset of content we already knew: its user data joins, it goes.
        catalog.merge_user_data(current.id, target.id)
        catalog.m.Tag.delete().where(catalog.m.Tag.asset == current.id).execute()
        A.delete().where(A.id == current.id).execute()
        settled.deleted.add(current.id)
    else:
        settled.left.add(current.id)
    catalog.log("hashed", location.id)


def restore_paths(
    catalog: Catalog, paths: Sequence[bytes], *, follow_symlinks: bool = False
) -> int:
    """Restore the missing locations among ``paths`` whose files exist again, then hash them.

    A location whose stat changed while it was missing takes the new stat and is
    re-hashed before this returns, so it joins the asset of its current content.
    """
    stats: dict[bytes, FileStat] = {}
    for path in paths:
        try:
            st = os.stat(path, follow_symlinks=follow_symlinks)
        except OSError:
            continue
        if stat_mod.S_ISREG(st.st_mode):
            stats[path] = FileStat.from_os(st)
    restored = catalog.restore_cache_states_by_paths(list(stats), stats)
    stale = [
        s for s in catalog.get_states(list(stats)).values() if s.needs_verify and not s.is_missing
    ]
    if stale:
        with ThreadPoolExecutor(2, thread_name_prefix="assetd-hash") as pool:
            outcomes = hash_states(stale, pool=pool, follow_symlinks=follow_symlinks)
        apply_hashes(catalog, outcomes, Tally())
    return restored
