"""Paths: byte-exact prefixes, automatic tags and exclusion patterns."""

from __future__ import annotations

import base64

import pytest

from assetd.paths import ExcludeMatcher, auto_tags, path_json, prefix_upper_bound


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
    ],
)
def test_exclude_patterns(patterns: list[str], rel: bytes, is_dir: bool, excluded: bool) -> None:
    """Patterns follow .gitignore: bare names match at any depth, ** spans folders."""
    assert ExcludeMatcher(patterns).excludes(rel, is_dir=is_dir) is excluded
