"""Paths as the catalog keeps them: raw bytes, exact prefixes, tags and exclusions."""

from __future__ import annotations

import base64
import functools
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from assetd.config import RootConfig

__all__ = [
    "ExcludeMatcher",
    "auto_tags",
    "file_name",
    "folder_tags",
    "get_all_known_prefixes",
    "path_json",
    "prefix_upper_bound",
    "root_for_path",
]

log = logging.getLogger(__name__)


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


def folder_tags(roots: dict[str, bytes], root: str, path: bytes) -> set[str]:
    """The automatic tags of a location from its place: root name and folder names
    (``roots``: root name → prefix, as the catalog registered them)."""
    prefix = roots.get(root)
    if prefix is not None and path.startswith(prefix):
        return auto_tags(root, prefix, path)
    return {root}


def file_name(path: bytes) -> str:
    """The last part of ``path`` as text (bytes that are not UTF-8 replaced)."""
    return path[path.rfind(b"/") + 1 :].decode("utf-8", "replace")


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
    """Glob patterns relative to a root, in the dialect of ``.gitignore`` (see
    docs/configuration.md), matched by ``pathspec``'s ``GitIgnoreSpec``.

    A folder that is excluded is not descended into, so nothing below it can be
    re-included by a ``!`` pattern, as in git: ``excludes`` answers the same for a path
    it is asked about directly (a watcher event) as the walk does by not going there.
    A pattern git would reject (a trailing backslash, a lone ``!``) never matches.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._folder_excluded: Any = None
        if not self.patterns:
            return  # pathspec is imported only for a root that has patterns: it is not free
        from pathspec import GitIgnoreSpec

        valid = [p for p in self.patterns if _valid(p)]
        self._match = GitIgnoreSpec.from_lines(valid).match_file
        # Without a negation, a path below an excluded folder is matched by the same
        # pattern, so its folders need no asking of their own. With one, the folders are
        # asked once each and remembered: the walk asks about a folder's entries in a row.
        negates = any(p.startswith("!") for p in valid)
        self._folder_excluded = functools.lru_cache(maxsize=4096)(self._folder) if negates else None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excludes(self, rel: bytes, *, is_dir: bool) -> bool:
        """Whether the file or folder at ``rel`` (relative to the root) is excluded."""
        if not self.patterns:
            return False
        text = os.fsdecode(rel)
        if self._folder_excluded is not None:
            parent = text.rpartition("/")[0]
            if parent and self._folder_excluded(parent):
                return True
        return self._match(text + "/" if is_dir else text, _AS_GIVEN)

    def _folder(self, folder: str) -> bool:
        """Whether ``folder`` or a folder above it is excluded (only asked with negations)."""
        assert self._folder_excluded is not None
        parent = folder.rpartition("/")[0]
        if parent and self._folder_excluded(parent):
            return True
        return self._match(folder + "/", _AS_GIVEN)


_AS_GIVEN: tuple[str, ...] = ()  # the paths are relative with "/" already: no normalising


def _valid(pattern: str) -> bool:
    from pathspec.patterns.gitignore import GitIgnorePatternError
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

    try:
        GitIgnoreSpecPattern(pattern)
    except GitIgnorePatternError:
        log.warning("exclude pattern %r is not valid gitignore syntax: it matches nothing", pattern)
        return False
    return True
