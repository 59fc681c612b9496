"""What every handler of ComfyUI's asset API shares: the service, the view of the install,
the threads that run catalog calls off the event loop, and reading requests."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from assetd.catalog.comfyrefs import RefRow
from assetd.comfyui.api_errors import ApiError, not_found
from assetd.comfyui.api_ids import location_of
from assetd.comfyui.api_shapes import View, asset_json
from assetd.config import Config
from assetd.service import Service

__all__ = ["Context", "json_body", "json_response", "query_lists"]

JSON_BODY_MAX = 1 << 20  # bytes of a JSON request body


@dataclass
class Context:
    """The service and its threads; the view follows configuration reloads."""

    service: Service
    config: Callable[[], Config]
    executor: Executor
    _view: View | None = field(default=None, repr=False)

    def view(self) -> View:
        install = self.config().install
        if self._view is None or self._view.install is not install:
            self._view = View(self.service.catalog_id, install)
        return self._view

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a thread of the API's own: catalog reads and waits
        on the writer never block the event loop, nor take the feed's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def find(self, text: str, *, details: bool = True) -> RefRow:
        """The location a UUID names, missing or not, unless the API deleted it (blocks)."""
        location_id = location_of(text)
        row = None if location_id is None else self.service.comfy_reads().row(location_id)
        if row is None or row.hidden or not self.view().matches(row, text):
            raise not_found(text.lower(), with_id=details)
        return row

    def asset_of(self, location_id: int) -> dict[str, Any]:
        """The Asset object of a location as it is now (blocks)."""
        row = self.service.comfy_reads().row(location_id)
        if row is None:  # gone meanwhile (a cleanup): as if never there
            raise ApiError(404, "ASSET_NOT_FOUND", "The asset is gone.")
        return self.asset(row)

    def asset(self, row: RefRow) -> dict[str, Any]:
        """The Asset object of a row, its preview looked up (blocks)."""
        preview = None
        if row.preview_id is not None:
            preview = self.service.comfy_reads().row(row.preview_id)
        return asset_json(row, self.view(), preview)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def json_body(request: web.Request) -> Any:
    """The request's JSON value; INVALID_JSON for a body that is not JSON."""
    too_large = ApiError(413, "INVALID_BODY", f"Request body is over {JSON_BODY_MAX} bytes.")
    if request.content_length is not None and request.content_length > JSON_BODY_MAX:
        raise too_large
    data = b""
    while chunk := await request.content.read(JSON_BODY_MAX + 1 - len(data)):
        data += chunk
        if len(data) > JSON_BODY_MAX:
            raise too_large
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ApiError(400, "INVALID_JSON", "Request body must be valid JSON.") from None


def query_lists(request: web.Request) -> dict[str, list[str]]:
    """Every value of each query key."""
    found: dict[str, list[str]] = {}
    for key, value in request.query.items():
        found.setdefault(key, []).append(value)
    return found
