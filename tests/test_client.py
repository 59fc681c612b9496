"""The feed client against a real WebSocket server in this process that speaks the feed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from assetd.client import DaemonClient, find_daemon, path_argument, path_value
from assetd.config import Config, FeedConfig
from assetd.exceptions import RemoteError
from tests.feedserver import HELLO, FeedServer, answer, failure, result, runtime_file_held


def test_connecting_reads_the_hello_and_sends_the_token() -> None:
    """The hello is the client's first message; a token goes as a bearer header."""
    with FeedServer(answer({})) as server, DaemonClient(server.address, "s3cret") as client:
        assert client.hello == HELLO
    assert server.authorizations == ["Bearer s3cret"]


def test_no_token_sends_no_authorization() -> None:
    """Without a token the request carries no Authorization header."""
    with FeedServer(answer({})) as server, DaemonClient(server.address, None):
        pass
    assert server.authorizations == [None]


def test_request_skips_pushed_messages_and_returns_its_result() -> None:
    """Changes, events and other requests' results that arrive first are passed over."""

    def script(request: dict[str, Any]) -> list[dict[str, Any] | None]:
        return [
            {"type": "change", "seq": 8, "op": "created"},
            {"type": "result", "id": request["id"] + 100, "ok": True, "result": "not mine"},
            {"type": "event", "event": "assets.seed.progress"},
            result(request, {"tags": ["fav"]}),
        ]

    with FeedServer(script) as server, DaemonClient(server.address, None) as client:
        assert client.request("tag", path="/r/a.png", add=["fav"]) == {"tags": ["fav"]}
        assert client.request("prune") == {"tags": ["fav"]}
    first, second = server.requests
    assert first == {"id": 1, "cmd": "tag", "path": "/r/a.png", "add": ["fav"]}
    assert second == {"id": 2, "cmd": "prune"}


def test_a_failed_request_raises_remote_error_with_its_code() -> None:
    """``ok: false`` becomes RemoteError carrying the feed's code and message."""

    def script(request: dict[str, Any]) -> list[dict[str, Any] | None]:
        return [failure(request, "bad_request", "/x is outside every root")]

    with (
        FeedServer(script) as server,
        DaemonClient(server.address, None) as client,
        pytest.raises(RemoteError, match="outside every root") as caught,
    ):
        client.request("tag", path="/x", add=["a"])
    assert caught.value.code == "bad_request"


def test_an_error_without_details_is_a_plain_failure() -> None:
    """A result with ``ok: false`` and no error object still raises, code ``failed``."""

    def script(request: dict[str, Any]) -> list[dict[str, Any] | None]:
        return [{"type": "result", "id": request["id"], "ok": False}]

    with (
        FeedServer(script) as server,
        DaemonClient(server.address, None) as client,
        pytest.raises(RemoteError) as caught,
    ):
        client.request("status")
    assert caught.value.code == "failed"


def test_messages_yields_everything_until_the_daemon_closes() -> None:
    """``messages`` yields results and pushed messages alike, and ends on a normal close."""

    def script(request: dict[str, Any]) -> list[dict[str, Any] | None]:
        return [result(request, {"seq": 7}), {"type": "change", "seq": 8}, None]

    with FeedServer(script) as server, DaemonClient(server.address, None) as client:
        own = client.send("subscribe", since=3)
        received = list(client.messages())
    assert own == 1
    assert server.requests == [{"id": 1, "cmd": "subscribe", "since": 3}]
    assert received == [
        {"type": "result", "id": 1, "ok": True, "result": {"seq": 7}},
        {"type": "change", "seq": 8},
    ]


def sqlite_config(tmp_path: Path) -> tuple[Config, str]:
    config = Config(database=f"sqlite:///{tmp_path / 'catalog.db'}", feed=FeedConfig())
    return config, str(tmp_path / "catalog.db.daemon")


def test_find_daemon_reads_the_address_of_a_locked_runtime_file(tmp_path: Path) -> None:
    """A held lock means a daemon: its runtime file names the feed address."""
    config, runtime = sqlite_config(tmp_path)
    with runtime_file_held(runtime, {"pid": 1, "listen": "127.0.0.1:9"}):
        assert find_daemon(config) == "127.0.0.1:9"


def test_find_daemon_ignores_an_unlocked_or_absent_runtime_file(tmp_path: Path) -> None:
    """A runtime file nobody holds is left over from a daemon that has gone."""
    config, runtime = sqlite_config(tmp_path)
    assert find_daemon(config) is None
    Path(runtime).write_text(json.dumps({"pid": 1, "listen": "127.0.0.1:9"}))
    assert find_daemon(config) is None


@pytest.mark.parametrize("info", [{"pid": 1}, {"listen": 9}], ids=["no-listen", "not-a-string"])
def test_find_daemon_without_a_usable_address_finds_none(
    tmp_path: Path, info: dict[str, Any]
) -> None:
    """A locked runtime file that names no address (yet) names no daemon."""
    config, runtime = sqlite_config(tmp_path)
    with runtime_file_held(runtime, info):
        assert find_daemon(config) is None


def test_find_daemon_finds_the_server_it_names(tmp_path: Path) -> None:
    """The address found is one a client connects to."""
    config, runtime = sqlite_config(tmp_path)
    with (
        FeedServer(answer({"state": "idle"})) as server,
        runtime_file_held(runtime, {"listen": server.address}),
    ):
        address = find_daemon(config)
        assert address == server.address
        with DaemonClient(address, None) as client:
            assert client.request("status") == {"state": "idle"}


def test_a_utf8_path_travels_as_a_string() -> None:
    """A path that is valid UTF-8 is the ``path`` string itself."""
    assert path_value("/r/ü.png".encode()) == "/r/ü.png"
    assert path_argument("/r/ü.png".encode()) == {"path": "/r/ü.png"}


def test_a_non_utf8_path_travels_as_its_bytes() -> None:
    """Any other path is carried as ``path_bytes_b64``, so no byte is lost."""
    raw = b"/r/caf\xe9.png"
    encoded = base64.b64encode(raw).decode("ascii")
    assert path_value(raw) == {"path_bytes_b64": encoded}
    assert path_argument(raw) == {"path_bytes_b64": encoded}
    assert base64.b64decode(encoded) == raw
