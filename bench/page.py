"""The page rows: the asset browser in Chromium while files arrive in a burst.

With ``ASSETD_BENCH_SCREENSHOTS=1`` the row also saves the grid and the preview, over a
catalog of generated pictures, to docs/img/browser-grid.png and docs/img/browser-preview.png.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.rows import Row, commit_times, hashed_locations, latest_seq, make_small_files, vm_hwm_mib
from tests.harness import REPO, Daemon

__all__ = ["page"]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]

# Longest gap between two animation frames since the last reset, in the page itself.
FRAME_PROBE = """() => {
  const probe = { max: 0, last: null, frames: 0 };
  window.frameProbe = probe;
  const tick = (t) => {
    if (probe.last !== null) probe.max = Math.max(probe.max, t - probe.last);
    probe.last = t; probe.frames++;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""
RESET = "() => { window.frameProbe.max = 0; window.frameProbe.last = null; }"
FEED = "() => [Number(document.body.dataset.seq), window.assetdPage.feed.afresh]"


def page(tmp: Path, runs: int, quick: bool) -> list[Row]:
    """3,000 files of 3 KB in a burst with the page open: the longest frame gap in the
    page (beside the same page idle as long) and the time from the burst's end until its
    ``data-seq`` is the daemon's latest; then 50,000, listing afresh if far behind."""
    count, big = (300, 3000) if quick else (3000, 50_000)
    catalog = 1000 if quick else 100_000  # the locations already there when the burst comes
    burst = Row(f"page burst {count}", "longest frame gap <= 250 ms; caught up in a few s")
    afresh = Row(f"page afresh {big}", "caught up soon after the daemon, afresh if far behind")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        burst.note = afresh.note = "not run: needs playwright and chromium"
        return [burst, afresh]
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            for i in range(runs):
                _burst_run(browser, tmp, base, f"page{i}", count, burst, catalog)
            # Quick runs lower the page's threshold (far_behind) to see the fallback; at
            # full size the page falls back only if it falls that far behind.
            far = "?far_behind=500" if quick else ""
            _burst_run(browser, tmp, base, "page-big", big, afresh, catalog, far)
            if os.environ.get("ASSETD_BENCH_SCREENSHOTS"):
                screenshots(browser, tmp)
        finally:
            browser.close()
    return [burst, afresh]


def _burst_run(
    browser: Any,
    tmp: Path,
    base: Path,
    name: str,
    count: int,
    row: Row,
    catalog: int,
    query: str = "",
) -> None:
    work = Path(tempfile.mkdtemp(prefix="assetd-page-", dir=base))
    try:
        root = work / "r"
        make_small_files(root / "before", catalog, catalog // 100, 3000, 3000, seed=2)
        with _daemon(tmp, root, name) as daemon, _page(browser, daemon, query) as pg:
            start_seq = latest_seq(daemon.db_path)
            pg.evaluate(RESET)
            started = time.perf_counter()
            wall_end = _write_burst(root / "burst", count)
            ended = time.perf_counter()
            caught = _until_caught_up(pg, daemon.db_path, catalog + count)
            gap = pg.evaluate("() => window.frameProbe.max") / 1000
            seq, afreshes = pg.evaluate(FEED)
            last_commit = max(
                (commit_times(daemon.db_path, start_seq) or {start_seq: 0.0}).values()
            )
            changes = seq - start_seq
            pg.evaluate(RESET)  # the same page, idle, as long as the burst and its catching up
            time.sleep(caught - started)  # the idle reference's duration
            idle = pg.evaluate("() => window.frameProbe.max") / 1000
            row.rss_mib = max(row.rss_mib, vm_hwm_mib(daemon.proc.pid if daemon.proc else 0))
        if row.name.startswith("page burst"):
            row.assetd.append(gap)
            row.reference.setdefault("idle page", []).append(idle)
            row.note = (
                f"longest frame gap during the burst; {changes:,} changes; written in "
                f"{ended - started:.2f} s, daemon's last change {last_commit - wall_end:.2f} s "
                f"and page caught up {caught - ended:.2f} s after the burst's end; "
                f"{afreshes} lists afresh; {catalog:,} locations before the burst"
            )
        else:
            row.assetd.append(caught - ended)
            row.reference.setdefault("daemon's last change", []).append(
                max(last_commit - wall_end, 1e-3)
            )
            row.note = (
                f"burst end -> page caught up; {changes:,} changes, {afreshes} lists afresh; "
                f"longest frame gap {gap * 1000:.0f} ms (idle {idle * 1000:.0f} ms)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def _daemon(tmp: Path, root: Path | dict[str, Path], name: str) -> Iterator[Daemon]:
    roots = root if isinstance(root, dict) else {"r": root}
    daemon = Daemon(tmp, roots, database=f"sqlite:///{tmp / f'{name}.db'}", name=name)
    daemon.start(wait=False)
    try:
        daemon.wait_started(timeout=600)
        yield daemon
    finally:
        daemon.close()


@contextmanager
def _page(browser: Any, daemon: Daemon, query: str = "", width: int = 1280) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": width, "height": 800})
    try:
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(f"http://{daemon.address}/{query}")
        pg.wait_for_selector(".entry")
        pg.wait_for_function("() => document.body.dataset.seq !== ''")
        pg.evaluate(FRAME_PROBE)
        yield pg
    finally:
        context.close()


def _write_burst(folder: Path, count: int) -> float:
    """``count`` files of 3 KB, as fast as they can be written; the wall time at the end."""
    folder.mkdir(parents=True)
    content = os.urandom(3072)
    for i in range(count):
        with open(folder / f"burst{i:06}.bin", "wb") as fh:
            fh.write(content[:3064] + b"%08d" % i)
    return time.time()


def _until_caught_up(pg: Any, db: Path, files: int) -> float:
    """Wait until the daemon has every file hashed and the page's data-seq is its latest."""
    deadline = time.perf_counter() + 600
    while time.perf_counter() < deadline:
        if hashed_locations(db) >= files and pg.evaluate(FEED)[0] == latest_seq(db):
            return time.perf_counter()
        time.sleep(0.02)  # the poll's pace; the page runs in its own process
    raise RuntimeError("the page did not catch up within 600 s")


# -- screenshots -------------------------------------------------------------------------


def screenshots(browser: Any, tmp: Path) -> None:
    """The grid and the preview over a catalog of a few hundred generated pictures and
    some model files, saved under docs/img."""
    studio = tmp / "studio"
    roots = {"output": studio / "output", "models": studio / "models"}
    now = time.time_ns()
    make_pictures(roots["output"], 320, now)
    for i, name in enumerate(MODEL_NAMES):
        path = roots["models"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(4096 + i))
        os.utime(path, ns=(now - (30 + i) * 86_400 * 10**9,) * 2)
    picked = sorted(roots["output"].rglob("*.png"))[-3]
    (studio / "output" / "best").mkdir()
    shutil.copy2(picked, studio / "output" / "best" / picked.name)  # a second location
    out = REPO / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with _daemon(tmp, roots, "shots") as daemon, _page(browser, daemon, "", 1440) as pg:
        _thumbs_loaded(pg)  # by folder: the models' icons, then the pictures
        pg.screenshot(path=str(out / "browser-grid.png"))
        pg.select_option("#sort", "mtime")
        pg.click("#order")  # newest first
        pg.wait_for_function("() => !window.assetdPage.view.fetching")
        pg.set_viewport_size({"width": 1440, "height": 1100})
        pg.locator(f'.entry[data-path="{picked}"]').click()
        pg.wait_for_selector("#preview:not([hidden])")
        pg.wait_for_function("() => document.querySelectorAll('#pv-locations li').length > 1")
        for tag in ("favourite", "portfolio"):
            pg.fill("#pv-tag-input", tag)
            pg.press("#pv-tag-input", "Enter")
            pg.wait_for_selector(f'#pv-tags .tag[data-tag="{tag}"]')
        _thumbs_loaded(pg)
        pg.screenshot(path=str(out / "browser-preview.png"))


def _thumbs_loaded(pg: Any) -> None:
    pg.wait_for_function(
        "() => [...document.querySelectorAll('img')].every((i) => i.complete)", timeout=60_000
    )


MODEL_NAMES = [
    "checkpoints/sd_xl_base_1.0.safetensors",
    "checkpoints/dreamshaper_8.safetensors",
    "loras/watercolor_style.safetensors",
    "loras/film_grain_v2.safetensors",
    "vae/sdxl_vae.safetensors",
    "controlnet/control_canny.safetensors",
    "upscale_models/4x_ultrasharp.pth",
    "configs/v1-inference.yaml",
]

PROMPTS = [
    "a lighthouse at dusk, oil painting, warm light",
    "isometric city block, soft shadows, pastel colours",
    "portrait of an astronaut in a sunflower field, 35mm",
    "abstract shapes, bauhaus poster, bold primaries",
    "misty pine forest at dawn, volumetric light",
]


def make_pictures(folder: Path, count: int, now: int) -> None:
    """``count`` PNGs that look like a generator's output: gradients and shapes, each
    with a ComfyUI prompt (models and positive prompt) in its text chunk."""
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo

    rnd = random.Random(7)
    for i in range(count):
        day = folder / f"batch-{1 + i // 40:02}"
        day.mkdir(parents=True, exist_ok=True)
        w, h = rnd.choice([(512, 512), (512, 768), (768, 512)])
        top = tuple(rnd.randrange(256) for _ in range(3))
        bottom = tuple(rnd.randrange(256) for _ in range(3))
        mask = Image.linear_gradient("L").resize((w, h))
        img = Image.composite(Image.new("RGB", (w, h), bottom), Image.new("RGB", (w, h), top), mask)
        draw = ImageDraw.Draw(img)
        for _ in range(rnd.randint(3, 9)):
            x, y = rnd.randrange(w), rnd.randrange(h)
            r = rnd.randint(20, 160)
            fill = tuple(rnd.randrange(256) for _ in range(3))
            box = (x - r, y - r, x + r, y + r)
            shape = rnd.choice(["ellipse", "rectangle", "polygon"])
            if shape == "ellipse":
                draw.ellipse(box, fill=fill)
            elif shape == "rectangle":
                draw.rectangle(box, fill=fill)
            else:
                draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill)
        prompt = PROMPTS[i % len(PROMPTS)]
        info = PngInfo()
        info.add_text("prompt", json.dumps(comfy_prompt(prompt, MODEL_NAMES[i % 2].split("/")[1])))
        path = day / f"ComfyUI_{i:05}_.png"
        img.save(path, pnginfo=info)
        os.utime(path, ns=(now - (count - i) * 600 * 10**9,) * 2)


def comfy_prompt(text: str, checkpoint: str) -> dict[str, Any]:
    """A ComfyUI prompt (API format) as ComfyUI saves it beside an image."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": "watercolor_style.safetensors",
                "model": ["4", 0],
                "clip": ["4", 1],
            },
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["10", 1]}},
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "blurry, low quality", "clip": ["10", 1]},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {"model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "seed": 42},
        },
    }
