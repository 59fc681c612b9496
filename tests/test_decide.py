"""The decision table: a stat against a cache state, with no I/O."""

from __future__ import annotations

import pytest

from assetd.decide import CachedState, Decision, FileStat, Outcome, decide, unchanged

BASE = FileStat(size=10, mtime_ns=1_000, ctime_ns=2_000, inode=7, device=1)


def state(*, missing: bool = False, verify: bool = False, stat: FileStat = BASE) -> CachedState:
    return CachedState(
        id=1, path=b"/r/f", root="r", asset_id=1, stat=stat, needs_verify=verify, is_missing=missing
    )


def changed(**fields: int) -> FileStat:
    values = {"size": 10, "mtime_ns": 1_000, "ctime_ns": 2_000, "inode": 7, "device": 1, **fields}
    return FileStat(**values)


CASES = [
    # (name, stat on disk, cache state, expected decision)
    ("no file, no row", None, None, Decision(Outcome.NOTHING)),
    ("no file, live row", None, state(), Decision(Outcome.MISSING)),
    ("no file, missing row", None, state(missing=True), Decision(Outcome.NOTHING)),
    ("new file", BASE, None, Decision(Outcome.NEW, rehash=True)),
    ("same stat", BASE, state(), Decision(Outcome.UNCHANGED)),
    ("same stat, hash stale", BASE, state(verify=True), Decision(Outcome.VERIFY, rehash=True)),
    ("size changed", changed(size=11), state(), Decision(Outcome.MODIFIED, rehash=True)),
    ("mtime changed", changed(mtime_ns=5), state(), Decision(Outcome.MODIFIED, rehash=True)),
    ("replaced, same size+mtime", changed(inode=8), state(), Decision(Outcome.VERIFY, rehash=True)),
    ("other device", changed(device=2), state(), Decision(Outcome.VERIFY, rehash=True)),
    ("chmod (ctime only)", changed(ctime_ns=3), state(), Decision(Outcome.VERIFY, rehash=True)),
    ("back, same stat", BASE, state(missing=True), Decision(Outcome.RESTORED, rehash=False)),
    (
        "back, same stat, hash stale",
        BASE,
        state(missing=True, verify=True),
        Decision(Outcome.RESTORED, rehash=True),
    ),
    (
        "back, mtime changed",
        changed(mtime_ns=9),
        state(missing=True),
        Decision(Outcome.RESTORED, rehash=True),
    ),
    (
        "back, size changed",
        changed(size=1),
        state(missing=True),
        Decision(Outcome.RESTORED, rehash=True),
    ),
    (
        "back, new inode",
        changed(inode=9),
        state(missing=True),
        Decision(Outcome.RESTORED, rehash=True),
    ),
]


@pytest.mark.parametrize(("name", "stat", "cached", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decision_table(
    name: str, stat: FileStat | None, cached: CachedState | None, expected: Decision
) -> None:
    """Each combination of disk and catalog maps to exactly one outcome."""
    assert decide(stat, cached) == expected


def test_every_outcome_is_reachable() -> None:
    """The table covers every outcome the decision can produce (MOVED is the pairing's,
    tests/test_moves.py: one path's stat and row cannot say a file moved)."""
    assert {case[3].outcome for case in CASES} == set(Outcome) - {Outcome.MOVED}


ROW_CASES = [(c[0], c[1], c[2]) for c in CASES if c[1] is not None and c[2] is not None]


@pytest.mark.parametrize(("name", "stat", "cached"), ROW_CASES, ids=[c[0] for c in ROW_CASES])
def test_the_shortcut_on_a_raw_row_agrees_with_the_table(
    name: str, stat: FileStat, cached: CachedState
) -> None:
    """A restart asks :func:`unchanged` of the row as stored (inode and device signed,
    flags as 0/1) and builds a state only when it says no: it must say yes exactly where
    the table says UNCHANGED."""
    stored = (cached.stat.size, cached.stat.mtime_ns, cached.stat.ctime_ns,
              cached.stat.inode, cached.stat.device)  # fmt: skip
    verdict = unchanged(stat, stored, int(cached.needs_verify), int(cached.is_missing))
    assert verdict == (decide(stat, cached).outcome is Outcome.UNCHANGED)


def test_the_shortcut_never_claims_a_row_stored_with_a_negative_inode() -> None:
    """Inodes above 2**63 are stored as negative numbers: the shortcut says no, and the
    state built from the row (which converts them back) decides UNCHANGED."""
    big = changed(inode=2**64 - 5)
    assert not unchanged(big, (10, 1_000, 2_000, -5, 1), 0, 0)
    assert decide(big, state(stat=big)).outcome is Outcome.UNCHANGED
