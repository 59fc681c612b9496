"""What the ComfyUI tests share: a ComfyUI-like install on disk, a daemon over it that
serves ComfyUI's asset API, and a small HTTP client of that API."""

from __future__ import annotations

import http.client
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.harness import OLD_NS, Daemon, wait_for, write

__all__ = [
    "SAVED_PROMPT",
    "Api",
    "Reply",
    "catalog_url",
    "comfy_daemon",
    "install",
    "multipart",
    "served_api",
]

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + os.urandom(200)


def install(base: Path) -> Path:
    """A ComfyUI install as ComfyUI lays it out: main.py, models/…, input, output, temp."""
    write(base / "main.py", "# ComfyUI\n", OLD_NS)
    for folder in ("models/checkpoints", "models/loras", "models/unet", "input", "output", "temp"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    return base


def catalog_url(tmp_path: Path) -> str:
    """The catalog a test's command lines and its daemon share."""
    return f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"


def comfy_daemon(
    tmp_path: Path,
    comfy: Path,
    *,
    feed: dict[str, Any] | None = None,
    name: str = "daemon",
    database: str | None = None,
) -> Daemon:
    """A daemon (not started) for ``comfy``, serving ComfyUI's API on a free port."""
    config = tmp_path / f"{name}.toml"
    db = database or f"sqlite:///{tmp_path / 'state' / f'{name}.db'}"
    lines = ["[daemon]", f"database = {json.dumps(db)}", "[feed]", 'listen = "127.0.0.1:0"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in (feed or {}).items()]
    lines += ["[comfyui]", f"path = {json.dumps(str(comfy))}", 'listen = "127.0.0.1:0"']
    config.write_text("\n".join(lines) + "\n")
    return Daemon(tmp_path, {}, config=config, database=db, name=name)


@contextmanager
def served_api(tmp: Path) -> Iterator[tuple[Api, Path]]:
    """A started daemon over a new install under ``tmp``, and a client of its API."""
    comfy = install(tmp / "ComfyUI")
    daemon = comfy_daemon(tmp, comfy).start()
    try:
        yield Api(daemon), comfy
    finally:
        daemon.close()


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        """The error code of an error answer."""
        return str(self.json["error"]["code"]) if self.body else None


@dataclass
class Api:
    """Requests to a daemon's ComfyUI API, found through its runtime file."""

    daemon: Daemon
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """From the runtime file beside a SQLite catalog, else from the daemon's log."""
        if self.daemon.db.startswith("sqlite:"):
            runtime = Path(str(self.daemon.db_path) + ".daemon")
            return str(json.loads(runtime.read_text())["comfyui_api"])
        found = re.findall(r"ComfyUI asset API at http://(\S+)/api/assets", self.daemon.log_text())
        assert found, "the daemon has not said where the API listens"
        return str(found[-1])

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        **query: Any,
    ) -> Reply:
        if query:
            path += ("&" if "?" in path else "?") + urlencode(query, doseq=True)
        host, port = self.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get(self, path: str, **query: Any) -> Reply:
        return self.request("GET", path, **query)

    def send_json(self, method: str, path: str, value: Any, **query: Any) -> Reply:
        body = json.dumps(value).encode()
        return self.request(method, path, body, {"Content-Type": "application/json"}, **query)

    def upload(self, fields: list[tuple[str, Any]], **query: Any) -> Reply:
        body, content_type = multipart(fields)
        return self.request("POST", "/api/assets", body, {"Content-Type": content_type}, **query)

    def listed(self, **query: Any) -> dict[str, Any]:
        reply = self.get("/api/assets", **query)
        assert reply.status == 200, reply.body
        return dict(reply.json)

    def names(self, **query: Any) -> list[str]:
        return [item["name"] for item in self.listed(**query)["assets"]]

    def asset(self, asset_id: str) -> dict[str, Any]:
        reply = self.get(f"/api/assets/{asset_id}")
        assert reply.status == 200, reply.body
        return dict(reply.json)

    def by_name(self, name: str) -> dict[str, Any]:
        """The one listed asset called ``name``."""
        found = [
            a for a in self.listed(name_contains=name, limit=500)["assets"] if a["name"] == name
        ]
        assert len(found) == 1, found
        return dict(found[0])

    def walk(self, **query: Any) -> Iterator[dict[str, Any]]:
        """Every page of a cursor walk."""
        page = self.listed(**query)
        yield page
        while "next_cursor" in page:
            page = self.listed(**{**query, "after": page["next_cursor"]})
            yield page

    def wait_listed(self, name: str, timeout: float = 20) -> dict[str, Any]:
        """The asset called ``name`` once the catalog lists it with its hash."""

        def ready() -> dict[str, Any] | None:
            found = [a for a in self.listed(name_contains=name)["assets"] if a["name"] == name]
            return found[0] if found and "hash" in found[0] else None

        return dict(wait_for(ready, timeout, f"{name} listed with its hash"))


def multipart(fields: list[tuple[str, Any]]) -> tuple[bytes, str]:
    """A multipart/form-data body: ``(name, text)`` fields and ``(name, (filename, bytes))``
    files; its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields:
        if isinstance(value, tuple):
            filename, data = value
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            head += "Content-Type: application/octet-stream\r\n"
        else:
            data = value.encode() if isinstance(value, str) else value
            head = f'Content-Disposition: form-data; name="{name}"\r\n'
        parts.append(f"--{boundary}\r\n{head}\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# The API graph ComfyUI's SaveImage writes into a PNG's ``prompt`` chunk: a checkpoint, a
# LoRA, a positive and a negative prompt, a sampler, a decode and the save.
SAVED_PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/base.safetensors"}},
    "10": {
        "class_type": "LoraLoader",
        "inputs": {"lora_name": "ink.safetensors", "model": ["4", 0], "clip": ["4", 1]},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a paper crane", "clip": ["10", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10", 1]}},
    "3": {
        "class_type": "KSampler",
        "inputs": {"model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "seed": 1},
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}
