"""A ComfyUI install as roots: its folders catalogued once, files tagged by category, through
the real command line and a real daemon."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.comfy import catalog_url, comfy_daemon
from tests.conftest import OLD_NS, write
from tests.harness import listed_by_path, request_sync, run_cli, wait_for


@pytest.fixture
def comfy(tmp_path: Path) -> Path:
    """A ComfyUI install with models, an output checkpoint and an extra model folder."""
    base = tmp_path / "ComfyUI"
    write(base / "main.py", "# ComfyUI\n", OLD_NS)
    write(base / "models" / "checkpoints" / "sdxl" / "base.safetensors", "ckpt", OLD_NS)
    write(base / "models" / "checkpoints" / "notes.txt", "not a model", OLD_NS)
    write(base / "models" / "unet" / "flux.safetensors", "unet", OLD_NS)
    write(base / "models" / "configs" / "v1.yaml", "cfg", OLD_NS)
    write(base / "models" / "loras" / "style.safetensors", "lora", OLD_NS)
    write(base / "input" / "photo.png", "png", OLD_NS)
    write(base / "output" / "checkpoints" / "merged.safetensors", "merged", OLD_NS)
    write(tmp_path / "shared" / "lora" / "far.safetensors", "far", OLD_NS)
    (base / "extra_model_paths.yaml").write_text(
        "other:\n    base_path: ../shared\n    loras: lora\n"
    )
    return base


def cli(tmp_path: Path, *args: str, ok: bool = True) -> Any:
    proc = run_cli(*args, "--db", catalog_url(tmp_path))
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def listed(tmp_path: Path, comfy: Path) -> dict[str, dict[str, Any]]:
    return listed_by_path(cli(tmp_path, "ls", "--json", "--comfyui", str(comfy)).stdout)


def test_an_install_is_catalogued_as_its_roots_with_category_tags(
    tmp_path: Path, comfy: Path
) -> None:
    """--comfyui makes the install's folders and its extra model folder roots; each file
    is catalogued once, tagged model_type:CATEGORY where ComfyUI would list it (aliases
    resolved, extensions checked), and its Location names category and loader path."""
    cli(tmp_path, "scan", "--comfyui", str(comfy))
    items = listed(tmp_path, comfy)
    assert {i["root"] for i in items.values()} == {"models", "input", "output", "other-loras"}
    assert len(items) == 8
    base = items[str(comfy / "models" / "checkpoints" / "sdxl" / "base.safetensors")]
    assert "model_type:checkpoints" in base["tags"]
    assert base["comfyui"] == {"category": "checkpoints", "loader_path": "sdxl/base.safetensors"}
    notes = items[str(comfy / "models" / "checkpoints" / "notes.txt")]
    assert "comfyui" not in notes and not any(t.startswith("model_type:") for t in notes["tags"])
    flux = items[str(comfy / "models" / "unet" / "flux.safetensors")]
    assert flux["comfyui"]["category"] == "diffusion_models"
    assert "model_type:diffusion_models" in flux["tags"]
    assert "model_type:configs" in items[str(comfy / "models" / "configs" / "v1.yaml")]["tags"]
    merged = items[str(comfy / "output" / "checkpoints" / "merged.safetensors")]
    assert merged["root"] == "output" and "model_type:checkpoints" in merged["tags"]
    far = items[str(tmp_path / "shared" / "lora" / "far.safetensors")]
    assert far["comfyui"] == {"category": "loras", "loader_path": "far.safetensors"}
    by_tag = cli(tmp_path, "ls", "--json", "--comfyui", str(comfy), "--tag", "model_type:loras")
    assert sorted(listed_by_path(by_tag.stdout)) == sorted(
        [str(comfy / "models" / "loras" / "style.safetensors"), far["path"]]
    )
    refused = cli(tmp_path, "tag", "rm", base["path"], "model_type:checkpoints", ok=False)
    assert refused.returncode == 2 and "automatic" in refused.stderr


def test_configuring_an_install_later_retags_what_is_catalogued(
    tmp_path: Path, comfy: Path
) -> None:
    """A catalog made with plain roots gains the category tags once the same folders are
    an install's roots, with nothing read again; dropping the install drops the tags."""
    plain = ["--root", f"models={comfy / 'models'}"]
    cli(tmp_path, "scan", *plain)
    path = str(comfy / "models" / "loras" / "style.safetensors")
    hash_before = listed_by_path(cli(tmp_path, "ls", "--json", *plain).stdout)[path]["hash"]
    cli(tmp_path, "scan", "--comfyui", str(comfy))
    item = listed(tmp_path, comfy)[path]
    assert "model_type:loras" in item["tags"] and item["hash"] == hash_before
    cli(tmp_path, "scan", *plain)
    again = listed_by_path(cli(tmp_path, "ls", "--json", *plain).stdout)[path]
    assert not any(t.startswith("model_type:") for t in again["tags"])


@pytest.mark.parametrize(
    ("yaml_text", "says"),
    [
        ("a: [unclosed\n", "extra_model_paths.yaml"),
        ("- just\n- a list\n", "extra_model_paths.yaml"),
        ("other: 3\n", "other"),
    ],
    ids=["not-yaml", "not-a-mapping", "section-not-a-mapping"],
)
def test_a_bad_extra_model_paths_file_is_one_line_and_writes_nothing(
    tmp_path: Path, comfy: Path, yaml_text: str, says: str
) -> None:
    """A YAML ComfyUI could not use: exit 2, one line naming the file, no catalog made."""
    (comfy / "extra_model_paths.yaml").write_text(yaml_text)
    proc = cli(tmp_path, "scan", "--comfyui", str(comfy), ok=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "state").exists()


def test_a_folder_that_is_not_an_install_is_refused(tmp_path: Path) -> None:
    """--comfyui naming a folder without main.py: exit 2 with what to give instead."""
    (tmp_path / "empty").mkdir()
    proc = cli(tmp_path, "scan", "--comfyui", str(tmp_path / "empty"), ok=False)
    assert proc.returncode == 2 and "main.py" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_a_missing_extra_folder_is_an_offline_root(tmp_path: Path, comfy: Path) -> None:
    """A folder the YAML names that does not exist is a root, offline, not an error."""
    (comfy / "extra_model_paths.yaml").write_text(
        "gone:\n    base_path: /nonexistent/assetd-test\n    vae: vae\n"
    )
    proc = cli(tmp_path, "scan", "--comfyui", str(comfy))
    assert "gone-vae" in proc.stderr  # said offline
    assert len(listed(tmp_path, comfy)) == 7


def test_a_live_daemon_tags_a_new_model_by_its_category(tmp_path: Path, comfy: Path) -> None:
    """With [comfyui] path, a model dropped into loras/ reaches the feed tagged
    model_type:loras with its loader path."""
    daemon = comfy_daemon(tmp_path, comfy, database=catalog_url(tmp_path)).start()
    try:
        with connect(f"ws://{daemon.address}/ws") as ws:
            json.loads(ws.recv(10))
            assert request_sync(ws, "subscribe")["ok"]
            new = write(comfy / "models" / "loras" / "anime" / "new.safetensors", "new", OLD_NS)
            seen: list[dict[str, Any]] = []

            def hashed() -> bool:
                message = json.loads(ws.recv(10))
                if message.get("type") == "change" and message["location"]["path"] == str(new):
                    seen.append(message["location"])
                return bool(seen) and seen[-1]["hash"] is not None

            wait_for(hashed, 20, "the new lora in the feed with its hash")
        location = seen[-1]
        assert "model_type:loras" in location["tags"] and "anime" in location["tags"]
        assert location["comfyui"] == {"category": "loras", "loader_path": "anime/new.safetensors"}
    finally:
        daemon.stop()
    assert os.path.exists(new)


def test_extra_model_paths_of_every_shape_become_roots_and_categories(
    tmp_path: Path, comfy: Path
) -> None:
    """A YAML with $VARS and ~ in base_path, a `|` block of several folders, one folder
    for two categories, and is_default: each folder is a root once, its files tagged by
    every category that lists them."""
    a1111, home = tmp_path / "a1111", tmp_path / "home"
    write(a1111 / "models" / "Stable-diffusion" / "sd15.safetensors", "sd", OLD_NS)
    write(a1111 / "models" / "Stable-diffusion" / "v1-inference.yaml", "cfg", OLD_NS)
    write(a1111 / "models" / "Lora" / "a.safetensors", "a", OLD_NS)
    write(a1111 / "models" / "LyCORIS" / "b.safetensors", "b", OLD_NS)
    write(home / "comfy-extra" / "ckpts" / "c.safetensors", "c", OLD_NS)
    (comfy / "extra_model_paths.yaml").write_text(
        "a111:\n"
        "    base_path: $A1111_HOME\n"
        "    checkpoints: models/Stable-diffusion\n"
        "    configs: models/Stable-diffusion\n"
        "    loras: |\n"
        "        models/Lora\n"
        "        models/LyCORIS\n"
        "mine:\n"
        "    base_path: ~/comfy-extra\n"
        "    is_default: true\n"
        "    checkpoints: ckpts\n"
    )
    db = ["--db", catalog_url(tmp_path), "--comfyui", str(comfy)]
    env = {"A1111_HOME": str(a1111), "HOME": str(home)}
    assert run_cli("scan", *db, env=env).returncode == 0
    items = listed_by_path(run_cli("ls", "--json", *db, env=env).stdout)

    def item(path: Path) -> dict[str, Any]:
        return items[str(path)]

    sd = item(a1111 / "models" / "Stable-diffusion" / "sd15.safetensors")
    config = item(a1111 / "models" / "Stable-diffusion" / "v1-inference.yaml")
    assert sd["root"] == config["root"]
    assert "model_type:checkpoints" in sd["tags"] and "model_type:configs" not in sd["tags"]
    assert "model_type:configs" in config["tags"]
    lycoris = item(a1111 / "models" / "LyCORIS" / "b.safetensors")
    lora = item(a1111 / "models" / "Lora" / "a.safetensors")
    assert lycoris["root"] != lora["root"]
    assert all("model_type:loras" in i["tags"] for i in (lora, lycoris))
    mine = item(home / "comfy-extra" / "ckpts" / "c.safetensors")
    assert mine["comfyui"] == {"category": "checkpoints", "loader_path": "c.safetensors"}
    assert {sd["root"], lora["root"], lycoris["root"], mine["root"]} == {
        "a111-checkpoints",
        "a111-loras",
        "a111-loras-2",
        "mine-checkpoints",
    }


def test_sighup_takes_an_edited_extra_model_paths_file(tmp_path: Path, comfy: Path) -> None:
    """An extra_model_paths.yaml edited while the daemon runs: after SIGHUP the folder it
    now names as a category tags its files (catalogued before, not read again), and a
    file dropped there afterwards is tagged live."""
    old = write(comfy / "models" / "mine" / "old.safetensors", "old", OLD_NS)
    daemon = comfy_daemon(tmp_path, comfy).start()
    try:
        daemon.until(old, "hashed", lambda i: i["hash"] is not None)
        assert "model_type:loras" not in daemon.item(old)["tags"]
        (comfy / "extra_model_paths.yaml").write_text(
            "other:\n    base_path: ../shared\n    loras: |\n        lora\n"
            f"        {comfy}/models/mine\n"
        )
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.until(old, "retagged", lambda i: "model_type:loras" in i["tags"])
        new = write(comfy / "models" / "mine" / "new.safetensors", "new", OLD_NS)
        daemon.until(new, "tagged live", lambda i: "model_type:loras" in i["tags"])
    finally:
        daemon.stop()
