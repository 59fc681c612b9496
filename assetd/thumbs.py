"""Thumbnails of catalogued images: made once per content and size, kept on disk.

A :class:`Thumbnailer` owns a small pool of threads that decode images with Pillow, so
neither the event loop nor the catalog's writer ever waits on a decode. A thumbnail is
kept under ``thumbs/`` in the state directory as ``<key>-<size>``, written to a
temporary file and renamed, so a crash or two requests at once never leave half a file;
a hit touches its file's mtime, and once the folder outgrows its bound the least
recently used files go. Several requests for one thumbnail wait on the same decode; an
image that cannot be read is remembered and not decoded again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import logging
import os
import re
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO

from assetd.service import LiveFile

__all__ = [
    "CACHE_BYTES",
    "IMAGE_TYPES",
    "SIZE_DEFAULT",
    "SIZE_MAX",
    "SIZE_MIN",
    "Thumbnailer",
    "render",
]

log = logging.getLogger(__name__)

SIZE_MIN, SIZE_MAX, SIZE_DEFAULT = 32, 1024, 256  # pixels on the long side
CACHE_BYTES = 256 << 20  # the cache folder's bound by default
WORKERS = 2
FAILED_KEPT = 10_000  # unreadable images remembered (keys only: a few hundred KiB)
SHRINK_TO = 0.9  # eviction goes below the bound, so the next writes do not scan again
# The catalog's mime types of images, and the decoders Pillow may use for them: no other
# decoder ever sees a file (Pillow knows formats whose parsers are far less exercised).
IMAGE_TYPES = {
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/x-ms-bmp",
    "image/tiff",
}
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_KEY = re.compile(r"[0-9a-z-]+")
_TMP = ".tmp-"
TMP_STALE_S = 60.0  # a temporary file this old is a crash's leftover, not a write

Opener = Callable[[], IO[bytes] | None]
Made = tuple[bytes, str]  # the thumbnail's bytes and its Content-Type


def render(source: IO[bytes], size: int) -> Made:
    """A thumbnail at most ``size`` pixels on its long side: WebP where the image has
    transparency, else JPEG. Raises on anything Pillow cannot read, or a bomb."""
    from PIL import Image, ImageOps  # imported by the first thumbnail, not every command

    with Image.open(source, formats=FORMATS) as opened:
        im: Image.Image = opened
        if im.width * im.height > (Image.MAX_IMAGE_PIXELS or 0) > 0:  # whatever the filters
            raise Image.DecompressionBombError(f"{im.width}x{im.height} pixels is too many")
        if im.format == "JPEG":
            im.draft("RGB", (size, size))  # decode at 1/2, 1/4 or 1/8 scale when it can
        im = ImageOps.exif_transpose(im)
        alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            im.mode == "P" and "transparency" in im.info
        )
        if im.mode.startswith("I;16") or im.mode == "I":
            im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
        im = im.convert("RGBA" if alpha else "RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if alpha:
            im.save(out, "WEBP", quality=80, method=4)
            return out.getvalue(), "image/webp"
        im.save(out, "JPEG", quality=85, optimize=True)
        return out.getvalue(), "image/jpeg"


def content_type(data: bytes) -> str:
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else "image/jpeg"


class Thumbnailer:
    """Makes and keeps thumbnails under ``folder``; :meth:`get` from the event loop."""

    def __init__(
        self, folder: Path, *, max_bytes: int = CACHE_BYTES, workers: int = WORKERS
    ) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.made = 0  # decodes done: a hit must not add to it
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="thumbs")
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], concurrent.futures.Future[Made | None]] = {}
        self._failed: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._bytes: int | None = None  # the folder's size, once scanned
        # Pillow warns of an image over MAX_IMAGE_PIXELS and fails only at twice that; a
        # warning here is a failure too (the filter is the process's: no one else decodes).
        from PIL import Image

        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def key(live: LiveFile) -> str:
        """What names the content: its hash, or (not hashed yet) its stat."""
        key = (live.hash or "").replace(":", "-")  # blake3:HEX -> blake3-HEX
        if key and _KEY.fullmatch(key):
            return key
        return f"stat-{live.device}-{live.inode}-{live.size}-{live.mtime_ns}"

    async def get(self, key: str, size: int, open_source: Opener, name: str) -> Made | None:
        """The thumbnail of ``key`` at ``size``: from the cache, else made in the pool
        (once, however many ask); None when the image cannot be read."""
        cached = await asyncio.to_thread(self._cached, key, size)
        if cached is not None:
            return cached
        with self._lock:
            if (key, size) in self._failed:
                return None
            future = self._pending.get((key, size))
            started = future is None
            if future is None:
                future = self._pool.submit(self._make, key, size, open_source, name)
                self._pending[(key, size)] = future
        if started:  # outside the lock: a future done already calls back at once, here
            future.add_done_callback(lambda _: self._done(key, size))
        return await asyncio.wrap_future(future)

    def _done(self, key: str, size: int) -> None:
        with self._lock:
            self._pending.pop((key, size), None)

    def _file(self, key: str, size: int) -> Path:
        return self.folder / key[-2:] / f"{key}-{size}"  # 256 folders by the hash's end

    def _cached(self, key: str, size: int) -> Made | None:
        path = self._file(key, size)
        try:
            data = path.read_bytes()
            os.utime(path)  # the mtime says when it was last used
        except OSError:
            return None
        return data, content_type(data)

    def _make(self, key: str, size: int, open_source: Opener, name: str) -> Made | None:
        cached = self._cached(key, size)  # made by a request just before this one
        if cached is not None:
            return cached
        source = open_source()
        if source is None:
            return None
        try:
            with source:
                made = render(source, size)
        except Exception as exc:  # corrupt, truncated, a bomb, a format it is not
            log.warning("no thumbnail of %s: %s", name, exc or type(exc).__name__)
            with self._lock:
                self._failed[(key, size)] = None
                if len(self._failed) > FAILED_KEPT:
                    self._failed.popitem(last=False)
            return None
        with self._lock:
            self.made += 1
        try:
            self._store(key, size, made[0])
        except OSError as exc:  # a full disk costs the cache, not the answer
            log.warning("cannot keep a thumbnail in %s: %s", self.folder, exc.strerror)
        return made

    def _store(self, key: str, size: int, data: bytes) -> None:
        path = self._file(key, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with self._lock:
            if self._bytes is None:
                self._bytes = sum(size for _, size, _ in self._entries())
            else:
                self._bytes += len(data)
            if self._bytes > self.max_bytes:
                self._bytes = self._evict(int(self.max_bytes * SHRINK_TO))

    def _entries(self) -> list[tuple[float, int, str]]:
        """(mtime, size, path) of every kept thumbnail; leftovers of a crash removed."""
        found = []
        for sub in os.scandir(self.folder):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                try:
                    st = entry.stat(follow_symlinks=False)
                    if entry.name.startswith(_TMP):
                        if st.st_mtime < time.time() - TMP_STALE_S:
                            os.unlink(entry.path)
                        continue
                except OSError:
                    continue
                found.append((st.st_mtime, st.st_size, entry.path))
        return found

    def _evict(self, target: int) -> int:
        """Remove the least recently used thumbnails until at most ``target`` bytes are
        kept; the bytes that remain."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= target:
                break
            try:
                os.unlink(path)
                total -= size
            except OSError:
                pass
        return total
