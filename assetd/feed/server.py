"""The feed's server: connections, requests, publishing and the pace of fan-out.

A pushed message is serialised once, as a finished frame, and written straight to each
client's transport: with hundreds of clients, a coroutine step and a ``send`` per
client and message would cost more than the whole commit. Replies, the hello and
replays take the same way, through the client's one writing path. A client whose
unsent messages reach the limit is sent ``resync-required`` and closed, so a slow
client costs only its own memory. Committed changes arrive from the writer thread
through ``call_soon_threadsafe``; ``subscribe`` with ``since`` replays the persisted
log, then continues live, deduplicated by sequence number so that nothing is missed or
sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from assetd.backoff import Backoff
from assetd.catalog import Change
from assetd.exceptions import CatalogUnavailableError
from assetd.feed import commands
from assetd.feed.client import Batch, Client, Replay
from assetd.feed.frames import Message
from assetd.feed.http import Routes
from assetd.feed.httpconn import HttpConnection
from assetd.service import Service
from assetd.thumbs import Thumbnailer

__all__ = ["CLIENT_QUEUE", "MAX_FRAME", "PROTOCOL_VERSION", "Feed"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20  # bytes; a larger frame closes the connection (1009)
CLIENT_QUEUE = 10_000  # messages waiting for one client before it counts as too slow
REPLAY_PAGE = 1000
TOO_SLOW = 4000  # close code for a client that fell behind
SOCKET_BUFFER = 256 << 10  # kernel send buffer per client
REPLAY_RETRY_FIRST_S, REPLAY_RETRY_MAX_S = 0.2, 5.0  # a replay the catalog cannot serve now
# The pause after a flush to all clients, in multiples of its duration: flushing then
# takes at most two thirds of the loop, and the loop stays free for requests and
# replays. Less pacing delivers later under a heavy fan-out, more gathers too long
# (docs/performance.md has the measurements).
FLUSH_PACING = 0.5


class Feed:
    """The server. ``publish_*`` must be called on its event loop (use ``threadsafe``)."""

    def __init__(
        self,
        service: Service,
        *,
        host: str,
        port: int,
        sock: socket.socket | None = None,
        token: str | None = None,
        allowed_origins: tuple[str, ...] = (),
        queue_limit: int = CLIENT_QUEUE,
        max_frame: int = MAX_FRAME,
        thumbnailer: Thumbnailer | None = None,
    ) -> None:
        self.service = service
        self.host, self.port = host, port
        self._sock = sock  # bound already (see assetd/listen.py), else host and port
        self.queue_limit = queue_limit
        self.max_frame = max_frame
        self.routes = Routes(
            service, token=token, allowed_origins=allowed_origins, thumbnailer=thumbnailer
        )
        self.clients: dict[Client, ServerConnection] = {}
        self.dropped_clients = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: list[Message] = []
        self._flush_handle: asyncio.Handle | None = None
        self._next_flush = 0.0

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        where: dict[str, Any] = (
            {"sock": self._sock}
            if self._sock is not None
            else {"host": self.host, "port": self.port}
        )
        self._server = await serve(
            self._handle,
            **where,
            process_request=self.routes,
            max_size=self.max_frame,
            compression=None,  # fan-out to hundreds of clients: CPU matters more than bytes
            server_header="assetd",
            # Plain HTTP is answered by the connection, streamed; it bounds the wait for
            # a request itself (a download may outlast any handshake timeout).
            create_connection=HttpConnection,
            open_timeout=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Close every client with 1001 (going away) and stop listening."""
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def counts(self) -> dict[str, int]:
        """The ``feed`` part of the status object."""
        return {"clients": len(self.clients), "dropped_clients": self.dropped_clients}

    # -- publishing -----------------------------------------------------------------

    def threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the feed's loop, from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                self._loop.call_soon_threadsafe(fn, *args)

    def publish_changes(self, changes: list[Change]) -> None:
        """Send one commit's changes to every subscriber (that wants their roots)."""
        if any(c.subscribed for c in self.clients):
            self._send([Message.of_change(c) for c in changes])

    def publish_event(self, message: dict[str, Any]) -> None:
        """Send an event (seed progress, a root's state) to every client."""
        if self.clients:
            self._send([Message.of(message)])

    def _send(self, messages: list[Message]) -> None:
        """Queue messages in the outbox, flushed at once unless a flush ran very recently.

        A flush writes once to every client, so its cost grows with their number; the
        next one waits FLUSH_PACING times as long as the last one took. With a few
        clients that is microseconds; with hundreds under a stream of commits, changes
        gather for a few milliseconds and go out as one write per client.
        """
        self._outbox += messages
        if self._flush_handle is None:
            assert self._loop is not None
            delay = self._next_flush - self._loop.time()
            if delay > 0:
                self._flush_handle = self._loop.call_later(delay, self._flush)
            else:
                self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        assert self._loop is not None
        began = self._loop.time()
        messages, self._outbox, self._flush_handle = self._outbox, [], None
        batch = Batch(messages)
        for client in list(self.clients):
            if not client.send(batch):
                self._drop(client)
        ended = self._loop.time()
        self._next_flush = ended + FLUSH_PACING * (ended - began)

    def _drop(self, client: Client) -> None:
        """A client too far behind: tell it to resync, then close it."""
        if client.dropped:
            return
        client.dropped = True
        self.dropped_clients += 1
        while not client.queue.empty():
            client.queue.get_nowait()
        ws = self.clients.get(client)
        log.warning(
            "feed client %s fell %d messages behind; closing it", _peer(ws), self.queue_limit
        )
        task = asyncio.ensure_future(self._close_slow(client, ws))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_slow(self, client: Client, ws: ServerConnection | None) -> None:
        seq = await asyncio.to_thread(self.service.latest_seq)
        if ws is None:  # gone already
            return
        client.deliver(Message.of_reply({"type": "resync-required", "seq": seq}))
        with contextlib.suppress(ConnectionClosed, TimeoutError, OSError):
            await asyncio.wait_for(ws.drain(), 2)
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(ws.close(TOO_SLOW, "too slow: resync required"), 2)
        if ws.transport is not None:
            ws.transport.abort()

    # -- a connection ---------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is not None:
            # Bound what the kernel buffers for one client, so a stalled one is noticed by
            # its queue after a few hundred KiB rather than after megabytes.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        client = Client(ws.transport, self.queue_limit, is_open=lambda: ws.state is State.OPEN)
        latest, state = await asyncio.gather(
            asyncio.to_thread(self.service.latest_seq), asyncio.to_thread(self.service.state)
        )
        hello = {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "catalog": self.service.catalog_id,
            "seq": latest,
            "state": state,
        }
        client.push(Message.of_reply(hello))
        self.clients[client] = ws
        pump = asyncio.create_task(self._pump(client, ws))
        try:
            async for frame in ws:
                if client.dropped:
                    break
                await self._on_frame(client, frame)
        except ConnectionClosed:
            pass
        finally:
            self.clients.pop(client, None)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(self, client: Client, ws: ServerConnection) -> None:
        """Send what waits in the client's queue, in order; replay the log where asked."""
        try:
            while True:
                item = await client.queue.get()
                client.busy = True
                if isinstance(item, Replay):
                    await self._replay_until_done(client, ws, item.since)
                else:
                    client.deliver(item)
                client.busy = False
        except (ConnectionClosed, OSError):
            pass

    async def _replay_until_done(self, client: Client, ws: ServerConnection, since: int) -> None:
        """Replay, and while the catalog cannot be read (a database restarting), wait and
        go on from where it stopped; live changes queue behind, so the order holds."""
        backoff = Backoff(REPLAY_RETRY_FIRST_S, REPLAY_RETRY_MAX_S)
        while True:
            try:
                await self._replay(client, ws, since)
                return
            except CatalogUnavailableError as exc:
                delay = backoff.delay()
                log.warning("replay to a client paused: %s; retrying in %.1f s", exc, delay)
                since = client.cursor if client.cursor >= since else since
                await asyncio.sleep(delay)

    async def _replay(self, client: Client, ws: ServerConnection, since: int) -> None:
        oldest = await asyncio.to_thread(self.service.oldest_seq)
        if since + 1 < oldest:
            latest = await asyncio.to_thread(self.service.latest_seq)
            client.cursor = max(client.cursor, latest)
            client.deliver(Message.of_reply({"type": "resync-required", "seq": latest}))
            return
        client.cursor = since
        while True:
            page = await asyncio.to_thread(
                self.service.change_rows_since, client.cursor, REPLAY_PAGE
            )
            client.replay(page)
            if ws.state is State.OPEN:
                await ws.drain()  # a page at a time, as fast as the client reads
            if len(page) < REPLAY_PAGE:
                return

    async def _on_frame(self, client: Client, frame: str | bytes) -> None:
        request_id: Any = None
        items: list[Message | Replay]
        try:
            message = commands.decode(frame)
            request_id = commands.request_id(message)
            if commands.command_name(message) == "subscribe":
                items = await self._subscribe(client, message)
            else:
                result = await asyncio.to_thread(commands.run, self.service, message)
                items = [Message.of_reply(commands.result_reply(request_id, result))]
        except Exception as exc:
            items = [Message.of_reply(commands.error_reply(request_id, exc))]
        if not client.push(*items):
            self._drop(client)

    async def _subscribe(self, client: Client, message: dict[str, Any]) -> list[Message | Replay]:
        """Subscribe the client; its reply, then (with ``since``) the replay to queue."""
        since, roots = commands.subscribe_args(message)
        latest = await asyncio.to_thread(self.service.latest_seq)
        client.roots = roots
        client.subscribed = True
        reply = Message.of_reply(commands.result_reply(message.get("id"), {"seq": latest}))
        if since is None:
            client.cursor = max(client.cursor, latest)
            return [reply]
        return [reply, Replay(since)]


def _peer(ws: ServerConnection | None) -> str:
    if ws is None:
        return "?"
    try:
        host, port = ws.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"
