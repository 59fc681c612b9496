"""Pairing files seen at new paths with the locations they left, by identity: a table."""

from __future__ import annotations

import pytest

from assetd.decide import CachedState, FileStat
from assetd.moves import identity, pair

A = FileStat(size=10, mtime_ns=1_000, ctime_ns=5, inode=7, device=1)
A_RENAMED = A._replace(ctime_ns=9)  # a rename changes the ctime only
B = FileStat(size=20, mtime_ns=2_000, ctime_ns=5, inode=8, device=1)


def loc(id_: int, path: bytes, stat: FileStat, *, missing: bool = False) -> CachedState:
    return CachedState(id_, path, "r", 100 + id_, stat, False, missing)


OLD = loc(1, b"/r/old", A)
OLD_MISSING = loc(2, b"/r/gone", A, missing=True)
OTHER = loc(3, b"/r/b", B)

CASES = [
    # (name, appeared, candidates (state, stat at its path now), new path -> location id)
    ("nothing appeared", [], [(OLD, None)], {}),
    ("no candidate", [(b"/r/new", A)], [], {}),
    (
        "a rename: same file, old path empty",
        [(b"/r/new", A_RENAMED)],
        [(OLD, None)],
        {b"/r/new": 1},
    ),
    (
        "a hard link: the old path still holds the file",
        [(b"/r/link", A)],
        [(OLD, A)],
        {},
    ),
    ("another size: not the same file", [(b"/r/new", A._replace(size=11))], [(OLD, None)], {}),
    (
        "another mtime: rewritten, not moved",
        [(b"/r/new", A._replace(mtime_ns=1_001))],
        [(OLD, None)],
        {},
    ),
    (
        "another device: the same inode number on another filesystem",
        [(b"/r/new", A._replace(device=2))],
        [(OLD, None)],
        {},
    ),
    (
        "a missing location whose file came back elsewhere",
        [(b"/r/new", A)],
        [(OLD_MISSING, None)],
        {b"/r/new": 2},
    ),
    (
        "a live candidate before a missing one",
        [(b"/r/new", A)],
        [(OLD_MISSING, None), (OLD, None)],
        {b"/r/new": 1},
    ),
    (
        "two names appeared for one vanished file: the first path takes it",
        [(b"/r/y", A), (b"/r/x", A)],
        [(OLD, None)],
        {b"/r/x": 1},
    ),
    (
        "two files moved at once, each to its own",
        [(b"/r/new-a", A), (b"/r/new-b", B)],
        [(OTHER, None), (OLD, None)],
        {b"/r/new-a": 1, b"/r/new-b": 3},
    ),
    (
        "the old path now holds another file: not paired (it is looked at on its own)",
        [(b"/r/new", A)],
        [(OLD, B)],
        {},
    ),
]


@pytest.mark.parametrize(
    ("name", "appeared", "candidates", "want"), CASES, ids=[c[0] for c in CASES]
)
def test_pairing_table(
    name: str,
    appeared: list[tuple[bytes, FileStat]],
    candidates: list[tuple[CachedState, FileStat | None]],
    want: dict[bytes, int],
) -> None:
    """Each new path pairs with exactly the location named, or none."""
    got = pair(appeared, candidates)
    assert {path: state.id for path, state in got.items()} == want


def test_identity_ignores_ctime() -> None:
    """A rename changes the ctime; the identity stays."""
    assert identity(A) == identity(A_RENAMED)
    assert identity(A) != identity(B)
