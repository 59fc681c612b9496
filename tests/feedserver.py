"""A feed server in this process, for the client's tests: real sockets, scripted answers.

It speaks as the daemon's feed does (a hello, then one result per request, pushed
messages in between as the script says) but runs no catalog behind it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from websockets.sync.server import ServerConnection, serve

HELLO = {"type": "hello", "version": 1, "catalog": "catalog-under-test", "seq": 7, "state": "idle"}

# What the server sends back for one request; None closes the connection normally.
Script = Callable[[dict[str, Any]], list[dict[str, Any] | None]]


def result(request: dict[str, Any], value: Any) -> dict[str, Any]:
    return {"type": "result", "id": request["id"], "ok": True, "result": value}


def failure(request: dict[str, Any], code: str, message: str) -> dict[str, Any]:
    error = {"code": code, "message": message}
    return {"type": "result", "id": request["id"], "ok": False, "error": error}


class FeedServer:
    """A WebSocket server on a free loopback port, serving from a thread of its own."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self._server = serve(self._handle, "127.0.0.1", 0, compression=None)
        self._thread = threading.Thread(target=self._server.serve_forever, name="feed-server")

    @property
    def address(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"{host}:{port}"

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()  # closes what is still open and waits for its handlers
        self._thread.join(10)

    def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.authorizations.append(ws.request.headers.get("Authorization"))
        ws.send(json.dumps(HELLO))
        for frame in ws:
            request = json.loads(frame)
            self.requests.append(request)
            for message in self.script(request):
                if message is None:
                    ws.close()
                    return
                ws.send(json.dumps(message))


def answer(value: Any) -> Script:
    """A script that answers every request with ``value``."""
    return lambda request: [result(request, value)]


@contextlib.contextmanager
def runtime_file_held(path: str, info: dict[str, Any]) -> Iterator[None]:
    """A daemon's runtime file with ``info`` in it, locked as a running daemon holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(info).encode() + b"\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)
