"""The feed's part: a daemon serving the catalog, or its address free; what it exposes."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable
from typing import Any

from assetd.config import Config, runtime_file
from assetd.doctor.catalog import postgres_info
from assetd.doctor.findings import Finding, fail, ok, warn
from assetd.exceptions import AssetdError

__all__ = ["check_feed", "exposure_verdict", "is_loopback"]

_LISTEN_FIX = "choose another address with --listen HOST:PORT or [feed] listen"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_verdict(listen: str, token: bool) -> Finding | None:
    """What a listen address off loopback exposes, with or without a token."""
    from assetd.listen import split_listen

    if is_loopback(split_listen(listen)[0]):
        return None
    if token:
        return warn(
            "feed",
            f"{listen} is reachable from the network, and the "
            "token travels in clear text (ws://, http://)",
            "put a TLS proxy in front of it, or listen on 127.0.0.1 (docs/security.md)",
        )
    return warn(
        "feed",
        f"{listen} is reachable from the network with no token: "
        "anyone who reaches it can list the catalog, read its files and change "
        "tags",
        "set [feed] token_file, or listen on 127.0.0.1 (docs/security.md)",
    )


def check_feed(config: Config, *, bind: Callable[[str], Any] | None = None) -> list[Finding]:
    """A daemon serving this catalog, or else the address free to serve it; and what the
    address exposes."""
    from assetd.client import runtime_info
    from assetd.listen import bind_feed

    listen = config.feed.listen
    findings = []
    path = runtime_file(config.database)
    info = runtime_info(path) if path is not None else None
    if info is not None:
        address = info.get("listen") or listen
        findings.append(
            ok(
                "feed",
                f"a daemon (pid {info.get('pid', '?')}) serves "
                f"this catalog; its page is at http://{address}/",
            )
        )
    else:
        try:
            (bind or bind_feed)(listen).close()
        except AssetdError as exc:
            cause = exc.__cause__
            in_use = isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
            findings.append(
                _taken(config, listen) if in_use else fail("feed", str(exc), _LISTEN_FIX)
            )
        else:
            findings.append(ok("feed", f"{listen} is free for the feed and the page"))
    token = bool(config.feed.token_file) and config.feed.token() is not None
    exposed = exposure_verdict(listen, token)
    return findings + ([exposed] if exposed else [])


def _taken(config: Config, listen: str) -> Finding:
    """The address is in use: by a daemon of this (shared) catalog, or by something else."""
    if runtime_file(config.database) is None and _serves_here(config, listen):
        return ok("feed", f"a daemon serves this catalog; its page is at http://{listen}/")
    port = listen.rpartition(":")[2]
    return fail(
        "feed",
        f"{listen} is in use by another program (no daemon of this catalog holds it)",
        f"{_LISTEN_FIX}; see what holds it with ss -ltnp 'sport = :{port}'",
    )


def _serves_here(config: Config, listen: str) -> bool:
    """Whether the daemon at ``listen`` names this (PostgreSQL) catalog in its hello; the
    catalog's id is read without the catalog's code, which would set up its tables."""
    from assetd.client import DaemonClient

    try:
        with DaemonClient(listen, config.feed.token(), timeout=2) as client:
            theirs = client.hello.get("catalog")
        info = postgres_info(config.database)
    except Exception:  # whatever stops the comparison: then it is not this catalog's
        return False
    return info is not None and theirs == info.get("catalog_id")
