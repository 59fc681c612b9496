"""BLAKE3 content hashes of files, taken safely: never blocking, never torn."""

from __future__ import annotations

import errno
import mmap
import os
import stat as stat_mod
import time
from collections.abc import Callable
from dataclasses import dataclass

from blake3 import blake3

from assetd.decide import CachedState, FileStat
from assetd.exceptions import FileChangedError, NotRegularFileError

__all__ = [
    "LARGE_FILE",
    "RACY_WINDOW_NS",
    "HashOutcome",
    "HashResult",
    "hash_file",
    "hash_one",
    "hash_path",
    "try_hash",
]

# A file modified this close to the moment it was hashed may change again within the
# same timestamp tick, invisibly to stat; its hash is kept but verified on the next pass.
RACY_WINDOW_NS = 2_000_000_000
# Below this, one read() of the whole file is cheapest; above, reads of this size, for a
# file hashed on one core.
READ_LIMIT = 1 << 20
# From this size, BLAKE3's tree mode spreads one file over every core (as b3sum does),
# unless the caller hashes several files at once: then a file below SPREAD_LIMIT keeps
# to one core, for its tree's threads would only wait on the other files' and hand work
# back and forth.
THREADED_LIMIT = 1 << 20
SPREAD_LIMIT = 64 << 20
# A file spread over the cores is mapped when it has settled; one modified just now is
# read in pieces this large (a mapped file truncated under the reader raises SIGBUS and
# kills the process, while a read merely comes back short).
SPREAD_PIECE = 8 << 20
# From this size, hashing spends its time in reads and in BLAKE3, which give up the GIL.
LARGE_FILE = 1 << 20
PREFIX = "blake3:"
# Files ComfyUI saves with the graph that made them embedded (mime image/png, image/webp).
GENERATION_SUFFIXES = (b".png", b".webp")


@dataclass(frozen=True, slots=True)
class HashResult:
    hash: str  # "blake3:<64 hex>"
    stat: FileStat  # the stat that describes the hashed content
    racy: bool  # modified within RACY_WINDOW_NS of hashing: verify again later
    # What made it, as JSON, when it is an image ComfyUI saved (see assetd.comfyui.outputs).
    generation: str | None = None


@dataclass(frozen=True, slots=True)
class HashOutcome:
    """What hashing one location found: a hash, the file gone, or an error to report."""

    state: CachedState
    result: HashResult | None = None
    gone: bool = False
    error: str | None = None

    def for_state(self, state: CachedState) -> HashOutcome:
        """The same outcome, attached to ``state`` (see :func:`hash_path`)."""
        return HashOutcome(state, self.result, self.gone, self.error)


def hash_one(
    state: CachedState,
    *,
    follow_symlinks: bool = False,
    hasher: Callable[..., HashResult] | None = None,
) -> HashOutcome:
    """Hash the file of one location; never raises for a bad file."""
    found = try_hash(state.path, follow_symlinks=follow_symlinks, hasher=hasher)
    if isinstance(found, HashResult):
        return HashOutcome(state, found)
    if found is None:
        return HashOutcome(state, gone=True)
    return HashOutcome(state, error=found)


def try_hash(
    path: bytes,
    *,
    follow_symlinks: bool = False,
    hasher: Callable[..., HashResult] | None = None,
    walked: FileStat | None = None,
) -> HashResult | str | None:
    """The hash of the file at ``path``; None when it is gone (or is no regular file),
    else why it could not be hashed. Never raises for a bad file. ``walked``: the stat
    a walk just took of it (see :func:`hash_file`; an injected hasher is not given it)."""
    try:
        if hasher is None or hasher is hash_file:
            return hash_file(path, follow_symlinks=follow_symlinks, walked=walked)
        return hasher(path, follow_symlinks=follow_symlinks)
    except (FileNotFoundError, NotADirectoryError, NotRegularFileError):
        return None
    except FileChangedError:
        return "kept changing while being hashed; will retry"
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        return exc.strerror or str(exc)


def hash_path(
    path: bytes,
    *,
    follow_symlinks: bool = False,
    hasher: Callable[..., HashResult] | None = None,
) -> HashOutcome:
    """:func:`hash_one` by path alone, for a file whose location may not exist yet; the
    outcome's state is a stand-in until :meth:`HashOutcome.for_state` names the real one."""
    stand_in = CachedState(0, path, "", 0, FileStat(0, 0, 0, 0, 0), True, False)
    return hash_one(stand_in, follow_symlinks=follow_symlinks, hasher=hasher)


def hash_file(
    path: bytes,
    *,
    follow_symlinks: bool = False,
    attempts: int = 3,
    now_ns: Callable[[], int] = time.time_ns,
    map_unsettled: bool = False,
    among_others: bool = False,
    walked: FileStat | None = None,
) -> HashResult:
    """Hash the regular file at ``path``; re-stat afterwards and retry if it changed.
    ``map_unsettled``: map a large file even if it was modified just now (only where a
    SIGBUS, should it be truncated meanwhile, costs no more than the process it kills).
    ``among_others``: other files are being hashed beside this one (see SPREAD_LIMIT).
    ``walked``: the stat a walk took of the small file at ``path`` a moment ago; the file
    is read at once and stat'ed once, through the open file, and if that stat is still
    the walked one, what was read is the content it describes (see :func:`_as_walked`).

    Raises ``FileNotFoundError`` when it vanished, :class:`NotRegularFileError` when it
    is not a regular file (a FIFO is opened without blocking and never waited on),
    :class:`FileChangedError` when it changed during every attempt, and other
    ``OSError`` as the system reports them.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    if walked is not None and walked.size < READ_LIMIT:
        started = now_ns()
        found = _as_walked(path, flags, walked)
        if found is not None:
            racy = walked.mtime_ns > started - RACY_WINDOW_NS
            return HashResult(PREFIX + found[0], walked, racy, found[1])
    for _ in range(attempts):
        started = now_ns()
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno == getattr(os, "ELOOP", 40) and not follow_symlinks:
                raise NotRegularFileError(exc.errno, "is a symlink", os.fsdecode(path)) from exc
            raise
        try:
            before = os.fstat(fd)
            if not stat_mod.S_ISREG(before.st_mode):
                raise NotRegularFileError(0, "not a regular file", os.fsdecode(path))
            settled = before.st_mtime_ns <= started - RACY_WINDOW_NS
            digest = _digest(
                fd, before.st_size, mapped=settled or map_unsettled, among_others=among_others
            )
            made = _generation(fd) if path[-5:].lower().endswith(GENERATION_SUFFIXES) else None
        finally:
            os.close(fd)
        after = os.stat(path, follow_symlinks=follow_symlinks)
        seen = _stat(before)
        if _stat(after) == seen:
            racy = seen.mtime_ns > started - RACY_WINDOW_NS
            return HashResult(PREFIX + digest, seen, racy, made)
    raise FileChangedError(0, "changed while being hashed", os.fsdecode(path))


def _as_walked(path: bytes, flags: int, walked: FileStat) -> tuple[str, str | None] | None:
    """The hash (and what made it) of the file at ``path`` if, read, it is still the
    file the walk saw: same (size, mtime, ctime, inode, device) through the open file
    after reading. A change after the walk's stat moves its mtime or ctime, a file put
    in its place has another inode, one that grew or shrank another size: any of them,
    or any error, and None says to hash it afresh. (A file put in its place after it
    was opened is left for the next look at the path: the hash is the content the
    walked stat describes, as a hash taken a moment earlier would be.)"""
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        data = os.read(fd, walked.size + 1)
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode) or len(data) != walked.size or _stat(st) != walked:
            return None
        made = _generation(fd) if path[-5:].lower().endswith(GENERATION_SUFFIXES) else None
    except OSError:
        return None
    finally:
        os.close(fd)
    return blake3(data).hexdigest(), made


def _stat(st: os.stat_result) -> FileStat:
    # tuple.__new__ builds the named tuple in C (two per file hashed)
    return tuple.__new__(
        FileStat, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    )


def _generation(fd: int) -> str | None:
    from assetd.comfyui.outputs import read_generation  # images only: not every hash

    return read_generation(fd)


def _digest(fd: int, size: int, *, mapped: bool, among_others: bool = False) -> str:
    if size < READ_LIMIT:
        # Most files: one read of exactly what fstat promised, plus one byte to see a
        # file that grew (a buffer of READ_LIMIT would be allocated and freed per file).
        data = os.read(fd, size + 1)
        if len(data) == size:
            return blake3(data).hexdigest()
        hasher = blake3(data)  # it grew or shrank: read on; the stat after says it changed
        return _read_rest(fd, hasher)
    if size < (SPREAD_LIMIT if among_others else THREADED_LIMIT):
        # On one core reads beat a map, whose pages fault in a few at a time.
        return _read_rest(fd, blake3(max_threads=1))
    hasher = blake3(max_threads=blake3.AUTO)
    if mapped:  # the tree's threads take the whole file at once
        try:
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
                hasher.update(view)
            return hasher.hexdigest()
        except ValueError:  # emptied since fstat: read what is there
            pass
    # One buffer for every piece: pieces this large, each a new bytes object, would
    # come to the allocator as fresh pages more often than not.
    buffer = memoryview(bytearray(SPREAD_PIECE))
    while count := os.readv(fd, [buffer]):
        hasher.update(buffer[:count])
    return hasher.hexdigest()


def _read_rest(fd: int, hasher: blake3) -> str:
    while chunk := os.read(fd, READ_LIMIT):
        hasher.update(chunk)
    return hasher.hexdigest()
