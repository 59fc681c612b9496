"""Listening sockets, bound before the daemon writes anything."""

from __future__ import annotations

import errno
import socket

from assetd.exceptions import AssetdError

__all__ = ["bind_feed", "bind_listener", "split_listen"]


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` too) as host and port."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def bind_listener(listen: str, *, serves: str, setting: str) -> socket.socket:
    """A listening socket on ``HOST:PORT`` (port 0: any free one) for what ``serves``.

    Bound before the daemon makes its catalog or runtime file, so that an address in
    use stops it with one line that says how to choose another (``setting``), and
    nothing made.
    """
    try:
        host, port = split_listen(listen)
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, ValueError) as exc:
        raise AssetdError(f"cannot listen on {listen} for {serves}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        why = "the address is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
        raise AssetdError(
            f"cannot listen on {listen} for {serves}: {why}; choose another address with {setting}"
        ) from exc
    return sock


def bind_feed(listen: str) -> socket.socket:
    """The feed's (and the page's) listening socket."""
    return bind_listener(
        listen, serves="the feed and the page", setting="--listen HOST:PORT or [feed] listen"
    )
