"""One daemon per catalog (the runtime file's lock) and the systemd notification socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from assetd.exceptions import DaemonRunningError
from assetd.locks import RuntimeLock
from assetd.systemd import sd_notify


def test_a_second_holder_of_the_runtime_file_is_refused_with_the_first_ones_pid(
    tmp_path: Path,
) -> None:
    """While one lock holds the file, another acquire fails naming the holder's pid."""
    path = str(tmp_path / "state" / "assetd.db.daemon")
    first = RuntimeLock(path)
    first.acquire({"pid": 4242, "listen": "127.0.0.1:1"})
    assert json.loads(Path(path).read_text()) == {"pid": 4242, "listen": "127.0.0.1:1"}
    with pytest.raises(DaemonRunningError, match="pid 4242"):
        RuntimeLock(path).acquire({"pid": 1})
    first.release()
    assert Path(path).read_text() == ""  # nothing stale left for a reader to trust
    second = RuntimeLock(path)
    second.acquire({"pid": 7})
    second.release()


def test_update_rewrites_the_runtime_file_in_place(tmp_path: Path) -> None:
    """The feed's address, known once it listens, replaces what the file said."""
    path = str(tmp_path / "rt")
    lock = RuntimeLock(path)
    lock.acquire({"pid": 1, "listen": "127.0.0.1:0", "probe": True})
    lock.update({"pid": 1, "listen": "127.0.0.1:5555"})
    assert json.loads(Path(path).read_text()) == {"pid": 1, "listen": "127.0.0.1:5555"}
    lock.release()


def test_sd_notify_sends_one_datagram_to_the_socket_systemd_names(tmp_path: Path) -> None:
    """READY=1 reaches NOTIFY_SOCKET as one datagram; without the variable, nothing is sent."""
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(5)
        assert sd_notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": address})
        assert server.recv(4096) == b"READY=1\nSTATUS=up"
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
