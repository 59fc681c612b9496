"""ComfyUI's asset API on its own listener (``[comfyui] listen``): an adapter over the
service, served by aiohttp in the daemon's event loop.

ComfyUI's own server is aiohttp, and its API needs what the feed's websockets server
cannot serve: request bodies, multipart uploads, byte ranges, its own ``/ws``. Handlers
run every catalog call in threads of the API's own; writes go through the service to
the one writer. See docs/comfyui-api.md for the mapping and where it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from assetd.comfyui.api_context import JSON_BODY_MAX, Context, json_response
from assetd.comfyui.api_errors import ApiError, envelope
from assetd.comfyui.api_routes import AssetRoutes
from assetd.comfyui.api_seed import FEATURES, Hub, SeedRoutes
from assetd.comfyui.api_upload import Uploads
from assetd.config import Config
from assetd.service import Service

__all__ = ["ComfyApi"]

log = logging.getLogger(__name__)

THREADS = 8  # catalog calls and file reads at once; a seed?wait=true holds one
SHUTDOWN_S = 2.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's own answers (no route, another method, ...) in ComfyUI's envelope.
_HTTP_CODES = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "INVALID_BODY",
    416: "RANGE_NOT_SATISFIABLE",
}


class ComfyApi:
    """The listener. ``seed_event`` may be called from any thread."""

    def __init__(
        self,
        service: Service,
        *,
        sock: socket.socket,
        config: Callable[[], Config],
        token: str | None = None,
        allowed_origins: tuple[str, ...] = (),
    ) -> None:
        self.sock = sock
        self.token = token
        self.allowed_origins = set(allowed_origins)
        self.executor = ThreadPoolExecutor(THREADS, thread_name_prefix="assetd-comfyui")
        self.hub = Hub()
        ctx = Context(service, config, self.executor)
        self.app = web.Application(
            middlewares=[self._errors, self._guard], client_max_size=JSON_BODY_MAX
        )
        AssetRoutes(ctx).add_to(self.app)
        Uploads(ctx).add_to(self.app)
        SeedRoutes(ctx).add_to(self.app)
        self.app.router.add_get("/ws", self.hub.handle)
        self.app.router.add_get("/api/features", self._features)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # No access log: one line per request is noise in a journal, as for the feed. A
        # request still running at shutdown (a seed waited for) is given a moment only.
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_S
        )
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()

    async def close(self) -> None:
        await self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def seed_event(self, kind: str, data: dict[str, Any]) -> None:
        """A pass's event, from the seeder's thread, to the ``/ws`` sockets."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                self._loop.call_soon_threadsafe(self.hub.seed_event, kind, data)

    async def _features(self, request: web.Request) -> web.Response:
        return json_response(FEATURES)

    # -- middlewares ------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error in ComfyUI's envelope; never a traceback for what a client sent."""
        try:
            return await handler(request)
        except ApiError as exc:
            return json_response(exc.body(), exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _HTTP_CODES.get(exc.status, "INVALID_REQUEST")
            response = json_response(envelope(code, exc.reason), exc.status)
            for header in ("Allow", "Content-Range"):
                if header in exc.headers:
                    response.headers[header] = exc.headers[header]
            return response
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            log.exception("ComfyUI API: %s %s failed", request.method, request.path)
            return json_response(envelope("INTERNAL", "Unexpected server error."), 500)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The feed's token, when one is configured (Bearer or ``?token=``); and no
        browser page of another origin (a request from one carries its ``Origin``)."""
        if self.token is not None and not self._token_ok(request):
            raise ApiError(401, "UNAUTHORIZED", "A valid token is required.")
        origin = request.headers.get("Origin")
        host = request.headers.get("Host", "")
        own = {f"http://{host}", f"https://{host}"}
        if origin is not None and origin not in own and origin not in self.allowed_origins:
            raise ApiError(403, "FORBIDDEN", f"Origin {origin} is not allowed.")
        return await handler(request)

    def _token_ok(self, request: web.Request) -> bool:
        assert self.token is not None
        offered = request.query.get("token", "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            offered = header[len("Bearer ") :].strip()
        return hmac.compare_digest(offered.encode(), self.token.encode())
