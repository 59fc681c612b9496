"""New files made ready for the writer, away from it: hashed, their rows and their
``added`` change built, so that the writer's part is to run the inserts.

A pass hands the new files it walks over in tasks of a few hundred, to worker processes
(:mod:`assetd.procs`) when there are many, so that hashing and building rows run on
another core than the SQL. Each file is first paired with the cataloged files it may be
(:func:`assetd.apply.find_moves`): one that moved is not new, and goes back as the
observation of a move. A small file is hashed here and goes in once, with its hash; a
large one goes in unhashed, and the pass hashes it after (BLAKE3 then spreads it over
every core).

The live path hands over a burst's new files the same way, once it knows each is
complete (``closed``): those are hashed even if modified moments ago, a racy hash kept
and verified later, as a file hashed on the writer's side would be.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from assetd.apply import Observation, find_moves, observe
from assetd.catalog import Catalog
from assetd.catalog.assets import ReadyFile
from assetd.catalog.tags import Layer, PlaceTags
from assetd.decide import FileStat, Outcome
from assetd.hashing import LARGE_FILE, RACY_WINDOW_NS, HashResult, hash_file, try_hash
from assetd.hashpool import HashPool
from assetd.jsontext import dumps
from assetd.mime import guess_mime
from assetd.procs import Processes, at_exit

__all__ = [
    "ELSEWHERE",
    "READY_FILES",
    "Prepared",
    "elsewhere",
    "opened",
    "prepare",
    "prepare_elsewhere",
]

READY_FILES = 250  # new files per task made ready at a time
ELSEWHERE = "assetd.prepare:prepare_elsewhere"  # the task's name for a worker process

_ASSET_ID = b'"asset_id":'
_PLACEHOLDER = -1  # the asset id a built body carries until the writer gives it one
_PLACEHOLDER_LEN = len(b"%d" % _PLACEHOLDER)
_new = tuple.__new__  # named tuples built in C: one per new file


class Prepared(NamedTuple):
    """One task's new files, ready to insert, and those that turned out to have moved."""

    ready: list[ReadyFile]
    moved: list[Observation]

    def __reduce__(self) -> tuple[Any, ...]:
        # Across the pipe as plain tuples: pickle handles those in C, where every named
        # tuple would cost a call into Python each way.
        flat = [(*f[:2], *f[2], *f[3:]) for f in self.ready]
        return _rebuilt, (flat, self.moved)


def _rebuilt(flat: list[tuple[Any, ...]], moved: list[Observation]) -> Prepared:
    new = tuple.__new__
    ready = [new(ReadyFile, (f[0], f[1], new(FileStat, f[2:7]), *f[7:])) for f in flat]
    return Prepared(ready, moved)


def prepare(
    catalog: Catalog,
    root: str,
    files: Sequence[tuple[bytes, FileStat]],
    *,
    follow_symlinks: bool = False,
    hash_small: bool = True,
    closed: bool = False,
    hasher: Callable[..., HashResult] = hash_file,
) -> Prepared:
    """Make the new files of ``root`` (path, stat as walked) ready to insert.

    Reads the catalog (locations with the same inodes, content with the same hashes)
    but never writes it. A file gone before it could be hashed is left out: it was never
    there as far as the catalog knows. One that cannot be read goes in unhashed, and the
    hashing after reports why. ``closed``: every file is known complete (see above).
    """
    new: list[tuple[bytes, FileStat]] = list(files)
    moved: list[Observation] = []
    if catalog.locations.by_inodes([stat.inode for _, stat in files]):  # rarely: ask in full
        seen = find_moves(
            catalog, [observe(path, root, stat, None) for path, stat in files], follow_symlinks
        )
        moved = [o for o in seen if o.decision.outcome is not Outcome.NEW]
        new = [(o.path, o.stat) for o in seen if o.decision.outcome is Outcome.NEW and o.stat]
    hashed: dict[bytes, HashResult] = {}
    gone: set[bytes] = set()
    # A file modified moments ago may still be being written: it goes in unhashed, and
    # the pass hashes it after, once (then ``added``, ``hashed``, as the contract has it).
    settled_before = time.time_ns() - RACY_WINDOW_NS
    for path, stat in new:
        if not hash_small or stat.size >= LARGE_FILE:
            continue
        if stat.mtime_ns > settled_before and not closed:
            continue
        found = try_hash(path, follow_symlinks=follow_symlinks, hasher=hasher, walked=stat)
        if isinstance(found, HashResult):
            if closed or not found.racy:
                hashed[path] = found
        elif found is None:
            gone.add(path)
    known = dict(catalog.assets.by_hash([r.hash for r in hashed.values()]))
    tags_at = PlaceTags(catalog.roots.prefixes(), catalog.layer)
    json = catalog.locations.json
    ready: list[ReadyFile] = []
    for path, walked in new:
        if path in gone:
            continue
        result = hashed.get(path)
        stat = result.stat if result is not None else walked
        digest = result.hash if result is not None else None
        verify = result is None or result.racy
        tags = tags_at(root, path)
        asset = known.get(digest) if digest is not None else None
        mime = guess_mime(path)
        body = None
        if asset is None:
            values = (path, root, _PLACEHOLDER, digest, stat.size, stat.mtime_ns, mime)
            encoded = dumps(
                {"op": "added", "location": json((*values, False, verify), list(tags), [])}
            )
            # The first "asset_id": is the key: in a path or root name before it, a quote
            # is escaped (\").
            at = encoded.index(_ASSET_ID) + len(_ASSET_ID)
            body = (encoded[:at], encoded[at + _PLACEHOLDER_LEN :])
        generation = result.generation if result is not None else None
        ready.append(
            _new(ReadyFile, (path, root, stat, mime, digest, verify, generation, tags, asset, body))
        )
    return Prepared(ready, moved)


def elsewhere(
    pool: HashPool, catalog: Catalog, hasher: Callable[..., HashResult]
) -> Processes | None:
    """The worker processes that may make new files of ``catalog`` ready, or None: an
    injected hasher (a test's seam) and a catalog in memory stay in this process."""
    if hasher is not hash_file or ":memory:" in catalog.url:
        return None
    return pool.workers()


_opened: dict[str, Catalog] = {}  # in a worker process: its catalog, opened once


def opened(url: str, layer: Layer | None) -> Catalog:
    """This worker process's connection to the catalog at ``url``, with ``layer``."""
    catalog = _opened.get(url)
    if catalog is None:
        catalog = _opened[url] = Catalog(url, upgrade=False)
        at_exit(catalog.close)
    if catalog.layer is not layer:
        catalog.set_layer(layer)
    return catalog


def prepare_elsewhere(
    url: str,
    layer: Layer | None,
    root: str,
    files: list[tuple[bytes, FileStat]],
    follow_symlinks: bool,
    hash_small: bool,
    closed: bool = False,
) -> Prepared:
    """:func:`prepare`, in a worker process, on its own connection to the catalog."""
    return prepare(
        opened(url, layer),
        root,
        files,
        follow_symlinks=follow_symlinks,
        hash_small=hash_small,
        closed=closed,
    )
