"""What the daemon offers its clients: the feed's commands as plain blocking calls.

Reads use the calling thread's own connection; writes go through the reconciler, the
one writer, so the feed reports them like any other change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from assetd.apply import after_look, restore_paths
from assetd.catalog import Catalog, Change
from assetd.catalog.comfyrefs import ComfyRefs
from assetd.catalog.order import Cursor
from assetd.config import Config
from assetd.exceptions import InvalidRequestError, NotFoundError, UnknownRootError
from assetd.paths import root_for_path
from assetd.reconciler import Reconciler
from assetd.seeder import AssetSeeder

__all__ = ["LiveFile", "Service"]


Part = Callable[[], dict[str, Any]]


class LiveFile(NamedTuple):
    """A live location as the catalog has it: what a served file must still match."""

    path: bytes
    size: int
    mtime_ns: int
    device: int
    inode: int
    hash: str | None
    mime_type: str | None


class Service:
    """The daemon's operations, as the feed, the HTTP API and the command line use them.

    The status object is built here only. The parts that other components know are
    asked for through callables: ``watch_states`` (each root's watch state by name),
    and ``watch``, ``catalog_status`` and ``feed``, the objects under the keys
    ``watch``, ``catalog`` and ``feed``.
    """

    def __init__(
        self,
        catalog: Catalog,
        config: Callable[[], Config],
        seeder: Callable[[], AssetSeeder],
        reconciler: Callable[[], Reconciler],
        start_pass: Callable[[list[str] | None, bool, bool], bool] | None = None,
        *,
        watch_states: Callable[[], dict[str, str]] | None = None,
        watch: Part | None = None,
        catalog_status: Part | None = None,
        feed: Part | None = None,
    ) -> None:
        self.catalog = catalog
        self._config = config
        self._seeder = seeder
        self._reconciler = reconciler
        self._start_pass = start_pass
        self._watch_states = watch_states
        parts = {"watch": watch, "catalog": catalog_status, "feed": feed}
        self._parts = {key: part for key, part in parts.items() if part is not None}

    @property
    def catalog_id(self) -> str:
        return str(self.catalog.catalog_id)

    # -- reading --------------------------------------------------------------------

    def latest_seq(self) -> int:
        return self.catalog.latest_seq()

    def oldest_seq(self) -> int:
        return self.catalog.oldest_seq()

    def change_rows_since(self, seq: int, limit: int) -> list[Change]:
        """Logged changes after ``seq``, as the feed sends them live."""
        return self.catalog.change_rows_since(seq, limit)

    def state(self) -> str:
        return str(self._seeder().get_status()["state"])

    def status(self) -> dict[str, Any]:
        """The status object of the feed's ``status``, ``assetd status`` and HTTP."""
        seeder = self._seeder().get_status()
        watch_states = self._watch_states() if self._watch_states is not None else {}
        extra = {key: part() for key, part in self._parts.items()}
        catalog_error = extra.get("catalog", {}).get("error")
        if catalog_error:  # the live writer cannot commit: the first thing to report
            message = f"{catalog_error}; changes wait and are retried"
            seeder["errors"] = [{"root": None, "message": message}, *seeder["errors"]]
        roots = self._root_status(watch_states)
        return {**seeder, "seq": self.catalog.latest_seq(), "roots": roots, **extra}

    def _root_status(self, watch_states: dict[str, str]) -> list[dict[str, Any]]:
        counts = self.catalog.root_counts()
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
        return roots

    def live_file(self, path: bytes) -> LiveFile | None:
        """The catalog's row of the live location at ``path`` (a normalised absolute
        path) inside a configured root; None for anything else."""
        if root_for_path(path, self._config().roots) is None:
            return None
        state = self.catalog.get_state(path)
        if state is None or state.is_missing or state.path != path:
            return None
        mime = self.catalog.mime_type_of(state.asset_id)  # not a whole Location: served often
        stat = state.stat
        return LiveFile(path, stat.size, stat.mtime_ns, stat.device, stat.inode, state.hash, mime)

    def list_locations(self, **kwargs: Any) -> tuple[list[dict[str, Any]], Cursor | None]:
        root = kwargs.get("root")
        if root is not None and root not in (known := self.known_roots()):
            names = ", ".join(sorted(known)) or "none yet"
            raise UnknownRootError(f"there is no root named {root!r} (the roots: {names})")
        return self.catalog.list_locations(**kwargs)

    def location_detail(self, path: bytes) -> dict[str, Any]:
        """The page's preview of one location: it, its metadata, its content's locations."""
        return self.catalog.location_detail(path)

    def known_roots(self) -> set[str]:
        """The roots a list may name: the configured ones and those the catalog has."""
        return {r.name for r in self._config().roots} | set(self.catalog.root_prefixes())

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

    def check(self, workflow: Any) -> list[dict[str, Any]]:
        """Where each model ``workflow`` needs stands (a read: no writer involved)."""
        from assetd.comfyui.check import check_workflow  # ComfyUI's layer, when asked

        return [m.to_json() for m in check_workflow(self.catalog, self._config().install, workflow)]

    def _after_look(self, path: bytes, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the writer once the catalog has caught up with the file at
        ``path``; a hash it needs is taken in the shared pool, from this thread."""
        config, writer = self._config(), self._reconciler()
        return after_look(
            self.catalog,
            config.roots,
            path,
            lambda: fn(*args),
            hash_states=writer.hash_now,
            write=writer.call,
            follow_symlinks=config.follow_symlinks,
        )

    def restore(self, paths: Sequence[bytes]) -> int:
        checked = [self._inside_roots(p) for p in paths]
        writer = self._reconciler()
        return restore_paths(
            self.catalog,
            checked,
            hash_states=writer.hash_now,
            write=writer.call,
            follow_symlinks=self._config().follow_symlinks,
        )

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
        if self._start_pass is None:
            return self._seeder().start(
                roots, prune_first=prune_first, compute_hashes=compute_hashes
            )
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
        from assetd.verify import verify_roots

        return verify_roots(
            self.catalog,
            self._config(),
            roots,
            write=self._reconciler().call,
            sample=sample,
            rate_bytes_s=rate_bytes_s,
        )

    # -- ComfyUI's asset API (assetd/comfyui/api.py): a location is an asset there ----

    def comfy_reads(self) -> ComfyRefs:
        """The API's reads of the catalog, to run in the calling thread."""
        return self.catalog.comfyrefs

    def seeder_status(self) -> dict[str, Any]:
        """The seeder's part of the status alone (no SQL): state, progress, errors."""
        return dict(self._seeder().get_status())

    def comfy_take(self, path: bytes) -> int | None:
        """Catalog the file just placed at ``path`` now, hashed; its location id."""
        return self._after_look(path, self.catalog.comfyrefs.id_at, path)

    def comfy_tags(
        self, location_id: int, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> tuple[list[str], ...]:
        """Add, or remove, user tags where the location is: ``(added, already present)``
        or ``(removed, not present, protected)`` (see ComfyRefs)."""
        refs = self.catalog.comfyrefs
        fn = refs.add_tags if add else refs.remove_tags
        return tuple(self._comfy_after_look(location_id, fn, location_id, list(add or remove)))

    def comfy_update(
        self,
        location_id: int,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        preview_id: int | None = None,
    ) -> None:
        """PUT: a name of its own, user metadata replaced, a preview."""
        refs = self.catalog.comfyrefs

        def update() -> None:
            with self.catalog.write():
                if name is not None:
                    refs.rename(location_id, name)
                if metadata is not None:
                    refs.replace_metadata(location_id, metadata)
                if preview_id is not None:
                    refs.set_preview(location_id, preview_id)

        self._comfy_after_look(location_id, update)

    def comfy_adopt(
        self,
        location_id: int,
        name: str | None,
        tags: Sequence[str],
        metadata: dict[str, Any] | None = None,
        preview_id: int | None = None,
    ) -> None:
        """An upload's answer: the location visible, with the upload's tags and name."""
        self._reconciler().call(
            self.catalog.comfyrefs.adopt, location_id, name, list(tags), metadata, preview_id
        )

    def comfy_hide(self, location_id: int) -> bool:
        """DELETE: hidden from the API; False if it was not visible."""
        return bool(self._reconciler().call(self.catalog.comfyrefs.hide, location_id))

    def comfy_unhide(self, location_id: int) -> None:
        self._reconciler().call(self.catalog.comfyrefs.unhide, location_id)

    def comfy_touch(self, location_id: int) -> None:
        """A download from the API: its last access is now."""
        self._reconciler().call(self.catalog.comfyrefs.touch, location_id)

    def _comfy_after_look(self, location_id: int, fn: Callable[..., Any], *args: Any) -> Any:
        row = self.catalog.comfyrefs.row(location_id)
        if row is None:
            raise NotFoundError(f"no location {location_id}")
        return self._after_look(row.path, fn, *args)
