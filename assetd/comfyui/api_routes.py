"""ComfyUI's asset routes over locations: list, detail, content, the hash check, PUT,
DELETE, tags, tag counts, and ``/api/view``."""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

from aiohttp import web

from assetd.catalog.comfyrefs import Candidate, RefRow
from assetd.comfyui.api_context import Context, json_body, json_response, query_lists
from assetd.comfyui.api_errors import ApiError, not_found
from assetd.comfyui.api_files import file_headers, send_file
from assetd.comfyui.api_ids import ID_PATTERN
from assetd.comfyui.api_query import (
    CURSOR_SORTS,
    ListQuery,
    encode_cursor,
    invalid_query,
    metadata_matches,
    normalise_tags,
    parse_list,
    parse_tags_query,
)
from assetd.comfyui.api_shapes import VIEW_TYPES, sort_value
from assetd.exceptions import InvalidRequestError, NotFoundError
from assetd.mime import guess_mime

__all__ = ["AssetRoutes", "valid_hash"]

_HASH = re.compile(r"blake3:[0-9a-f]{64}")
REFINE_DEFAULT, REFINE_MAX = 100, 1000


def valid_hash(text: str) -> str | None:
    """``blake3:<64 hex>``, stripped and in lower case; None for anything else."""
    digest = text.strip().lower()
    return digest if _HASH.fullmatch(digest) else None


class AssetRoutes:
    """The handlers; each runs its catalog calls in the context's threads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def add_to(self, app: web.Application) -> None:
        one = "/api/assets/{id:" + ID_PATTERN + "}"
        app.router.add_get("/api/assets", self.list_assets)
        app.router.add_get("/api/assets/tags/refine", self.refine)
        app.router.add_route("HEAD", "/api/assets/hash/{hash}", self.head_hash)
        app.router.add_get(one, self.detail)
        app.router.add_put(one, self.update)
        app.router.add_delete(one, self.delete)
        app.router.add_get(one + "/content", self.content)
        app.router.add_post(one + "/tags", self.add_tags)
        app.router.add_delete(one + "/tags", self.remove_tags)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/view", self.view)

    # -- the list ---------------------------------------------------------------------

    async def list_assets(self, request: web.Request) -> web.Response:
        query = parse_list(query_lists(request))
        return json_response(await self.ctx.run(self._list, query))

    def _list(self, query: ListQuery) -> dict[str, Any]:
        refs = self.ctx.service.comfy_reads()
        if query.metadata_filter is None:
            ids, total, more = refs.page(
                query.where, query.sort, limit=query.limit, offset=query.offset, after=query.after
            )
        else:
            ids, total, more = self._filtered_page(query)
        rows = refs.rows(ids)
        page = [rows[i] for i in ids if i in rows]
        body: dict[str, Any] = {"assets": [self.ctx.asset(row) for row in page], "total": total}
        if more and page and query.sort.key in CURSOR_SORTS:
            last = page[-1]
            body["next_cursor"] = encode_cursor(
                query.sort, sort_value(last, query.sort.key), last.id
            )
        if query.after is not None:
            body["has_more"] = "next_cursor" in body
        else:
            body["has_more"] = query.offset + len(page) < total
        return body

    def _filtered_page(self, query: ListQuery) -> tuple[list[int], int, bool]:
        """A page of the matches whose user metadata matches too: filtered here, in
        Python, over every match of the rest of the query (see docs/comfyui-api.md)."""
        assert query.metadata_filter is not None
        refs, view = self.ctx.service.comfy_reads(), self.ctx.view()
        found = refs.candidates(query.where, query.sort)
        metadata = refs.metadata({c.asset_id for c in found})

        def keep(c: Candidate) -> bool:
            merged = dict(metadata.get(c.asset_id, {}))
            loader = view.loader_path(c.path)
            if loader is not None:
                merged["filename"] = loader
            return metadata_matches(merged, query.metadata_filter or {})

        kept = [c for c in found if keep(c)]
        start = query.offset
        if query.after is not None:
            after, desc = query.after, query.sort.desc
            start = next(
                (
                    n
                    for n, c in enumerate(kept)
                    if ((c.key, c.id) < after if desc else (c.key, c.id) > after)
                ),
                len(kept),
            )
        chosen = kept[start : start + query.limit]
        return [c.id for c in chosen], len(kept), start + query.limit < len(kept)

    async def refine(self, request: web.Request) -> web.Response:
        """The tags of the assets a list query matches, with their counts."""
        lists = query_lists(request)
        query = parse_list(
            {
                k: v
                for k, v in lists.items()
                if k not in ("limit", "offset", "after", "sort", "order")
            }
        )
        limit = _refine_limit(lists)
        return json_response(await self.ctx.run(self._refine, query, limit))

    def _refine(self, query: ListQuery, limit: int) -> dict[str, Any]:
        refs = self.ctx.service.comfy_reads()
        if query.metadata_filter is None:
            ids = [c.id for c in refs.candidates(query.where, query.sort)]
        else:
            ids, _, _ = self._filtered_page(
                ListQuery(query.where, query.sort, 1 << 62, 0, None, query.metadata_filter)
            )
        counts: Counter[str] = Counter()
        for row in refs.rows(ids).values():
            counts.update(row.tags)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return {"tag_counts": dict(ordered)}

    # -- one asset --------------------------------------------------------------------

    async def detail(self, request: web.Request) -> web.Response:
        text = request.match_info["id"]
        return json_response(await self.ctx.run(lambda: self.ctx.asset(self.ctx.find(text))))

    async def head_hash(self, request: web.Request) -> web.Response:
        digest = valid_hash(request.match_info["hash"])
        if digest is None:
            raise ApiError(400, "INVALID_HASH", "hash must be like 'blake3:<hex>'")
        known = await self.ctx.run(self.ctx.service.comfy_reads().hash_known, digest)
        return web.Response(status=200 if known else 404)

    async def content(self, request: web.Request) -> web.StreamResponse:
        text = request.match_info["id"]
        row, path = await self.ctx.run(self._file_of, text)
        await self.ctx.run(self.ctx.service.comfy_touch, row.id)
        kind = "inline" if request.query.get("disposition") == "inline" else "attachment"
        name = row.name if row.name is not None else row.file_name
        mime = row.mime_type or guess_mime(os.fsencode(name)) or guess_mime(path)
        return await self._send(request, path, file_headers(request, mime, name, kind))

    def _file_of(self, text: str) -> tuple[RefRow, bytes]:
        """The row and the file to send: its own, else a live one of the same content."""
        row = self.ctx.find(text, details=False)
        paths = [] if row.is_missing else [row.path]
        paths += [p for _, p in self.ctx.service.comfy_reads().live_siblings(row.asset_id)]
        for path in paths:
            if os.path.isfile(path):
                return row, path
        raise ApiError(404, "FILE_NOT_FOUND", "Underlying file not found on disk.")

    async def _send(
        self, request: web.Request, path: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        try:
            return await send_file(request, path, headers, self.ctx.executor)
        except OSError:
            raise ApiError(404, "FILE_NOT_FOUND", "Underlying file not found on disk.") from None

    async def update(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        name, metadata, preview = _update_fields(body)
        text = request.match_info["id"]
        return json_response(await self.ctx.run(self._update, text, name, metadata, preview))

    def _update(
        self, text: str, name: str | None, metadata: dict[str, Any] | None, preview: str | None
    ) -> dict[str, Any]:
        row = self.ctx.find(text)
        preview_id = None
        if preview is not None:
            try:
                preview_id = self.ctx.find(preview).id
            except ApiError:
                raise ApiError(
                    404, "ASSET_NOT_FOUND", f"Preview AssetReference {preview} not found"
                ) from None
        try:
            self.ctx.service.comfy_update(row.id, name, metadata, preview_id)
        except NotFoundError:
            raise not_found(text.lower()) from None
        return self.ctx.asset(self.ctx.find(text))

    async def delete(self, request: web.Request) -> web.Response:
        text = request.match_info["id"]
        if not await self.ctx.run(self._delete, text):
            raise ApiError(404, "ASSET_NOT_FOUND", f"AssetReference {text.lower()} not found.")
        return web.Response(status=204)

    def _delete(self, text: str) -> bool:
        """Hide the location; False when it is unknown or hidden already (of two
        DELETEs at once, the writer lets one hide it)."""
        try:
            row = self.ctx.find(text)
        except ApiError:
            return False
        return self.ctx.service.comfy_hide(row.id)

    # -- tags -------------------------------------------------------------------------

    async def add_tags(self, request: web.Request) -> web.Response:
        tags = await _tags_body(request, "add")
        return json_response(
            await self.ctx.run(self._change_tags, request.match_info["id"], tags, True)
        )

    async def remove_tags(self, request: web.Request) -> web.Response:
        tags = await _tags_body(request, "remove")
        return json_response(
            await self.ctx.run(self._change_tags, request.match_info["id"], tags, False)
        )

    def _change_tags(self, text: str, tags: list[str], add: bool) -> dict[str, Any]:
        row = self.ctx.find(text)
        service = self.ctx.service
        done: tuple[list[str], ...] = ([], [], [])
        if tags:
            try:
                done = (
                    service.comfy_tags(row.id, add=tags)
                    if add
                    else service.comfy_tags(row.id, remove=tags)
                )
            except NotFoundError:
                raise not_found(text.lower()) from None
            except InvalidRequestError as exc:
                raise ApiError(400, "INVALID_BODY", str(exc)) from None
        total = sorted(self.ctx.find(text).tags)
        if add:
            return {"added": done[0], "already_present": done[1], "total_tags": total}
        return {
            "removed": done[0],
            "not_present": done[1],
            "protected": done[2],
            "total_tags": total,
        }

    async def tags(self, request: web.Request) -> web.Response:
        query = parse_tags_query(query_lists(request))
        refs = self.ctx.service.comfy_reads()
        counts: dict[str, int] = await self.ctx.run(
            refs.tag_counts, query.prefix, query.include_zero
        )
        items = [(n, c) for n, c in counts.items() if query.include_zero or c > 0]
        items.sort(key=(lambda i: (-i[1], i[0])) if query.by_count else (lambda i: i[0]))
        page = items[query.offset : query.offset + query.limit]
        return json_response(
            {
                "tags": [{"name": n, "count": c} for n, c in page],
                "total": len(items),
                "has_more": query.offset + len(page) < len(items),
            }
        )

    # -- /api/view --------------------------------------------------------------------

    async def view(self, request: web.Request) -> web.StreamResponse:
        """ComfyUI's file view, for the ``preview_url`` of assets: a live, catalogued
        file under input, output or temp, by type, subfolder and file name."""
        kind = request.query.get("type") or "output"
        filename = request.query.get("filename", "")
        subfolder = request.query.get("subfolder", "")
        if kind not in VIEW_TYPES:
            raise invalid_query("type", f"type must be one of {', '.join(VIEW_TYPES)}")
        if (
            not filename
            or filename.startswith("/")
            or ".." in filename
            or "\0" in filename + subfolder
        ):
            raise invalid_query("filename", "a file name, without '..' or a leading '/'")
        path, mime = await self.ctx.run(self._view_file, kind, subfolder, filename)
        name = os.fsdecode(os.path.basename(path))
        return await self._send(request, path, file_headers(request, mime, name, "inline"))

    def _view_file(self, kind: str, subfolder: str, filename: str) -> tuple[bytes, str | None]:
        folder = self.ctx.view().folder(kind)
        missing = ApiError(404, "FILE_NOT_FOUND", "No such file.")
        if folder is None:
            raise missing
        path = os.fsencode(os.path.normpath(os.path.join(os.fsdecode(folder), subfolder, filename)))
        if not path.startswith(folder):
            raise ApiError(403, "FORBIDDEN", "The path is outside the folder.")
        refs = self.ctx.service.comfy_reads()
        location_id = refs.id_at(path)
        row = refs.row(location_id) if location_id is not None else None
        if row is None or row.is_missing:
            raise missing
        return path, row.mime_type or guess_mime(path)


def _refine_limit(lists: dict[str, list[str]]) -> int:
    values = lists.get("limit") or []
    if not values:
        return REFINE_DEFAULT
    text = values[0].strip()
    if len(values) > 1 or not text.isdigit() or not 1 <= int(text) <= REFINE_MAX:
        raise invalid_query("limit", f"Input should be between 1 and {REFINE_MAX}")
    return int(text)


def _update_fields(body: Any) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """PUT's name, user_metadata and preview_id; at least one of them."""
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_BODY", "Request body must be a JSON object.")
    name, metadata, preview = body.get("name"), body.get("user_metadata"), body.get("preview_id")
    if name is not None and (not isinstance(name, str) or len(name) > 512 or "\0" in name):
        raise ApiError(400, "INVALID_BODY", "'name' must be a string of at most 512 characters.")
    if metadata is not None and not isinstance(metadata, dict):
        raise ApiError(400, "INVALID_BODY", "'user_metadata' must be an object.")
    if preview is not None and not isinstance(preview, str):
        raise ApiError(400, "INVALID_BODY", "'preview_id' must be an asset id.")
    if name is None and metadata is None and preview is None:
        raise ApiError(
            400, "INVALID_BODY", "Provide at least one of: name, user_metadata, preview_id."
        )
    return name, metadata, preview


async def _tags_body(request: web.Request, what: str) -> list[str]:
    body = await json_body(request)
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        error = {"type": "value_error", "loc": ["tags"], "msg": "a non-empty list of strings"}
        raise ApiError(
            400, "INVALID_BODY", f"Invalid JSON body for tags {what}.", {"errors": [error]}
        )
    return normalise_tags(tags)
