"""Paths: byte-exact prefixes, automatic tags and exclusion patterns."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from assetd.paths import ExcludeMatcher, auto_tags, path_json, prefix_upper_bound
from assetd.walk import walk_root
from tests.conftest import write


@pytest.mark.parametrize(
    ("prefix", "inside", "outside"),
    [
        (
            b"/srv/models/",
            [b"/srv/models/a", b"/srv/models/\xff\xff"],
            [b"/srv/models", b"/srv/models0", b"/srv/Models/a"],
        ),
        (
            b"/d/100%_done/",
            [b"/d/100%_done/x"],
            [b"/d/100%Xdone/x", b"/d/100%_donex/y", b"/d/1000_done/x"],
        ),
        (b"/d/my_folder/", [b"/d/my_folder/x"], [b"/d/myXfolder/x", b"/d/MY_FOLDER/x"]),
        (b"/d/has spaces/", [b"/d/has spaces/a b"], [b"/d/has  spaces/x", b"/d/has_spaces/x"]),
    ],
)
def test_prefix_range_is_exact(prefix: bytes, inside: list[bytes], outside: list[bytes]) -> None:
    """prefix <= path < upper holds exactly for paths that start with the prefix."""
    upper = prefix_upper_bound(prefix)
    for path in inside:
        assert prefix <= path < upper, path
    for path in outside:
        assert not (prefix <= path < upper), path


def test_upper_bound_carries_past_0xff() -> None:
    """A prefix ending in 0xff bytes still gets the least upper bound."""
    assert prefix_upper_bound(b"a\xff\xff") == b"b"


def test_auto_tags_from_folders() -> None:
    """The root name and each folder between root and file become tags."""
    assert auto_tags("models", b"/m/", b"/m/checkpoints/sdxl/x.safetensors") == {
        "models",
        "checkpoints",
        "sdxl",
    }
    assert auto_tags("models", b"/m/", b"/m/x.safetensors") == {"models"}


def test_path_json_carries_undecodable_bytes() -> None:
    """A name that is not UTF-8 keeps its exact bytes in path_bytes_b64."""
    assert path_json(b"/r/ok.png") == {"path": "/r/ok.png"}
    raw = b"/r/bad\xff.png"
    data = path_json(raw)
    assert base64.b64decode(data["path_bytes_b64"]) == raw
    assert data["path"] == "/r/bad\ufffd.png"


@pytest.mark.parametrize(
    ("patterns", "rel", "is_dir", "excluded"),
    [
        (["*.part"], b"a/b/file.part", False, True),
        (["*.part"], b"file.partial", False, False),
        (["**/.git/**"], b".git", True, True),
        (["**/.git/**"], b"deep/er/.git", True, True),
        (["**/.git/**"], b"deep/.git/config", False, True),
        (["**/.git/**"], b"deep/.gitignore", False, False),
        (["cache/*"], b"cache/x", False, True),
        (["cache/*"], b"sub/cache/x", False, False),
        (["tmp"], b"a/tmp", True, True),
        (["?.tmp"], b"a.tmp", False, True),
        (["?.tmp"], b"ab.tmp", False, False),
        (["/renders"], b"renders", True, True),
        (["/renders"], b"sub/renders", True, False),
        (["a/**/b"], b"a/b", False, True),
        (["a/**/b"], b"a/x/y/b", False, True),
        (["a/**/b"], b"x/a/b", False, False),
        (["\\!x", "\\#x"], b"!x", False, True),
        (["\\!x", "\\#x"], b"#x", False, True),
        (["#x"], b"#x", False, False),
    ],
)
def test_exclude_patterns(patterns: list[str], rel: bytes, is_dir: bool, excluded: bool) -> None:
    """Patterns follow .gitignore: bare names match at any depth, ** spans folders."""
    assert ExcludeMatcher(patterns).excludes(rel, is_dir=is_dir) is excluded


@pytest.mark.parametrize(
    ("patterns", "rel", "is_dir", "excluded"),
    [
        (["*.tmp", "!keep.tmp"], b"a.tmp", False, True),
        (["*.tmp", "!keep.tmp"], b"keep.tmp", False, False),
        (["*.tmp", "!keep.tmp"], b"deep/keep.tmp", False, False),
        (["!keep.tmp", "*.tmp"], b"keep.tmp", False, True),
        (["cache/*", "!cache/keep/"], b"cache/keep", True, False),
        (["cache/*", "!cache/keep/"], b"cache/keep/x.png", False, False),
        (["cache/*", "!cache/keep/"], b"cache/other/x.png", False, True),
        (["build/*", "!build/keep.txt"], b"build/keep.txt", False, False),
        (["build/*", "!build/keep.txt"], b"build/other.txt", False, True),
    ],
)
def test_exclude_negation(patterns: list[str], rel: bytes, is_dir: bool, excluded: bool) -> None:
    """A later ``!`` pattern re-includes what an earlier one excluded; the last match wins."""
    assert ExcludeMatcher(patterns).excludes(rel, is_dir=is_dir) is excluded


@pytest.mark.parametrize(
    ("patterns", "rel", "excluded"),
    [
        (["[ab].png"], b"a.png", True),
        (["[ab].png"], b"sub/b.png", True),
        (["[ab].png"], b"c.png", False),
        (["shot[0-9].png"], b"shot7.png", True),
        (["shot[0-9].png"], b"shotx.png", False),
        (["[!a].png"], b"b.png", True),
        (["[!a].png"], b"a.png", False),
    ],
)
def test_exclude_character_classes(patterns: list[str], rel: bytes, excluded: bool) -> None:
    """``[...]`` matches one character of a set or range, ``[!...]`` one outside it."""
    assert ExcludeMatcher(patterns).excludes(rel, is_dir=False) is excluded


@pytest.mark.parametrize(
    ("rel", "is_dir", "excluded"),
    [
        (b"build", True, True),
        (b"sub/build", True, True),
        (b"build", False, False),
        (b"sub/build", False, False),
        (b"build/x.png", False, True),
    ],
)
def test_a_trailing_slash_matches_folders_only(rel: bytes, is_dir: bool, excluded: bool) -> None:
    """``build/`` excludes a folder named build (and what is in it), not a file so named."""
    assert ExcludeMatcher(["build/"]).excludes(rel, is_dir=is_dir) is excluded


@pytest.mark.parametrize(
    "patterns",
    [["build/", "!build/keep.txt"], ["build", "!keep.txt"], ["/build/", "!*.txt"]],
)
def test_nothing_in_an_excluded_folder_is_re_included(patterns: list[str]) -> None:
    """As in git, a ``!`` pattern cannot bring back a file whose folder is excluded: the
    walk never enters the folder, and a watcher event for the file is dropped alike."""
    matcher = ExcludeMatcher(patterns)
    assert matcher.excludes(b"build", is_dir=True)
    assert matcher.excludes(b"build/keep.txt", is_dir=False)
    assert matcher.excludes(b"build/deeper/keep.txt", is_dir=False)


def test_the_walk_and_the_matcher_agree(tmp_path: Path) -> None:
    """Every file the walk skips is one ``excludes`` excludes, and every file it yields
    is one it keeps, negations included."""
    for rel in ["build/keep.txt", "build/x.png", "keep.txt", "a.tmp", "keep.tmp", "d/keep.tmp",
                "d/a.tmp", "cache/keep/x", "cache/y", "buildx/keep.txt"]:  # fmt: skip
        write(tmp_path / rel)
    matcher = ExcludeMatcher(["build/", "!build/keep.txt", "*.tmp", "!keep.tmp", "cache/*",
                              "!cache/keep/"])  # fmt: skip
    top = os.fsencode(tmp_path)
    walked = {e.path[len(top) + 1 :] for e in walk_root(top, exclude=matcher)}
    assert walked == {b"keep.txt", b"keep.tmp", b"d/keep.tmp", b"cache/keep/x", b"buildx/keep.txt"}
    for path, _dirs, files in os.walk(top):
        for name in files:
            rel = os.path.join(path, name)[len(top) + 1 :]
            assert matcher.excludes(rel, is_dir=False) is (rel not in walked), rel


@pytest.mark.parametrize(
    "pattern", ["*.part", "tmp", "build/", "/build", "cache/*", "**/.git/**", "a/**/b", "[ab]"]
)
def test_without_negation_what_is_below_an_excluded_folder_is_excluded(pattern: str) -> None:
    """The matcher asks only about the path itself when no pattern negates: a folder the
    pattern excludes makes it exclude everything below that folder too."""
    matcher = ExcludeMatcher([pattern])
    folders = [b"x.part", b"d/tmp", b"build", b"cache/c", b".git", b"d/.git", b"a/b", b"a/z/b",
               b"a", b"d/b"]  # fmt: skip
    for folder in folders:
        if matcher.excludes(folder, is_dir=True):
            for below in (folder + b"/f", folder + b"/sub/f", folder + b"/sub"):
                assert matcher.excludes(below, is_dir=False), (folder, below)
                assert matcher.excludes(below, is_dir=True), (folder, below)


def test_an_invalid_pattern_matches_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A pattern git rejects (a trailing backslash, a lone ``!``) is logged and matches
    nothing; the others still apply."""
    matcher = ExcludeMatcher(["oops\\", "!", "*.part"])
    assert "oops" in caplog.text
    assert matcher.excludes(b"x.part", is_dir=False)
    assert not matcher.excludes(b"oops\\", is_dir=False)
    assert not matcher.excludes(b"oops", is_dir=False)


def test_non_utf8_names_are_matched() -> None:
    """Names that are not UTF-8 are matched through their surrogate-escaped text."""
    matcher = ExcludeMatcher(["*.part", "bad\udcff/"])
    assert matcher.excludes(b"d/\xff.part", is_dir=False)
    assert matcher.excludes(b"bad\xff", is_dir=True)
    assert not matcher.excludes(b"d/\xff.png", is_dir=False)


def test_no_patterns_exclude_nothing() -> None:
    """An empty matcher is false, and excludes nothing."""
    matcher = ExcludeMatcher([])
    assert not matcher
    assert not matcher.excludes(b"anything", is_dir=True)
    assert ExcludeMatcher(["*.part"]).patterns == ("*.part",)
