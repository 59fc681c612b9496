"""Telling systemd how the daemon is doing (``Type=notify``), without libsystemd."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["sd_notify"]

log = logging.getLogger(__name__)


def sd_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send a state line to systemd (``READY=1``, ``STATUS=…``); False when not under it."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False
    return True
