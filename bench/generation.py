"""What reading a ComfyUI output's generation adds to hashing it.

    python -m bench.generation [COUNT]

Writes COUNT (1,000) PNGs as ComfyUI's SaveImage does (a ``prompt`` chunk, an API graph
of a checkpoint, a LoRA and two text encoders, and a ``workflow`` chunk, ComfyUI's FLUX.2
template of 48 KiB), 256×256 noise (``BENCH_SIDE=1024``: 1024×1024), then hashes them
all with :func:`hash_file` in this process, with the read and without it (no suffix
marks a file as one to read), alternately, four times each, page cache warm. Prints
each run and the medians.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import comfyui_workflow_templates_json as templates
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import assetd.hashing as hashing
from tests.comfy import SAVED_PROMPT as PROMPT

RUNS = 4
SIDE = int(os.environ.get("BENCH_SIDE", "256"))  # the images are SIDE×SIDE


def main(count: int) -> None:
    workflow = (
        Path(templates.__file__).parent / "templates" / "image_flux2_text_to_image.json"
    ).read_text()
    with tempfile.TemporaryDirectory() as folder:
        info = PngInfo()
        info.add_text("prompt", json.dumps(PROMPT))
        info.add_text("workflow", workflow)
        image = Image.effect_noise((SIDE, SIDE), 40).convert("RGB")
        paths = []
        for i in range(count):
            path = Path(folder) / f"ComfyUI_{i:05}_.png"
            image.save(path, pnginfo=info, compress_level=1)
            paths.append(os.fsencode(path))
        size = sum(os.path.getsize(p) for p in paths) / count
        print(
            f"{count} PNGs of {size / 1024:.0f} KiB, workflow chunk {len(workflow) / 1024:.0f} KiB"
        )
        for path in paths:
            hashing.hash_file(path)  # the page cache, and the imports
        times: dict[str, list[float]] = {"with": [], "without": []}
        read = hashing.GENERATION_SUFFIXES
        for run in range(RUNS):
            for mode in ("with", "without") if run % 2 == 0 else ("without", "with"):
                hashing.GENERATION_SUFFIXES = read if mode == "with" else ()
                start = time.perf_counter()
                for path in paths:
                    hashing.hash_file(path)
                times[mode].append(time.perf_counter() - start)
        hashing.GENERATION_SUFFIXES = read
    for mode, seconds in times.items():
        runs = " ".join(f"{s * 1000:.0f}" for s in seconds)
        print(f"{mode:>7}: {runs} ms; median {statistics.median(seconds) * 1000:.0f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
