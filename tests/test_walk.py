"""The walk yields paths in the catalog's byte order, which the seeder's merge relies on."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from assetd.walk import Entry, Problem, walk_root

# Names built from characters that sort around "/" (0x2f): ".", "-", "0", and a high byte.
NAME = st.text(alphabet="ab.-0_~é", min_size=1, max_size=4).filter(lambda n: n not in (".", ".."))
TREE = st.recursive(
    st.just(None),  # a file
    lambda children: st.dictionaries(NAME, children, min_size=1, max_size=4),
    max_leaves=25,
)


def build(base: Path, tree: dict[str, object]) -> set[bytes]:
    files: set[bytes] = set()
    for name, child in tree.items():
        path = base / name
        if child is None:
            path.write_bytes(b"")
            files.add(os.fsencode(path))
        else:
            path.mkdir()
            files |= build(path, child)  # type: ignore[arg-type]
    return files


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(NAME, TREE, min_size=1, max_size=5))
def test_walk_is_complete_and_in_byte_order(tree: dict[str, object]) -> None:
    """Every regular file is yielded once, in strictly ascending byte order of full path."""
    base = Path(tempfile.mkdtemp(prefix="assetd-walk-"))
    try:
        expected = build(base, tree)
        paths = [item.path for item in walk_root(os.fsencode(base)) if isinstance(item, Entry)]
        assert paths == sorted(expected)
        assert len(set(paths)) == len(paths)
    finally:
        shutil.rmtree(base)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(NAME, TREE, min_size=1, max_size=5), st.data())
def test_spans_walk_exactly_their_part(tree: dict[str, object], data: st.DataObject) -> None:
    """Walks of adjacent spans, cut anywhere (inside folders too), are the whole walk."""
    base = Path(tempfile.mkdtemp(prefix="assetd-walk-"))
    try:
        expected = sorted(build(base, tree))
        top = os.fsencode(base)
        # Cut points: paths of files, folders and names between them.
        candidates = [*expected, *(p[: p.rindex(b"/")] + b"/" for p in expected)]
        candidates += [p + b"\0" for p in expected]
        cuts = sorted(set(data.draw(st.lists(st.sampled_from(candidates), max_size=3))))
        bounds: list[bytes | None] = [None, *cuts, None]
        walked: list[bytes] = []
        for low, high in itertools.pairwise(bounds):
            part = [i.path for i in walk_root(top, span=(low, high)) if isinstance(i, Entry)]
            assert all((low is None or p >= low) and (high is None or p < high) for p in part)
            walked += part
        assert walked == expected
    finally:
        shutil.rmtree(base)


def test_a_walk_below_the_root_keeps_the_folders_above_on_its_branch(tmp_path: Path) -> None:
    """The survey of a folder inside the root sees the loops the walk of the root sees;
    a folder that is a loop, or beyond one, yields nothing but that loop."""
    base = tmp_path / "r"
    (base / "sub").mkdir(parents=True)
    (base / "a").mkdir()
    (base / "sub" / "b.txt").write_bytes(b"b")
    (base / "sub" / "loop").symlink_to("..")
    (base / "sub" / "self").symlink_to(".")
    (base / "a" / "l").symlink_to("../a")
    r = os.fsencode(base)
    prefix = r + b"/"

    def walk(top: bytes) -> tuple[list[bytes], list[bytes]]:
        items = list(walk_root(top, follow_symlinks=True, root_prefix=prefix))
        entries = [i.path for i in items if isinstance(i, Entry)]
        return entries, [i.path for i in items if isinstance(i, Problem)]

    assert walk(r + b"/sub") == ([r + b"/sub/b.txt"], [r + b"/sub/loop", r + b"/sub/self"])
    assert walk(r + b"/sub/loop") == ([], [r + b"/sub/loop"])
    assert walk(r + b"/sub/loop/a") == ([], [])
    (problem,) = [i for i in walk_root(r + b"/a/l", follow_symlinks=True, root_prefix=prefix)]
    assert isinstance(problem, Problem)
    assert problem.message == (
        f"symlink loop -> ../a ({tmp_path / 'r' / 'a'}, a folder above it): not followed; "
        "remove the link or exclude it"
    )


def test_a_loop_is_reported_by_one_span(tmp_path: Path) -> None:
    """Spans cut inside a loop's place in the order all come to it; one reports it."""
    base = tmp_path / "r"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "b.txt").write_bytes(b"b")
    (base / "sub" / "loop").symlink_to("..")
    r = os.fsencode(base)
    loop = r + b"/sub/loop"
    cuts = [loop, loop + b"/", loop + b"/m", loop + b"0"]
    bounds: list[bytes | None] = [None, *cuts, None]
    problems = [
        item.path
        for low, high in itertools.pairwise(bounds)
        for item in walk_root(r, follow_symlinks=True, span=(low, high))
        if isinstance(item, Problem)
    ]
    assert problems == [loop]
