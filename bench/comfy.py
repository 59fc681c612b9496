"""The ComfyUI rows: the workflow check over ComfyUI's own templates against a big catalog."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.rows import Row, make_small_files, tag_every
from tests.comfy import comfy_daemon
from tests.harness import checkout_env

__all__ = ["asset_list", "workflow_check"]


def workflow_check(tmp: Path, runs: int, quick: bool) -> Row:
    """``check`` of every template in-process against a catalog of 100,000 locations
    (half the templates' models placed), beside ``find -name`` of one model file over
    the same install: what a user would do by hand for each model."""
    import comfyui_workflow_templates_json as package

    from assetd.catalog import Catalog
    from assetd.comfyui.check import check_workflow
    from assetd.comfyui.install import load_install
    from assetd.comfyui.workflow import model_refs
    from assetd.exceptions import InvalidRequestError

    count = 2000 if quick else 100_000
    row = Row(f"check {count}", "p50 <= 50 ms per workflow")
    comfy = tmp / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    (comfy / "main.py").write_text("# ComfyUI\n")
    make_small_files(comfy / "models" / "bulk", count, max(1, count // 1000), 0, 0, distinct=True)
    install = load_install(str(comfy), env={})
    workflows = []
    for path in sorted((Path(package.__file__).parent / "templates").glob("*.json")):
        try:
            workflow = json.loads(path.read_text(encoding="utf-8"))
            refs = model_refs(workflow)
        except InvalidRequestError:
            continue
        if refs:  # a workflow that needs no model costs nothing to check
            workflows.append(workflow)
        for i, ref in enumerate(refs):
            folders = install.folders(ref.category) if ref.category else ()
            if folders and i % 2 == 0:
                target = Path(folders[0].folder) / ref.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(ref.name)
    db = tmp / "check.db"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "assetd",
            "scan",
            "--db",
            f"sqlite:///{db}",
            "--comfyui",
            str(comfy),
        ],
        env=checkout_env(),
        check=True,
        capture_output=True,
    )
    catalog = Catalog(f"sqlite:///{db}", layer=install)
    times: list[float] = []
    row.reference["find -name"] = []
    try:
        for _ in range(runs):
            for workflow in workflows:
                started = time.perf_counter()
                check_workflow(catalog, install, workflow)
                times.append(time.perf_counter() - started)
            started = time.perf_counter()
            subprocess.run(
                ["find", str(comfy / "models"), "-name", "ae.safetensors"],
                check=True,
                capture_output=True,
            )
            row.reference["find -name"].append(time.perf_counter() - started)
    finally:
        catalog.close()
    times.sort()
    row.assetd = [statistics.median(times)]
    row.note = (
        f"{len(workflows)} workflows that need models, {count} locations: per workflow p50 "
        f"{times[len(times) // 2] * 1000:.2f} ms, p99 {times[int(len(times) * 0.99)] * 1000:.2f} "
        f"ms, max {times[-1] * 1000:.2f} ms"
    )
    return row


def asset_list(tmp: Path, runs: int, quick: bool) -> Row:
    """ComfyUI's ``GET /api/assets`` with a tag filter over a catalog of 1,000,000
    locations, all of them checkpoints, 1,000 tagged ``pick``: a rare and a
    common tag, each a page of 100."""
    import urllib.request

    count = 10_000 if quick else 1_000_000
    row = Row(f"comfy list {count}", "list 100 by tag <= 20 ms p50")
    comfy = tmp / "ComfyUI-list"
    (comfy / "main.py").parent.mkdir(parents=True)
    (comfy / "main.py").write_text("# ComfyUI\n")
    bulk = comfy / "models" / "checkpoints"
    make_small_files(bulk, count, max(1, count // 1000), 0, 0, distinct=True)
    daemon = comfy_daemon(tmp, comfy)
    subprocess.run(
        [sys.executable, "-m", "assetd", "scan", *daemon.args()],
        env=checkout_env(),
        check=True,
        capture_output=True,
    )
    tag_every(daemon.db_path, bulk, count // 1000, "pick")  # 1,000 of them: a rare tag
    daemon.start(wait=True)
    try:
        runtime = json.loads(Path(str(daemon.db_path) + ".daemon").read_text())
        base = f"http://{runtime['comfyui_api']}/api/assets?limit=100&include_tags="
        times: dict[str, list[float]] = {"pick": [], "model_type:checkpoints": []}
        for _ in range(max(1, runs) * 10):
            for tag, seen in times.items():
                started = time.perf_counter()
                with urllib.request.urlopen(base + tag, timeout=30) as reply:
                    page = json.loads(reply.read())
                seen.append(time.perf_counter() - started)
                if len(page["assets"]) != 100:
                    raise RuntimeError(f"{tag}: {len(page['assets'])} assets, not 100")
    finally:
        daemon.stop()
    row.assetd = [statistics.median(times["pick"] + times["model_type:checkpoints"])]
    row.note = "; ".join(
        f"{tag}: p50 {statistics.median(t) * 1000:.1f} ms, max {max(t) * 1000:.1f} ms"
        for tag, t in times.items()
    )
    return row
