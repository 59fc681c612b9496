"""What made a ComfyUI output is read once, as its file is hashed, and kept on its asset:
in threads and worker processes, by a real daemon, in a catalog upgraded from version 10."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import assetd.comfyui.outputs
from assetd.apply import Tally, apply_hashes, apply_observations, observe
from assetd.catalog import Catalog
from assetd.decide import CachedState, FileStat
from assetd.hashing import HashOutcome, hash_file, hash_one
from assetd.hashpool import HashPool
from tests.comfy import SAVED_PROMPT as PROMPT
from tests.conftest import OLD_NS, write

WORKFLOW = {
    "nodes": [{"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["other.safetensors"]}],
    "links": [],
}
MADE = {
    "models": [
        {"name": "sdxl/base.safetensors", "category": "checkpoints"},
        {"name": "ink.safetensors", "category": "loras"},
    ],
    "prompt": "a paper crane",
}


def comfy_png(path: Path, size: int = 64) -> Path:
    """A PNG as ComfyUI's SaveImage writes it: ``prompt`` and ``workflow`` tEXt chunks."""
    info = PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    info.add_text("workflow", json.dumps(WORKFLOW))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise((size, size), 40).convert("RGB").save(path, pnginfo=info)
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return path


def broken_png(path: Path) -> Path:
    """A PNG whose ``prompt`` is a zTXt chunk that does not inflate, then cut short."""
    good = comfy_png(path.with_suffix(".tmp.png")).read_bytes()
    path.with_suffix(".tmp.png").unlink()
    keyword = b"prompt\0\0"
    chunk = keyword + b"not deflate data"
    bad = len(chunk).to_bytes(4, "big") + b"zTXt" + chunk + zlib.crc32(b"zTXt" + chunk).to_bytes(4)
    return write(path, good[:33] + bad + good[33:200], OLD_NS)


def state(path: Path) -> CachedState:
    st = FileStat.from_os(os.stat(path))
    return CachedState(1, os.fsencode(path), "r", 1, st, True, False)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The calls to the reader of embedded graphs, recorded."""
    calls: list[int] = []
    real = assetd.comfyui.outputs.read_generation

    def recording(fd: int) -> str | None:
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(assetd.comfyui.outputs, "read_generation", recording)
    return calls


def test_only_png_and_webp_files_pay_for_the_read(tmp_path: Path, reads: list[int]) -> None:
    """Hashing a file that is not named .png or .webp never opens the reader of embedded
    graphs, however large; a .png (and a .WEBP) does, and its result carries what it read."""
    for name in ("model.safetensors", "notes.txt", "image.png.part", "png"):
        result = hash_file(os.fsencode(write(tmp_path / name, os.urandom(3 << 20), OLD_NS)))
        assert result.generation is None
    assert reads == []
    result = hash_file(os.fsencode(comfy_png(tmp_path / "out.png")))
    assert json.loads(result.generation or "null") == MADE
    hash_file(os.fsencode(write(tmp_path / "anim.WEBP", b"RIFF\0\0\0\0WEBP", OLD_NS)))
    assert len(reads) == 2


def test_bad_metadata_never_fails_the_hash(tmp_path: Path) -> None:
    """A PNG whose text chunk does not inflate and which is cut short hashes as its bytes
    do, with no generation; so does a .png that is no PNG at all."""
    for path in (broken_png(tmp_path / "broken.png"), write(tmp_path / "fake.png", b"x" * 99)):
        outcome = hash_one(state(path))
        assert outcome.error is None and outcome.result is not None
        assert outcome.result.hash == "blake3:" + blake3(path.read_bytes()).hexdigest()
        assert outcome.result.generation is None


def test_worker_processes_carry_the_generation_back(tmp_path: Path) -> None:
    """A batch big enough for worker processes comes back with each PNG's generation
    (it crossed the pipe), the same as hashing in this process gives."""
    paths = [comfy_png(tmp_path / f"ComfyUI_{i:05}_.png", 16 + i) for i in range(12)]
    paths += [write(tmp_path / f"f{i}.bin", os.urandom(100), OLD_NS) for i in range(12)]
    pool = HashPool(processes=1, process_min=8)
    try:
        outcomes = pool.run([state(p) for p in paths])
        assert pool.worker_pids(), "the batch should have gone to a worker process"
    finally:
        pool.close()
    by_path = {o.state.path: o for o in outcomes}
    for path in paths:
        result = by_path[os.fsencode(path)].result
        assert result is not None and result == hash_file(os.fsencode(path))
        made = json.loads(result.generation) if result.generation else None
        assert made == (MADE if path.suffix == ".png" else None)


def test_an_upgraded_version_10_catalog_keeps_generations(tmp_path: Path) -> None:
    """A catalog at schema version 10 gains the column on upgrade; content hashed before
    stays without a generation until hashed again, and a hash taken then writes it, as a
    new output's first hash does."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    old = comfy_png(tmp_path / "r" / "old.png")
    catalog = Catalog(url)
    apply_observations(catalog, [observe(os.fsencode(old), "r", state(old).stat, None)], Tally())
    before = catalog.get_state(os.fsencode(old))
    assert before is not None
    with catalog.write():  # as version 10 left it
        catalog.execute("ALTER TABLE asset DROP COLUMN generation")
        catalog.execute("UPDATE asset SET hash = ?", [hash_file(os.fsencode(old)).hash])
        catalog.execute("UPDATE catalog_info SET value = '10' WHERE key = 'schema_version'")
    catalog.close()

    upgraded = Catalog(url)
    assert upgraded.generation_of([before.asset_id]) == {}
    new = comfy_png(tmp_path / "r" / "new.png", 32)
    apply_observations(upgraded, [observe(os.fsencode(new), "r", state(new).stat, None)], Tally())
    states = upgraded.get_states([os.fsencode(old), os.fsencode(new)])
    outcomes = [hash_one(s) for s in states.values()]
    apply_hashes(upgraded, outcomes, Tally())
    states = upgraded.get_states([os.fsencode(old), os.fsencode(new)])
    ids = [s.asset_id for s in states.values()]
    assert upgraded.generation_of(ids) == {ids[0]: MADE, ids[1]: MADE}
    upgraded.close()


def test_a_copy_of_known_content_keeps_the_one_generation(tmp_path: Path) -> None:
    """A second location of content already hashed joins its asset: the asset keeps one
    generation, and an asset whose row says nothing is not mistaken for one."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    a = comfy_png(tmp_path / "r" / "a.png")
    b = write(tmp_path / "r" / "b.png", a.read_bytes(), OLD_NS)
    c = write(tmp_path / "r" / "c.bin", b"plain", OLD_NS)
    paths = [os.fsencode(p) for p in (a, b, c)]
    apply_observations(
        catalog, [observe(p, "r", state(Path(os.fsdecode(p))).stat, None) for p in paths], Tally()
    )
    for path in paths:  # one at a time: the copy finds the content hashed
        outcome: HashOutcome = hash_one(catalog.get_states([path])[path])
        apply_hashes(catalog, [outcome], Tally())
    states = catalog.get_states(paths)
    assert states[paths[0]].asset_id == states[paths[1]].asset_id
    found = catalog.generation_of([s.asset_id for s in states.values()] + [999])
    assert found == {states[paths[0]].asset_id: MADE}
    catalog.close()


def test_a_daemon_keeps_what_made_each_output(make_daemon: Any, tmp_path: Path) -> None:
    """A real daemon hashes ComfyUI PNGs found by its first pass and written while it
    runs, and keeps their models and prompt; a PNG with bad chunks is hashed as any file
    is, with no generation."""
    root = tmp_path / "r"
    first = comfy_png(root / "output" / "ComfyUI_00001_.png")
    d = make_daemon().start()
    later = comfy_png(root / "output" / "ComfyUI_00002_.png", 80)
    broken = broken_png(root / "output" / "broken.png")
    plain = write(root / "notes.txt", b"no image", OLD_NS)
    items = {p: d.until(p, "hashed", lambda i: i["hash"]) for p in (first, later, broken, plain)}
    made: dict[int, Any] = d.catalog.generation_of(i["asset_id"] for i in items.values())
    assert made == {items[first]["asset_id"]: MADE, items[later]["asset_id"]: MADE}
    assert items[broken]["hash"] == "blake3:" + blake3(broken.read_bytes()).hexdigest()
    address = d.address
    for path, expected in ((first, MADE), (plain, None)):
        quoted = urllib.parse.quote(str(path))
        with urllib.request.urlopen(f"http://{address}/api/location?path={quoted}") as reply:
            assert json.loads(reply.read())["generation"] == expected
