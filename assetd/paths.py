"""Paths as the catalog keeps them: raw bytes, exact prefixes, tags and exclusions."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from assetd.config import RootConfig

__all__ = [
    "ExcludeMatcher",
    "auto_tags",
    "get_all_known_prefixes",
    "path_json",
    "prefix_upper_bound",
    "root_for_path",
]


def get_all_known_prefixes(roots: Iterable[RootConfig]) -> list[bytes]:
    """The prefixes of every configured root, the argument of a prune."""
    return [root.prefix for root in roots]


def prefix_upper_bound(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string that starts with ``prefix``.

    ``prefix <= path < prefix_upper_bound(prefix)`` is an exact, case-sensitive prefix
    test that both SQLite and PostgreSQL answer from the path index; unlike ``LIKE`` it
    gives ``%`` and ``_`` no meaning.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("a prefix of only 0xff bytes has no upper bound")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def root_for_path(path: bytes, roots: Sequence[RootConfig]) -> RootConfig | None:
    """The root whose prefix holds ``path``, if any."""
    for root in roots:
        if path.startswith(root.prefix):
            return root
    return None


def auto_tags(root_name: str, prefix: bytes, path: bytes) -> set[str]:
    """The root's name and every folder between the root and the file."""
    folders = path[len(prefix) :].split(b"/")[:-1]
    return {root_name, *(name.decode("utf-8", "replace") for name in folders if name)}


def path_json(path: bytes) -> dict[str, Any]:
    """``path`` for JSON; names that are not UTF-8 also carry their exact bytes."""
    try:
        return {"path": path.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            "path": path.decode("utf-8", "replace"),
            "path_bytes_b64": base64.b64encode(path).decode("ascii"),
        }


class ExcludeMatcher:
    """Glob patterns relative to a root, in the dialect of ``.gitignore``.

    A pattern without ``/`` matches a file or folder name at any depth (``*.part``);
    one with ``/`` matches the path from the root, where ``**`` spans folders
    (``**/.git/**``). A folder that matches is not descended into.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._names = [_compile(p) for p in self.patterns if "/" not in p]
        self._paths = [_compile(p.lstrip("/")) for p in self.patterns if "/" in p]

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excludes(self, rel: bytes, *, is_dir: bool) -> bool:
        """Whether the file or folder at ``rel`` (relative to the root) is excluded."""
        if not self.patterns:
            return False
        text = os.fsdecode(rel)
        name = text.rsplit("/", 1)[-1]
        if any(rx.fullmatch(name) for rx in self._names):
            return True
        candidates = (text, text + "/") if is_dir else (text,)
        return any(rx.fullmatch(c) for rx in self._paths for c in candidates)


def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)
