"""The mime type of a file, from its name, the same on every machine."""

from __future__ import annotations

import mimetypes
import os
from functools import cache

__all__ = ["guess_mime"]


@cache
def _mime_table() -> mimetypes.MimeTypes:
    """Only the built-in table: /etc/mime.types differs between machines, answers must
    not. Built on first use, as most commands never need it."""
    table = mimetypes.MimeTypes(filenames=())
    table.add_type("application/x-safetensors", ".safetensors", strict=False)
    table.add_type("application/x-gguf", ".gguf", strict=False)
    return table


def guess_mime(path: bytes) -> str | None:
    return _mime_table().guess_type(os.fsdecode(path), strict=False)[0]
