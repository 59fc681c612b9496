"""Creating assets: ComfyUI's multipart upload and from-hash.

New content is hashed while it arrives, written under a temporary name and renamed into
place as ``<blake3 hex><ext>``, flat, in the folder its tags name; the catalog then
takes the file at once, as ``assetd tag`` takes a path. Known content makes no new file
(assetd has no records without one): the answer is a location of it that exists.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import blake3
from aiohttp import BodyPartReader, web

from assetd.catalog.comfyrefs import RefRow
from assetd.comfyui.api_context import Context, json_body, json_response
from assetd.comfyui.api_errors import ApiError
from assetd.comfyui.api_query import normalise_tags
from assetd.comfyui.api_routes import valid_hash
from assetd.comfyui.api_shapes import View
from assetd.exceptions import InvalidRequestError
from assetd.paths import root_for_path

__all__ = ["Uploads", "destination"]

CHUNK = 1 << 20  # bytes handed to a thread at a time: written and hashed there
TEXT_MAX = 1 << 20  # bytes of one text field
NAME_MAX = 512
UPLOADED = "uploaded"
STAGING = ".assetd-uploads"  # in the install's folder, beside main.py
ROLES = ("input", "output", "models")
_NOT_UPLOADABLE = frozenset({"configs", "custom_nodes"})  # ComfyUI refuses these
_EXT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
# One file placed at a time: two uploads of the same new bytes must not both rename
# over the final name (the second finds it there and takes it as known).
_PLACING = threading.Lock()


def _invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_BODY", message)


def _io_error(exc: OSError) -> ApiError:
    return ApiError(500, "UPLOAD_IO_ERROR", f"Could not store the upload: {exc.strerror or exc}")


@dataclass
class Received:
    """The ``file`` part, written to ``temp`` as it arrived."""

    temp: bytes
    digest: str  # "blake3:<hex>"
    size: int
    filename: str | None  # as the client named it


@dataclass
class Form:
    tags: list[str] = field(default_factory=list)
    name: str | None = None
    metadata: dict[str, Any] | None = None
    hash: str | None = None
    preview: str | None = None
    file: Received | None = None


def destination(tags: list[str], view: View) -> bytes:
    """The folder new content goes to: input, output, or the first folder of the one
    ``model_type:`` category of ``models`` (ComfyUI's rules; aliases such as ``unet`` are
    not categories here)."""
    roles = [t for t in ROLES if t in tags]
    if len(roles) != 1:
        raise _invalid("uploads require exactly one destination role: input, models, or output")
    install = view.install
    if install is None:
        raise _invalid("no ComfyUI install is configured ([comfyui] path)")
    if roles[0] != "models":
        folder = view.folder(roles[0])
        assert folder is not None
        return folder
    kinds = [t[len("model_type:") :] for t in tags if t.startswith("model_type:")]
    if len(kinds) != 1:
        raise _invalid("models uploads require exactly one model_type:<folder_name> tag")
    category = kinds[0]
    known = {folder.category for folder in install.categories} - _NOT_UPLOADABLE
    if category not in known:
        raise _invalid(f"unknown model category '{category}'")
    folders = install.folders(category)
    if not folders:
        raise _invalid(f"no base path configured for category '{category}'")
    return os.fsencode(folders[0].folder).rstrip(b"/") + b"/"


def stored_name(digest: str, *names: str | None) -> bytes:
    """``<hex><ext>``, the extension (1 to 15 plain characters after the dot) taken from
    the first of ``names`` that has one."""
    for name in names:
        ext = os.path.splitext(os.path.basename(name or ""))[1]
        if 2 <= len(ext) <= 16 and set(ext) <= _EXT_CHARS:
            return os.fsencode(digest.removeprefix("blake3:") + ext)
    return os.fsencode(digest.removeprefix("blake3:"))


def _tags_field(text: str) -> list[str]:
    """A ``tags`` part: a JSON array of strings, or comma-separated names."""
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise _invalid("tags must be a JSON array of strings or comma-separated") from None
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise _invalid("tags must be a JSON array of strings or comma-separated")
        return value
    return text.split(",")


class Uploads:
    """``POST /api/assets`` and ``POST /api/assets/from-hash``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/api/assets", self.upload)
        app.router.add_post("/api/assets/from-hash", self.from_hash)

    # -- from-hash --------------------------------------------------------------------

    async def from_hash(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise _invalid("Request body must be a JSON object.")
        digest = valid_hash(body["hash"]) if isinstance(body.get("hash"), str) else None
        if digest is None:
            raise _invalid("hash must be like 'blake3:<hex>'")
        tags = body.get("tags") or []
        if isinstance(tags, str):
            tags = tags.split(",")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _invalid("tags must be a list of strings")
        if "user_metadata" in body and not isinstance(body["user_metadata"], dict):
            raise _invalid("user_metadata must be an object")
        row = await self.ctx.run(self._known, digest, False)
        if row is None:
            raise ApiError(404, "ASSET_NOT_FOUND", f"Asset content {digest} does not exist")
        item = await self.ctx.run(self._claim, row, normalise_tags(tags))
        return json_response({**item, "created_new": False}, status=201)

    # -- the upload -------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Use multipart/form-data for uploads.")
        form = Form()
        try:
            await self._read(request, form)
            status, item = await self.ctx.run(self._finish, form)
        finally:
            if form.file is not None:
                await self.ctx.run(_remove, form.file.temp)
        return json_response(item, status=status)

    async def _read(self, request: web.Request, form: Form) -> None:
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise _invalid("nested multipart bodies are not accepted")
                await self._part(part, form)
        except (ApiError, web.HTTPException, OSError):
            raise
        except Exception as exc:  # whatever a malformed body makes the parser raise
            raise _invalid(f"malformed multipart body: {exc}") from None

    async def _part(self, part: BodyPartReader, form: Form) -> None:
        name = part.name
        if name == "file" and form.file is None:
            form.file = await self._receive(part, form)
        elif name == "id":
            raise ApiError(
                400,
                "UNSUPPORTED_FIELD",
                "Client-provided 'id' is not supported. Asset IDs are assigned by the server.",
            )
        elif name in ("tags", "name", "user_metadata", "hash", "preview_id"):
            _apply_text(form, name, await _text(part))
        else:  # mime_type and subfolder too: assetd names types itself, and stores flat
            await part.release()

    async def _receive(self, part: BodyPartReader, form: Form) -> Received:
        """Write the file part under a temporary name where uploads land (see
        :meth:`_landing`), hashing it on the way."""
        folder = await self.ctx.run(self._landing, form.tags)
        temp = folder + f".assetd-upload-{uuid.uuid4().hex}.part".encode()
        handle: BinaryIO | None = None
        try:
            handle = await self.ctx.run(_create, temp)
            hasher, size = blake3.blake3(), 0
            while chunk := await _read_chunk(part):
                await self.ctx.run(_write, handle, hasher, chunk)
                size += len(chunk)
            await self.ctx.run(handle.close)
        except OSError as exc:
            await self.ctx.run(_abandon, handle, temp)
            raise _io_error(exc) from None
        except BaseException:
            await self.ctx.run(_abandon, handle, temp)
            raise
        return Received(temp, "blake3:" + hasher.hexdigest(), size, part.filename)

    def _landing(self, tags: list[str]) -> bytes:
        """Where a file part is written while it arrives: a folder of the install outside
        every root, so that the catalog never sees a half-received file and takes the
        finished one renamed in, at once and hashed. Failing that (the install inside
        a root, or not writable), the folder the tags name, else the input folder."""
        view, config = self.ctx.view(), self.ctx.config()
        candidates = []
        if view.install is not None:
            staging = os.fsencode(os.path.join(view.install.path, STAGING)) + b"/"
            if root_for_path(staging, config.roots) is None:
                candidates.append(staging)
        try:
            candidates.append(destination(normalise_tags(tags), view))
        except ApiError:
            candidates.append(view.folder("input") or os.fsencode(tempfile.gettempdir()) + b"/")
        failure: OSError = PermissionError(errno.EACCES, "no folder to write the upload to")
        for folder in candidates:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                failure = exc
                continue
            if os.access(folder, os.W_OK):
                return folder
        raise _io_error(failure)

    def _finish(self, form: Form) -> tuple[int, dict[str, Any]]:
        """ComfyUI's decision, in its order; (status, AssetCreated)."""
        tags, received = normalise_tags(form.tags), form.file
        known = self._known(form.hash, received is not None) if form.hash else None
        if received is None:
            if known is None:
                raise ApiError(
                    400, "MISSING_FILE", "Form must include a 'file' part or a known 'hash'."
                )
            return 200, {**self._claim(known, tags), "created_new": False}
        if received.size == 0 and known is None:
            raise ApiError(400, "EMPTY_UPLOAD", "Uploaded file is empty.")
        if known is not None:
            return 200, {**self._claim(known, tags), "created_new": False}
        if form.hash is not None and form.hash != received.digest:
            raise ApiError(400, "HASH_MISMATCH", "Uploaded file hash does not match provided hash.")
        same = self._known(received.digest, True)
        if same is not None:
            return 200, {**self._claim(same, tags), "created_new": False}
        folder = destination(tags, self.ctx.view())
        final = folder + stored_name(received.digest, received.filename, form.name)
        created = _place(received.temp, final)
        location_id = self.ctx.service.comfy_take(final)
        row = self.ctx.service.comfy_reads().row(location_id) if location_id is not None else None
        if row is None:
            raise ApiError(500, "UPLOAD_IO_ERROR", "The catalog did not take the stored file.")
        if not created:
            return 200, {**self._claim(row, tags), "created_new": False}
        name = os.path.basename(form.name or "") or received.filename or None
        preview = self._preview(form.preview)
        self._adopt(row, name, [*tags, UPLOADED], form.metadata, preview)
        return 201, {**self.ctx.asset_of(row.id), "created_new": True}

    def _known(self, digest: str | None, live_only: bool) -> RefRow | None:
        """A location of the content with this hash: a live, visible one first."""
        if digest is None:
            return None
        rows = self.ctx.service.comfy_reads().of_content(digest)
        if live_only:
            rows = [r for r in rows if not r.is_missing]
        return rows[0] if rows else None

    def _preview(self, text: str | None) -> int | None:
        if text is None:
            return None
        try:
            return self.ctx.find(text).id
        except ApiError:
            return None  # ComfyUI drops an unknown preview silently

    def _claim(self, row: RefRow, tags: list[str]) -> dict[str, Any]:
        """Known content: this location, visible again, with the tags given."""
        self._adopt(row, None, tags, None, None)
        return self.ctx.asset_of(row.id)

    def _adopt(
        self,
        row: RefRow,
        name: str | None,
        tags: list[str],
        metadata: dict[str, Any] | None,
        preview: int | None,
    ) -> None:
        try:
            self.ctx.service.comfy_adopt(row.id, name, tags, metadata, preview)
        except InvalidRequestError as exc:  # a tag assetd cannot take (too long, controls)
            raise _invalid(str(exc)) from None


def _apply_text(form: Form, name: str, text: str) -> None:
    if name == "tags":
        form.tags += _tags_field(text)
    elif name == "name":
        if len(text) > NAME_MAX:
            raise _invalid(f"name must be at most {NAME_MAX} characters")
        form.name = text
    elif name == "user_metadata":
        try:
            value = json.loads(text) if text.strip() else {}
        except (ValueError, RecursionError) as exc:
            raise _invalid(f"user_metadata must be JSON: {exc}") from None
        if not isinstance(value, dict):
            raise _invalid("user_metadata must be a JSON object")
        form.metadata = value
    elif name == "hash":
        digest = valid_hash(text)
        if digest is None:
            raise ApiError(400, "INVALID_HASH", "hash must be like 'blake3:<hex>'")
        form.hash = digest
    else:
        form.preview = text.strip() or None


async def _text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(64 << 10):
        data += chunk
        if len(data) > TEXT_MAX:
            raise _invalid(f"field {part.name!r} is larger than {TEXT_MAX} bytes")
    try:
        return data.decode(part.get_charset(default="utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise _invalid(f"field {part.name!r} is not text") from None


async def _read_chunk(part: BodyPartReader) -> bytes:
    """Up to :data:`CHUNK` bytes of the part (b"" at its end)."""
    data = bytearray()
    while len(data) < CHUNK and (piece := await part.read_chunk(CHUNK - len(data))):
        data += piece
    return bytes(data)


# -- files (in the API's threads) -----------------------------------------------------


def _create(temp: bytes) -> BinaryIO:
    return open(temp, "xb")


def _write(handle: BinaryIO, hasher: Any, chunk: bytes) -> None:
    hasher.update(chunk)
    handle.write(chunk)


def _abandon(handle: BinaryIO | None, temp: bytes) -> None:
    """A write that failed: the temporary file goes, whatever else fails."""
    if handle is not None:
        with contextlib.suppress(OSError):  # a full disk fails the flush too
            handle.close()
    _remove(temp)


def _remove(path: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _place(temp: bytes, final: bytes) -> bool:
    """Move the received file to its final name; False when a file has that name
    already (the same content: the name is its hash), which is then left as it is."""
    with _PLACING:
        if os.path.lexists(final):
            return False
        try:
            try:
                os.replace(temp, final)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                _copy_into_place(temp, final)
        except OSError as exc:
            raise _io_error(exc) from None
        return True


def _copy_into_place(temp: bytes, final: bytes) -> None:
    """Across filesystems: copied beside the final name, then renamed there."""
    folder, name = os.path.split(final)
    beside = os.path.join(folder, b"." + name + b".part")
    try:
        shutil.copyfile(temp, beside)
        os.replace(beside, final)
    except OSError:
        _remove(beside)
        raise
    _remove(temp)
