"""The feed's connections: plain HTTP answered here, streamed; ``/ws`` to websockets.

websockets answers a request that is not a WebSocket handshake with one in-memory
response, and its whole handshake must end within ``open_timeout``. A file served
from the catalog can be gigabytes, read by a ``<video>`` for minutes. So a connection
answers plain HTTP itself: the head, then the body read in chunks in a thread and
written as fast as the client reads (flow control), with a bound on how long it waits
for the request and on how long a client may read nothing. One request per connection
(``Connection: close``), as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import SERVER, Response

from assetd.feed.content import FileBody

__all__ = ["REQUEST_TIMEOUT_S", "STALL_TIMEOUT_S", "HttpConnection"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0  # for a client to send its request (and to finish a handshake)
STALL_TIMEOUT_S = 60.0  # a body's client that reads nothing for this long is dropped
CLOSE_TIMEOUT_S = 10.0  # for a client to close its side once it has the whole answer
CHUNK = 1 << 20  # bytes read from the file at a time
POLL_S = 0.5  # how often a wait looks whether the server is closing


class HttpConnection(ServerConnection):
    """A feed connection: serve with ``open_timeout=None`` (it keeps its own)."""

    async def handshake(
        self,
        process_request: Any = None,
        process_response: Any = None,
        server_header: str | None = SERVER,
    ) -> None:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await asyncio.wait(
                [self.request_rcvd, self.connection_lost_waiter],
                return_when=asyncio.FIRST_COMPLETED,
            )
        request = self.request
        if request is None or process_request is None:
            return  # no request (websockets has answered a malformed one, if it could)
        try:
            response = await process_request(self, request)
        except Exception:
            log.exception("an HTTP request failed: %s %s", request.method, request.path)
            body = json.dumps({"error": "internal error (see the daemon's log)"}).encode()
            response = Response(
                500,
                "Internal Server Error",
                Headers([("Content-Type", "application/json"), ("Connection", "close")]),
                body,
            )
            response.headers["Content-Length"] = str(len(body))
        if response is None:  # a WebSocket handshake to complete
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await super().handshake(None, process_response, server_header)
            return
        if server_header is not None:
            response.headers["Server"] = server_header
        try:
            await self._answer(response, body=request.method != "HEAD")
        finally:
            if isinstance(response, FileBody) and response.file is not None:
                response.file.close()
        # The protocol stays CONNECTING: websockets aborts the transport once this
        # returns, which is why _answer leaves nothing in its buffer.

    async def _answer(self, response: Response, *, body: bool) -> None:
        status = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n"
        head = status.encode("iso-8859-1") + response.headers.serialize()
        transport = self.transport
        if transport.is_closing() or self.protocol.eof_sent:
            return
        transport.write(head + response.body if body else head)
        try:
            if body and isinstance(response, FileBody) and response.file is not None:
                await self._stream(response)
            # Everything to the kernel before websockets aborts the transport (an abort
            # drops what is still buffered here).
            transport.set_write_buffer_limits(0)
            await self._wait(self.drain, STALL_TIMEOUT_S)
            if transport.can_write_eof():
                transport.write_eof()
            await self._wait(lambda: asyncio.shield(self.connection_lost_waiter), CLOSE_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            log.info("HTTP client %s dropped: %s", _peer(self), exc or type(exc).__name__)

    async def _stream(self, response: FileBody) -> None:
        assert response.file is not None
        file, offset, left = response.file, response.offset, response.length
        while left > 0:
            # A client that closed its side has had websockets end ours (eof_sent).
            if self.connection_lost_waiter.done() or self.protocol.eof_sent:
                raise ConnectionResetError("the client went away")
            if not self.server.is_serving():
                raise ConnectionAbortedError("the server is closing")
            chunk = await asyncio.to_thread(os.pread, file.fileno(), min(CHUNK, left), offset)
            if not chunk:  # the file shrank: the length promised cannot be kept
                raise OSError("the file shrank while it was being sent")
            if self.connection_lost_waiter.done() or self.protocol.eof_sent:
                raise ConnectionResetError("the client went away")
            self.transport.write(chunk)
            offset += len(chunk)
            left -= len(chunk)
            await self._wait(self.drain, STALL_TIMEOUT_S)

    async def _wait(self, step: Callable[[], Awaitable[Any]], limit_s: float) -> None:
        """Await ``step()``, retried every POLL_S, for at most ``limit_s`` (TimeoutError)
        and not past the server's closing (a download must not hold up a shutdown)."""
        waited = 0.0
        while True:
            try:
                async with asyncio.timeout(POLL_S):
                    await step()
                return
            except TimeoutError:
                waited += POLL_S
                if waited >= limit_s:
                    raise TimeoutError(f"nothing read for {limit_s:.0f} s") from None
                if not self.server.is_serving():
                    raise ConnectionAbortedError("the server is closing") from None


def _peer(conn: ServerConnection) -> str:
    try:
        host, port = conn.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"
