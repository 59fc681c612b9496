"""One daemon per catalog: the runtime file's lock beside a SQLite catalog, and the node
lock of a shared PostgreSQL one. Both go with the process, so a daemon that dies frees them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from typing import Any

from assetd.exceptions import AssetdError, CatalogError, DaemonRunningError

__all__ = ["NodeLock", "RuntimeLock"]

NODE_LOCKS = 0x6E6F6465  # the advisory lock class of node names ("node")


class NodeLock:
    """On a shared catalog, one daemon per node name, held for the daemon's life.

    Two daemons under one node name (cloned machines keep their host name) would each
    take the other's roots for their own, and a prune by one would mark the other's
    files missing. A session advisory lock on a connection of its own keeps the second
    out; it goes with the connection, so a daemon that dies frees it.
    """

    def __init__(self, url: str, node: str) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (NODE_LOCKS, node)
            ).fetchone()
        except psycopg.Error as exc:
            said = " ".join(str(exc).split())
            raise CatalogError(f"cannot reach the catalog to claim node {node!r}: {said}") from exc
        if not row or not row[0]:
            self._conn.close()
            raise DaemonRunningError(
                f"another daemon serves node {node!r} on this catalog; give this one another "
                "name ([daemon] node)"
            )

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


class RuntimeLock:
    """An exclusive lock on the catalog's runtime file, held for the daemon's life."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def update(self, info: dict[str, Any]) -> None:
        """Rewrite the runtime file's content (the lock stays)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(info).encode() + b"\n", 0)

    def acquire(self, info: dict[str, Any]) -> None:
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise AssetdError(
                f"cannot make the catalog's folder {folder} or its runtime file there: "
                f"{exc.strerror or exc}; choose another place with --db or [daemon] database"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_json(fd)
            os.close(fd)
            raise DaemonRunningError(
                f"another assetd (pid {other.get('pid', '?')}) already serves this catalog "
                f"({self.path})"
            ) from None
        self._fd = fd
        self.update(info)

    def check_free(self) -> None:
        """Raise :class:`DaemonRunningError` when a live daemon holds the file; make
        nothing (a missing file is held by no one)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # none there, or no folder: no daemon holds it
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_json(fd)
            raise DaemonRunningError(
                f"another assetd (pid {other.get('pid', '?')}) already serves this catalog "
                f"({self.path})"
            ) from None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def _read_json(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
