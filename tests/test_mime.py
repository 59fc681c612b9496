"""Mime types from names: the answer remembered per suffix is the table's own answer."""

from __future__ import annotations

import os

import pytest

from assetd.mime import _mime_table, guess_mime

NAMES = [
    b"/r/b.png",
    b"/r/B.PNG",
    b"/r/.png",  # only a suffix: no type
    b"/r/x..png",
    b"/r/x.tar.gz",  # an encoding: the type comes from the suffix before it
    b"/r/y.gz",
    b"/r/x.tgz",
    b"/r/x",
    b"/r/m.safetensors",
    b"/r/\xff\xfe.jpg",  # not UTF-8
    b"/r/x.weird",
]


@pytest.mark.parametrize("path", NAMES)
def test_a_remembered_answer_is_the_tables(path: bytes) -> None:
    """Asked twice (the second time from what was remembered), the answer is what the
    mime table says for the whole name."""
    expected = _mime_table().guess_type(os.fsdecode(path), strict=False)[0]
    assert guess_mime(path) == expected
    assert guess_mime(path) == expected
    assert (
        guess_mime(b"/elsewhere/other" + path[path.rfind(b".") :])
        == (
            _mime_table().guess_type(
                "/elsewhere/other" + os.fsdecode(path[path.rfind(b".") :]), strict=False
            )[0]
        )
    )


def test_types_assetd_adds() -> None:
    assert guess_mime(b"/m/model.safetensors") == "application/x-safetensors"
    assert guess_mime(b"/m/model.gguf") == "application/x-gguf"
    assert guess_mime(b"/m/x.tar.gz") == "application/x-tar"
