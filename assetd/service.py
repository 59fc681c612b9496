"""What the daemon offers its clients: the feed's commands as plain blocking calls.

Reads use the calling thread's own connection; writes go through the reconciler, the
one writer, so the feed reports them like any other change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from assetd.apply import Tally, apply_hashes, catch_up, restore_found
from assetd.catalog import Catalog
from assetd.config import Config
from assetd.exceptions import InvalidRequestError
from assetd.hashing import HashOutcome
from assetd.paths import root_for_path
from assetd.reconciler import Reconciler
from assetd.seeder import AssetSeeder

__all__ = ["Service"]


class Service:
    """The daemon's operations, as the feed, the HTTP API and the command line use them."""

    def __init__(
        self,
        catalog: Catalog,
        config: Callable[[], Config],
        seeder: Callable[[], AssetSeeder],
        reconciler: Callable[[], Reconciler],
        extra_status: Callable[[], dict[str, Any]],
        start_pass: Callable[[list[str] | None, bool, bool], bool],
    ) -> None:
        self.catalog = catalog
        self._config = config
        self._seeder = seeder
        self._reconciler = reconciler
        self._extra_status = extra_status
        self._start_pass = start_pass

    @property
    def catalog_id(self) -> str:
        return str(self.catalog.catalog_id)

    # -- reading --------------------------------------------------------------------

    def latest_seq(self) -> int:
        return self.catalog.latest_seq()

    def oldest_seq(self) -> int:
        return self.catalog.oldest_seq()

    def changes_since(self, seq: int, limit: int) -> list[dict[str, Any]]:
        return self.catalog.changes_since(seq, limit)

    def state(self) -> str:
        return str(self._seeder().get_status()["state"])

    def status(self) -> dict[str, Any]:
        seeder = self._seeder().get_status()
        counts = self.catalog.root_counts()
        extra = self._extra_status()
        watch_states = extra.pop("roots", {})
        roots = []
        for root in self._config().roots:
            live, missing = counts.get(root.name, (0, 0))
            state = watch_states.get(root.name, "offline")
            roots.append(
                {
                    "name": root.name,
                    "path": root.path,
                    "online": state in ("online", "polling"),
                    "watch": state,
                    "files": live,
                    "missing": missing,
                }
            )
        catalog_error = extra.get("catalog", {}).get("error")
        if catalog_error:  # the live writer cannot commit: the first thing to report
            message = f"{catalog_error}; changes wait and are retried"
            seeder["errors"] = [{"root": None, "message": message}, *seeder["errors"]]
        return {**seeder, "seq": self.catalog.latest_seq(), "roots": roots, **extra}

    def list_locations(self, **kwargs: Any) -> tuple[list[dict[str, Any]], bytes | None]:
        return self.catalog.list_locations(**kwargs)

    # -- writing (through the reconciler) -------------------------------------------

    def _inside_roots(self, path: bytes) -> bytes:
        if root_for_path(path, self._config().roots) is None:
            raise InvalidRequestError(f"{os.fsdecode(path)} is outside every root")
        return path

    def tag(self, path: bytes, add: Sequence[str], remove: Sequence[str]) -> list[str]:
        path = self._inside_roots(path)
        return list(self._after_look(path, self.catalog.change_tags, path, add, remove))

    def meta(self, path: bytes, set_: dict[str, Any], unset: Sequence[str]) -> dict[str, Any]:
        path = self._inside_roots(path)
        return dict(self._after_look(path, self.catalog.change_metadata, path, set_, unset))

    def _after_look(self, path: bytes, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the writer once the catalog has caught up with the file at ``path``.

        The writer writes what the disk says now; the file's hash, if it needs one, is
        taken in the shared pool from this thread; then the writer writes the hash and
        runs ``fn``.
        """
        config, writer = self._config(), self._reconciler()
        follow = config.follow_symlinks
        stale = writer.call(
            lambda: catch_up(self.catalog, config.roots, path, follow_symlinks=follow)
        )
        return writer.call(self._with_hashes, writer.hash_now(stale) if stale else [], fn, args)

    def _with_hashes(
        self, outcomes: list[HashOutcome], fn: Callable[..., Any], args: Sequence[Any]
    ) -> Any:
        """On the writer: write hash outcomes taken elsewhere, then run ``fn(*args)``."""
        if outcomes:
            apply_hashes(self.catalog, outcomes, Tally())
        return fn(*args)

    def restore(self, paths: Sequence[bytes]) -> int:
        checked = [self._inside_roots(p) for p in paths]
        follow, writer = self._config().follow_symlinks, self._reconciler()
        restored, stale = writer.call(
            lambda: restore_found(self.catalog, checked, follow_symlinks=follow)
        )
        if stale:
            writer.call(self._with_hashes, writer.hash_now(stale), lambda: None, ())
        return int(restored)

    def prune(self) -> int:
        return self._seeder().prune_orphans()

    def cleanup(self, dry_run: bool, missing_older_than: float | None = None) -> int:
        return int(
            self._reconciler().call(
                lambda: self.catalog.cleanup_unreferenced_assets(
                    missing_older_than, dry_run=dry_run
                )
            )
        )

    # -- passes ---------------------------------------------------------------------

    def seed(self, roots: list[str] | None, prune_first: bool, compute_hashes: bool) -> bool:
        """Start a pass; False when one is running already."""
        return self._start_pass(roots, prune_first, compute_hashes)

    def seed_wait(self) -> dict[str, Any]:
        seeder = self._seeder()
        seeder.wait()
        return dict(seeder.get_status()["progress"] or {})

    def cancel(self) -> bool:
        return self._seeder().cancel()

    def verify(
        self, roots: list[str] | None, sample: int | None, rate_bytes_s: float | None
    ) -> dict[str, Any]:
        """Re-hash files of these roots (all by default); writes go through the writer."""
        from assetd.verify import verify

        config = self._config()
        chosen = [config.root(name) for name in roots] if roots else list(config.roots)
        summary = verify(
            self.catalog,
            [r.prefix for r in chosen],
            write=self._reconciler().call,
            sample=sample,
            rate_bytes_s=rate_bytes_s,
            follow_symlinks=config.follow_symlinks,
        )
        return summary.as_json()
