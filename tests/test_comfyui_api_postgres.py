"""ComfyUI's asset API over a catalog on PostgreSQL: the same answers as on SQLite."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.comfy import Api, comfy_daemon, install
from tests.harness import OLD_NS, write


def test_the_api_serves_a_postgresql_catalog(tmp_path: Path, pg_url: str) -> None:
    """Upload, list with filters and a cursor, tags, PUT, content, tag counts and DELETE
    on a shared catalog."""
    comfy = install(tmp_path / "ComfyUI")
    for name in ("b.safetensors", "A.safetensors", "c_d.safetensors"):
        write(comfy / "models" / "checkpoints" / name, os.urandom(100), OLD_NS)
    daemon = comfy_daemon(tmp_path, comfy, database=pg_url).start()
    api = Api(daemon)
    try:
        data = os.urandom(1000)
        tags = json.dumps(["models", "model_type:checkpoints", "pg"])
        created = api.upload([("file", ("up.safetensors", data)), ("tags", tags)])
        assert created.status == 201, created.body
        item = created.json
        for name in ("b.safetensors", "A.safetensors", "c_d.safetensors"):
            api.wait_listed(name)
        walked = [
            a["name"] for p in api.walk(sort="name", order="asc", limit=2) for a in p["assets"]
        ]
        assert walked == ["A.safetensors", "b.safetensors", "c_d.safetensors", "up.safetensors"]
        assert api.names(name_contains="C_D") == ["c_d.safetensors"]
        assert api.names(include_tags="pg") == ["up.safetensors"]
        assert api.names(metadata_filter='{"filename": "b.safetensors"}') == ["b.safetensors"]
        url = f"/api/assets/{item['id']}"
        added = api.send_json("POST", url + "/tags", {"tags": ["more"]}).json
        assert added["added"] == ["more"]
        assert api.send_json("PUT", url, {"name": "Up"}).json["name"] == "Up"
        assert api.get(url + "/content").body == data
        counts = {t["name"]: t["count"] for t in api.get("/api/tags", prefix="m").json["tags"]}
        assert counts["models"] == 4 and counts["more"] == 1
        assert api.request("DELETE", url).status == 204
        assert api.get(url).status == 404 and api.listed()["total"] == 3
    finally:
        daemon.close()
