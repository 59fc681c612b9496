"""The live path's planner: hints coalesced into folder moves, looks and surveys, with no I/O."""

from __future__ import annotations

import pytest

from assetd.config import RootConfig
from assetd.hints import Hint, HintKind
from assetd.plan import Plan, RootIndex, inside_any, outermost, plan

ROOTS = RootIndex(
    [
        RootConfig(name="a", path="/srv/a", exclude=("*.part", "**/.git/**")),
        RootConfig(name="b", path="/srv/b"),
    ]
)


def changed(path: bytes) -> Hint:
    return Hint(HintKind.CHANGED, path)


def closed(path: bytes) -> Hint:
    return Hint(HintKind.CLOSED, path)


def moved(path: bytes, dest: bytes) -> Hint:
    return Hint(HintKind.MOVED, path, dest)


def dir_moved(path: bytes, dest: bytes) -> Hint:
    return Hint(HintKind.DIR_MOVED, path, dest)


def dir_changed(path: bytes) -> Hint:
    return Hint(HintKind.DIR_CHANGED, path)


OF_CASES = [
    # (name, path, the root that owns it)
    ("a file in a root", b"/srv/a/f", "a"),
    ("a file deep in a root", b"/srv/b/x/y/f", "b"),
    ("outside every root", b"/srv/c/f", None),
    ("a sibling whose name starts like the root", b"/srv/ab/f", None),
    ("the root folder itself", b"/srv/a", None),
    ("excluded by name", b"/srv/a/f.part", None),
    ("excluded by name in a subfolder", b"/srv/a/x/f.part", None),
    ("excluded by path", b"/srv/a/x/.git/config", None),
    ("a pattern of another root", b"/srv/b/f.part", "b"),
]


@pytest.mark.parametrize(("name", "path", "owner"), OF_CASES, ids=[c[0] for c in OF_CASES])
def test_the_root_of_a_path(name: str, path: bytes, owner: str | None) -> None:
    """A path belongs to the root whose prefix holds it, unless that root excludes it."""
    root = ROOTS.of(path)
    assert (root.name if root is not None else None) == owner


PLAN_CASES = [
    # (name, hints in order, the plan)
    ("no hints", [], Plan()),
    ("changed", [changed(b"/srv/a/f")], Plan(look={b"/srv/a/f": False})),
    ("closed", [closed(b"/srv/a/f")], Plan(look={b"/srv/a/f": True})),
    (
        "changed then closed: one look, closed",
        [changed(b"/srv/a/f"), closed(b"/srv/a/f")],
        Plan(look={b"/srv/a/f": True}),
    ),
    (
        "closed then changed: still closed",
        [closed(b"/srv/a/f"), changed(b"/srv/a/f")],
        Plan(look={b"/srv/a/f": True}),
    ),
    (
        "duplicates coalesce",
        [changed(b"/srv/a/f"), changed(b"/srv/a/f"), changed(b"/srv/b/g")],
        Plan(look={b"/srv/a/f": False, b"/srv/b/g": False}),
    ),
    ("changed outside every root", [changed(b"/srv/c/f"), closed(b"/tmp/g")], Plan()),
    ("changed, excluded", [changed(b"/srv/a/f.part"), closed(b"/srv/a/f.part")], Plan()),
    (
        "moved inside a root: looks at both paths (identity pairs them), dest complete",
        [moved(b"/srv/a/f", b"/srv/a/x/g")],
        Plan(look={b"/srv/a/f": False, b"/srv/a/x/g": True}),
    ),
    (
        "moved between roots: looks at both paths",
        [moved(b"/srv/a/f", b"/srv/b/f")],
        Plan(look={b"/srv/a/f": False, b"/srv/b/f": True}),
    ),
    (
        "moved from outside into a root: a closed look at dest only",
        [moved(b"/tmp/f", b"/srv/a/f")],
        Plan(look={b"/srv/a/f": True}),
    ),
    (
        "a finished download renamed from an excluded name: a closed look, no move",
        [closed(b"/srv/a/f.part"), moved(b"/srv/a/f.part", b"/srv/a/f")],
        Plan(look={b"/srv/a/f": True}),
    ),
    (
        "moved out of the roots: a look at the source only",
        [moved(b"/srv/a/f", b"/tmp/f")],
        Plan(look={b"/srv/a/f": False}),
    ),
    (
        "moved to an excluded name: a look at the source only",
        [moved(b"/srv/a/f", b"/srv/a/f.part")],
        Plan(look={b"/srv/a/f": False}),
    ),
    (
        "moved after it was closed: the source stays closed",
        [closed(b"/srv/a/f"), moved(b"/srv/a/f", b"/srv/a/g")],
        Plan(look={b"/srv/a/f": True, b"/srv/a/g": True}),
    ),
    ("moved from outside to outside", [moved(b"/tmp/f", b"/tmp/g")], Plan()),
    (
        "a folder moved between roots: a tree move and both trees",
        [dir_moved(b"/srv/a/d", b"/srv/b/e")],
        Plan(tree_moves=[(b"/srv/a/d", b"/srv/b/e", "b")], trees={b"/srv/a/d", b"/srv/b/e"}),
    ),
    (
        "a folder moved in from outside: the destination's tree only",
        [dir_moved(b"/tmp/d", b"/srv/a/d")],
        Plan(trees={b"/srv/a/d"}),
    ),
    (
        "a folder moved out of the roots: the source's tree only",
        [dir_moved(b"/srv/a/d", b"/tmp/d")],
        Plan(trees={b"/srv/a/d"}),
    ),
    ("a folder changed", [dir_changed(b"/srv/b/d")], Plan(trees={b"/srv/b/d"})),
    (
        "a folder renamed in from outside: surveyed, its files complete",
        [Hint(HintKind.DIR_ARRIVED, b"/srv/b/d")],
        Plan(trees={b"/srv/b/d"}, arrived={b"/srv/b/d"}),
    ),
    (
        "a folder renamed in to an excluded place: nothing",
        [Hint(HintKind.DIR_ARRIVED, b"/srv/a/x/.git")],
        Plan(),
    ),
    ("a folder changed outside every root", [dir_changed(b"/tmp/d")], Plan()),
    (
        "a burst of every kind",
        [
            changed(b"/srv/a/f"),
            moved(b"/srv/a/f", b"/srv/a/g"),
            dir_changed(b"/srv/b/new"),
            closed(b"/srv/b/new/h"),
            dir_moved(b"/srv/a/d", b"/srv/a/e"),
        ],
        Plan(
            look={b"/srv/a/f": False, b"/srv/a/g": True, b"/srv/b/new/h": True},
            tree_moves=[(b"/srv/a/d", b"/srv/a/e", "a")],
            trees={b"/srv/b/new", b"/srv/a/d", b"/srv/a/e"},
        ),
    ),
]


@pytest.mark.parametrize(("name", "hints", "expected"), PLAN_CASES, ids=[c[0] for c in PLAN_CASES])
def test_plan_table(name: str, hints: list[Hint], expected: Plan) -> None:
    """Each batch of hints coalesces into exactly this plan."""
    assert plan(hints, ROOTS) == expected


SINGLES_CASES = [
    # (name, hints, the paths to look at one by one)
    (
        "no trees: every look is a single",
        [changed(b"/srv/a/f"), closed(b"/srv/b/g")],
        {b"/srv/a/f": False, b"/srv/b/g": True},
    ),
    (
        "a look inside a tree being surveyed is not a single",
        [dir_changed(b"/srv/a/d"), closed(b"/srv/a/d/f"), changed(b"/srv/a/d/x/g")],
        {},
    ),
    (
        "a look beside the tree still is",
        [dir_changed(b"/srv/a/d"), closed(b"/srv/a/d2/f"), changed(b"/srv/a/f")],
        {b"/srv/a/d2/f": True, b"/srv/a/f": False},
    ),
    (
        "a file moved into a folder moved in the same batch",
        [dir_moved(b"/srv/a/d", b"/srv/b/d"), moved(b"/srv/a/f", b"/srv/b/d/f")],
        {b"/srv/a/f": False},
    ),
]


@pytest.mark.parametrize(
    ("name", "hints", "expected"), SINGLES_CASES, ids=[c[0] for c in SINGLES_CASES]
)
def test_singles(name: str, hints: list[Hint], expected: dict[bytes, bool]) -> None:
    """Only the looks no survey of the plan's trees covers are made one by one."""
    assert plan(hints, ROOTS).singles() == expected


OUTERMOST_CASES = [
    # (name, folders, the outermost of them)
    ("none", set(), set()),
    ("one", {b"/r/a"}, {b"/r/a"}),
    ("nested reduce to the outermost", {b"/r/a", b"/r/a/b", b"/r/a/b/c"}, {b"/r/a"}),
    ("listed innermost first", {b"/r/a/b/c", b"/r/a/b"}, {b"/r/a/b"}),
    ("siblings stay", {b"/r/a", b"/r/b", b"/r/b/c"}, {b"/r/a", b"/r/b"}),
    (
        "a name that only starts like another",
        {b"/r/a", b"/r/ab", b"/r/a-b"},
        {b"/r/a", b"/r/ab", b"/r/a-b"},
    ),
]


@pytest.mark.parametrize(
    ("name", "folders", "expected"), OUTERMOST_CASES, ids=[c[0] for c in OUTERMOST_CASES]
)
def test_outermost(name: str, folders: set[bytes], expected: set[bytes]) -> None:
    """Folders inside another folder of the set are dropped, and only those."""
    assert outermost(folders) == expected


INSIDE_CASES = [
    # (name, path, folders, inside one of them)
    ("in a folder", b"/r/a/f", {b"/r/a"}, True),
    ("deep in a folder", b"/r/a/x/y/f", {b"/r/b", b"/r/a"}, True),
    ("the folder itself", b"/r/a", {b"/r/a"}, False),
    ("a name that only starts like the folder", b"/r/ab/f", {b"/r/a"}, False),
    ("no folders", b"/r/a/f", set(), False),
]


@pytest.mark.parametrize(
    ("name", "path", "folders", "inside"), INSIDE_CASES, ids=[c[0] for c in INSIDE_CASES]
)
def test_inside_any(name: str, path: bytes, folders: set[bytes], inside: bool) -> None:
    """A path is inside a folder when it lies strictly below it, by whole names."""
    assert inside_any(path, folders) is inside


def test_complete_files() -> None:
    """A file is complete when closed after writing, or renamed in alone or in a folder."""
    todo = plan(
        [
            closed(b"/srv/a/f"),
            changed(b"/srv/a/g"),
            Hint(HintKind.DIR_ARRIVED, b"/srv/b/d"),
            moved(b"/tmp/h", b"/srv/a/h"),
        ],
        ROOTS,
    )
    assert todo.complete(b"/srv/a/f") and todo.complete(b"/srv/a/h")
    assert todo.complete(b"/srv/b/d/x/y")
    assert not todo.complete(b"/srv/a/g") and not todo.complete(b"/srv/b/dx")
