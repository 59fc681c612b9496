"""ComfyUI's scan control over assetd's passes: seed, status, cancel, prune, and the
``assets.seed.*`` events on the API's /ws."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from assetd.config import Config
from assetd.exceptions import SeederBusyError
from tests.comfy import Api, comfy_daemon, install
from tests.harness import OLD_NS, wait_for, write


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Path]]:
    tmp = tmp_path_factory.mktemp("comfy-seed")
    comfy = install(tmp / "ComfyUI")
    write(comfy / "models" / "checkpoints" / "m.safetensors", os.urandom(64), OLD_NS)
    for folder in ("100%_done", "my_folder_name", "has spaces"):
        write(comfy / "input" / folder / "kept.png", os.urandom(20), OLD_NS)
    write(comfy / "output" / "o.png", os.urandom(20), OLD_NS)
    daemon = comfy_daemon(tmp, comfy).start()
    try:
        yield Api(daemon), comfy
    finally:
        daemon.close()


def idle(api: Api) -> dict[str, Any]:
    return dict(wait_for(lambda: _idle_status(api), 30, "the seeder idle"))


def _idle_status(api: Api) -> dict[str, Any] | None:
    status = api.get("/api/assets/seed/status").json
    return status if status["state"] == "IDLE" else None


def test_seed_starts_a_pass_and_waits_for_it_when_asked(served: tuple[Api, Path]) -> None:
    """POST seed: 202 started; with wait=true, 200 completed with the pass's progress
    (ComfyUI's four counts among assetd's) and its errors as strings."""
    api, _ = served
    idle(api)
    started = api.request("POST", "/api/assets/seed")
    assert started.status == 202 and started.json == {"status": "started"}
    idle(api)
    done = api.send_json(
        "POST", "/api/assets/seed", {"roots": ["models", "input", "output"]}, wait="true"
    )
    assert done.status == 200, done.body
    body = done.json
    assert body["status"] == "completed" and body["errors"] == []
    assert {"scanned", "total", "created", "skipped"} <= set(body["progress"])
    assert body["progress"]["total"] == 5


def test_seed_takes_comfyuis_roots_only(served: tuple[Api, Path]) -> None:
    """roots names ComfyUI's models, input, output: input alone walks only the install's
    input; none valid, 400 INVALID_BODY; a body that is not JSON is the default."""
    api, _ = served
    idle(api)
    only_input = api.send_json("POST", "/api/assets/seed", {"roots": ["input", "temp"]}, wait="1")
    assert only_input.status == 200 and only_input.json["progress"]["total"] == 3
    for body in ({"roots": ["bogus"]}, {"roots": "models"}, {"roots": []}, {"roots": 5}):
        reply = api.send_json("POST", "/api/assets/seed", body)
        assert reply.status == 400 and reply.json["error"]["code"] == "INVALID_BODY", body
    idle(api)
    default = api.request("POST", "/api/assets/seed", b"[not json", wait="yes")
    assert default.status == 200 and default.json["progress"]["total"] == 5


def test_status_cancel_and_prune_when_idle(served: tuple[Api, Path]) -> None:
    """Status: state, the last pass's progress, errors; cancel when idle: idle; prune:
    completed with the number marked (none: every location is inside a root)."""
    api, _ = served
    status = idle(api)
    assert set(status) == {"state", "progress", "errors"}
    assert status["progress"]["total"] >= 3 and isinstance(status["errors"], list)
    assert api.request("POST", "/api/assets/seed/cancel").json == {"status": "idle"}
    pruned = api.request("POST", "/api/assets/prune")
    assert pruned.status == 200 and pruned.json == {"status": "completed", "marked": 0}


def test_a_pass_finds_files_and_forgets_deleted_ones(served: tuple[Api, Path]) -> None:
    """A file under input is listed (with its hash, unlike ComfyUI) and named by its path
    below input; deleted, it is gone from the list after a seed; folders whose names
    hold %, _ and spaces keep their files through two seeds."""
    api, comfy = served
    path = comfy / "input" / "unit-tests" / "scope" / "a" / "b" / "seed_filename.bin"
    write(path, os.urandom(30), OLD_NS)
    found = api.wait_listed("seed_filename.bin")
    listed = api.listed(include_tags="input", name_contains="seed_filename")["assets"]
    assert [a["id"] for a in listed] == [found["id"]]
    assert (
        api.asset(found["id"])["user_metadata"]["filename"]
        == "unit-tests/scope/a/b/seed_filename.bin"
    )
    path.unlink()
    idle(api)
    assert api.request("POST", "/api/assets/seed", wait="true").status == 200
    wait_for(lambda: not api.names(name_contains="seed_filename"), 20, "the deleted file unlisted")
    for _ in range(2):
        idle(api)
        assert api.request("POST", "/api/assets/seed", wait="true").status == 200
    assert api.names(name_contains="kept.png") == ["kept.png"] * 3


def test_ws_sends_status_answers_feature_flags_and_relays_seed_events(
    served: tuple[Api, Path],
) -> None:
    """/ws: status with the client's sid on connect; the first feature_flags is answered
    with assets true; a pass's started and completed events reach the socket."""
    api, _ = served
    idle(api)
    with connect(f"ws://{api.address}/ws?clientId=abc") as ws:
        hello = json.loads(ws.recv(10))
        assert hello == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "abc"},
        }
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        flags = json.loads(ws.recv(10))
        assert flags["type"] == "feature_flags" and flags["data"]["assets"] is True
        ws.send(json.dumps({"type": "feature_flags", "data": {}}))  # only the first is answered
        assert api.request("POST", "/api/assets/seed", wait="true").status == 200
        kinds: list[str] = []
        while "assets.seed.completed" not in kinds:
            message = json.loads(ws.recv(20))
            assert set(message) == {"type", "data"}, message
            kinds.append(message["type"])
            if message["type"] == "assets.seed.completed":
                assert message["data"]["phase"] == "full" and message["data"]["elapsed"] >= 0
                assert {"scanned", "total", "created", "skipped"} <= set(message["data"])
        assert kinds[0] == "assets.seed.started" and "feature_flags" not in kinds


# -- answers that need a pass running: through a stand-in service --------------------


class BusyService:
    """A service whose pass is always running (what the seeder says when busy)."""

    catalog_id = "stand-in"
    state = "RUNNING"

    def seed(self, roots: Any, prune_first: bool, hashes: bool) -> bool:
        return False

    def prune(self) -> int:
        raise SeederBusyError("a scan is running")

    def cancel(self) -> bool:
        return True

    def seeder_status(self) -> dict[str, Any]:
        return {"state": self.state, "progress": None, "errors": []}


def test_busy_answers_are_comfyuis_plain_objects() -> None:
    """While a pass runs: seed 409 already_running, prune 409 scan_running with marked 0,
    cancel cancelling (idle once cancelling), status with progress null before any."""
    import aiohttp

    from assetd.comfyui.api import ComfyApi
    from assetd.listen import bind_listener

    service = BusyService()

    async def run() -> list[tuple[int, Any]]:
        sock = bind_listener("127.0.0.1:0", serves="a test", setting="a test")
        server = ComfyApi(service, sock=sock, config=lambda: Config(database="sqlite://"))  # type: ignore[arg-type]
        await server.start()
        base = f"http://{server.address}"
        found = []
        try:
            async with aiohttp.ClientSession() as session:
                for method, path in (
                    ("POST", "/api/assets/seed"),
                    ("POST", "/api/assets/prune"),
                    ("POST", "/api/assets/seed/cancel"),
                    ("GET", "/api/assets/seed/status"),
                ):
                    async with session.request(method, base + path) as response:
                        found.append((response.status, await response.json()))
                service.state = "CANCELLING"
                async with session.post(base + "/api/assets/seed/cancel") as response:
                    found.append((response.status, await response.json()))
        finally:
            await server.close()
            server.executor.shutdown(wait=True)
        return found

    assert asyncio.run(run()) == [
        (409, {"status": "already_running"}),
        (409, {"status": "scan_running", "marked": 0}),
        (200, {"status": "cancelling"}),
        (200, {"state": "RUNNING", "progress": None, "errors": []}),
        (200, {"status": "idle"}),
    ]
