"""Thumbnails: each format, broken images, the cache and its bound, and /api/thumb."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import pytest
from PIL import Image

from assetd.config import load_config, state_directory
from assetd.exceptions import ConfigError
from assetd.thumbs import Thumbnailer, render
from tests.harness import OLD_NS, write
from tests.test_content import live, request


def image_bytes(
    fmt: str, mode: str = "RGB", size: tuple[int, int] = (640, 480), **kw: Any
) -> bytes:
    colour: Any = {"RGBA": (255, 0, 0, 128), "LA": (128, 128)}.get(mode, 128)
    if mode in ("RGB", "CMYK", "P"):
        colour = "red"
    im = Image.new(mode, size, colour)
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims a huge image (its data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def opened(im: bytes) -> Image.Image:
    return Image.open(io.BytesIO(im))


# -- making one ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (image_bytes("PNG"), "image/jpeg"),
        (image_bytes("PNG", "RGBA"), "image/webp"),
        (image_bytes("PNG", "LA"), "image/webp"),
        (image_bytes("PNG", "I;16"), "image/jpeg"),
        (image_bytes("PNG", "1"), "image/jpeg"),
        (image_bytes("JPEG"), "image/jpeg"),
        (image_bytes("JPEG", "CMYK"), "image/jpeg"),
        (image_bytes("JPEG", "L"), "image/jpeg"),
        (image_bytes("WEBP"), "image/jpeg"),
        (image_bytes("WEBP", "RGBA"), "image/webp"),
        (image_bytes("GIF", "P"), "image/jpeg"),
        (image_bytes("GIF", "P", transparency=0), "image/webp"),
        (image_bytes("BMP"), "image/jpeg"),
        (image_bytes("TIFF"), "image/jpeg"),
        (image_bytes("TIFF", "CMYK"), "image/jpeg"),
    ],
)
def test_each_format(data: bytes, kind: str) -> None:
    """PNG, JPEG, WebP, GIF, BMP, TIFF in their modes: a JPEG, or a WebP where there is
    transparency, at most the size on its long side, the shape kept."""
    made, got = render(io.BytesIO(data), 128)
    assert got == kind
    im = opened(made)
    assert im.format == ("WEBP" if kind == "image/webp" else "JPEG")
    assert im.size == (128, 96)
    assert im.mode in (("RGB", "RGBA") if kind == "image/webp" else ("RGB",))  # opaque: no A


def test_alpha_is_kept() -> None:
    """A transparent pixel stays transparent in the WebP."""
    im = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    out = io.BytesIO()
    im.save(out, "PNG")
    made, _ = render(io.BytesIO(out.getvalue()), 64)
    alpha = opened(made).getchannel("A")
    assert alpha.getextrema() == (0, 0)


def test_cmyk_becomes_rgb_colours() -> None:
    """A CMYK JPEG's red comes out red, not inverted."""
    im = Image.new("RGB", (64, 64), (255, 0, 0)).convert("CMYK")
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95)
    made, _ = render(io.BytesIO(out.getvalue()), 32)
    r, g, b = opened(made).convert("RGB").getpixel((16, 16))  # type: ignore[misc]
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied() -> None:
    """A JPEG whose EXIF says "rotated 90°" comes out upright (its sides swapped)."""
    im = Image.new("RGB", (400, 200), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif)
    made, _ = render(io.BytesIO(out.getvalue()), 100)
    assert opened(made).size == (50, 100)


def test_animation_gives_its_first_frame() -> None:
    """An animated GIF: its first frame."""
    frames = [Image.new("RGB", (80, 80), c) for c in ("red", "lime", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    made, _ = render(io.BytesIO(out.getvalue()), 40)
    r, g, b = opened(made).convert("RGB").getpixel((20, 20))  # type: ignore[misc]
    assert r > 200 and g < 60 and b < 60


def test_small_images_are_not_enlarged() -> None:
    """An image smaller than the size keeps its size."""
    made, _ = render(io.BytesIO(image_bytes("PNG", size=(40, 20))), 256)
    assert opened(made).size == (40, 20)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\nnot really",
        image_bytes("JPEG", size=(800, 600))[:2000],  # truncated
        b"%!PS-Adobe-3.0 EPSF-3.0\n",  # a format no decoder here may read
        b"",
    ],
)
def test_broken_images_raise(data: bytes) -> None:
    """Corrupt, truncated, a decompression bomb, another format: an exception, at once."""
    with pytest.raises(Exception):  # noqa: B017 (Pillow raises several kinds)
        render(io.BytesIO(data), 128)


@pytest.mark.parametrize("side", [100_000, 10_000])  # over twice MAX_IMAGE_PIXELS, and just over
def test_a_bomb_is_refused(side: int) -> None:
    """A header claiming more than Image.MAX_IMAGE_PIXELS: refused before any decode."""
    with pytest.raises((Image.DecompressionBombError, Image.DecompressionBombWarning)):
        render(io.BytesIO(bomb_png(side, side)), 128)


# -- the Thumbnailer -------------------------------------------------------------------


class Source:
    """An opener of ``data`` that counts its calls."""

    def __init__(self, data: bytes, gate: threading.Event | None = None) -> None:
        self.data, self.gate, self.opens = data, gate, 0

    def __call__(self) -> IO[bytes]:
        self.opens += 1
        if self.gate is not None:
            self.gate.wait(10)
        return io.BytesIO(self.data)


def get(t: Thumbnailer, key: str, size: int, source: Callable[[], IO[bytes] | None]) -> Any:
    return asyncio.run(t.get(key, size, source, key))


@pytest.fixture
def thumbnailer(tmp_path: Path) -> Any:
    made: list[Thumbnailer] = []

    def make(**kwargs: Any) -> Thumbnailer:
        made.append(Thumbnailer(tmp_path / "thumbs", **kwargs))
        return made[-1]

    yield make
    for t in made:
        t.shutdown()


def test_made_once_then_from_the_cache(tmp_path: Path, thumbnailer: Any) -> None:
    """The second request reads the kept file: no decode, the source not even opened;
    a new Thumbnailer on the same folder finds it too."""
    t = thumbnailer()
    source = Source(image_bytes("PNG"))
    first = get(t, "blake3-ab12", 64, source)
    assert first is not None and t.made == 1
    assert get(t, "blake3-ab12", 64, source) == first
    assert (t.made, source.opens) == (1, 1)
    assert get(t, "blake3-ab12", 128, source) != first and t.made == 2  # another size
    again = thumbnailer()
    assert get(again, "blake3-ab12", 64, source) == first and again.made == 0
    files = [p for p in (tmp_path / "thumbs").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["blake3-ab12-128", "blake3-ab12-64"]


def test_concurrent_requests_make_it_once(thumbnailer: Any) -> None:
    """Ten requests at once for one thumbnail: one decode, ten answers."""
    t = thumbnailer()
    gate = threading.Event()
    source = Source(image_bytes("PNG"), gate)

    async def many() -> list[Any]:
        tasks = [asyncio.ensure_future(t.get("k1", 64, source, "k1")) for _ in range(10)]
        deadline = asyncio.get_running_loop().time() + 10
        while source.opens == 0:  # every request is in before the decode may go on
            assert asyncio.get_running_loop().time() < deadline, "the decode did not start"
            await asyncio.sleep(0.01)
        gate.set()
        return await asyncio.gather(*tasks)

    answers = asyncio.run(many())
    assert len({a[0] for a in answers}) == 1 and answers[0] is not None
    assert (t.made, source.opens) == (1, 1)


def test_failures_are_remembered(thumbnailer: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A corrupt image: None with one warning, and it is not decoded again."""
    t = thumbnailer()
    source = Source(b"\x89PNG\r\n\x1a\ngarbage")
    with caplog.at_level("WARNING"):
        assert get(t, "bad", 64, source) is None
        assert get(t, "bad", 64, source) is None
    assert source.opens == 1
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "no thumbnail of bad" in warnings[0].getMessage()


def test_a_file_that_no_longer_matches(thumbnailer: Any) -> None:
    """An opener that finds the file changed (None): no thumbnail, nothing kept."""
    t = thumbnailer()
    assert get(t, "gone", 64, lambda: None) is None and t.made == 0


def test_the_cache_is_bounded(tmp_path: Path, thumbnailer: Any) -> None:
    """Past its bound, the least recently used thumbnails go; one just read stays."""
    data = os.urandom(64)
    noise = Image.frombytes("RGB", (256, 256), (data * (256 * 256 * 3 // 64 + 1))[: 256 * 256 * 3])
    out = io.BytesIO()
    noise.save(out, "PNG")
    one = len(render(io.BytesIO(out.getvalue()), 256)[0])
    t = thumbnailer(max_bytes=one * 3 + one // 2)
    source = Source(out.getvalue())
    for i in range(3):
        get(t, f"k{i}", 256, source)
        path = tmp_path / "thumbs" / f"k{i}"[-2:] / f"k{i}-256"
        os.utime(path, (OLD_NS / 1e9 + i, OLD_NS / 1e9 + i))  # k0 oldest
    get(t, "k0", 256, source)  # a hit: k0 is now the newest
    get(t, "k3", 256, source)  # over the bound: k1 goes (the least recently used)
    kept = sorted(p.name for p in (tmp_path / "thumbs").rglob("*-256"))
    assert "k1-256" not in kept and {"k0-256", "k3-256"} <= set(kept)
    total = sum(p.stat().st_size for p in (tmp_path / "thumbs").rglob("*") if p.is_file())
    assert total <= t.max_bytes
    assert not list((tmp_path / "thumbs").rglob(".tmp-*"))  # no half-written files


def test_a_crashs_leftovers_are_cleaned(tmp_path: Path, thumbnailer: Any) -> None:
    """A temporary file left by a crash is removed when the folder is next scanned."""
    leftover = write(tmp_path / "thumbs" / "ab" / ".tmp-xyz", b"half", OLD_NS)
    t = thumbnailer()
    get(t, "k0", 64, Source(image_bytes("PNG")))
    assert not leftover.exists()


# -- /api/thumb ------------------------------------------------------------------------


def thumb_url(path: Path, size: int | None = None) -> str:
    url = f"/api/thumb?path={quote(str(path))}"
    return url if size is None else f"{url}&size={size}"


def test_api_thumb(tmp_path: Path, make_daemon: Any) -> None:
    """200 with a JPEG or WebP at most N px, ETag and 304; 400 for a size out of bounds;
    404 for a non-image, a corrupt or truncated image or a bomb (one warning each, and
    no traceback); made once, kept under the state directory."""
    root = tmp_path / "r"
    write(root / "a.png", image_bytes("PNG", size=(1000, 500)), OLD_NS)
    write(root / "alpha.webp", image_bytes("WEBP", "RGBA"), OLD_NS)
    write(root / "doc.txt", b"not an image", OLD_NS)
    write(root / "corrupt.png", b"\x89PNG\r\n\x1a\ngarbage", OLD_NS)
    write(root / "cut.jpg", image_bytes("JPEG", size=(800, 600))[:3000], OLD_NS)
    write(root / "bomb.png", bomb_png(), OLD_NS)
    write(root / "fake.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>", OLD_NS)
    d = make_daemon({"r": root}).start()
    for name in ("a.png", "alpha.webp", "doc.txt", "corrupt.png", "cut.jpg", "bomb.png"):
        live(d, root / name)
    status, headers, body = request(d.address, thumb_url(root / "a.png", 100))
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert opened(body).size == (100, 50)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"].startswith("private")
    etag = headers["ETag"]
    status, _, again = request(d.address, thumb_url(root / "a.png", 100))
    assert (status, again) == (200, body)
    status, headers, empty = request(
        d.address, thumb_url(root / "a.png", 100), headers={"If-None-Match": etag}
    )
    assert (status, empty, headers["ETag"]) == (304, b"", etag)
    status, headers, body = request(d.address, thumb_url(root / "a.png"))
    assert status == 200 and max(opened(body).size) == 256 and headers["ETag"] != etag
    status, headers, body = request(d.address, thumb_url(root / "alpha.webp", 64))
    assert status == 200 and headers["Content-Type"] == "image/webp"
    for size in (31, 1025):
        status, _, body = request(d.address, thumb_url(root / "a.png", size))
        assert status == 400 and b"32 to 1024" in body
    for name in ("doc.txt", "corrupt.png", "cut.jpg", "bomb.png", "fake.png", "none.png"):
        assert request(d.address, thumb_url(root / name))[0] == 404, name
        assert request(d.address, thumb_url(root / name))[0] == 404, name
    thumbs = tmp_path / "state" / "thumbs"
    kept = sorted(p.name for p in thumbs.rglob("*") if p.is_file())
    assert len(kept) == 3 and all(name.startswith("blake3-") for name in kept)
    log = d.log_text()
    for name in ("corrupt.png", "cut.jpg", "bomb.png"):
        assert log.count(f"no thumbnail of {root / name}") == 1, name
    assert "Traceback" not in log
    assert request(d.address, "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 256),
        ("thumb_cache_mb = 64\n", 64),
        ("thumb_cache_mb = 0\n", None),
        ('thumb_cache_mb = "x"\n', None),
    ],
)
def test_the_cache_bound_is_configured(tmp_path: Path, text: str, expected: int | None) -> None:
    """[feed] thumb_cache_mb: 256 by default, a positive number, else a config error."""
    config = write(tmp_path / "assetd.toml", "[feed]\n" + text)
    if expected is None:
        with pytest.raises(ConfigError, match="thumb_cache_mb"):
            load_config(config_file=str(config), env={})
    else:
        assert load_config(config_file=str(config), env={}).feed.thumb_cache_mb == expected


def test_the_state_directory(tmp_path: Path) -> None:
    """Thumbnails live beside a SQLite catalog, else in STATE_DIRECTORY, else XDG data."""
    assert state_directory(f"sqlite:///{tmp_path}/db/a.db", {}) == tmp_path / "db"
    pg = "postgresql://u@h/d"
    assert state_directory(pg, {"STATE_DIRECTORY": "/var/lib/assetd"}) == Path("/var/lib/assetd")
    assert state_directory(pg, {"XDG_DATA_HOME": "/home/u/.data"}) == Path("/home/u/.data/assetd")
