"""The daemon's operations, carried out here on a directly opened catalog."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from assetd.config import Config, sqlite_file

if TYPE_CHECKING:
    from assetd.catalog import Catalog
    from assetd.decide import CachedState
    from assetd.hashing import HashOutcome
    from assetd.hashpool import HashPool

__all__ = ["WALKS_IN_PARALLEL_BYTES", "LocalOperations", "open_catalog"]

# A SQLite catalog this large knows a root big enough for a restart to walk it in
# parallel: start the hash worker at once, while this process imports and opens the
# catalog. Reading the file's size costs nothing; counting rows would first import the
# catalog's code.
WALKS_IN_PARALLEL_BYTES = 16 << 20


_opened: list[Catalog] = []  # what close_opened closes before the command's exit


def open_catalog(config: Config) -> Catalog:
    from assetd.catalog import Catalog

    catalog = Catalog(config.database, node=config.node, layer=config.install)
    _opened.append(catalog)
    return catalog


def close_opened() -> None:
    """Close every catalog this command opened (SQLite checkpoints its WAL and removes
    it as the last connection closes)."""
    while _opened:
        _opened.pop().close()


class LocalOperations:
    """What a command does when no daemon serves the catalog.

    The operations have the names and arguments of ``assetd.service.Service``'s, but this
    is not that class: the daemon refuses paths outside every root and prunes through its
    seeder, while a command run here works on whatever the catalog holds. Writes run in
    this thread, the only writer there is; ``seed`` runs its pass to the end.
    """

    def __init__(self, config: Config) -> None:
        self.config = config

    @cached_property
    def catalog(self) -> Catalog:
        """Opened on first use, so that ``seed`` can start its worker before."""
        return open_catalog(self.config)

    def tag(self, path: bytes, add: Sequence[str], remove: Sequence[str]) -> list[str]:
        return self._after_look(path, lambda: self.catalog.change_tags(path, add, remove))

    def meta(self, path: bytes, set_: dict[str, Any], unset: Sequence[str]) -> dict[str, Any]:
        return self._after_look(path, lambda: self.catalog.change_metadata(path, set_, unset))

    def _after_look(self, path: bytes, then: Callable[[], Any]) -> Any:
        """Catch the catalog up with the file at ``path`` before saying something about it."""
        from assetd.apply import after_look

        follow, roots = self.config.follow_symlinks, self.config.roots
        return after_look(
            self.catalog, roots, path, then, hash_states=self._hash, follow_symlinks=follow
        )

    def restore(self, paths: Sequence[bytes]) -> int:
        from assetd.apply import restore_paths

        follow = self.config.follow_symlinks
        return restore_paths(
            self.catalog, list(paths), hash_states=self._hash, follow_symlinks=follow
        )

    def _hash(self, states: Sequence[CachedState]) -> list[HashOutcome]:
        """Hash in this thread, one file after another: a command names only a few."""
        from assetd.hashing import hash_one

        follow = self.config.follow_symlinks
        return [hash_one(state, follow_symlinks=follow) for state in states]

    def prune(self) -> int:
        from assetd.paths import get_all_known_prefixes

        prefixes = get_all_known_prefixes(self.config.roots)
        return self.catalog.mark_missing_outside_prefixes_safely(prefixes)

    def cleanup(self, dry_run: bool, missing_older_than: float | None = None) -> int:
        return self.catalog.cleanup_unreferenced_assets(missing_older_than, dry_run=dry_run)

    def verify(
        self, roots: list[str] | None, sample: int | None, rate_bytes_s: float | None
    ) -> dict[str, Any]:
        """Re-hash files of these roots (all by default), writing in this thread."""
        from assetd.verify import verify_roots

        return verify_roots(
            self.catalog,
            self.config,
            roots,
            write=lambda fn, *a: fn(*a),
            sample=sample,
            rate_bytes_s=rate_bytes_s,
        )

    def seed(
        self, roots: list[str] | None, prune_first: bool, compute_hashes: bool
    ) -> dict[str, Any]:
        """Run a pass to its end, a progress bar on stderr; the seeder's final status."""
        from assetd.hashpool import HashPool

        pool = HashPool(follow_symlinks=self.config.follow_symlinks)
        try:
            if _catalog_bytes(self.config.database) >= WALKS_IN_PARALLEL_BYTES:
                pool.warm_for_walks()
            return self._seed_with(pool, roots, prune_first, compute_hashes)
        finally:
            pool.close()

    def _seed_with(
        self, pool: HashPool, roots: list[str] | None, prune_first: bool, compute_hashes: bool
    ) -> dict[str, Any]:
        from assetd.progress import ProgressBar
        from assetd.seeder import AssetSeeder

        config = self.config
        self.catalog.register_roots([(r.name, r.prefix) for r in config.roots])  # refused: exit 2
        bar = ProgressBar.for_stream(sys.stderr)
        seeder = AssetSeeder(
            self.catalog,
            config.roots,
            follow_symlinks=config.follow_symlinks,
            on_event=bar.on_event,
            hash_pool=pool,
        )
        try:
            seeder.start(roots, prune_first=prune_first, compute_hashes=compute_hashes)
            seeder.wait()
        except KeyboardInterrupt:
            seeder.cancel()
            seeder.wait()
            raise
        finally:
            bar.close()
        return dict(seeder.get_status())


def _catalog_bytes(url: str) -> int:
    path = sqlite_file(url)
    try:
        return os.path.getsize(path) if path is not None else 0
    except OSError:
        return 0
