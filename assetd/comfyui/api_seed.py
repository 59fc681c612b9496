"""Scan control in ComfyUI's terms (seed, status, cancel, prune) over the service's
passes, and ``/ws``: ComfyUI's socket, which carries the passes' ``assets.seed.*`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from assetd.comfyui.api_context import JSON_BODY_MAX, Context, json_body, json_response
from assetd.comfyui.api_errors import ApiError
from assetd.comfyui.api_shapes import View
from assetd.config import Config
from assetd.exceptions import SeederBusyError

__all__ = ["FEATURES", "Hub", "SeedRoutes", "comfy_event", "roots_of"]

log = logging.getLogger(__name__)

SEED_ROOTS = ("models", "input", "output")  # what ComfyUI's seed takes (never temp)
FEATURES = {"supports_model_type_tags": True, "assets": True}
CLIENT_QUEUE = 256  # events waiting for one socket before it counts as gone
_COUNTS = ("scanned", "total", "created", "skipped")


def roots_of(config: Config, view: View, names: list[str]) -> list[str]:
    """The assetd roots that hold ComfyUI's ``models``, ``input`` or ``output``: the
    install's folder of that name, and for ``models`` every root of a model category
    (extra model paths too). Without an install, every root."""
    install = config.install
    if install is None:
        return [root.name for root in config.roots]
    folders = {kind: view.folder(kind) for kind in ("input", "output", "temp")}
    chosen = []
    for root in config.roots:
        kind = next((k for k, prefix in folders.items() if root.prefix == prefix), None)
        if kind is None and any(
            folder.prefix.startswith(root.prefix) or root.prefix.startswith(folder.prefix)
            for folder in install.categories
        ):
            kind = "models"
        if kind in names:
            chosen.append(root.name)
    return chosen


def _progress(progress: dict[str, Any] | None) -> dict[str, Any]:
    """A pass's progress with ComfyUI's four counts always there (assetd's beside them)."""
    found = dict(progress or {})
    return {**{key: int(found.get(key) or 0) for key in _COUNTS}, **found}


def _error_texts(errors: list[Any]) -> list[str]:
    """The status's errors as ComfyUI gives them: strings."""
    texts = []
    for error in errors:
        if isinstance(error, dict):
            where = error.get("path")
            texts.append(f"{where}: {error.get('message')}" if where else str(error.get("message")))
        else:
            texts.append(str(error))
    return texts[:200]


def comfy_event(kind: str, data: dict[str, Any], elapsed: float | None) -> dict[str, Any]:
    """A pass's event as ComfyUI's ``/ws`` carries it: ``{"type", "data"}``."""
    if kind == "assets.seed.started":
        return {"type": kind, "data": {"roots": list(data.get("roots", [])), "phase": "full"}}
    counts = {k: v for k, v in data.items() if k not in ("errors", "catalog_unavailable")}
    if kind == "assets.seed.error":
        errors = _error_texts(data.get("errors") or [])
        return {"type": kind, "data": {"message": errors[0] if errors else "scan failed"}}
    body = {**_progress(counts)}
    if kind == "assets.seed.completed":
        body["phase"] = "full"
        if elapsed is not None:
            body["elapsed"] = round(elapsed, 3)
    return {"type": kind, "data": body}


class SeedRoutes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/api/assets/seed", self.seed)
        app.router.add_get("/api/assets/seed/status", self.status)
        app.router.add_post("/api/assets/seed/cancel", self.cancel)
        app.router.add_post("/api/assets/prune", self.prune)

    async def seed(self, request: web.Request) -> web.Response:
        names = list(SEED_ROOTS)
        body = await _optional_json(request)
        if isinstance(body, dict) and "roots" in body:
            given = body["roots"]
            items = list(given) if isinstance(given, list | str) else []
            names = [n for n in dict.fromkeys(items) if isinstance(n, str) and n in SEED_ROOTS]
            if not names:
                raise ApiError(400, "INVALID_BODY", "No valid roots specified")
        wait = request.query.get("wait", "").lower() in ("true", "1", "yes")
        service = self.ctx.service
        roots = roots_of(self.ctx.config(), self.ctx.view(), names)
        if not await self.ctx.run(service.seed, roots, False, True):
            return json_response({"status": "already_running"}, status=409)
        if not wait:
            return json_response({"status": "started"}, status=202)
        progress = await self.ctx.run(service.seed_wait)
        status = await self.ctx.run(service.seeder_status)
        return json_response(
            {
                "status": "completed",
                "progress": _progress(progress),
                "errors": _error_texts(status["errors"]),
            }
        )

    async def status(self, request: web.Request) -> web.Response:
        status = await self.ctx.run(self.ctx.service.seeder_status)
        progress = status["progress"]
        return json_response(
            {
                "state": status["state"],
                "progress": _progress(progress) if progress is not None else None,
                "errors": _error_texts(status["errors"]),
            }
        )

    async def cancel(self, request: web.Request) -> web.Response:
        service = self.ctx.service
        state = (await self.ctx.run(service.seeder_status))["state"]
        cancelling = state != "CANCELLING" and await self.ctx.run(service.cancel)
        return json_response({"status": "cancelling" if cancelling else "idle"})

    async def prune(self, request: web.Request) -> web.Response:
        try:
            marked = await self.ctx.run(self.ctx.service.prune)
        except SeederBusyError:
            return json_response({"status": "scan_running", "marked": 0}, status=409)
        return json_response({"status": "completed", "marked": marked})


async def _optional_json(request: web.Request) -> Any:
    """The body's JSON value; None for no body, one that is not JSON, or a huge one."""
    try:
        return await json_body(request)
    except ApiError:
        return None


class Hub:
    """ComfyUI's ``/ws``: ``status`` on connect, ``feature_flags`` answered, the passes'
    events sent to every socket. Each socket has a queue of its own, so a client that
    does not read costs only its queue, and is dropped when that is full."""

    def __init__(self) -> None:
        self.clients: dict[web.WebSocketResponse, asyncio.Queue[str]] = {}
        self._started: float | None = None
        self._closing: set[asyncio.Future[Any]] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=JSON_BODY_MAX)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        status = {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}
        await ws.send_str(json.dumps({"type": "status", "data": status}))
        queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)
        self.clients[ws] = queue
        sender = asyncio.create_task(self._send_from(ws, queue))
        try:
            first = True
            async for message in ws:
                if message.type == WSMsgType.TEXT and first and _is_feature_flags(message.data):
                    await ws.send_str(json.dumps({"type": "feature_flags", "data": FEATURES}))
                first = False  # ComfyUI answers the first message only; others are ignored
        finally:
            self.clients.pop(ws, None)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def _send_from(self, ws: web.WebSocketResponse, queue: asyncio.Queue[str]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                await ws.send_str(await queue.get())

    def seed_event(self, kind: str, data: dict[str, Any]) -> None:
        """A pass's event, on the event loop: to every socket."""
        if kind == "assets.seed.started":
            self._started = time.monotonic()
        elapsed = time.monotonic() - self._started if self._started is not None else None
        text = json.dumps(comfy_event(kind, data, elapsed))
        for ws, queue in list(self.clients.items()):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                self.clients.pop(ws, None)
                task = asyncio.ensure_future(ws.close(code=WSCloseCode.POLICY_VIOLATION))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every socket as the daemon goes away (1001)."""
        for ws in list(self.clients):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"assetd is stopping")


def _is_feature_flags(text: str) -> bool:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and message.get("type") == "feature_flags"
