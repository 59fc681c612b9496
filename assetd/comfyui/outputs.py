"""What made a ComfyUI output, read from the image while it is hashed (the I/O shell of
:mod:`assetd.comfyui.generation`)."""

from __future__ import annotations

from assetd.comfyui.embedded import read_texts
from assetd.comfyui.generation import generation_json

__all__ = ["MAX_TEXT_BYTES", "read_generation"]

# A ComfyUI graph is kilobytes, a big one a few hundred; text chunks past this are left
# unread, so that a hash never waits on a hostile image's metadata.
MAX_TEXT_BYTES = 4 << 20


def read_generation(fd: int) -> str | None:
    """The generation (JSON) of the PNG or WebP open as ``fd``, read from its start;
    None when it carries no ComfyUI graph or cannot be read: a hash never fails for it."""
    try:
        with open(fd, "rb", closefd=False) as file:
            return generation_json(read_texts(file, MAX_TEXT_BYTES))
    except (OSError, ValueError, MemoryError):
        return None
