"""ComfyUI's Asset object for a location, and where the install's folders put a file.

ComfyUI names a file three ways: ``loader_path`` (what its loaders take: the path below
the category folder, or below input/output/temp), ``display_name`` (the path below the
install's storage folder: input, output, temp or models) and ``/api/view``'s
``type``/``subfolder``/``filename`` (input, output and temp only). Pure: no I/O.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from assetd.catalog.comfyrefs import RefRow
from assetd.comfyui.api_ids import uuid_of
from assetd.comfyui.install import ComfyInstall
from assetd.mime import guess_mime

__all__ = ["VIEW_TYPES", "View", "asset_json", "iso", "sort_value"]

VIEW_TYPES = ("input", "output", "temp")  # the folders /api/view serves from
_STORAGE = ("input", "output", "temp", "models")
_PREVIEWED = ("image/", "video/", "audio/", "text/")


def iso(t: float) -> str:
    """A catalog time as ISO 8601 UTC with a trailing ``Z`` (a browser's ``new Date``
    reads a string without one as local time)."""
    return datetime.fromtimestamp(t, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class View:
    """The catalog and the install the API answers for."""

    catalog_id: str
    install: ComfyInstall | None
    _folders: dict[str, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        folders: dict[str, bytes] = {}
        if self.install is not None:
            for kind in _STORAGE:
                real = os.path.realpath(os.path.join(self.install.path, kind))
                folders[kind] = os.fsencode(real).rstrip(b"/") + b"/"
        object.__setattr__(self, "_folders", folders)

    def folder(self, kind: str) -> bytes | None:
        """The prefix (with its trailing ``/``) of the install's ``input``, ``output``,
        ``temp`` or ``models`` folder, as the catalog stores paths (resolved)."""
        return self._folders.get(kind)

    def storage(self, path: bytes) -> tuple[str, str] | None:
        """(folder kind, path below it) for the longest storage folder holding ``path``."""
        best: tuple[str, str] | None = None
        longest = 0
        for kind in _STORAGE:
            prefix = self.folder(kind)
            if prefix is not None and path.startswith(prefix) and len(prefix) > longest:
                best, longest = (kind, os.fsdecode(path[len(prefix) :])), len(prefix)
        return best

    def loader_path(self, path: bytes) -> str | None:
        if self.install is None:
            return None
        matches = self.install.classify(path)
        if matches:
            return matches[0].loader_path
        place = self.storage(path)
        return place[1] if place is not None and place[0] in VIEW_TYPES else None

    def display_name(self, path: bytes) -> str | None:
        place = self.storage(path)
        return place[1] if place is not None else None

    def view_url(self, path: bytes) -> str | None:
        """``/api/view?type=…&filename=…[&subfolder=…]`` for a file under input, output
        or temp; None elsewhere."""
        place = self.storage(path)
        if place is None or place[0] not in VIEW_TYPES:
            return None
        subfolder, _, filename = place[1].rpartition("/")
        url = f"/api/view?type={place[0]}&filename={quote(filename, safe='')}"
        return url + (f"&subfolder={quote(subfolder, safe='')}" if subfolder else "")

    def uuid(self, row: RefRow) -> str:
        return uuid_of(self.catalog_id, row.id, row.created_at)

    def matches(self, row: RefRow, text: str) -> bool:
        """Whether ``text`` is this row's UUID (and not a UUID its id was read from by
        chance: another catalog's, or an earlier location's with the same id)."""
        return self.uuid(row) == text.lower()


def sort_value(row: RefRow, key: str) -> Any:
    """The value ``row`` sorts by under ``key``, as the catalog's query computes it."""
    if key == "name":
        return row.name if row.name is not None else row.file_name
    if key == "size":
        return row.size
    if key == "updated_at":
        return row.updated_at if row.updated_at is not None else row.created_at
    if key == "last_access_time":
        return row.last_access if row.last_access is not None else row.created_at
    return row.created_at


def user_metadata(row: RefRow, view: View) -> dict[str, Any]:
    """The asset's user metadata, with ``filename`` the loader path where it has one
    (ComfyUI forces that key; assetd computes it per location, never stores it)."""
    metadata = dict(row.metadata)
    loader = view.loader_path(row.path)
    if loader is not None:
        metadata["filename"] = loader
    return metadata


def asset_json(row: RefRow, view: View, preview: RefRow | None = None) -> dict[str, Any]:
    """ComfyUI's Asset object for a location; fields without a value are left out, as
    ComfyUI leaves out its nulls. ``preview``: the row ``row.preview_id`` names."""
    created = row.created_at
    item: dict[str, Any] = {
        "id": view.uuid(row),
        "name": row.name if row.name is not None else row.file_name,
        "hash": row.hash,
        "loader_path": view.loader_path(row.path),
        "display_name": view.display_name(row.path),
        "asset_hash": row.hash,
        "size": row.size,
        # The catalog's type, else the file name's: content first seen under another
        # name (a download's .part) may have none.
        "mime_type": row.mime_type or guess_mime(row.path),
        "tags": list(row.tags),
        "preview_url": _preview_url(row, view, preview),
        "preview_id": view.uuid(preview) if preview is not None else None,
        "user_metadata": user_metadata(row, view),
        "is_immutable": False,
        "created_at": iso(created),
        "updated_at": iso(row.updated_at if row.updated_at is not None else created),
        "last_access_time": iso(row.last_access if row.last_access is not None else created),
    }
    return {key: value for key, value in item.items() if value is not None}


def _preview_url(row: RefRow, view: View, preview: RefRow | None) -> str | None:
    if row.preview_id is not None:
        # A preview of its own: its file while that is live, else none at all.
        if preview is None or preview.is_missing or preview.hidden:
            return None
        return view.view_url(preview.path)
    mime = row.mime_type or guess_mime(row.path) or ""
    return view.view_url(row.path) if mime.startswith(_PREVIEWED) else None
