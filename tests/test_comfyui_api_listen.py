"""The API's listener: the feed's token and Origin rules, and an address in use."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.comfy import Api, comfy_daemon, install
from tests.harness import run_cli


def test_a_token_is_required_when_the_feed_has_one(tmp_path: Path) -> None:
    """With [feed] token_file: no token or a wrong one, 401 in the envelope (the /ws too);
    the token as a Bearer header or ?token=, in."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    comfy = install(tmp_path / "ComfyUI")
    daemon = comfy_daemon(tmp_path, comfy, feed={"token_file": str(token)}).start()
    api = Api(daemon)
    try:
        for reply in (api.get("/api/assets"), api.get("/api/assets", token="wrong")):
            assert reply.status == 401 and reply.json["error"]["code"] == "UNAUTHORIZED"
        assert api.request("POST", "/api/assets/seed").status == 401
        assert api.get("/api/assets", token="s3cret").status == 200
        bearer = api.request("GET", "/api/tags", headers={"Authorization": "Bearer s3cret"})
        assert bearer.status == 200
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://{api.address}/ws")
        assert refused.value.response.status_code == 401
        with connect(f"ws://{api.address}/ws?token=s3cret") as ws:
            assert json.loads(ws.recv(10))["type"] == "status"
    finally:
        daemon.close()


def test_requests_from_other_origins_are_refused(tmp_path: Path) -> None:
    """A browser page of another origin (its Origin header) gets 403, writes and the /ws
    alike; the API's own origin and those in [feed] allowed_origins get in."""
    comfy = install(tmp_path / "ComfyUI")
    allowed = "http://127.0.0.1:8188"
    daemon = comfy_daemon(tmp_path, comfy, feed={"allowed_origins": [allowed]}).start()
    api = Api(daemon)
    try:
        evil = {"Origin": "http://evil.example"}
        refused = api.request("POST", "/api/assets/seed", headers=evil)
        assert refused.status == 403 and refused.json["error"]["code"] == "FORBIDDEN"
        assert api.request("GET", "/api/assets", headers=evil).status == 403
        with pytest.raises(InvalidStatus):
            connect(f"ws://{api.address}/ws", origin="http://evil.example")  # type: ignore[arg-type]
        assert api.request("GET", "/api/assets", headers={"Origin": allowed}).status == 200
        own = {"Origin": f"http://{api.address}"}
        assert api.request("GET", "/api/assets", headers=own).status == 200
    finally:
        daemon.close()


def test_a_port_in_use_stops_the_daemon_before_it_writes(tmp_path: Path) -> None:
    """[comfyui] listen on an address in use: exit 1, one line on stderr naming it and
    the setting, before the catalog is made or the runtime file names a daemon (the
    command line's check for a running daemon leaves that file, empty)."""
    comfy = install(tmp_path / "ComfyUI")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = tmp_path / "c.toml"
        db = tmp_path / "state" / "a.db"
        config.write_text(
            f'[daemon]\ndatabase = "sqlite:///{db}"\n[feed]\nlisten = "127.0.0.1:0"\n'
            f'[comfyui]\npath = "{comfy}"\nlisten = "127.0.0.1:{port}"\n'
        )
        proc = run_cli("run", "--config", str(config))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "[comfyui] listen" in lines[0]
    assert not db.exists() and not Path(f"{db}-wal").exists()
    runtime = Path(f"{db}.daemon")
    assert not runtime.exists() or runtime.read_bytes() == b""
