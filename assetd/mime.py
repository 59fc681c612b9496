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
    name = path[path.rfind(b"/") + 1 :]
    dot = name.rfind(b".")
    # Mostly the answer depends on the last suffix alone, and a tree has few of those: it
    # is looked up once. Names it does not hold for (no suffix, a name that is only a
    # suffix, an encoding such as .gz whose type comes from the suffix before) ask the
    # table each time.
    if dot > 0 and name[dot - 1 : dot] != b".":
        suffix = name[dot:]
        if suffix in _by_suffix:
            return _by_suffix[suffix]
        answer = _guess(name)
        if _only_suffix_counts(os.fsdecode(suffix)) and len(_by_suffix) < _SUFFIXES:
            _by_suffix[suffix] = answer
        return answer
    return _guess(name)


_SUFFIXES = 4096  # suffixes remembered at most (a hostile tree may have a million)
_by_suffix: dict[bytes, str | None] = {}


def _guess(name: bytes) -> str | None:
    return _mime_table().guess_type(os.fsdecode(name), strict=False)[0]


def _only_suffix_counts(suffix: str) -> bool:
    table = _mime_table()
    special = (table.suffix_map, table.encodings_map)
    return not any(s in m for s in (suffix, suffix.lower()) for m in special)
