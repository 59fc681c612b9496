"""Lists by name, date and size, searched by name, paged by cursor, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from assetd.apply import Tally, apply_observations, observe
from assetd.db import Catalog
from assetd.decide import FileStat
from assetd.exceptions import InvalidRequestError
from assetd.feed import commands
from tests.harness import OLD_NS, run_cli, write

NAMES = [
    "b.png", "A.png", "a.png", "100%.txt", "100x.txt", "a_b.txt", "axb.txt", "Zeta.bin",
    "beta.bin", "b.png.part", "CAPS.PNG", "x.safetensors", "y.safetensors", "z z.txt",
]  # fmt: skip


def populate(catalog: Catalog) -> list[dict[str, Any]]:
    """Locations with names that sort differently by code point and by case, equal
    sizes and mtimes (ties), in two folders; returned as listed in path order."""
    rnd = random.Random(7)
    observations = []
    for i, name in enumerate(NAMES * 2):
        folder = "one" if i < len(NAMES) else "two"
        st = FileStat(
            size=rnd.choice([10, 20, 30]),
            mtime_ns=rnd.choice([1, 2, 3]) * 10**18,
            ctime_ns=1,
            inode=1000 + i,
            device=1,
        )
        observations.append(observe(f"/r/{folder}/{name}".encode(), "r", st, None))
    apply_observations(catalog, observations, Tally())
    items, _ = catalog.list_locations()
    return items


def all_pages(catalog: Catalog, limit: int, **kwargs: Any) -> list[dict[str, Any]]:
    """Every page in turn, each cursor through its wire form (as a client gets it)."""
    msg: dict[str, Any] = {"limit": limit, **kwargs}
    out: list[dict[str, Any]] = []
    while True:
        args = commands.list_args(msg)
        items, after = catalog.list_locations(**args)
        out += items
        cursor = commands.encode_cursor(after, args["sort"])
        if cursor is None:
            return out
        msg["after"] = cursor


def key(sort: str, item: dict[str, Any]) -> Any:
    name = item["path"].rsplit("/", 1)[1]
    return {"name": name, "mtime": item["mtime_ns"], "size": item["size"]}[sort]


@pytest.mark.parametrize("sort", ["name", "mtime", "size"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_every_order_pages_through_every_location_once_in_order(
    catalog: Catalog, sort: str, order: str
) -> None:
    """Paged three at a time, each order yields every location once, sorted by its key
    (ties by location id), the same as one page of all."""
    items = populate(catalog)
    paged = all_pages(catalog, 3, sort=sort, order=order)
    assert sorted(i["path"] for i in paged) == sorted(i["path"] for i in items)
    keys = [key(sort, i) for i in paged]
    assert keys == sorted(keys, reverse=order == "desc")
    assert paged == all_pages(catalog, 1000, sort=sort, order=order)


def test_path_order_pages_both_ways(catalog: Catalog) -> None:
    """The default order is the path; desc reverses it; both page by the path cursor."""
    items = populate(catalog)
    paths = [i["path"] for i in items]
    assert paths == sorted(paths)
    assert [i["path"] for i in all_pages(catalog, 4)] == paths
    assert [i["path"] for i in all_pages(catalog, 4, order="desc")] == paths[::-1]


@pytest.mark.parametrize(
    ("q", "names"),
    [
        ("png", {"b.png", "A.png", "a.png", "b.png.part", "CAPS.PNG"}),
        ("A.P", {"A.png", "a.png"}),
        ("S.pn", {"CAPS.PNG"}),
        ("100%", {"100%.txt"}),  # % is a character, not "anything"
        ("a_b", {"a_b.txt"}),  # _ is a character, not "any one"
        ("z z", {"z z.txt"}),
        ("nothing-like-this", set()),
        ("\\", set()),
    ],
)
def test_q_keeps_names_that_contain_the_text_ignoring_case(
    catalog: Catalog, q: str, names: set[str]
) -> None:
    """``q`` matches the file name, case-insensitively, with ``%`` and ``_`` literal, in
    every order and across pages."""
    populate(catalog)
    for sort in ("path", "name", "size"):
        found = all_pages(catalog, 2, q=q, sort=sort)
        assert sorted(i["path"].rsplit("/", 1)[1] for i in found) == sorted([*names, *names])


def test_q_does_not_match_folder_names(catalog: Catalog) -> None:
    """A folder's name is not the file's name: ``q=one`` finds nothing here."""
    populate(catalog)
    assert all_pages(catalog, 10, q="one") == []


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        ({"sort": "colour"}, "'sort' must be one of"),
        ({"order": "up"}, "'order' must be asc or desc"),
        ({"sort": "name", "after": "L2E"}, "another order"),
        ({"after": "~" + "W10="}, "another order"),
        ({"sort": "size", "after": "~bm90IGpzb24="}, "not a valid cursor"),
        ({"q": 5}, "'q' must be str"),
    ],
)
def test_bad_sort_order_and_cursor_are_clear_errors(msg: dict[str, Any], message: str) -> None:
    """A bad order, or a cursor from another order or not a cursor, is refused with a
    message that names the problem."""
    with pytest.raises(InvalidRequestError, match=message):
        commands.list_args(msg)


def test_a_cursor_of_one_order_is_refused_by_another(catalog: Catalog) -> None:
    """A ``next`` from a list by size cannot continue a list by mtime."""
    populate(catalog)
    args = commands.list_args({"sort": "size", "limit": 2})
    _, after = catalog.list_locations(**args)
    cursor = commands.encode_cursor(after, "size")
    with pytest.raises(InvalidRequestError, match="another order"):
        commands.list_args({"sort": "mtime", "after": cursor})


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_lists_sorted_and_searched_and_refuses_an_unknown_root(
    tmp_path: Path, make_daemon: Any
) -> None:
    """Through a daemon's /api/assets: newest first by mtime, searched by name; a root
    that does not exist is a 400 ``unknown_root`` naming the roots there are."""
    for i in range(5):
        write(tmp_path / "r" / f"pic{i}.png", b"x" * (i + 1), OLD_NS + i * 10**9)
    write(tmp_path / "r" / "notes.txt", b"notes", OLD_NS)
    d = make_daemon().start()
    base = f"http://{d.address}/api/assets"
    status, page = get(f"{base}?sort=mtime&order=desc&q=PIC&limit=2")
    assert status == 200
    assert [i["path"].rsplit("/", 1)[1] for i in page["items"]] == ["pic4.png", "pic3.png"]
    status, rest = get(f"{base}?sort=mtime&order=desc&q=PIC&limit=10&after={page['next']}")
    assert [i["path"].rsplit("/", 1)[1] for i in rest["items"]] == [
        "pic2.png",
        "pic1.png",
        "pic0.png",
    ]
    assert rest["next"] is None
    status, body = get(f"{base}?root=nosuch")
    assert status == 400
    assert body["code"] == "unknown_root"
    assert "'nosuch'" in body["error"] and "r" in body["error"]
    status, body = get(f"{base}?sort=colour")
    assert (status, body["code"]) == (400, "bad_request")


def test_http_location_detail_lists_the_content_s_locations(
    tmp_path: Path, make_daemon: Any
) -> None:
    """/api/location gives the location, its asset's user metadata and every location
    of the same content (a copy included, once hashed); an unknown path is a 404."""
    first = write(tmp_path / "r" / "a" / "same.png", b"same bytes", OLD_NS)
    copy = write(tmp_path / "r" / "b" / "copy.png", b"same bytes", OLD_NS)
    d = make_daemon().start()
    d.until(copy, "hashed", lambda i: i["hash"] is not None)
    proc = run_cli("meta", str(first), "title=Sunset", *d.cli_args())
    assert proc.returncode == 0, proc.stderr
    quoted = urllib.request.quote(str(first))
    status, detail = get(f"http://{d.address}/api/location?path={quoted}")
    assert status == 200
    assert detail["location"]["path"] == str(first)
    assert detail["metadata"] == {"title": "Sunset"}
    assert {i["path"] for i in detail["locations"]} == {str(first), str(copy)}
    status, body = get(f"http://{d.address}/api/location?path=/nowhere/x.png")
    assert (status, body["code"]) == (404, "not_found")
    status, body = get(f"http://{d.address}/api/location?path=relative")
    assert (status, body["code"]) == (400, "bad_request")


@pytest.mark.parametrize("sort", ["path", "mtime"])
def test_missing_only_and_include_missing_in_every_order(catalog: Catalog, sort: str) -> None:
    """Missing locations are listed alone with ``missing_only``, beside the live ones
    with ``include_missing``, and never otherwise, whatever the order."""
    items = populate(catalog)
    gone = {i["path"] for i in items[::5]}
    states = catalog.get_states([p.encode() for p in gone])
    assert catalog.mark_missing([s.id for s in states.values()]) == len(gone)
    only = all_pages(catalog, 2, sort=sort, missing_only=True)
    assert {i["path"] for i in only} == gone and all(i["is_missing"] for i in only)
    live = all_pages(catalog, 2, sort=sort)
    assert {i["path"] for i in live} == {i["path"] for i in items} - gone
    every = all_pages(catalog, 2, sort=sort, include_missing=True)
    assert len(every) == len(items)
