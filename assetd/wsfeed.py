"""The WebSocket feed (``/ws``) and the read-only HTTP beside it, on one port.

A pushed message is serialised once, as a finished WebSocket frame (server frames are
not masked, so the same bytes suit every client), and written straight to each client's
transport: with hundreds of clients, a coroutine step and a ``send`` per client and
message would cost more than the whole commit. Each client still has its own ordered
queue, used while something must go first (a reply, a replay of the log); a client
whose unsent messages reach the limit is sent ``resync-required`` and closed, so a slow
client costs only its own memory. Committed changes arrive from the writer thread
through ``call_soon_threadsafe``; ``subscribe`` with ``since`` replays the persisted
log, then continues live, deduplicated by sequence number so that nothing is missed or
sent twice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import hmac
import http
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from assetd.backoff import Backoff
from assetd.db import Change
from assetd.exceptions import (
    AssetdError,
    CatalogUnavailableError,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    SeederBusyError,
    VerifyBusyError,
)
from assetd.jsontext import dumps
from assetd.service import Service

__all__ = ["PROTOCOL_VERSION", "Feed", "FeedError", "decode_cursor", "encode_cursor"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20  # bytes; a larger frame closes the connection (1009)
CLIENT_QUEUE = 10_000  # messages waiting for one client before it counts as too slow
REPLAY_PAGE = 1000
LIST_DEFAULT, LIST_MAX = 100, 1000
TOO_SLOW = 4000  # close code for a client that fell behind
SOCKET_BUFFER = 256 << 10  # kernel send buffer per client
REPLAY_RETRY_FIRST_S, REPLAY_RETRY_MAX_S = 0.2, 5.0  # a replay the catalog cannot serve now
# The pause after a flush to all clients, in multiples of its duration: flushing takes at
# most two thirds of the loop. Under the fan-out bench (500 clients, 1,000 changes/s),
# p99 delivery 144 ms at 1, 108 ms at 0.5 (medians of seven runs each); 2 was worse.
FLUSH_PACING = 0.5


class FeedError(Exception):
    """A request that gets ``ok: false`` with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode_cursor(path: bytes | None) -> str | None:
    return base64.urlsafe_b64encode(path).decode("ascii") if path is not None else None


def decode_cursor(cursor: Any) -> bytes | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise FeedError("bad_request", "'after' must be a cursor string from a previous list")
    try:
        return base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error) as exc:
        raise FeedError("bad_request", "'after' is not a valid cursor") from exc


@dataclass(frozen=True, slots=True)
class _Replay:
    since: int


@dataclass(frozen=True, slots=True)
class _Frame:
    """A pushed message as a finished WebSocket text frame, however many clients it goes to.

    ``seq`` and ``root`` are set for changes: the first deduplicates against a replay,
    the second filters by the client's roots. Other messages (events) go to everyone.
    """

    frame: bytes
    seq: int = 0
    root: str | None = None

    @classmethod
    def of(cls, message: dict[str, Any]) -> _Frame:
        return cls(text_frame(dumps(message)))

    @classmethod
    def of_change(cls, change: Change) -> _Frame:
        return cls(text_frame(change.json()), change.seq, change.root)


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


class _Batch:
    """What one flush sends, in commit order; joined once for all who take all of it."""

    __slots__ = ("_blob", "first_seq", "frames", "has_changes", "last_seq")

    def __init__(self, frames: list[_Frame]) -> None:
        self.frames = frames
        seqs = [f.seq for f in frames if f.seq]
        self.has_changes = bool(seqs)
        self.first_seq = seqs[0] if seqs else 0
        self.last_seq = seqs[-1] if seqs else 0
        self._blob: bytes | None = None

    @property
    def blob(self) -> bytes:
        if self._blob is None:
            self._blob = b"".join(f.frame for f in self.frames)
        return self._blob


class _Client:
    """One connection: its subscription, its ordered queue, and what it has not yet read.

    Frames are written directly when nothing waits before them (the queue is empty and
    the pump is not sending); otherwise they wait in the queue. A client is behind when
    ``limit`` messages are still unsent: in the queue, or written but not yet taken by
    the kernel (``writes`` holds where each write ends in the transport's stream and how
    many messages it carried). One commit's messages go together (a renamed folder can
    be thousands), so a client holds at most ``limit`` plus one commit's worth.
    """

    def __init__(self, ws: ServerConnection, limit: int) -> None:
        self.ws = ws
        self.transport = ws.transport
        self.limit = limit
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.busy = False  # the pump is between taking an item and having written it
        self.subscribed = False
        self.roots: set[str] | None = None
        self.cursor = 0  # the highest change sequence number sent (or skipped as known)
        self.dropped = False
        self.written = 0  # bytes written directly to the transport, ever
        self.writes: collections.deque[tuple[int, int]] = collections.deque()
        self.in_flight = 0  # messages in ``writes``

    def wants(self, item: _Frame) -> bool:
        """Whether the client wants this message: events always; changes when subscribed."""
        if not item.seq:
            return True
        return self.subscribed and (self.roots is None or item.root in self.roots)

    def behind(self) -> bool:
        if self.dropped:
            return True
        taken = self.written - self.transport.get_write_buffer_size()
        writes = self.writes
        while writes and writes[0][0] <= taken:
            self.in_flight -= writes.popleft()[1]
        return self.queue.qsize() + self.in_flight >= self.limit

    def send(self, batch: _Batch) -> bool:
        """Send a flush's messages this client wants; False when it is too far behind."""
        takes_all = (not batch.has_changes or (self.subscribed and self.roots is None)) and (
            batch.first_seq == 0 or batch.first_seq > self.cursor
        )
        if not takes_all or self.busy or not self.queue.empty():
            return self.push(*[f for f in batch.frames if self.wants(f)])
        if self.behind():
            return False
        self.cursor = max(self.cursor, batch.last_seq)
        self.write(batch.blob, len(batch.frames))
        return True

    def push(self, *items: Any) -> bool:
        """Send or queue messages, in order; False when the client is too far behind."""
        if self.behind():
            return False
        if self.busy or not self.queue.empty():
            for item in items:
                self.queue.put_nowait(item)
            return True
        frames = []
        for index, item in enumerate(items):
            if not isinstance(item, _Frame):  # a reply: it goes through the pump, and so
                for rest in items[index:]:  # must everything after it
                    self.queue.put_nowait(rest)
                break
            if item.seq:
                if item.seq <= self.cursor:
                    continue
                self.cursor = item.seq
            frames.append(item.frame)
        self.write(b"".join(frames), len(frames))
        return True

    def write(self, data: bytes, messages: int) -> None:
        if not messages or self.ws.protocol.state is not State.OPEN:
            return
        self.written += len(data)
        self.writes.append((self.written, messages))
        self.in_flight += messages
        self.transport.write(data)


class Feed:
    """The server. ``publish_*`` must be called on its event loop (use ``threadsafe``)."""

    def __init__(
        self,
        service: Service,
        *,
        host: str,
        port: int,
        token: str | None = None,
        allowed_origins: tuple[str, ...] = (),
        queue_limit: int = CLIENT_QUEUE,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.service = service
        self.host, self.port = host, port
        self.token = token
        self.allowed_origins = set(allowed_origins)
        self.queue_limit = queue_limit
        self.max_frame = max_frame
        self.clients: set[_Client] = set()
        self.dropped_clients = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: list[_Frame] = []
        self._flush_handle: asyncio.Handle | None = None
        self._next_flush = 0.0
        self._page = resources.files("assetd").joinpath("static/index.html").read_bytes()
        self._commands: dict[str, Callable[[_Client, dict[str, Any]], Awaitable[Any]]] = {
            "subscribe": self._cmd_subscribe,
            "status": self._cmd_status,
            "seed": self._cmd_seed,
            "cancel": self._cmd_cancel,
            "prune": self._cmd_prune,
            "cleanup": self._cmd_cleanup,
            "verify": self._cmd_verify,
            "restore": self._cmd_restore,
            "list": self._cmd_list,
            "tag": self._cmd_tag,
            "meta": self._cmd_meta,
        }

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._http,
            max_size=self.max_frame,
            compression=None,  # fan-out to hundreds of clients: CPU matters more than bytes
            server_header="assetd",
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

    # -- publishing -----------------------------------------------------------------

    def threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the feed's loop, from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                self._loop.call_soon_threadsafe(fn, *args)

    def publish_changes(self, changes: list[Change]) -> None:
        """Send one commit's changes to every subscriber (that wants their roots)."""
        if any(c.subscribed for c in self.clients):
            self._send([_Frame.of_change(c) for c in changes])

    def publish_event(self, message: dict[str, Any]) -> None:
        """Send an event (seed progress, a root's state) to every client."""
        if self.clients:
            self._send([_Frame.of(message)])

    def _send(self, frames: list[_Frame]) -> None:
        """Queue frames in the outbox, flushed at once unless a flush ran very recently.

        A flush writes once to every client, so its cost grows with their number; the
        next one waits FLUSH_PACING times as long as the last one took. With a few
        clients that is microseconds; with hundreds under a stream of commits, changes
        gather for a few milliseconds and go out as one write per client.
        """
        self._outbox += frames
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
        frames, self._outbox, self._flush_handle = self._outbox, [], None
        batch = _Batch(frames)
        for client in list(self.clients):
            if not client.send(batch):
                self._drop(client)
        ended = self._loop.time()
        self._next_flush = ended + FLUSH_PACING * (ended - began)

    def _drop(self, client: _Client) -> None:
        """A client too far behind: tell it to resync, then close it."""
        if client.dropped:
            return
        client.dropped = True
        self.dropped_clients += 1
        while not client.queue.empty():
            client.queue.get_nowait()
        log.warning(
            "feed client %s fell %d messages behind; closing it", _peer(client.ws), self.queue_limit
        )
        task = asyncio.ensure_future(self._close_slow(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_slow(self, client: _Client) -> None:
        seq = await asyncio.to_thread(self.service.latest_seq)
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(
                client.ws.send(json.dumps({"type": "resync-required", "seq": seq})), 2
            )
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(client.ws.close(TOO_SLOW, "too slow: resync required"), 2)
        if client.ws.transport is not None:
            client.ws.transport.abort()

    # -- a connection ---------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is not None:
            # Bound what the kernel buffers for one client, so a stalled one is noticed by
            # its queue after a few hundred KiB rather than after megabytes.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        client = _Client(ws, self.queue_limit)
        latest, state = await asyncio.gather(
            asyncio.to_thread(self.service.latest_seq), asyncio.to_thread(self.service.state)
        )
        client.push(
            {
                "type": "hello",
                "version": PROTOCOL_VERSION,
                "catalog": self.service.catalog_id,
                "seq": latest,
                "state": state,
            }
        )
        self.clients.add(client)
        pump = asyncio.create_task(self._pump(client))
        try:
            async for frame in ws:
                if client.dropped:
                    break
                await self._on_frame(client, frame)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(self, client: _Client) -> None:
        """Send what waits in the client's queue, in order; replay the log where asked."""
        try:
            while True:
                item = await client.queue.get()
                client.busy = True
                if isinstance(item, _Replay):
                    await self._replay_until_done(client, item.since)
                elif isinstance(item, _Frame):
                    if not item.seq or item.seq > client.cursor:  # else the replay sent it
                        client.cursor = max(client.cursor, item.seq)
                        client.write(item.frame, 1)
                else:
                    await client.ws.send(json.dumps(item))
                client.busy = False
        except ConnectionClosed:
            pass

    async def _replay_until_done(self, client: _Client, since: int) -> None:
        """Replay, and while the catalog cannot be read (a database restarting), wait and
        go on from where it stopped; live changes queue behind, so the order holds."""
        backoff = Backoff(REPLAY_RETRY_FIRST_S, REPLAY_RETRY_MAX_S)
        while True:
            try:
                await self._replay(client, since)
                return
            except CatalogUnavailableError as exc:
                delay = backoff.delay()
                log.warning("replay to a client paused: %s; retrying in %.1f s", exc, delay)
                since = client.cursor if client.cursor >= since else since
                await asyncio.sleep(delay)

    async def _replay(self, client: _Client, since: int) -> None:
        oldest = await asyncio.to_thread(self.service.oldest_seq)
        if since + 1 < oldest:
            latest = await asyncio.to_thread(self.service.latest_seq)
            client.cursor = max(client.cursor, latest)
            await client.ws.send(json.dumps({"type": "resync-required", "seq": latest}))
            return
        client.cursor = since
        while True:
            page = await asyncio.to_thread(self.service.changes_since, client.cursor, REPLAY_PAGE)
            for message in page:
                client.cursor = message["seq"]
                if client.roots is None or message["location"]["root"] in client.roots:
                    await client.ws.send(json.dumps(message))
            if len(page) < REPLAY_PAGE:
                return

    async def _on_frame(self, client: _Client, frame: str | bytes) -> None:
        request_id: Any = None
        try:
            if isinstance(frame, bytes):
                raise FeedError("bad_request", "binary frames are not accepted; send JSON text")
            try:
                message = json.loads(frame)
            except ValueError as exc:
                raise FeedError("bad_request", f"not JSON: {exc}") from None
            except RecursionError:
                raise FeedError("bad_request", "JSON nested too deeply") from None
            if isinstance(message, dict):
                request_id = message.get("id")
            if not isinstance(message, dict) or not isinstance(message.get("cmd"), str):
                raise FeedError("bad_request", 'a request is a JSON object with a string "cmd"')
            command = self._commands.get(message["cmd"])
            if command is None:
                raise FeedError("unknown_command", f"no command {message['cmd'][:64]!r}")
            result = await command(client, message)
            reply: dict[str, Any] = {
                "type": "result",
                "id": request_id,
                "ok": True,
                "result": result,
            }
        except _AlreadyAnswered:
            return
        except FeedError as exc:
            reply = _error(request_id, exc.code, str(exc))
        except (InvalidRequestError, ConfigError) as exc:
            reply = _error(request_id, "bad_request", str(exc))
        except NotFoundError as exc:
            reply = _error(request_id, "not_found", str(exc))
        except SeederBusyError as exc:
            reply = _error(request_id, "scan_running", str(exc))
        except AssetdError as exc:
            reply = _error(request_id, "failed", str(exc))
        except Exception:
            log.exception("feed command failed")
            reply = _error(request_id, "internal_error", "the command failed; see the daemon's log")
        if not client.push(reply):
            self._drop(client)

    # -- commands -------------------------------------------------------------------

    async def _cmd_subscribe(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        since = _arg(msg, "since", int, None)
        roots = _arg(msg, "roots", list, None)
        if roots is not None and not all(isinstance(r, str) for r in roots):
            raise FeedError("bad_request", "'roots' must be a list of root names")
        if since is not None and since < 0:
            raise FeedError("bad_request", "'since' must not be negative")
        latest = await asyncio.to_thread(self.service.latest_seq)
        client.roots = set(roots) if roots is not None else None
        client.subscribed = True
        if since is None:
            client.cursor = max(client.cursor, latest)
        else:
            # The result goes first; the replay runs in order on the client's queue.
            client.push(
                {"type": "result", "id": msg.get("id"), "ok": True, "result": {"seq": latest}}
            )
            if not client.push(_Replay(since)):
                self._drop(client)
            raise _AlreadyAnswered
        return {"seq": latest}

    async def _cmd_status(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self.status)

    def status(self) -> dict[str, Any]:
        status = self.service.status()
        status["feed"] = {"clients": len(self.clients), "dropped_clients": self.dropped_clients}
        return status

    async def _cmd_seed(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        roots = _arg(msg, "roots", list, None)
        if roots is not None and not all(isinstance(r, str) for r in roots):
            raise FeedError("bad_request", "'roots' must be a list of root names")
        prune_first = _arg(msg, "prune_first", bool, False)
        compute_hashes = _arg(msg, "hash", bool, True)
        wait = _arg(msg, "wait", bool, False)
        started = await asyncio.to_thread(self.service.seed, roots, prune_first, compute_hashes)
        if not started:
            raise FeedError("already_running", "a scan is running; try again when it has finished")
        if not wait:
            return {"status": "started"}
        progress = await asyncio.to_thread(self.service.seed_wait)
        return {"status": "completed", "progress": progress}

    async def _cmd_cancel(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        cancelling = await asyncio.to_thread(self.service.cancel)
        return {"status": "cancelling" if cancelling else "idle"}

    async def _cmd_prune(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        marked = await asyncio.to_thread(self.service.prune)
        return {"status": "completed", "marked": marked}

    async def _cmd_cleanup(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        dry_run = _arg(msg, "dry_run", bool, False)
        days = _arg(msg, "missing_older_than_days", (int, float), None)
        if days is not None and (isinstance(days, bool) or days < 0):
            raise FeedError("bad_request", "'missing_older_than_days' must be a number >= 0")
        age = days * 86400.0 if days is not None else None
        return {"deleted": await asyncio.to_thread(self.service.cleanup, dry_run, age)}

    async def _cmd_verify(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        roots = _arg(msg, "roots", list, None)
        if roots is not None and not all(isinstance(r, str) for r in roots):
            raise FeedError("bad_request", "'roots' must be a list of root names")
        sample = _arg(msg, "sample", int, None)
        if sample is not None and sample < 1:
            raise FeedError("bad_request", "'sample' must be a positive number of files")
        rate = _arg(msg, "rate_mb_s", (int, float), 50)
        if isinstance(rate, bool) or rate < 0:
            raise FeedError("bad_request", "'rate_mb_s' must be a number >= 0 (0: no limit)")
        try:
            return await asyncio.to_thread(
                self.service.verify, roots, sample, rate * 1_000_000 if rate else None
            )
        except VerifyBusyError as exc:
            raise FeedError("already_running", str(exc)) from None

    async def _cmd_restore(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        raw = _arg(msg, "paths", list, None)
        if raw is None:
            raise FeedError("bad_request", "'paths' is required: a list of paths")
        paths = [_path_value(p) for p in raw]
        return {"restored": await asyncio.to_thread(self.service.restore, paths)}

    async def _cmd_list(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self.list_page, _list_args(msg))

    def list_page(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        items, after = self.service.list_locations(**kwargs)
        return {"items": items, "next": encode_cursor(after)}

    async def _cmd_tag(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        path = _message_path(msg)
        add = _string_list(msg, "add")
        remove = _string_list(msg, "remove")
        return {"tags": await asyncio.to_thread(self.service.tag, path, add, remove)}

    async def _cmd_meta(self, client: _Client, msg: dict[str, Any]) -> dict[str, Any]:
        path = _message_path(msg)
        set_ = _arg(msg, "set", dict, {})
        unset = _string_list(msg, "unset")
        return {"metadata": await asyncio.to_thread(self.service.meta, path, set_, unset)}

    # -- HTTP -----------------------------------------------------------------------

    async def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/ws":
            if not self._token_ok(request, query):
                return _json(401, {"error": "a valid token is required"})
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_ok(origin, request):
                return _json(403, {"error": f"origin {origin} is not allowed"})
            return None  # go on with the WebSocket handshake
        if url.path == "/healthz":
            return _json(200, {"status": "ok"})
        if url.path in ("/", "/index.html"):
            return _response(200, self._page, "text/html; charset=utf-8")
        if url.path.startswith("/api/") and not self._token_ok(request, query):
            return _json(401, {"error": "a valid token is required"})
        try:
            if url.path == "/api/assets/seed/status":
                return _json(200, await asyncio.to_thread(self.status))
            if url.path == "/api/assets":
                args = _list_args({k: _query_value(k, v) for k, v in query.items() if k != "token"})
                return _json(200, await asyncio.to_thread(self.list_page, args))
        except FeedError as exc:
            return _json(400, {"error": str(exc), "code": exc.code})
        return _json(404, {"error": f"no such page: {url.path}"})

    def _token_ok(self, request: Request, query: dict[str, str]) -> bool:
        if self.token is None:
            return True
        offered = query.get("token", "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            offered = header[len("Bearer ") :].strip()
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _origin_ok(self, origin: str, request: Request) -> bool:
        host = request.headers.get("Host", "")
        own = {f"http://{host}", f"https://{host}"}
        return origin in own or origin in self.allowed_origins


class _AlreadyAnswered(Exception):
    """The command queued its own reply (subscribe with a replay)."""


def _error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "type": "result",
        "id": request_id,
        "ok": False,
        "error": {"code": code, "message": message},
    }


def _arg(msg: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = msg.get(name, default)
    if value is None:
        return default
    bad_bool = kind is int and isinstance(value, bool)
    if not isinstance(value, kind) or bad_bool:
        expected = (
            kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        )
        raise FeedError("bad_request", f"{name!r} must be {expected}")
    return value


def _string_list(msg: dict[str, Any], name: str) -> list[str]:
    value = _arg(msg, name, list, [])
    if not all(isinstance(v, str) for v in value):
        raise FeedError("bad_request", f"{name!r} must be a list of strings")
    return value


def _path_value(value: Any) -> bytes:
    if isinstance(value, dict) and isinstance(value.get("path_bytes_b64"), str):
        try:
            path = base64.b64decode(value["path_bytes_b64"], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise FeedError("bad_request", "path_bytes_b64 is not base64") from exc
    elif isinstance(value, str):
        path = os.fsencode(value)
    else:
        raise FeedError("bad_request", 'a path is a string (or {"path_bytes_b64": …})')
    if not path.startswith(b"/") or b"\0" in path:
        raise FeedError("bad_request", "paths must be absolute")
    return os.fsencode(os.path.normpath(os.fsdecode(path)))


def _message_path(msg: dict[str, Any]) -> bytes:
    if "path_bytes_b64" in msg:
        return _path_value({"path_bytes_b64": msg["path_bytes_b64"]})
    if "path" not in msg:
        raise FeedError("bad_request", "'path' is required")
    return _path_value(msg["path"])


def _list_args(msg: dict[str, Any]) -> dict[str, Any]:
    limit = _arg(msg, "limit", int, LIST_DEFAULT)
    if not 1 <= limit <= LIST_MAX:
        raise FeedError("bad_request", f"'limit' must be between 1 and {LIST_MAX}")
    return {
        "root": _arg(msg, "root", str, None) or None,
        "tag": _arg(msg, "tag", str, None) or None,
        "include_missing": _arg(msg, "include_missing", bool, False),
        "missing_only": _arg(msg, "missing_only", bool, False),
        "limit": limit,
        "after": decode_cursor(msg.get("after")),
    }


def _query_value(key: str, value: str) -> Any:
    if key in ("include_missing", "missing_only"):
        return value.lower() in ("1", "true", "yes", "on")
    if key == "limit":
        try:
            return int(value)
        except ValueError:
            raise FeedError("bad_request", "'limit' must be a number") from None
    return value


def _json(status: int, body: Any) -> Response:
    return _response(status, json.dumps(body).encode(), "application/json")


def _response(status: int, body: bytes, content_type: str) -> Response:
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


# The page is one file with inline script and style; it talks only to this server.
_CSP = (
    "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)


def _peer(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"
