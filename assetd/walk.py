"""Walk a root in byte order, yielding regular files and the places that could not be read.

The walk yields full paths in ascending byte order (a folder sorts as its name plus
``/``), the same order the catalog's path index has, so a pass can merge the two
streams without holding either in memory.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from assetd.decide import FileStat
from assetd.paths import ExcludeMatcher, prefix_upper_bound

__all__ = [
    "Entry",
    "Ident",
    "Problem",
    "Span",
    "Unlisted",
    "branch_above",
    "first_cuts",
    "loop_problem",
    "walk_root",
]


class Entry(NamedTuple):
    """A regular file and its stat (a named tuple: one is made per file)."""

    path: bytes
    stat: FileStat


@dataclass(frozen=True, slots=True)
class Unlisted:
    """A folder (or file) that exists but could not be read: its catalog rows stay as they are."""

    path: bytes
    is_dir: bool
    message: str


@dataclass(frozen=True, slots=True)
class Problem:
    """Something skipped that a person should hear about (a symlink loop)."""

    path: bytes
    message: str


WalkItem = Entry | Unlisted | Problem
Ident = tuple[int, int]  # a folder's (device, inode)

_VANISHED = (errno.ENOENT, errno.ENOTDIR)
_tuple = tuple.__new__


def walk_root(
    top: bytes,
    *,
    exclude: ExcludeMatcher | None = None,
    follow_symlinks: bool = False,
    root_prefix: bytes | None = None,
    span: Span | None = None,
) -> Iterator[WalkItem]:
    """Yield every regular file under ``top`` (a folder, without trailing slash).

    FIFOs, sockets and devices are skipped without being opened; symlinks are skipped
    unless ``follow_symlinks``, and then folders already on the current branch are
    reported as loops instead of being entered again. Exclude patterns are relative to
    ``root_prefix`` (default: ``top``). A ``top`` that does not exist yields nothing.
    A ``top`` below ``root_prefix`` is walked as the walk of the whole root walks it:
    with the folders above it on the branch, so that a link back to one of them is a
    loop there too, and a ``top`` that lies beyond a loop yields nothing.
    With ``span``, only the paths in that byte range are walked: folders wholly outside
    it are not entered, so walks of adjacent spans split the work between them.
    """
    exclude = exclude or None  # an empty matcher excludes nothing: skip asking it
    keep = _in_span(span) if span is not None else None
    base = len(root_prefix) if root_prefix is not None else len(top) + 1
    above = branch_above(root_prefix, top, follow_symlinks) if root_prefix is not None else ()
    if above is None:
        return
    try:
        root_stat = os.stat(top)
    except OSError as exc:
        if exc.errno not in _VANISHED:
            yield Unlisted(top, True, _reason(exc))
        return
    top_ident = (root_stat.st_dev, root_stat.st_ino)
    if top_ident in above:
        if keep is None or keep(top + b"/", False):
            yield loop_problem(top)
        return
    # Each frame: the folder's (device, inode) and its sorted children still to visit;
    # the folders above ``top`` are frames with nothing left to visit.
    stack: list[tuple[Ident, Iterator[Child]]] = [(ident, iter(())) for ident in above]
    listed = _list(top, base, exclude, follow_symlinks, keep)
    if isinstance(listed, Unlisted):
        yield listed
        return
    stack.append((top_ident, iter(listed)))
    while stack:
        child = next(stack[-1][1], None)
        if child is None:
            stack.pop()
        elif not isinstance(child, bytes):
            yield child
        else:
            yield from _enter(child, stack, base, exclude, follow_symlinks, keep)


Child = Entry | Unlisted | bytes  # bytes: a folder still to enter
Span = tuple[bytes | None, bytes | None]  # [low, high) of full paths; None: unbounded
Keep = Callable[[bytes, bool], bool]  # (path, is a folder) -> in the span, or under it


def _in_span(span: Span) -> Keep:
    low, high = span

    def keep(path: bytes, is_dir: bool) -> bool:
        if not is_dir:
            return (low is None or path >= low) and (high is None or path < high)
        below = path + b"/"  # the folder's subtree: [below, upper bound of below)
        return (high is None or below < high) and (low is None or prefix_upper_bound(below) > low)

    return keep


def first_cuts(
    top: bytes, parts: int, follow_symlinks: bool = False, *, least: int = 0
) -> list[bytes]:
    """Paths that cut a tree the catalog does not know yet into about ``parts`` spans;
    none when it has few folders at the top and its first two levels hold fewer than
    ``least`` entries (not worth cutting).

    The entries of its first level, and of the second when the first has few folders:
    names only, from the folder listings (no stat), so even a folder of a million files
    costs one listing here. Each span then walks what falls in it.
    """
    level = _names(top, follow_symlinks)
    folders = sum(1 for key in level if key.endswith(b"/"))
    # Many folders at the top are reason enough to share the walk, and enough to cut by;
    # else the second level tells whether there is much to walk, and where.
    if folders < parts * 8:
        deeper: list[bytes] = []
        for key in level:
            deeper.append(key)
            if key.endswith(b"/"):
                deeper += _names(key[:-1], follow_symlinks)
        level = deeper
        if len(level) < least:
            return []
    level.sort()
    cuts = [level[i * len(level) // parts] for i in range(1, parts)] if level else []
    return sorted(set(cuts))


def _names(folder: bytes, follow_symlinks: bool) -> list[bytes]:
    """The full paths in ``folder`` as the walk orders them (a folder as its path plus
    ``/``); nothing when it cannot be listed (the walk reports it)."""
    try:
        with os.scandir(folder) as it:
            return [
                e.path + b"/" if e.is_dir(follow_symlinks=follow_symlinks) else e.path for e in it
            ]
    except OSError:
        return []


def branch_above(
    root_prefix: bytes, path: bytes, follow_symlinks: bool
) -> tuple[Ident, ...] | None:
    """The (device, inode) of every folder from the root down to the folder holding
    ``path``: what a walk of the root has on its branch when it comes to ``path``.

    ``()`` for the root itself or a path outside it; None when the walk never comes to
    ``path`` because a folder on the way is one above it again (a symlink loop). A
    folder on the way that cannot be stat'ed ends the branch there: the caller's own
    stat of ``path`` meets the same error and says what it is.
    """
    if not path.startswith(root_prefix):
        return ()
    names = path[len(root_prefix) :].split(b"/")[:-1]
    folders = [root_prefix.rstrip(b"/") or b"/"]
    folders += [root_prefix + b"/".join(names[: i + 1]) for i in range(len(names))]
    branch: list[Ident] = []
    for folder in folders:
        try:
            st = os.stat(folder, follow_symlinks=follow_symlinks)
        except OSError:
            break
        ident = (st.st_dev, st.st_ino)
        if ident in branch:
            return None
        branch.append(ident)
    return tuple(branch)


def loop_problem(path: bytes) -> Problem:
    """The problem of ``path``, a folder already on the branch: what it is, what to do."""
    try:
        target = os.fsdecode(os.readlink(path))
    except OSError:  # not a symlink itself: a bind mount, or a path through a link
        return Problem(
            path, "folder loop: the same folder as one above it: not entered; exclude it"
        )
    real = os.fsdecode(os.path.realpath(path))
    return Problem(
        path,
        f"symlink loop -> {target} ({real}, a folder above it): not followed; "
        "remove the link or exclude it",
    )


def _enter(
    path: bytes,
    stack: list[tuple[Ident, Iterator[Child]]],
    base: int,
    exclude: ExcludeMatcher | None,
    follow_symlinks: bool,
    keep: Keep | None,
) -> Iterator[WalkItem]:
    try:
        dir_stat = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as exc:
        if exc.errno not in _VANISHED:
            yield Unlisted(path, True, _reason(exc))
        return
    ident = (dir_stat.st_dev, dir_stat.st_ino)
    if any(frame_ident == ident for frame_ident, _ in stack):
        # Reported by the one span that holds the folder's own place in the order.
        if keep is None or keep(path + b"/", False):
            yield loop_problem(path)
        return
    listed = _list(path, base, exclude, follow_symlinks, keep)
    if isinstance(listed, Unlisted):
        yield listed
    else:
        stack.append((ident, iter(listed)))


def _list(
    folder: bytes,
    base: int,
    exclude: ExcludeMatcher | None,
    follow_symlinks: bool,
    keep: Keep | None = None,
) -> list[Child] | Unlisted:
    """The folder's subfolders and regular files (those ``keep`` keeps), sorted as the
    catalog sorts paths."""
    children: list[tuple[bytes, Child]] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                child = _classify(entry, base, exclude, follow_symlinks, keep)
                if child is not None:
                    children.append(child)
    except OSError as exc:
        if exc.errno in _VANISHED:
            return []
        return Unlisted(folder, True, _reason(exc))
    children.sort(key=itemgetter(0))
    if keep is None:
        return [child for _, child in children]
    return [child for _, child in children if keep(*_span_key(child))]


def _span_key(child: Child) -> tuple[bytes, bool]:
    if isinstance(child, bytes):
        return child, True
    return child.path, isinstance(child, Unlisted) and child.is_dir


def _classify(
    entry: os.DirEntry[bytes],
    base: int,
    exclude: ExcludeMatcher | None,
    follow: bool,
    keep: Keep | None = None,
) -> tuple[bytes, Child] | None:
    """The sort key and the child for one folder entry, or None to skip it (outside
    the span: before its stat, as walks of a large folder's spans all list it)."""
    path = entry.path
    try:
        if not entry.is_file(follow_symlinks=follow):  # files first: most entries are
            if not entry.is_dir(follow_symlinks=follow):
                return None  # FIFO, socket, device, or a symlink we do not follow
            if exclude is not None and exclude.excludes(path[base:], is_dir=True):
                return None
            return entry.name + b"/", path
        if keep is not None and not keep(path, False):
            return None
        if exclude is not None and exclude.excludes(path[base:], is_dir=False):
            return None
        st = entry.stat(follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in _VANISHED or exc.errno == errno.ELOOP:
            return None  # vanished, or a dangling or looping symlink
        return entry.name, Unlisted(path, False, _reason(exc))
    # tuple.__new__ builds the named tuples in C: a restart makes two per file, and their
    # generated __new__ took a fifth of the walk's time.
    stat = _tuple(FileStat, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))
    return entry.name, _tuple(Entry, (path, stat))


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
