"""A daemon over a ComfyUI install, as the ComfyUI tests start it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness import Daemon

__all__ = ["comfy_daemon"]


def comfy_daemon(tmp_path: Path, comfy: Path, **comfyui: str) -> Daemon:
    """A daemon (not started) whose configuration file names the install at ``comfy``,
    with more of ``[comfyui]`` from ``comfyui``; its feed on a free port."""
    config = tmp_path / "assetd.toml"
    database = f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"
    table = {"path": str(comfy), **comfyui}
    config.write_text(
        f"[daemon]\ndatabase = {json.dumps(database)}\n[comfyui]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())
        + '[feed]\nlisten = "127.0.0.1:0"\n'
    )
    return Daemon(tmp_path, {}, config=config)
