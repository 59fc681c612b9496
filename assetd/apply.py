"""What a look at the disk and a hash mean for the catalog: observations and hash
outcomes turned into the catalog's operations, each batch one short transaction.

The seeder and the reconciler share these steps. No stat or hash call happens inside
a transaction, and no SQL is written here: the catalog's parts hold it.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from assetd.catalog import Catalog
from assetd.catalog.assets import ReadyFile
from assetd.catalog.sql import RowConflict
from assetd.config import RootConfig
from assetd.decide import CachedState, Decision, FileStat, Outcome, decide
from assetd.hashing import HashOutcome, HashResult
from assetd.mime import guess_mime
from assetd.moves import identity, pair
from assetd.paths import ExcludeMatcher, root_for_path

__all__ = [
    "HashStates",
    "Observation",
    "Tally",
    "after_look",
    "apply_hashes",
    "apply_observations",
    "apply_ready",
    "awaiting_hash",
    "catch_up",
    "find_moves",
    "look_again",
    "observe",
    "regular_stat",
    "restore_found",
    "restore_paths",
    "write_current",
]

# Hashes the files of cache states: the shared pool's ``run`` in the daemon.
HashStates = Callable[[Sequence[CachedState]], list[HashOutcome]]


class Observation(NamedTuple):
    """One path looked at: what is on disk, what the catalog had, and what it means."""

    path: bytes
    root: str
    stat: FileStat | None
    state: CachedState | None
    decision: Decision
    # MOVED onto a path that held another location: that one, whose content is gone.
    displaced: CachedState | None = None


def observe(
    path: bytes, root: str, stat: FileStat | None, state: CachedState | None
) -> Observation:
    return Observation(path, root, stat, state, decide(stat, state))


def regular_stat(path: bytes, follow_symlinks: bool) -> FileStat | None:
    """The stat of the regular file at ``path``; None for anything else, or nothing."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        return None
    return FileStat.from_os(st) if stat_mod.S_ISREG(st.st_mode) else None


@dataclass
class Tally:
    """Counts of what a pass did, in the vocabulary of the progress events."""

    scanned: int = 0
    total: int = 0
    created: int = 0
    skipped: int = 0
    modified: int = 0
    moved: int = 0
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
    catalog: Catalog,
    observations: Sequence[Observation],
    tally: Tally,
    *,
    check: bool = True,
    hashes: Mapping[bytes, HashOutcome] | None = None,
) -> list[Observation]:
    """Write one batch of observations in one transaction, logging each change.

    A new file whose hash is in ``hashes`` (by path) goes in with it: one ``added``
    change that carries the hash.

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
    moves: list[tuple[CachedState, bytes, str, FileStat, CachedState | None]] = []
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
                    catalog.changes.log("modified", state.id)
            elif outcome is Outcome.MISSING:
                assert state is not None
                missing.append(state.id)
            elif outcome is Outcome.RESTORED:
                assert stat is not None and state is not None
                if obs.decision.rehash:
                    rehash[state.path] = stat
                restored.append(state)
            elif outcome is Outcome.MOVED:
                assert stat is not None and state is not None
                moves.append((state, obs.path, obs.root, stat, obs.displaced))
        if moves:
            tally.moved += catalog.lifecycle.move_states(moves)
        catalog.locations.set_stats(stats)
        tally.restored += catalog.lifecycle.restore_states(restored, rehash)
        if missing:
            tally.marked_missing += catalog.mark_missing(missing)
        if new:
            known: dict[bytes, HashResult] = {}
            for o in new:
                found = hashes.get(o.path) if hashes else None
                if found is not None and found.result is not None:
                    known[o.path] = found.result
            catalog.assets.insert_new(
                [(o.path, o.root, o.stat, guess_mime(o.path)) for o in new if o.stat is not None],
                hashed=known,
            )
            tally.created += len(new)
            tally.hashed += len(known)
            tally.hashed_bytes += sum(r.stat.size for r in known.values())
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
    paths = [o.path for o in acting]
    paths += [o.state.path for o in acting if o.decision.outcome is Outcome.MOVED and o.state]
    now = catalog.get_states(paths, with_hash=False)
    for obs in acting:
        then = obs.state._replace(hash=None) if obs.state is not None else None
        if obs.decision.outcome is Outcome.MOVED:
            assert obs.state is not None
            displaced = obs.displaced._replace(hash=None) if obs.displaced is not None else None
            ok = now.get(obs.path) == displaced and now.get(obs.state.path) == then
        else:
            ok = then == now.get(obs.path)
        (current if ok else stale).append(obs)
    return current, stale


def find_moves(
    catalog: Catalog, observations: Sequence[Observation], follow_symlinks: bool
) -> list[Observation]:
    """The observations, with every file that is a cataloged file seen at another path
    (:func:`assetd.moves.pair`) turned into a MOVED observation of that location, and
    the look at the path it left dropped: the move says all there is to say.

    Such a file is new at its path, or replaced the file there (another inode: a rename
    over it); the location it displaced goes with the content it stood for.
    Runs before the observations are written, outside any transaction: it stats the
    paths the candidate locations were at.
    """
    appeared = {o.path: o.stat for o in observations if o.stat is not None and _arrived(o)}
    if not appeared:
        return list(observations)
    wanted = {identity(st) for st in appeared.values()}
    candidates = [
        s
        for s in catalog.locations.by_inodes([st.inode for st in appeared.values()])
        if identity(s.stat) in wanted and s.path not in appeared
    ]
    if not candidates:
        return list(observations)
    moved = pair(appeared.items(), [(s, regular_stat(s.path, follow_symlinks)) for s in candidates])
    if not moved:
        return list(observations)
    left = {state.path for state in moved.values()}
    out: list[Observation] = []
    for obs in observations:
        if obs.path in left:
            continue
        state = moved.get(obs.path) if obs.stat is not None and _arrived(obs) else None
        if state is not None:
            # A location that waited for a hash before it moved still waits for one.
            decision = Decision(Outcome.MOVED, rehash=state.needs_verify)
            obs = Observation(obs.path, obs.root, obs.stat, state, decision, obs.state)
        out.append(obs)
    return out


def _arrived(obs: Observation) -> bool:
    """Whether another file than the catalog's may have arrived at this path: a new one,
    or one with another inode where the catalog had a location."""
    if obs.decision.outcome is Outcome.NEW:
        return True
    if obs.decision.outcome not in (Outcome.MODIFIED, Outcome.VERIFY, Outcome.RESTORED):
        return False
    assert obs.stat is not None and obs.state is not None
    return (obs.stat.device, obs.stat.inode) != (obs.state.stat.device, obs.state.stat.inode)


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
        stale = write(find_moves(catalog, observations, follow_symlinks))
        if not stale:
            return
        states = catalog.get_states([o.path for o in stale])
        observations = [
            observe(o.path, o.root, regular_stat(o.path, follow_symlinks), states.get(o.path))
            for o in stale
        ]


def apply_ready(
    catalog: Catalog, ready: Sequence[ReadyFile], tally: Tally, *, follow_symlinks: bool = False
) -> None:
    """Insert new files made ready away from the writer (:mod:`assetd.prepare`): one
    transaction, one ``added`` change each, the hash in it when it was taken.

    They were new when they were walked. When one of their paths (the live path wrote
    it) or contents (another batch in flight had it too) has a row by now, the inserts
    are undone, and the batch is written as observations are, each looked at first.
    """
    with catalog.write():
        try:
            with catalog.changes.attempt():
                catalog.assets.insert_ready(ready)
        except RowConflict:
            pass
        else:
            hashed = [f.stat.size for f in ready if f.hash is not None]
            tally.created += len(ready)
            tally.hashed += len(hashed)
            tally.hashed_bytes += sum(hashed)
            return
    observations = [observe(f.path, f.root, f.stat, None) for f in ready]
    hashes = {
        f.path: HashOutcome(_NO_STATE, HashResult(f.hash, f.stat, f.verify, f.generation))
        for f in ready
        if f.hash is not None
    }
    write_current(
        catalog,
        observations,
        follow_symlinks,
        lambda batch: apply_observations(catalog, batch, tally, hashes=hashes),
    )


# What a hash taken before its location existed is attached to (apply_observations reads
# only the result).
_NO_STATE = CachedState(0, b"", "", 0, FileStat(0, 0, 0, 0, 0), True, False)


def apply_hashes(catalog: Catalog, outcomes: Sequence[HashOutcome], tally: Tally) -> None:
    """Write one batch of hash outcomes in one transaction: a vanished file is missing,
    a hashed one joins the asset of its content (:meth:`Assets.join_hashes`)."""
    with catalog.write():
        for item in outcomes:
            if item.error is not None:
                tally.errors.append({"path": item.state.path, "message": item.error})
        wanted = [i for i in outcomes if i.error is None]
        gone = [i.state.id for i in wanted if i.result is None]
        if gone:
            tally.marked_missing += catalog.mark_missing(gone)
        done = [(i.state.id, i.result) for i in wanted if i.result is not None]
        for _, result in catalog.assets.join_hashes(done):
            tally.hashed += 1
            tally.hashed_bytes += result.stat.size


def awaiting_hash(catalog: Catalog, paths: Sequence[bytes]) -> list[CachedState]:
    """The live locations among ``paths`` that wait for a hash."""
    return [s for s in catalog.get_states(paths).values() if s.needs_verify and not s.is_missing]


def restore_found(
    catalog: Catalog, paths: Sequence[bytes], *, follow_symlinks: bool = False
) -> tuple[int, list[CachedState]]:
    """Restore the missing locations among ``paths`` whose files exist again.

    A location whose stat changed while it was missing takes the new stat; returned
    with the others that wait for a hash, for the caller to hash and apply, so that it
    joins the asset of its current content.
    """
    stats: dict[bytes, FileStat] = {}
    for path in paths:
        if (stat := regular_stat(path, follow_symlinks)) is not None:
            stats[path] = stat
    restored = catalog.restore_cache_states_by_paths(list(stats), stats)
    return restored, awaiting_hash(catalog, list(stats))


def catch_up(
    catalog: Catalog, roots: Sequence[RootConfig], path: bytes, *, follow_symlinks: bool = False
) -> list[CachedState]:
    """Bring the catalog's entry for ``path`` up to the disk now; the state to hash, if
    its content must be hashed before it is current.

    Someone who tags or describes the file at a path means the content there now. If it
    changed since the catalog last looked (no daemon is running, or the write is still
    settling), the tag would land on the earlier content and stay with it. A path
    outside the roots, or excluded, is left as it is.
    """
    root = root_for_path(path, roots)
    if root is None or ExcludeMatcher(root.exclude).excludes(
        path[len(root.prefix) :], is_dir=False
    ):
        return []
    seen = observe(path, root.name, regular_stat(path, follow_symlinks), catalog.get_state(path))
    if seen.decision.outcome not in (Outcome.UNCHANGED, Outcome.NOTHING):
        write_current(
            catalog,
            [seen],
            follow_symlinks,
            lambda batch: apply_observations(catalog, batch, Tally()),
        )
    return awaiting_hash(catalog, [path])


def _here(fn: Callable[[], Any]) -> Any:
    return fn()


def after_look(
    catalog: Catalog,
    roots: Sequence[RootConfig],
    path: bytes,
    then: Callable[[], Any],
    *,
    hash_states: HashStates,
    write: Callable[[Callable[[], Any]], Any] = _here,
    follow_symlinks: bool = False,
) -> Any:
    """Catch the catalog up with the file at ``path`` (:func:`catch_up`), then run
    ``then()`` and return what it returns.

    ``write(fn)`` runs each catalog step: on the daemon's writer thread, or here. When
    the file's hash is current, the look and ``then`` take one step; otherwise the hash
    is taken by ``hash_states`` between two steps, never inside one.
    """

    def look() -> tuple[list[CachedState], Any]:
        stale = catch_up(catalog, roots, path, follow_symlinks=follow_symlinks)
        return stale, (None if stale else then())

    stale, result = write(look)
    if not stale:
        return result
    outcomes = hash_states(stale)

    def finish() -> Any:
        apply_hashes(catalog, outcomes, Tally())
        return then()

    return write(finish)


def look_again(
    catalog: Catalog,
    roots: Sequence[RootConfig],
    path: bytes,
    *,
    hash_states: HashStates,
    follow_symlinks: bool = False,
) -> None:
    """:func:`after_look` with nothing after, in this thread."""
    after_look(
        catalog, roots, path, lambda: None, hash_states=hash_states, follow_symlinks=follow_symlinks
    )


def restore_paths(
    catalog: Catalog,
    paths: Sequence[bytes],
    *,
    hash_states: HashStates,
    write: Callable[[Callable[[], Any]], Any] = _here,
    follow_symlinks: bool = False,
) -> int:
    """:func:`restore_found`, then hash what waits (between two ``write`` steps, as in
    :func:`after_look`) and apply it; how many were restored."""
    restored, stale = write(lambda: restore_found(catalog, paths, follow_symlinks=follow_symlinks))
    if stale:
        outcomes = hash_states(stale)
        write(lambda: apply_hashes(catalog, outcomes, Tally()))
    return int(restored)
