"""Finding the daemon that serves a catalog, and talking to it over its feed."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

from assetd.config import Config, runtime_file
from assetd.exceptions import AssetdError, RemoteError

__all__ = ["DaemonClient", "find_daemon", "path_argument", "path_value", "runtime_info"]


def find_daemon(config: Config) -> str | None:
    """The feed address of the daemon serving ``config``'s catalog, or None.

    For a SQLite catalog only its runtime file counts: a daemon holds a lock on it.
    For other catalogs, the configured ``listen`` address counts when its hello names
    the same catalog.
    """
    path = runtime_file(config.database)
    if path is not None:
        return _from_runtime_file(path)
    address = config.feed.listen
    try:
        with DaemonClient(address, config.feed.token(), timeout=2) as client:
            from assetd.catalog import Catalog

            catalog = Catalog(config.database, node=config.node)
            try:
                same = client.hello.get("catalog") == catalog.catalog_id
            finally:
                catalog.close()
    except (OSError, AssetdError, TimeoutError):
        return None
    return address if same else None


def _from_runtime_file(path: str) -> str | None:
    info = runtime_info(path)
    listen = info.get("listen") if info is not None else None
    return listen if isinstance(listen, str) else None


def runtime_info(path: str) -> dict[str, Any] | None:
    """What the live daemon holding the runtime file at ``path`` wrote in it (its pid and
    feed address); None when no daemon holds it. Opens it read-only: makes nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return info if isinstance(info, dict) else {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds it: no daemon
    except ValueError:
        return {}
    finally:
        os.close(fd)


def path_value(path: bytes) -> str | dict[str, str]:
    """A path as requests carry it: a string, or ``{"path_bytes_b64": …}`` when not UTF-8."""
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        return {"path_bytes_b64": base64.b64encode(path).decode("ascii")}


def path_argument(path: bytes) -> dict[str, str]:
    """The ``path`` (or ``path_bytes_b64``) argument of a request."""
    value = path_value(path)
    return {"path": value} if isinstance(value, str) else value


class DaemonClient:
    """A synchronous feed connection for the command line."""

    def __init__(self, address: str, token: str | None, timeout: float | None = 10) -> None:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {token}"} if token else None
        # Entered as a context manager, as websockets asks of a connection kept open.
        self._connection = contextlib.ExitStack()
        self.ws = self._connection.enter_context(
            connect(
                f"ws://{address}/ws",
                additional_headers=headers,
                open_timeout=timeout,
                max_size=None,
                compression=None,
            )
        )
        self.timeout = timeout
        self.hello = json.loads(self.ws.recv(timeout))
        self._ids = itertools.count(1)

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()

    def send(self, cmd: str, **args: Any) -> int:
        """Send one request; returns its id."""
        request_id = next(self._ids)
        self.ws.send(json.dumps({"id": request_id, "cmd": cmd, **args}))
        return request_id

    def request(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Send one request and return its result, skipping pushed messages meanwhile."""
        request_id = self.send(cmd, **args)
        while True:
            message = json.loads(self.ws.recv(timeout if timeout is not None else self.timeout))
            if message.get("type") == "result" and message.get("id") == request_id:
                if message.get("ok"):
                    return message.get("result")
                error = message.get("error") or {}
                raise RemoteError(error.get("code", "failed"), error.get("message", "failed"))

    def messages(self) -> Iterator[dict[str, Any]]:
        """Every message the daemon sends from now on, until it closes the connection."""
        from websockets.exceptions import ConnectionClosedOK

        with contextlib.suppress(ConnectionClosedOK):
            for frame in self.ws:
                yield json.loads(frame)
