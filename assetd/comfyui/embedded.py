"""A ComfyUI workflow read from a file: its JSON, or the PNG or WebP that ComfyUI saved."""

from __future__ import annotations

import json
import os
import stat
import struct
import zlib
from typing import IO, Any

from assetd.exceptions import InvalidRequestError

__all__ = ["MAX_JSON_BYTES", "MAX_TEXT_BYTES", "read_texts", "read_workflow_file"]

# A workflow is kilobytes, rarely a few megabytes; a bigger file is not one, and reading
# a multi-gigabyte model named by mistake into memory would be the only harm it could do.
MAX_JSON_BYTES = 64 << 20
# The same bound for one text chunk of an image, after decompression.
MAX_TEXT_BYTES = 64 << 20

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
# ComfyUI embeds both; the UI format (``workflow``) has what the API format (``prompt``)
# lacks, such as each node's ``properties.models``, so it is preferred.
_KEYS = ("workflow", "prompt")
# EXIF field types that hold bytes: BYTE, ASCII, UNDEFINED.
_EXIF_BYTE_TYPES = (1, 2, 7)


def read_workflow_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The workflow in the file at ``path``, as a JSON object.

    Images are read without decoding their pixels: PNG text chunks, WebP EXIF. Raises
    :class:`InvalidRequestError` for a file that is unreadable or holds no workflow.
    """
    shown = os.fsdecode(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; for a file it changes nothing.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidRequestError(f"{shown}: cannot open: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRequestError(f"{shown}: not a regular file")
        with os.fdopen(fd, "rb") as file:
            fd = -1  # the file owns it now
            return _read(file, info.st_size, shown)
    except OSError as exc:
        raise InvalidRequestError(f"{shown}: cannot read: {exc.strerror}") from exc
    finally:
        if fd >= 0:
            os.close(fd)


def read_texts(file: IO[bytes], limit: int = MAX_TEXT_BYTES) -> dict[str, str]:
    """The ``workflow`` and ``prompt`` texts of the PNG or WebP open as ``file`` (read
    from its start, pixels skipped); a text longer than ``limit`` bytes is left out, and
    a file that is neither yields none. Raises ``OSError`` as reads do."""
    file.seek(0)
    head = file.read(12)
    if head.startswith(_PNG_SIGNATURE):
        return _png_texts(file, limit)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_texts(file, limit)
    return {}


def _read(file: IO[bytes], size: int, shown: str) -> dict[str, Any]:
    head = file.read(12)
    if head.startswith(_PNG_SIGNATURE):
        return _from_texts(_png_texts(file), shown, "PNG")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _from_texts(_webp_texts(file), shown, "WebP")
    if size > MAX_JSON_BYTES:
        raise InvalidRequestError(
            f"{shown}: not a workflow: {size} bytes, more than a workflow's "
            f"{MAX_JSON_BYTES >> 20} MiB"
        )
    file.seek(0)
    data = file.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise InvalidRequestError(f"{shown}: not a workflow: it grew past {MAX_JSON_BYTES} bytes")
    document = _parse(data)
    if document is None:
        raise InvalidRequestError(f"{shown}: not a workflow: neither JSON nor a PNG or WebP")
    if not isinstance(document, dict):
        raise InvalidRequestError(f"{shown}: not a workflow: its JSON is not an object")
    return document


def _parse(data: bytes | str) -> object | None:
    """The JSON document in ``data``; None when it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return None


def _from_texts(texts: dict[str, str], shown: str, kind: str) -> dict[str, Any]:
    for key in _KEYS:
        document = _parse(texts[key]) if key in texts else None
        if isinstance(document, dict):
            return document
    raise InvalidRequestError(f"{shown}: not a workflow: a {kind} with no ComfyUI workflow in it")


def _png_texts(file: IO[bytes], limit: int = MAX_TEXT_BYTES) -> dict[str, str]:
    """The ``workflow`` and ``prompt`` text chunks of a PNG.

    Chunks are walked by their lengths and the image data skipped by seeking, so a big
    image costs no more than a small one; a truncated file yields what came before the cut.
    """
    texts: dict[str, str] = {}
    file.seek(len(_PNG_SIGNATURE))
    while len(texts) < len(_KEYS):
        header = file.read(8)
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            break
        if kind not in _PNG_TEXT_CHUNKS or length > limit:
            file.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
            continue
        data = file.read(length)
        file.seek(4, os.SEEK_CUR)
        text = _png_text(kind, data, limit) if len(data) == length else None
        if text is not None and text[0] in _KEYS:
            texts.setdefault(*text)
    return texts


def _png_text(kind: bytes, data: bytes, limit: int = MAX_TEXT_BYTES) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk; None for one that does not parse."""
    keyword, nul, rest = data.partition(b"\0")
    if not nul:
        return None
    try:
        if kind == b"tEXt":
            return keyword.decode("latin-1"), rest.decode("latin-1")
        if kind == b"zTXt":
            return keyword.decode("latin-1"), _inflate(rest[1:], limit).decode("latin-1")
        compressed, language_and_rest = rest[:1], rest[2:]
        _language, _, rest = language_and_rest.partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        if compressed == b"\1":
            text = _inflate(text, limit)
        return keyword.decode("latin-1"), text.decode("utf-8")
    except (zlib.error, UnicodeDecodeError, ValueError):
        return None


def _inflate(data: bytes, limit: int = MAX_TEXT_BYTES) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit)
    if inflater.unconsumed_tail:
        raise ValueError("text chunk too big")
    return out


def _webp_texts(file: IO[bytes], limit: int = MAX_TEXT_BYTES) -> dict[str, str]:
    """The ``workflow:`` and ``prompt:`` EXIF fields of a WebP.

    ComfyUI's SaveAnimatedWEBP writes ``prompt:<json>`` into 0x0110 (Model) and each
    extra_pnginfo entry, ``workflow:<json>`` first, into 0x010f (Make) and down.
    """
    file.seek(12)  # past the RIFF header
    while True:
        header = file.read(8)
        if len(header) < 8:
            return {}
        kind, size = struct.unpack("<4sI", header)
        if kind == b"EXIF" and size <= limit:
            data = file.read(size)
            return _exif_texts(data) if len(data) == size else {}
        file.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to an even size


def _exif_texts(data: bytes) -> dict[str, str]:
    """The ``workflow``/``prompt`` entries among the text fields of IFD0 of an EXIF block."""
    data = data.removeprefix(b"Exif\0\0")
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    texts: dict[str, str] = {}
    if order is None:
        return texts
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            _tag, kind, size, offset = struct.unpack_from(order + "HHII", data, entry)
            if kind not in _EXIF_BYTE_TYPES:
                continue
            start = entry + 8 if size <= 4 else offset
            key, colon, value = _decoded(data[start : start + size]).partition(":")
            if colon and key in _KEYS:
                texts.setdefault(key, value)
    except struct.error:  # a field or the IFD runs past the end: keep what was read
        pass
    return texts


def _decoded(raw: bytes) -> str:
    raw = raw.rstrip(b"\0")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
