"""``/api/content`` and ``/api/thumb``: a live location's bytes, and its thumbnail.

The rules (which ranges, which types a browser may see as what, which headers) are pure
functions; the two routes open the file, check it is the one the catalog has, and build
a response. A body is not read here: :class:`FileBody` carries the open file, and the
connection (:mod:`assetd.feed.httpconn`) streams it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import json
import os
import stat
from typing import IO
from urllib.parse import quote

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from assetd.exceptions import InvalidRequestError, RangeNotSatisfiableError
from assetd.feed import commands
from assetd.service import LiveFile, Service
from assetd.thumbs import IMAGE_TYPES, SIZE_DEFAULT, SIZE_MAX, SIZE_MIN, Thumbnailer

__all__ = [
    "FileBody",
    "byte_range",
    "content",
    "content_disposition",
    "etag_matches",
    "open_live",
    "served_type",
    "thumb",
    "thumb_size",
]

OCTET = "application/octet-stream"
# Types a browser would render as a document, run, or hand to a plug-in: served as bytes.
# PDF is among them: its viewer runs the document's scripts, and it would not render in
# the sandbox that content responses carry anyway.
_ACTIVE = (
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "application/pdf",
    "application/x-shockwave-flash",
    "text/cache-manifest",
    "application/wasm",
)
CONTENT_CACHE = "private, no-cache"  # the path's content may change: revalidate (ETag)
THUMB_CACHE = "private, max-age=60"  # a grid's thumbnails are not revalidated every scroll


@dataclasses.dataclass
class FileBody(Response):
    """A response whose body is ``length`` bytes of ``file`` from ``offset``; the
    connection streams it and closes the file."""

    file: IO[bytes] | None = None
    offset: int = 0
    length: int = 0


# -- the rules -------------------------------------------------------------------------


def served_type(mime: str | None) -> str:
    """The ``Content-Type`` a location is served with: its mime type, unless a browser
    would run or render it as a page (HTML, SVG, XML, scripts, PDF...)."""
    if not mime:
        return OCTET
    kind = mime.split(";")[0].strip().lower()
    if kind in _ACTIVE or "script" in kind or "xml" in kind or "html" in kind:
        return OCTET
    return kind


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte a ``Range`` header asks of ``size`` bytes; None for the
    whole file (no header, a header we ignore: not bytes, malformed, several ranges).

    Raises :class:`RangeNotSatisfiableError` when the range starts at or past the end.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    first_s, last_s = first_s.strip(), last_s.strip()
    if not dash or not (first_s.isdigit() or first_s == "") or not (last_s.isdigit() or not last_s):
        return None
    if first_s == "":  # the last n bytes
        if not last_s:
            return None
        n = int(last_s)
        if n == 0 or size == 0:
            raise RangeNotSatisfiableError(f"no byte of {size} satisfies {header!r}")
        return max(0, size - n), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None
    last = int(last_s) if last_s else size - 1
    if first >= size:
        raise RangeNotSatisfiableError(f"no byte of {size} satisfies {header!r}")
    return first, min(last, size - 1)


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, ``*`` matches)."""
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


def content_disposition(path: bytes) -> str:
    """``inline`` with the file's name, percent-encoded (any bytes, RFC 8187)."""
    return "inline; filename*=UTF-8''" + quote(os.path.basename(path), safe="")


def thumb_size(value: str | None) -> int:
    if value is None or value == "":
        return SIZE_DEFAULT
    if not value.isdigit() or not SIZE_MIN <= int(value) <= SIZE_MAX:
        raise InvalidRequestError(f"'size' must be a number from {SIZE_MIN} to {SIZE_MAX}")
    return int(value)


# -- the file --------------------------------------------------------------------------


def open_live(live: LiveFile) -> IO[bytes] | None:
    """The file at the location, opened, if it is still what the catalog has: a regular
    file (a symlink in its last part is not followed), with the row's device, inode,
    size and mtime; None otherwise. Never blocks on a FIFO or a device."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(live.path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if not stat.S_ISREG(st.st_mode) or seen != (
            live.device,
            live.inode,
            live.size,
            live.mtime_ns,
        ):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb", buffering=0)
    except OSError:
        os.close(fd)
        return None


def _live(service: Service, query: dict[str, str]) -> LiveFile | None:
    path = commands.message_path(query)  # path= or path_bytes_b64=, normalised
    return service.live_file(path)


# -- the routes ------------------------------------------------------------------------


async def content(service: Service, query: dict[str, str], request: Request) -> Response:
    """``/api/content``: the bytes of a live location, whole or one range."""
    live = await asyncio.to_thread(_live, service, query)
    file = await asyncio.to_thread(open_live, live) if live is not None else None
    if live is None or file is None:
        return not_found("no live location in the catalog at this path")
    etag = f'"{live.hash}"' if live.hash else None
    headers = [
        ("Content-Type", served_type(live.mime_type)),
        ("Content-Disposition", content_disposition(live.path)),
        ("Accept-Ranges", "bytes"),
        ("Cache-Control", CONTENT_CACHE),
        *([("ETag", etag)] if etag else []),
        *_CONTENT_SAFETY,
    ]
    if etag and etag_matches(request.headers.get("If-None-Match"), etag):
        file.close()
        return _response(304, headers, b"")
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range != etag:
        wanted = None  # the client's part is of another version: send it all
    try:
        span = byte_range(wanted, live.size)
    except RangeNotSatisfiableError:
        file.close()
        return _response(416, [*headers, ("Content-Range", f"bytes */{live.size}")], b"")
    first, last = span if span is not None else (0, live.size - 1)
    if span is not None:
        headers.append(("Content-Range", f"bytes {first}-{last}/{live.size}"))
    length = last - first + 1
    response = FileBody(
        206 if span is not None else 200,
        http.HTTPStatus(206 if span is not None else 200).phrase,
        Headers([*headers, ("Content-Length", str(length))]),
        file=file,
        offset=first,
        length=length,
    )
    return response


async def thumb(
    service: Service, thumbnailer: Thumbnailer | None, query: dict[str, str], request: Request
) -> Response:
    """``/api/thumb``: a JPEG or WebP thumbnail of a live image location."""
    size = thumb_size(query.get("size"))
    live = await asyncio.to_thread(_live, service, query)
    if thumbnailer is None or live is None or live.mime_type not in IMAGE_TYPES:
        return not_found("no live image in the catalog at this path")
    key = thumbnailer.key(live)
    etag = f'"{key}-{size}"'
    headers = [("Cache-Control", THUMB_CACHE), ("ETag", etag), *_CONTENT_SAFETY]
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return _response(304, headers, b"")
    made = await thumbnailer.get(key, size, lambda: open_live(live), str(os.fsdecode(live.path)))
    if made is None:
        return not_found("no thumbnail: the file is not an image that can be read")
    body, kind = made
    return _response(200, [("Content-Type", kind), *headers], body)


# -- responses -------------------------------------------------------------------------

_CONTENT_SAFETY = (
    ("X-Content-Type-Options", "nosniff"),
    # Whatever a file turns out to be, it runs nothing and reaches nothing.
    ("Content-Security-Policy", "sandbox; default-src 'none'"),
    ("Connection", "close"),
)


def not_found(message: str) -> Response:
    return _response(
        404,
        [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *_CONTENT_SAFETY],
        json.dumps({"error": message}).encode(),
    )


def _response(status: int, headers: list[tuple[str, str]], body: bytes) -> Response:
    # A 304 has no body, and no length of its own to announce.
    items = headers if status == 304 else [*headers, ("Content-Length", str(len(body)))]
    return Response(status, http.HTTPStatus(status).phrase, Headers(items), body)
