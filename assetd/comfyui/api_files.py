"""Sending a catalogued file: its headers (types a browser would run sent as a download),
single byte ranges (206), and the bytes read off the event loop.

aiohttp's FileResponse is not used: it serves ``NAME.gz`` or ``NAME.br`` beside the file
when the client accepts that encoding, a file the catalog never vouched for.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, BinaryIO
from urllib.parse import quote

from aiohttp import web

__all__ = ["dangerous", "disposition", "send_file"]

CHUNK = 256 << 10

# Types a browser renders and runs as a page of this origin (ComfyUI's list).
_DANGEROUS = frozenset(
    {
        "text/html",
        "text/html-sandboxed",
        "application/xhtml+xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/css",
        "image/svg+xml",
        "application/xml",
        "text/xml",
        "message/rfc822",
    }
)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def dangerous(mime: str) -> bool:
    base = mime.split(";", 1)[0].strip().lower()
    return base in _DANGEROUS or base.endswith(("+xml", "/xml"))


def disposition(kind: str, name: str) -> str:
    """``inline`` or ``attachment`` with the name as RFC 5987 UTF-8 (CR and LF dropped)."""
    clean = name.replace("\r", "").replace("\n", "")
    return f"{kind}; filename*=UTF-8''{quote(clean, safe='')}"


def file_headers(request: web.Request, mime: str | None, name: str, kind: str) -> dict[str, str]:
    """The headers of a file sent by the API: its type (bare, no parameters), how to show
    it, and no sniffing; a type a browser would run goes as a download instead (an SVG
    asked for as an image, ``Sec-Fetch-Dest: image``, may stay one)."""
    content_type = (mime or "application/octet-stream").split(";", 1)[0].strip()
    headers = {"X-Content-Type-Options": "nosniff"}
    if dangerous(content_type):
        headers.update({"Vary": "Sec-Fetch-Dest", "Cache-Control": "no-store"})
        as_image = content_type.lower() == "image/svg+xml" and (
            request.headers.get("Sec-Fetch-Dest", "").lower() == "image"
        )
        if not as_image:
            content_type, kind = "application/octet-stream", "attachment"
    headers["Content-Type"] = content_type
    headers["Content-Disposition"] = disposition(kind, name)
    return headers


def _byte_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """The first and last byte a ``Range`` header asks for; None to send everything
    (no header, or one this server does not take, such as several ranges); False when
    nothing of the file can be sent (416)."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        return (max(0, size - count), size - 1) if count and size else False
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return False
    return start, end


async def send_file(
    request: web.Request, path: bytes, headers: dict[str, str], executor: Executor
) -> web.StreamResponse:
    """Send the file at ``path`` (raises OSError when it cannot be opened)."""
    loop = asyncio.get_running_loop()

    def run(fn: Callable[..., Any], *args: Any) -> Any:
        return loop.run_in_executor(executor, fn, *args)

    handle: BinaryIO = await run(open, path, "rb")
    try:
        size = (await run(os.fstat, handle.fileno())).st_size
        wanted = _byte_range(request.headers.get("Range"), size)
        if wanted is False:
            raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        start, end = wanted if isinstance(wanted, tuple) else (0, size - 1)
        response = web.StreamResponse(status=206 if isinstance(wanted, tuple) else 200)
        response.headers.update(headers)
        response.headers["Accept-Ranges"] = "bytes"
        if isinstance(wanted, tuple):
            response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response.content_length = max(0, end - start + 1)
        await response.prepare(request)
        if request.method != "HEAD":
            await run(handle.seek, start)
            left = response.content_length
            while left > 0:
                data = await run(handle.read, min(CHUNK, left))
                if not data:
                    break  # the file shrank while it was sent: the client sees it short
                await response.write(data)
                left -= len(data)
        await response.write_eof()
        return response
    finally:
        await run(handle.close)
