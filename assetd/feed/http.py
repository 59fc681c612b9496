"""The read-only HTTP beside the feed: its routes, the token and Origin checks, responses."""

from __future__ import annotations

import asyncio
import hmac
import http
import json
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from assetd.exceptions import InvalidRequestError, NotFoundError
from assetd.feed import commands, content
from assetd.service import Service
from assetd.thumbs import Thumbnailer

__all__ = ["Routes", "origin_ok", "token_ok"]

# The page's script and style are files of its own, served from here: nothing inline
# runs, and the page talks only to this server.
_CSP = (
    "default-src 'none'; connect-src 'self'; script-src 'self'; "
    "style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)

# The page's files, by the path they are served at: these and no other file.
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
}


class Routes:
    """``process_request`` for the feed's server: answers HTTP, or lets ``/ws`` through."""

    def __init__(
        self,
        service: Service,
        *,
        token: str | None,
        allowed_origins: tuple[str, ...] = (),
        thumbnailer: Thumbnailer | None = None,
    ) -> None:
        self.service = service
        self.thumbnailer = thumbnailer
        self.token = token
        self.allowed_origins = set(allowed_origins)
        static = resources.files("assetd").joinpath("static")
        self._static = {
            path: (static.joinpath(name).read_bytes(), kind)
            for path, (name, kind) in STATIC.items()
        }

    async def __call__(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/ws":
            if not token_ok(self.token, request, query):
                return json_response(401, {"error": "a valid token is required"})
            origin = request.headers.get("Origin")
            if origin is not None and not origin_ok(origin, request, self.allowed_origins):
                return json_response(403, {"error": f"origin {origin} is not allowed"})
            return None  # go on with the WebSocket handshake
        if request.method not in ("GET", "HEAD"):  # HEAD: the connection sends no body
            return method_not_allowed(request.method)
        if url.path == "/healthz":
            return json_response(200, {"status": "ok"})
        if url.path in self._static:
            return response(200, *self._static[url.path])
        if url.path.startswith("/api/") and not token_ok(self.token, request, query):
            return json_response(401, {"error": "a valid token is required"})
        try:
            if url.path == "/api/assets/seed/status":
                return json_response(200, await asyncio.to_thread(self.service.status))
            if url.path == "/api/assets":
                return json_response(200, await asyncio.to_thread(self._list, query))
            if url.path == "/api/location":
                detail = await asyncio.to_thread(commands.location, self.service, query)
                return json_response(200, detail)
            if url.path == "/api/content":
                return await content.content(self.service, query, request)
            if url.path == "/api/thumb":
                return await content.thumb(self.service, self.thumbnailer, query, request)
        except InvalidRequestError as exc:
            return json_response(400, {"error": str(exc), "code": commands.error_code(exc)})
        except NotFoundError as exc:
            return json_response(404, {"error": str(exc), "code": commands.error_code(exc)})
        return json_response(404, {"error": f"no such page: {url.path}"})

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        args = {k: _query_value(k, v) for k, v in query.items() if k != "token"}
        return commands.list_page(self.service, commands.list_args(args))


def token_ok(token: str | None, request: Request, query: dict[str, str]) -> bool:
    """Whether the request carries the token (as a Bearer header or ``?token=``)."""
    if token is None:
        return True
    offered = query.get("token", "")
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        offered = header[len("Bearer ") :].strip()
    return hmac.compare_digest(offered.encode(), token.encode())


def origin_ok(origin: str, request: Request, allowed: set[str]) -> bool:
    """Whether a browser's ``Origin`` is the server's own or one configured."""
    host = request.headers.get("Host", "")
    own = {f"http://{host}", f"https://{host}"}
    return origin in own or origin in allowed


def _query_value(key: str, value: str) -> Any:
    if key in ("include_missing", "missing_only"):
        return value.lower() in ("1", "true", "yes", "on")
    if key == "limit":
        try:
            return int(value)
        except ValueError:
            raise InvalidRequestError("'limit' must be a number") from None
    return value


def method_not_allowed(method: str) -> Response:
    answer = json_response(405, {"error": f"method {method} is not allowed: GET or HEAD"})
    answer.headers["Allow"] = "GET, HEAD"
    return answer


def json_response(status: int, body: Any) -> Response:
    return response(status, json.dumps(body).encode(), "application/json")


def response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", _CSP),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)
