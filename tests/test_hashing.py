"""Hashing files: correct digests by every path through the code, and never a hang."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from assetd import hashing
from assetd.decide import FileStat
from assetd.exceptions import FileChangedError, NotRegularFileError
from assetd.hashing import hash_file
from tests.conftest import OLD_NS, wait_for, write


def expected(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        hashing.READ_LIMIT,
        hashing.READ_LIMIT + 1,
        3 * hashing.READ_LIMIT + 12345,
        2 * hashing.SPREAD_PIECE + 12345,
    ],
    ids=["empty", "one byte", "read limit", "two reads", "spread", "spread, in pieces"],
)
@pytest.mark.parametrize("settled", [True, False], ids=["settled", "fresh"])
@pytest.mark.parametrize("among_others", [False, True], ids=["alone", "among others"])
def test_digest_matches_blake3(
    tmp_path: Path, size: int, settled: bool, among_others: bool
) -> None:
    """One read, reads of 1 MiB on one core, a map (settled) or pieces read
    (fresh) for BLAKE3 over every core: each way gives BLAKE3 of the content."""
    data = os.urandom(size)
    f = write(tmp_path / "f", data, OLD_NS if settled else None)
    result = hash_file(os.fsencode(f), among_others=among_others)
    assert result.hash == expected(data)
    assert result.stat.size == size
    assert result.racy is not settled


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO with no writer is refused at once instead of blocking the hasher."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError):
        hash_file(os.fsencode(fifo))


def test_socket_and_folder_are_refused(tmp_path: Path) -> None:
    """Sockets and folders are not regular files."""
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(OSError):
            hash_file(os.fsencode(sock_path))
    with pytest.raises(NotRegularFileError):
        hash_file(os.fsencode(tmp_path))


def test_symlink_is_not_followed_unless_asked(tmp_path: Path) -> None:
    """A symlink is refused by default and hashed as its target with follow_symlinks."""
    target = write(tmp_path / "target", b"data")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(NotRegularFileError):
        hash_file(os.fsencode(link))
    assert hash_file(os.fsencode(link), follow_symlinks=True).hash == expected(b"data")


def test_vanished_file_raises_file_not_found(tmp_path: Path) -> None:
    """A file gone before hashing gives FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        hash_file(os.fsencode(tmp_path / "nope"))


def test_file_changed_during_hashing_is_hashed_again(tmp_path: Path, monkeypatch: Any) -> None:
    """A file that changes while it is read is re-hashed; the result matches the final content."""
    f = write(tmp_path / "f", b"first", OLD_NS)
    real = hashing._digest
    calls = []

    def changing(fd: int, size: int, **how: bool) -> str:
        calls.append(size)
        digest = real(fd, size, **how)
        if len(calls) == 1:
            write(f, b"second, longer")
        return digest

    monkeypatch.setattr(hashing, "_digest", changing)
    result = hash_file(os.fsencode(f))
    assert len(calls) == 2
    assert result.hash == expected(b"second, longer")


@pytest.mark.parametrize("among_others", [False, True], ids=["spread", "one core"])
def test_a_file_just_written_and_cut_short_while_read_is_hashed_again_as_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, among_others: bool
) -> None:
    """A file modified just now is read, not mapped, so one cut short after its first
    piece is no danger to the process (under a map it would raise SIGBUS), and its hash
    is of what is left."""
    data = os.urandom(3 * hashing.SPREAD_PIECE)
    f = write(tmp_path / "model.safetensors", data)
    reads = []

    def cutting(real: Any) -> Any:
        def read(fd: int, into: Any) -> Any:
            reads.append(fd)
            if len(reads) == 2:
                os.truncate(f, hashing.SPREAD_PIECE // 2)
            return real(fd, into)

        return read

    monkeypatch.setattr(hashing.os, "read", cutting(os.read))
    monkeypatch.setattr(hashing.os, "readv", cutting(os.readv))
    result = hash_file(os.fsencode(f), among_others=among_others)
    assert len(reads) > 2
    assert result.stat.size == hashing.SPREAD_PIECE // 2
    assert result.hash == expected(data[: hashing.SPREAD_PIECE // 2])


def test_file_that_never_settles_gives_up(tmp_path: Path, monkeypatch: Any) -> None:
    """A file that changes during every attempt raises FileChangedError."""
    f = write(tmp_path / "f", b"x", OLD_NS)
    real = hashing._digest
    counter = iter(range(100))

    def always_changing(fd: int, size: int, **how: bool) -> str:
        digest = real(fd, size, **how)
        write(f, b"y" * (next(counter) + 2))
        return digest

    monkeypatch.setattr(hashing, "_digest", always_changing)
    with pytest.raises(FileChangedError):
        hash_file(os.fsencode(f), attempts=3)


def walked_stat(path: Path) -> FileStat:
    st = os.lstat(path)
    return FileStat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def test_a_file_as_walked_is_read_once_and_stated_once_through_the_open_file(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """With the walk's stat still true, the hash and stat are what a full hash gives,
    and the path is not looked up again (one stat, of the open file)."""
    path = write(tmp_path / "a.bin", b"walked content", OLD_NS)
    full = hash_file(os.fsencode(path))
    walked = walked_stat(path)
    fstats: list[int] = []
    real_fstat = os.fstat

    def counted(fd: int) -> os.stat_result:
        fstats.append(fd)
        return real_fstat(fd)

    def refused(*args: Any, **kwargs: Any) -> os.stat_result:
        raise AssertionError("the path was stat'ed again")

    monkeypatch.setattr(hashing.os, "stat", refused)
    monkeypatch.setattr(hashing.os, "fstat", counted)
    found = hash_file(os.fsencode(path), walked=walked)
    assert found == full and found.stat == walked and not found.racy
    assert len(fstats) == 1


@pytest.mark.parametrize("change", ["rewritten", "grown", "replaced", "touched", "gone"])
def test_a_file_changed_since_its_walk_is_hashed_as_it_is_now(tmp_path: Path, change: str) -> None:
    """Whatever happened to it since the walk's stat, the hash and stat returned describe
    the file now at the path (or it is gone), never the walked stat with other content."""
    path = write(tmp_path / "a.bin", b"as walked", OLD_NS)
    walked = walked_stat(path)
    if change == "rewritten":  # same size, other bytes, a new mtime
        write(path, b"as WALKED", OLD_NS + 10**9)
    elif change == "grown":
        with path.open("ab") as f:
            f.write(b", and then some")
        os.utime(path, ns=(OLD_NS, OLD_NS))  # even with the old mtime put back
    elif change == "replaced":  # another inode, same size and mtime
        other = write(tmp_path / "b.bin", b"as wAlked", OLD_NS)
        other.replace(path)
    elif change == "touched":  # same content and mtime: only its ctime moves

        def touched() -> bool:
            os.utime(path, ns=(OLD_NS, OLD_NS))
            return os.lstat(path).st_ctime_ns != walked.ctime_ns  # (a coarse clock ticks)

        wait_for(touched, 5, "the file's ctime to move")
    else:
        path.unlink()
        with pytest.raises(FileNotFoundError):
            hash_file(os.fsencode(path), walked=walked)
        return
    found = hash_file(os.fsencode(path), walked=walked)
    assert found.hash == expected(path.read_bytes())
    assert found.stat == walked_stat(path) != walked


def test_a_fifo_where_a_file_was_walked_is_refused_without_blocking(tmp_path: Path) -> None:
    path = write(tmp_path / "a.bin", b"as walked", OLD_NS)
    walked = walked_stat(path)
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(NotRegularFileError):
        hash_file(os.fsencode(path), walked=walked)
