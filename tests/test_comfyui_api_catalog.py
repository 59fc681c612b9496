"""The catalog's part for ComfyUI's API (comfyrefs), on SQLite and PostgreSQL alike:
filters, orders and pages, tag counts, and the API's writes; and the pure rules of the
API's queries."""

from __future__ import annotations

from typing import Any

import pytest

from assetd.apply import Tally, apply_observations, observe
from assetd.catalog import Catalog
from assetd.catalog.comfyrefs import RefFilter, RefSort
from assetd.comfyui.api_errors import ApiError
from assetd.comfyui.api_files import _byte_range
from assetd.comfyui.api_query import decode_cursor, encode_cursor, metadata_matches, parse_list
from assetd.decide import FileStat

NAMES = [b"Zeta.bin", b"alpha.bin", b"a_b.bin", b"axb.bin", b"100%.bin", "é.bin".encode()]


def add(catalog: Catalog, *names: bytes) -> list[int]:
    catalog.register_roots([("r", b"/r/")])  # its folders are tags: r, d
    paths = [b"/r/d/" + name for name in names]
    observations = [
        observe(p, "r", FileStat(n + 1, 1, 1, n + 1, 1), None) for n, p in enumerate(paths)
    ]
    apply_observations(catalog, observations, Tally())
    states = catalog.get_states(paths)
    return [states[p].id for p in paths]


def names(catalog: Catalog, where: RefFilter | None = None, **kw: Any) -> list[str]:
    refs = catalog.comfyrefs
    ids, _, _ = refs.page(where or RefFilter(), RefSort("name", False), limit=100, **kw)
    rows = refs.rows(ids)
    return [rows[i].name or rows[i].file_name for i in ids]


def test_name_order_is_byte_order_on_every_engine(catalog: Catalog) -> None:
    """Sorted by name: byte order (upper case first, é last), names of its own included."""
    ids = add(catalog, *NAMES)
    assert names(catalog) == sorted(n.decode() for n in NAMES)
    catalog.comfyrefs.rename(ids[1], "ZZ-renamed")
    assert names(catalog) == sorted(["ZZ-renamed", *(n.decode() for n in NAMES if n != NAMES[1])])
    assert names(catalog)[1:3] == ["ZZ-renamed", "Zeta.bin"]


def test_name_contains_is_literal_and_folds_case(catalog: Catalog) -> None:
    """_ and % are themselves; ASCII case is ignored."""
    add(catalog, *NAMES)
    assert names(catalog, RefFilter(name_contains="A_B")) == ["a_b.bin"]
    assert names(catalog, RefFilter(name_contains="%")) == ["100%.bin"]
    assert names(catalog, RefFilter(name_contains="ZETA")) == ["Zeta.bin"]
    assert names(catalog, RefFilter(name_contains="!")) == []


def test_keyset_pages_and_hidden_locations(catalog: Catalog) -> None:
    """after continues past (value, id); a hidden location is out of pages, counts and
    tag counts, until shown again; a second hide is refused."""
    ids = add(catalog, *NAMES)
    refs = catalog.comfyrefs
    first, total, more = refs.page(RefFilter(), RefSort("size", True), limit=2)
    assert total == 6 and more and first == [ids[5], ids[4]]
    rest, _, more = refs.page(RefFilter(), RefSort("size", True), limit=10, after=(5, ids[4]))
    assert rest == ids[3::-1] and not more
    assert refs.hide(ids[0]) and not refs.hide(ids[0])
    assert refs.page(RefFilter(), RefSort("created_at", False), limit=10)[1] == 5
    assert refs.tag_counts(None, False)["d"] == 5 and refs.tag_counts("d", True) == {"d": 5}
    refs.unhide(ids[0])
    assert refs.tag_counts(None, False) == {"d": 6, "r": 6}


def test_a_total_kept_for_the_next_page_follows_every_change(catalog: Catalog) -> None:
    """The count of matches is kept while the catalog stays as it was, and counted again
    after anything changes: a hide, a show, a new file, a file gone, a tag given."""
    ids = add(catalog, b"a.bin", b"b.bin")
    refs = catalog.comfyrefs

    def total(where: RefFilter | None = None) -> int:
        return refs.page(where or RefFilter(), RefSort("created_at", False), limit=1)[1]

    assert total() == total() == 2
    refs.hide(ids[0])
    assert total() == 1
    refs.unhide(ids[0])
    assert total() == 2
    add(catalog, b"c.bin")
    assert total() == 3
    catalog.mark_missing([ids[1]])
    assert total() == 2
    assert total(RefFilter(tags_any=("fav",))) == 0
    catalog.change_tags(b"/r/d/a.bin", add=["fav"])
    assert total(RefFilter(tags_any=("fav",))) == 1


def test_tag_filters_and_counts(catalog: Catalog) -> None:
    """User tags and automatic ones both match; a prefix is literal; unused tags count 0."""
    ids = add(catalog, *NAMES)
    refs = catalog.comfyrefs
    catalog.change_tags(b"/r/d/alpha.bin", add=["x_y"])
    catalog.change_tags(b"/r/d/Zeta.bin", add=["xzy", "gone"])
    catalog.change_tags(b"/r/d/Zeta.bin", remove=["gone"])
    assert names(catalog, RefFilter(tags_all=("d", "x_y"))) == ["alpha.bin"]
    assert names(catalog, RefFilter(tags_any=("x_y", "xzy"), tags_none=("xzy",))) == ["alpha.bin"]
    assert refs.tag_counts("x_", False) == {"x_y": 1}
    assert refs.add_tags(ids[0], ["d", "new"]) == (["new"], ["d"])
    assert refs.remove_tags(ids[0], ["d", "new", "none"]) == (["new"], ["none"], ["d"])


def test_times_and_metadata_writes(catalog: Catalog) -> None:
    """rename and replace_metadata move updated_at; touch moves last_access; metadata is
    replaced whole."""
    (loc,) = add(catalog, b"m.bin")
    refs = catalog.comfyrefs
    catalog.change_metadata(b"/r/d/m.bin", {"old": 1})
    refs.replace_metadata(loc, {"new": [1, 2]})
    refs.touch(loc)
    row = refs.row(loc)
    assert row is not None and row.metadata == {"new": [1, 2]}
    assert row.updated_at is not None and row.last_access is not None
    assert row.updated_at >= row.created_at and row.last_access >= row.updated_at


# -- the pure rules ------------------------------------------------------------------


def test_cursors_round_trip_and_refuse_another_sort() -> None:
    """A cursor decodes to what it was made of, for its own sort and order only."""
    sort = RefSort("name", False)
    cursor = encode_cursor(sort, "b.bin", 7)
    assert decode_cursor(cursor, sort) == ("b.bin", 7)
    for other in (
        RefSort("name", True),
        RefSort("size", False),
        RefSort("last_access_time", False),
    ):
        with pytest.raises(ApiError):
            decode_cursor(cursor, other)
    with pytest.raises(ApiError):
        decode_cursor(
            encode_cursor(RefSort("size", False), float("inf"), 1), RefSort("size", False)
        )


@pytest.mark.parametrize(
    ("stored", "wanted", "matches"),
    [
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": True}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": "1"}, {"a": 1}, False),
        ({}, {"a": None}, True),
        ({"a": None}, {"a": None}, True),
        ({"a": 0}, {"a": None}, False),
        ({"a": [1, "x"]}, {"a": "x"}, True),
        ({"a": [1, "x"]}, {"a": ["y", 1]}, True),
        ({"a": {"b": [1, True]}}, {"a": {"b": [1, True]}}, True),
        ({"a": {"b": [1, True]}}, {"a": {"b": [1, 1]}}, False),
        ({"a": [{"k": 1}]}, {"a": {"k": 1}}, True),
        ({"a": 1, "b": 2}, {"a": 1, "b": 3}, False),
    ],
)
def test_metadata_matching(
    stored: dict[str, object], wanted: dict[str, object], matches: bool
) -> None:
    """ComfyUI's matching: types apart, lists OR'ed, null for absent, objects equal."""
    assert metadata_matches(stored, wanted) is matches


@pytest.mark.parametrize(
    ("header", "size", "wanted"),
    [
        (None, 10, None),
        ("bytes=2-4", 10, (2, 4)),
        ("bytes=2-", 10, (2, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=5-100", 10, (5, 9)),
        ("bytes=10-", 10, False),
        ("bytes=4-2", 10, False),
        ("bytes=-0", 10, False),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
    ],
)
def test_byte_ranges(header: str | None, size: int, wanted: object) -> None:
    """One range is served, several or another unit mean the whole file, none that
    fits is 416."""
    assert _byte_range(header, size) == wanted


def test_query_lists_concatenate_and_scalars_come_once() -> None:
    """Repeated tag keys add up, split on commas; a repeated scalar is invalid."""
    query = parse_list({"include_tags": ["a,b", " c "], "tags_any": ["x"]})
    assert query.where.tags_all == ("a", "b", "c") and query.where.tags_any == ("x",)
    with pytest.raises(ApiError):
        parse_list({"sort": ["name", "size"]})
