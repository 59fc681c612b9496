"""Which models a workflow needs, and where they are: the workflow's references against
the catalog, with a ComfyUI install's folders when one is configured."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from assetd.catalog import Catalog
from assetd.comfyui.install import ComfyInstall
from assetd.comfyui.workflow import Found, ModelStatus, model_refs, resolve
from assetd.decide import CachedState

__all__ = ["CatalogLookup", "check_workflow"]


class CatalogLookup:
    """The catalog as :func:`resolve` asks it (reads only, from the calling thread)."""

    def __init__(self, catalog: Catalog, install: ComfyInstall | None) -> None:
        self.catalog = catalog
        self.install = install

    def at_loader_path(self, category: str | None, loader_path: str) -> Sequence[Found]:
        """With an install: the file at that loader path in each folder of the category
        (every category when None), in ComfyUI's search order. Without one: locations
        whose path ends in ``CATEGORY/LOADER_PATH`` (ComfyUI's own layout)."""
        if self.install is None:
            tail = "/".join(p for p in (category, loader_path) if p)
            name = loader_path.rpartition("/")[2]
            return [f for f in self.by_file_name(name) if f.path.endswith("/" + tail)]
        folders = (
            self.install.folders(category) if category is not None else self.install.categories
        )
        wanted = os.fsencode(loader_path)
        paths = [folder.prefix + wanted for folder in folders if folder.accepts(wanted)]
        states = self.catalog.get_states(paths)
        return [self._found(states[p]) for p in dict.fromkeys(paths) if p in states]

    def by_hash(self, hash: str) -> Sequence[Found]:
        if not hash.startswith("blake3:"):
            return []  # the catalog keeps BLAKE3 only: a sha256 says nothing here
        return [self._found(s) for s in self.catalog.locations.of_content(hash)]

    def by_file_name(self, name: str) -> Sequence[Found]:
        return [self._found(s) for s in self.catalog.locations.named(name)]

    def _found(self, state: CachedState) -> Found:
        match = self.install.classify(state.path) if self.install is not None else ()
        return Found(
            path=os.fsdecode(state.path),
            hash=state.hash,
            is_missing=state.is_missing,
            category=match[0].category if match else None,
            loader_path=match[0].loader_path if match else None,
        )


def check_workflow(
    catalog: Catalog, install: ComfyInstall | None, workflow: Any
) -> list[ModelStatus]:
    """Where each model ``workflow`` (a decoded workflow) names stands in the catalog;
    InvalidRequestError when it is not a workflow."""
    return resolve(model_refs(workflow), CatalogLookup(catalog, install))
