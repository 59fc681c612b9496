"""The WebSocket feed and HTTP API of a real daemon, with real websockets clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import OLD_NS, hashed, wait_for, write
from tests.harness import request


async def recv(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def changes(ws: ClientConnection, until: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Change messages until one with seq >= until arrives."""
    out: list[dict[str, Any]] = []
    while not out or out[-1]["seq"] < until:
        message = await recv(ws, timeout)
        if message["type"] == "change":
            out.append(message)
    return out


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            kind = resp.headers.get("Content-Type", "")
            return resp.status, json.loads(body) if "json" in kind else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def burst(folder: Path, count: int, prefix: str = "f") -> threading.Thread:
    def go() -> None:
        for i in range(count):
            write(folder / f"{prefix}{i:05}", f"{prefix} {i}")

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_hello_replay_then_live_in_order(tmp_path: Path, make_daemon: Any) -> None:
    """subscribe since=0 replays the log in order, then live changes follow with no gap."""
    write(tmp_path / "r" / "a.bin", "a", OLD_NS)
    write(tmp_path / "r" / "b.bin", "b", OLD_NS)
    d = make_daemon().start()

    async def go() -> None:
        async with connect(f"ws://{d.address}/ws") as ws:
            hello = await recv(ws)
            assert hello["type"] == "hello" and hello["version"] == 1
            assert hello["catalog"] == d.catalog.catalog_id and hello["seq"] == 2
            assert hello["state"] in ("IDLE", "RUNNING")
            reply = await request(ws, "subscribe", since=0)
            assert reply["ok"] and reply["result"] == {"seq": 2}
            replayed = await changes(ws, 2)
            assert [c["seq"] for c in replayed] == [1, 2]
            # Complete when the startup pass saw them: each "added" carries its hash.
            assert [c["op"] for c in replayed] == ["added", "added"]
            assert all(c["location"]["hash"] for c in replayed)
            write(tmp_path / "r" / "c.bin", "c")
            live: list[dict[str, Any]] = []
            while not live or not live[-1]["location"]["hash"]:
                live += await changes(ws, 3 if not live else live[-1]["seq"] + 1)
            # Complete when seen, one "added" carries the hash; caught mid-write, the
            # file shows "added", maybe "modified", then "hashed".
            assert [c["seq"] for c in live] == list(range(3, 3 + len(live)))
            assert live[0]["op"] == "added" and live[-1]["op"] in ("added", "hashed")
            assert {c["location"]["path"] for c in live} == {str(tmp_path / "r" / "c.bin")}

    asyncio.run(go())


def test_reconnect_in_a_burst_loses_nothing(tmp_path: Path, make_daemon: Any) -> None:
    """A client that drops mid-burst and resumes with since gets every change exactly once."""
    d = make_daemon().start()
    start = d.catalog.latest_seq()

    async def go() -> list[int]:
        seen: list[int] = []
        async with connect(f"ws://{d.address}/ws") as ws:
            await recv(ws)
            await request(ws, "subscribe", since=start)
            thread = burst(tmp_path / "r", 300)
            while len(seen) < 60:
                message = await recv(ws)
                if message["type"] == "change":
                    seen.append(message["seq"])
            assert ws.transport is not None
            ws.transport.abort()  # the network drops: no closing handshake
        async with connect(f"ws://{d.address}/ws") as ws:
            await recv(ws)
            await request(ws, "subscribe", since=seen[-1])
            await asyncio.to_thread(thread.join)
            await asyncio.to_thread(
                wait_for,
                lambda: sum(hashed(i) for i in d.items().values()) == 300,
                60,
                "all hashed",
            )
            latest = d.catalog.latest_seq()
            while seen[-1] < latest:
                message = await recv(ws)
                if message["type"] == "change":
                    seen.append(message["seq"])
        return seen

    seen = asyncio.run(go())
    assert seen == list(range(start + 1, seen[-1] + 1))
    assert seen[-1] >= start + 300  # an added (with its hash, or a hashed after) per file


def test_daemon_restart_keeps_the_sequence(tmp_path: Path, make_daemon: Any) -> None:
    """Sequence numbers survive a restart; since= replays across it with no gap."""
    d = make_daemon().start()
    write(tmp_path / "r" / "before", "before")
    d.until(tmp_path / "r" / "before", "hashed", hashed)
    before = d.catalog.latest_seq()
    assert d.stop() == 0
    write(tmp_path / "r" / "while-down", "down", OLD_NS)
    again = make_daemon().start()
    write(tmp_path / "r" / "after", "after")
    again.until(tmp_path / "r" / "after", "hashed", hashed)

    async def go() -> list[dict[str, Any]]:
        async with connect(f"ws://{again.address}/ws") as ws:
            hello = await recv(ws)
            await request(ws, "subscribe", since=before)
            return await changes(ws, hello["seq"])

    replayed = asyncio.run(go())
    assert [c["seq"] for c in replayed] == list(range(before + 1, replayed[-1]["seq"] + 1))
    paths = {c["location"]["path"] for c in replayed}
    assert {str(tmp_path / "r" / "while-down"), str(tmp_path / "r" / "after")} <= paths


def test_two_hundred_clients_all_receive_every_change(tmp_path: Path, make_daemon: Any) -> None:
    """200 clients connected at once each receive every change, in order."""
    d = make_daemon().start()
    start = d.catalog.latest_seq()

    async def client(ready: asyncio.Barrier) -> list[int]:
        async with connect(f"ws://{d.address}/ws") as ws:
            await recv(ws)
            await request(ws, "subscribe", since=start)
            await ready.wait()
            return [c["seq"] for c in await changes(ws, start + 20)]

    async def go() -> list[list[int]]:
        ready = asyncio.Barrier(201)
        tasks = [asyncio.create_task(client(ready)) for _ in range(200)]
        await ready.wait()
        await asyncio.to_thread(lambda: burst(tmp_path / "r", 20).join())
        return await asyncio.gather(*tasks)

    results = asyncio.run(go())
    assert len(results) == 200
    for seqs in results:  # at least one change per file: its added
        assert seqs[:20] == list(range(start + 1, start + 21))


def test_slow_client_gets_resync_required_and_others_keep_up(
    tmp_path: Path, make_daemon: Any
) -> None:
    """A client that stops reading is told to resync and closed; a reading client gets all."""
    d = make_daemon(feed={"client_queue": 1000}).start()
    start = d.catalog.latest_seq()

    async def go() -> tuple[list[dict[str, Any]], list[int], int | None]:
        tiny = socket.socket()
        tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and no autotuning
        host, port = d.address.rsplit(":", 1)
        tiny.connect((host, int(port)))
        slow = await connect(f"ws://{d.address}/ws", max_queue=1, sock=tiny)
        await recv(slow)
        await request(slow, "subscribe", since=start)
        # The reading client's kernel buffer holds the whole burst (~2 MB), so it keeps up
        # however slowly this process gets to read on a busy machine: the daemon sees a
        # client that takes everything it is sent.
        roomy = socket.socket()
        roomy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        roomy.connect((host, int(port)))
        async with connect(f"ws://{d.address}/ws", sock=roomy) as fast:
            await recv(fast)
            await request(fast, "subscribe", since=start)
            fast_seqs: list[int] = []
            fast_other: list[str] = []

            async def read_fast() -> None:  # a client that keeps up reads all along
                while True:
                    message = await recv(fast, 60)
                    if message["type"] == "change":
                        fast_seqs.append(message["seq"])
                    elif message["type"] != "result":
                        fast_other.append(message["type"])

            reader = asyncio.create_task(read_fast())
            thread = burst(tmp_path / "r", 3000)
            await asyncio.to_thread(thread.join)
            await asyncio.to_thread(
                wait_for, lambda: sum(hashed(i) for i in d.items().values()) == 3000, 120, "hashed"
            )
            latest = d.catalog.latest_seq()
            await asyncio.to_thread(
                wait_for,
                lambda: (fast_seqs and fast_seqs[-1] >= latest) or "resync-required" in fast_other,
                60,
                "fast client caught up",
            )
            reader.cancel()
            assert "resync-required" not in fast_other, "the reading client was dropped too"
        got: list[dict[str, Any]] = []
        code = None
        try:
            while True:
                got.append(json.loads(await asyncio.wait_for(slow.recv(), 30)))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
        return got, fast_seqs, code

    got, fast_seqs, code = asyncio.run(go())
    assert fast_seqs == list(range(start + 1, fast_seqs[-1] + 1))
    assert got[-1]["type"] == "resync-required"
    slow_seqs = [m["seq"] for m in got if m["type"] == "change"]
    assert slow_seqs == list(range(start + 1, start + 1 + len(slow_seqs)))  # a prefix, no gap
    assert len(slow_seqs) < len(fast_seqs)
    assert code == 4000
    assert "fell 1000 messages behind" in d.log_text()


def test_token_is_required_when_configured(tmp_path: Path, make_daemon: Any) -> None:
    """With a token file: no token, 401; Bearer or ?token=, in; / and /healthz stay open."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    d = make_daemon(feed={"token_file": str(token_file)}).start()
    base = f"http://{d.address}"

    async def go() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://{d.address}/ws"):
                pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://{d.address}/ws?token=wrong"):
                pass
        headers = {"Authorization": "Bearer s3cret-token"}
        async with connect(f"ws://{d.address}/ws", additional_headers=headers) as ws:
            assert (await recv(ws))["type"] == "hello"
        async with connect(f"ws://{d.address}/ws?token=s3cret-token") as ws:
            assert (await recv(ws))["type"] == "hello"

    asyncio.run(go())
    assert http_get(f"{base}/api/assets")[0] == 401
    assert http_get(f"{base}/api/assets/seed/status")[0] == 401
    assert http_get(f"{base}/api/location?path=/r/x")[0] == 401
    assert http_get(f"{base}/api/location?path=/r/x&token=s3cret-token")[0] == 404
    assert http_get(f"{base}/api/assets?token=s3cret-token")[0] == 200
    assert http_get(f"{base}/api/assets", {"Authorization": "Bearer s3cret-token"})[0] == 200
    assert "s3cret-token" not in d.log_text()  # tokens are never logged, nor wrong ones
    assert "token=wrong" not in d.log_text()
    assert http_get(f"{base}/healthz") == (200, {"status": "ok"})
    assert http_get(f"{base}/")[0] == 200
    assert "s3cret-token" not in d.log_text()


def test_foreign_origins_are_refused(tmp_path: Path, make_daemon: Any) -> None:
    """A page from another origin gets 403; the server's own and allowed origins get in."""
    d = make_daemon(feed={"allowed_origins": ["http://localhost:3000"]}).start()

    async def status_of(origin: str) -> int:
        try:
            async with connect(f"ws://{d.address}/ws", origin=origin) as ws:  # type: ignore[arg-type]
                await recv(ws)
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    async def go() -> None:
        assert await status_of("http://evil.example") == 403
        assert await status_of(f"http://{d.address}") == 101
        assert await status_of("http://localhost:3000") == 101

    asyncio.run(go())


def test_malformed_frames_get_errors_and_the_daemon_stays_healthy(
    tmp_path: Path, make_daemon: Any
) -> None:
    """Bad JSON, wrong shapes, binary and unknown commands get bad replies; oversize closes."""
    write(tmp_path / "r" / "a.bin", "a", OLD_NS)
    d = make_daemon().start()

    async def go() -> None:
        async with connect(f"ws://{d.address}/ws", max_size=None) as ws:
            await recv(ws)
            for frame in ["not json", "[1, 2]", '{"cmd": 5}', '{"id": 9}', "null", '"cmd"']:
                await ws.send(frame)
                reply = await recv(ws)
                assert reply["ok"] is False and reply["error"]["code"] == "bad_request", frame
            await ws.send(b'{"id": 1, "cmd": "status"}')
            reply = await recv(ws)
            assert reply["error"]["code"] == "bad_request" and reply["id"] is None
            reply = await request(ws, "frobnicate")
            assert reply["error"]["code"] == "unknown_command"
            bad_args = [
                ("list", {"limit": "ten"}),
                ("list", {"limit": 0}),
                ("list", {"include_missing": "yes"}),
                ("list", {"after": 12}),
                ("list", {"after": "%%%"}),
                ("subscribe", {"since": "0"}),
                ("subscribe", {"since": True}),
                ("subscribe", {"roots": "models"}),
                ("seed", {"roots": [1]}),
                ("seed", {"wait": "yes"}),
                ("tag", {"path": 5, "add": ["x"]}),
                ("tag", {"path": "relative/path", "add": ["x"]}),
                ("tag", {"path": str(tmp_path / "r" / "a.bin"), "add": "x"}),
                ("tag", {"path": "/etc/passwd", "add": ["x"]}),
                ("tag", {"path": str(tmp_path / "r" / "a.bin"), "add": [""]}),
                ("meta", {"path": str(tmp_path / "r" / "a.bin"), "set": [1]}),
                ("restore", {"paths": "/x"}),
                ("restore", {"paths": ["/etc/passwd"]}),
                ("cleanup", {"dry_run": 1}),
            ]
            for cmd, args in bad_args:
                reply = await request(ws, cmd, **args)
                assert reply["ok"] is False and reply["error"]["code"] == "bad_request", (cmd, args)
            reply = await request(ws, "tag", path=str(tmp_path / "r" / "nope"), add=["x"])
            assert reply["error"]["code"] == "not_found"
            await ws.send(json.dumps({"id": 1, "cmd": "status", "pad": "x" * (2 << 20)}))
            with pytest.raises(ConnectionClosed) as closed:
                await recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        async with connect(f"ws://{d.address}/ws") as ws:
            await recv(ws)
            assert (await request(ws, "status"))["ok"] is True

    asyncio.run(go())
    assert http_get(f"http://{d.address}/healthz")[0] == 200


def test_commands(tmp_path: Path, make_daemon: Any) -> None:
    """status, list, tag, meta, restore, seed, cancel, prune and cleanup answer as documented."""
    for i in range(5):
        write(tmp_path / "r" / f"sub{i % 2}" / f"f{i}.png", f"{i}", OLD_NS)
    d = make_daemon().start()
    a = str(tmp_path / "r" / "sub0" / "f0.png")

    async def go() -> None:
        async with connect(f"ws://{d.address}/ws") as ws:
            await recv(ws)
            status = (await request(ws, "status"))["result"]
            assert status["state"] == "IDLE" and status["progress"]["total"] == 5
            assert status["roots"] == [
                {
                    "name": "r",
                    "path": str(tmp_path / "r"),
                    "online": True,
                    "watch": "online",
                    "files": 5,
                    "missing": 0,
                }
            ]
            page = (await request(ws, "list", limit=2))["result"]
            assert len(page["items"]) == 2 and page["next"]
            rest = (await request(ws, "list", limit=10, after=page["next"]))["result"]
            assert len(rest["items"]) == 3 and rest["next"] is None
            assert len((await request(ws, "list", tag="sub1"))["result"]["items"]) == 2
            tags = (await request(ws, "tag", path=a, add=["fav"], remove=[]))["result"]
            assert tags == {"tags": ["fav", "r", "sub0"]}
            meta = (await request(ws, "meta", path=a, set={"k": [1]}, unset=[]))["result"]
            assert meta == {"metadata": {"k": [1]}}
            os.rename(a, tmp_path / "aside")
            await asyncio.to_thread(d.until, Path(a), "missing", lambda i: i["is_missing"])
            os.rename(tmp_path / "aside", a)
            restored = (await request(ws, "restore", paths=[a]))["result"]
            assert restored["restored"] in (0, 1)  # the watcher may have restored it first
            await asyncio.to_thread(d.until, Path(a), "live", lambda i: not i["is_missing"])
            seeded = (await request(ws, "seed", wait=True))["result"]
            assert seeded["status"] == "completed" and seeded["progress"]["skipped"] == 5
            assert (await request(ws, "cancel"))["result"] == {"status": "idle"}
            assert (await request(ws, "prune"))["result"] == {"status": "completed", "marked": 0}
            assert (await request(ws, "cleanup", dry_run=True))["result"] == {"deleted": 0}

    asyncio.run(go())


def test_http_api(tmp_path: Path, make_daemon: Any) -> None:
    """GET /healthz, /api/assets (with filters), /api/assets/seed/status, / and a 404."""
    write(tmp_path / "r" / "a.png", "a", OLD_NS)
    write(tmp_path / "s" / "b.png", "b", OLD_NS)
    d = make_daemon({"r": tmp_path / "r", "s": tmp_path / "s"}).start()
    base = f"http://{d.address}"
    assert http_get(f"{base}/healthz") == (200, {"status": "ok"})
    code, listing = http_get(f"{base}/api/assets?root=s")
    assert code == 200 and [i["path"] for i in listing["items"]] == [str(tmp_path / "s" / "b.png")]
    code, status = http_get(f"{base}/api/assets/seed/status")
    assert (
        code == 200
        and status["state"] == "IDLE"
        and {r["name"] for r in status["roots"]} == {"r", "s"}
    )
    code, page = http_get(f"{base}/")
    assert code == 200 and "<title>assetd</title>" in page
    assert http_get(f"{base}/nope")[0] == 404
    assert http_get(f"{base}/api/assets?limit=0")[0] == 400


def test_resuming_beyond_the_kept_log_asks_for_a_resync(tmp_path: Path, make_daemon: Any) -> None:
    """With the log trimmed to 5 changes, since=1 gets resync-required, then live changes."""
    for i in range(10):
        write(tmp_path / "r" / f"f{i}", f"{i}", OLD_NS)
    d = make_daemon(feed={"keep_changes": 5}).start()
    latest = d.catalog.latest_seq()
    assert latest == 10 and d.catalog.oldest_seq() == 6  # one "added" a file, hash in it

    async def go() -> None:
        async with connect(f"ws://{d.address}/ws") as ws:
            await recv(ws)
            assert (await request(ws, "subscribe", since=1))["result"] == {"seq": 10}
            assert await recv(ws) == {"type": "resync-required", "seq": 10}
            write(tmp_path / "r" / "new", "new")
            live = await changes(ws, 11)
            assert [c["seq"] for c in live] == [11]  # complete when seen: its hash in it
            newest = d.catalog.latest_seq()
        async with connect(f"ws://{d.address}/ws") as ws:
            await recv(ws)
            await request(ws, "subscribe", since=8)  # still in the log: replayed
            replay = await changes(ws, newest)
            assert [c["seq"] for c in replay] == list(range(9, newest + 1))

    asyncio.run(go())


def test_scan_and_root_events_reach_every_client(tmp_path: Path, make_daemon: Any) -> None:
    """assets.seed.* and root events go to all clients, subscribed or not."""
    write(tmp_path / "r" / "a", "a", OLD_NS)
    d = make_daemon().start()

    async def go() -> None:
        async with (
            connect(f"ws://{d.address}/ws") as watcher,
            connect(f"ws://{d.address}/ws") as ws,
        ):
            await recv(watcher)
            await recv(ws)
            assert (await request(ws, "seed"))["result"] == {"status": "started"}
            kinds = []
            while "assets.seed.completed" not in kinds:
                kinds.append((await recv(watcher))["type"])
            assert kinds[0] == "assets.seed.started"
            os.rename(tmp_path / "r", tmp_path / "away")
            while (message := await recv(watcher))["type"] != "root":
                pass
            assert message["root"] == "r" and message["state"] == "offline"

    asyncio.run(go())


def test_sigterm_closes_clients_with_1001(tmp_path: Path, make_daemon: Any) -> None:
    """On SIGTERM every feed client is closed with code 1001 (going away)."""
    d = make_daemon().start()

    async def go() -> int | None:
        async with connect(f"ws://{d.address}/ws") as ws:
            await recv(ws)
            d.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                await recv(ws)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(go()) == 1001
    assert d.stop() == 0


def test_listening_beyond_loopback_without_a_token_warns_loudly(
    tmp_path: Path, make_daemon: Any
) -> None:
    """A non-loopback listen address with no token logs a loud warning at start."""
    d = make_daemon()
    d.feed_listen = "0.0.0.0:0"
    d.start()
    assert "WITHOUT A TOKEN" in d.log_text()


def test_paths_escaping_the_roots_are_refused(tmp_path: Path, make_daemon: Any) -> None:
    """`..`, absolute paths elsewhere and symlinks pointing out never reach the catalog."""
    inside = write(tmp_path / "r" / "a.bin", "a", OLD_NS)
    secret = write(tmp_path / "secret" / "key", "secret", OLD_NS)
    (tmp_path / "r" / "link").symlink_to(secret)
    d = make_daemon().start()

    async def go() -> None:
        async with connect(f"ws://{d.address}/ws") as ws:
            await recv(ws)
            for path in (f"{tmp_path}/r/../secret/key", str(secret), "/etc/passwd"):
                reply = await request(ws, "tag", path=path, add=["x"])
                assert reply["error"]["code"] == "bad_request", path
                reply = await request(ws, "restore", paths=[path])
                assert reply["error"]["code"] == "bad_request", path
            reply = await request(ws, "tag", path=str(tmp_path / "r" / "link"), add=["x"])
            assert reply["error"]["code"] == "not_found"  # symlinks are not followed
            assert (await request(ws, "restore", paths=[str(tmp_path / "r" / "link")]))["ok"]

    asyncio.run(go())
    assert set(d.items()) == {str(inside)}


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 300_000])
def test_pushed_frames_parse_as_websocket_text_frames(size: int) -> None:
    # Changes are written to the transport as frames assetd builds itself; websockets'
    # own parser (as a client uses it) must read back exactly the payload.
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    from assetd.feed import text_frame

    payload = json.dumps({"type": "change", "pad": "x" * max(0, size - 24)}).encode()[:size]
    reader = StreamReader()
    reader.feed_data(text_frame(payload))
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame = done.value.value
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)
