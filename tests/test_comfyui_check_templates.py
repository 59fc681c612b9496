"""`assetd check` over ComfyUI's own workflow templates (the PyPI package), with each model
they name placed, misplaced, deleted or absent in a real catalog of a real install."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from pathlib import Path

import comfyui_workflow_templates_json as templates_package

from assetd.comfyui.install import load_install
from assetd.comfyui.workflow import ModelRef, model_refs
from assetd.exceptions import InvalidRequestError
from tests.comfy import catalog_url
from tests.conftest import OLD_NS, write
from tests.harness import run_cli

TEMPLATES = Path(templates_package.__file__).parent / "templates"
FATES = ("placed", "misplaced", "deleted", "absent")
EXPECTED = {
    "placed": "present",
    "misplaced": "elsewhere",
    "deleted": "missing",
    "absent": "unknown",
}


def fate(ref: ModelRef) -> str:
    """Each file name its fate, the same for every workflow and category naming it."""
    return FATES[zlib.crc32(ref.name.rpartition("/")[2].encode()) % len(FATES)]


def workflows() -> dict[Path, list[ModelRef]]:
    found = {}
    for path in sorted(TEMPLATES.glob("*.json")):
        try:
            found[path] = model_refs(json.loads(path.read_text(encoding="utf-8")))
        except InvalidRequestError:
            continue  # the package's index files are lists of templates, not workflows
    return found


def test_the_templates_models_are_placed_misplaced_deleted_and_absent(tmp_path: Path) -> None:
    """Every model of every template whose category the install has, where ComfyUI's
    loader would look, is reported by its fate: present, elsewhere (with the misplaced
    copy among the candidates), missing (where it was) or unknown (with its URL)."""
    comfy = tmp_path / "ComfyUI"
    write(comfy / "main.py", "# ComfyUI\n", OLD_NS)
    install = load_install(str(comfy), env={})
    known = {folder.category for folder in install.categories}
    by_file = workflows()
    assert len(by_file) > 600
    judged: dict[tuple[str, str], ModelRef] = {}
    for refs in by_file.values():
        for ref in refs:
            folders = install.folders(ref.category) if ref.category in known else ()
            if folders and folders[0].accepts(ref.name.encode()):
                judged[(ref.category or "", ref.name)] = ref
    assert len(judged) > 200, "the templates should name hundreds of models"
    deleted = []
    for (category, name), ref in judged.items():
        content = f"{category}/{name}"
        # The category's first folder: where ComfyUI's loader looks first.
        home = Path(install.folders(category)[0].folder) / name
        match fate(ref):
            case "placed":
                write(home, content, OLD_NS)
            case "misplaced":
                write(comfy / "models" / "misplaced" / name.rpartition("/")[2], content, OLD_NS)
            case "deleted":
                deleted.append(write(home, content, OLD_NS))
    db = ["--db", catalog_url(tmp_path), "--comfyui", str(comfy)]
    assert run_cli("scan", *db).returncode == 0
    for path in deleted:
        path.unlink()
    assert run_cli("scan", *db).returncode == 0

    proc = run_cli("check", "--json", *db, *map(str, by_file))

    assert proc.returncode == 4, proc.stderr
    items = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(items) == sum(len(refs) for refs in by_file.values())
    outcome: Counter[str] = Counter()
    for item in items:
        key = (item["category"] or "", item["name"])
        ref = next(
            (r for r in by_file[Path(item["workflow"])] if (r.category, r.name) == key), None
        )
        if key not in judged or ref is None:
            continue  # a category this install has no folder for, or a custom node's file
        wanted = EXPECTED[fate(ref)]
        assert item["status"] == wanted, item
        outcome[wanted] += 1
        if wanted in ("present", "missing"):
            assert item["path"] == str(
                Path(install.folders(ref.category or "")[0].folder) / ref.name
            )
        if wanted == "elsewhere":
            misplaced = comfy / "models" / "misplaced" / ref.name.rpartition("/")[2]
            assert str(misplaced) in item["candidates"]
        if wanted == "unknown":
            assert item["url"] == ref.url
    assert all(outcome[status] > 20 for status in EXPECTED.values()), outcome
