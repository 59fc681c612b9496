"""`assetd check`: which models a workflow needs and where they are, against a real catalog
of a ComfyUI install, through the command line and through a daemon's feed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from websockets.sync.client import connect

from tests.comfy import catalog_url, comfy_daemon
from tests.conftest import OLD_NS, write
from tests.harness import request_sync, run_cli

API_WORKFLOW = {
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sdxl\\base.safetensors"},
    },
    "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors"}},
    "11": {"class_type": "VAELoader", "inputs": {"vae_name": "gone.safetensors"}},
    "12": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}},
}
UI_WORKFLOW = {
    "nodes": [
        {
            "id": 1,
            "type": "CheckpointLoaderSimple",
            "widgets_values": ["sdxl/base.safetensors"],
            "properties": {
                "models": [
                    {
                        "name": "sdxl/base.safetensors",
                        "url": "https://example.org/base.safetensors",
                        "directory": "checkpoints",
                    }
                ]
            },
        }
    ],
    "links": [],
}


@pytest.fixture
def comfy(tmp_path: Path) -> Path:
    """A ComfyUI install, catalogued: a checkpoint where the loader looks, a lora in the
    wrong folder, and a vae that was catalogued and then deleted."""
    base = tmp_path / "ComfyUI"
    write(base / "main.py", "# ComfyUI\n", OLD_NS)
    write(base / "models" / "checkpoints" / "sdxl" / "base.safetensors", "ckpt", OLD_NS)
    write(base / "models" / "checkpoints" / "ink.safetensors", "lora in the wrong place", OLD_NS)
    gone = write(base / "models" / "vae" / "gone.safetensors", "vae", OLD_NS)
    assert cli(tmp_path, base, "scan").returncode == 0
    gone.unlink()
    assert cli(tmp_path, base, "scan").returncode == 0
    return base


def cli(tmp_path: Path, comfy: Path, *args: str) -> Any:
    db = catalog_url(tmp_path)
    return run_cli(*args, "--db", db, "--comfyui", str(comfy))


def checked(tmp_path: Path, comfy: Path, *files: Path) -> tuple[int, list[dict[str, Any]]]:
    proc = cli(tmp_path, comfy, "check", "--json", *map(str, files))
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


def test_each_model_is_present_elsewhere_missing_or_unknown(tmp_path: Path, comfy: Path) -> None:
    """An API-format workflow: the checkpoint is present (Windows separators and all), the
    lora elsewhere with its candidate, the deleted vae missing where it last was, the
    upscaler unknown; exit 4, one JSON object per model with the contract's fields."""
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(API_WORKFLOW))
    code, items = checked(tmp_path, comfy, wf)
    assert code == 4
    by_name = {item["name"]: item for item in items}
    models = comfy / "models"
    assert by_name["sdxl/base.safetensors"] == {
        "workflow": str(wf),
        "name": "sdxl/base.safetensors",
        "category": "checkpoints",
        "status": "present",
        "path": str(models / "checkpoints" / "sdxl" / "base.safetensors"),
        "hash": by_name["sdxl/base.safetensors"]["hash"],
        "url": None,
        "candidates": [],
    }
    assert by_name["sdxl/base.safetensors"]["hash"].startswith("blake3:")
    ink = by_name["ink.safetensors"]
    assert (ink["status"], ink["category"]) == ("elsewhere", "loras")
    assert ink["candidates"] == [str(models / "checkpoints" / "ink.safetensors")]
    gone = by_name["gone.safetensors"]
    assert (gone["status"], gone["path"]) == ("missing", str(models / "vae" / "gone.safetensors"))
    assert by_name["4x.pth"]["status"] == "unknown"


def test_a_workflow_with_every_model_present_exits_0_and_reads_as_a_table(
    tmp_path: Path, comfy: Path
) -> None:
    """A UI-format workflow whose one model is where ComfyUI looks: exit 0; without
    --json a person reads one line per model."""
    wf = tmp_path / "ui.json"
    wf.write_text(json.dumps(UI_WORKFLOW))
    code, items = checked(tmp_path, comfy, wf)
    assert code == 0 and [i["status"] for i in items] == ["present"]
    assert items[0]["url"] == "https://example.org/base.safetensors"
    table = cli(tmp_path, comfy, "check", str(wf))
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0] == f"{wf}: 1 models, 1 present"
    assert lines[1].split()[:3] == ["present", "checkpoints", "sdxl/base.safetensors"]


def test_a_png_that_comfyui_saved_is_checked_by_its_embedded_workflow(
    tmp_path: Path, comfy: Path
) -> None:
    """A PNG carrying its workflow in a text chunk is read like the JSON."""
    info = PngInfo()
    info.add_text("prompt", json.dumps(API_WORKFLOW))
    png = tmp_path / "ComfyUI_00001_.png"
    Image.new("RGB", (4, 4)).save(png, pnginfo=info)
    code, items = checked(tmp_path, comfy, png)
    assert code == 4 and len(items) == 4


def test_a_file_that_is_not_a_workflow_is_one_line_and_exit_2(tmp_path: Path, comfy: Path) -> None:
    """Not a workflow (a JSON list, a corrupt PNG, a file that does not exist): one line
    each on stderr, the good workflow beside them still checked, exit 2."""
    good = tmp_path / "ui.json"
    good.write_text(json.dumps(UI_WORKFLOW))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2, 3]")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    proc = cli(
        tmp_path, comfy, "check", "--json", str(listed), str(good), str(broken),
        str(tmp_path / "nope.json"),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 3 and "Traceback" not in proc.stderr
    assert [json.loads(line)["status"] for line in proc.stdout.splitlines()] == ["present"]


def test_the_feed_checks_a_workflow_object(tmp_path: Path, comfy: Path) -> None:
    """Through a daemon's feed: {"cmd": "check", "workflow": OBJECT} answers the models,
    without the workflow field; anything but a workflow is bad_request."""
    daemon = comfy_daemon(tmp_path, comfy, database=catalog_url(tmp_path)).start()
    try:
        with connect(f"ws://{daemon.address}/ws") as ws:
            json.loads(ws.recv(10))
            reply = request_sync(ws, "check", workflow=API_WORKFLOW)
            assert reply["ok"], reply
            models = reply["result"]["models"]
            assert {m["name"]: m["status"] for m in models} == {
                "sdxl/base.safetensors": "present",
                "ink.safetensors": "elsewhere",
                "gone.safetensors": "missing",
                "4x.pth": "unknown",
            }
            assert all("workflow" not in m for m in models)
            bad = request_sync(ws, "check", workflow=[1, 2])
            assert bad["error"]["code"] == "bad_request"
    finally:
        daemon.stop()
