"""ComfyUI's asset API, read: ids, the Asset object, the list with its filters, order and
pages, detail, content, the hash check and tag counts, against one real daemon."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assetd.comfyui.api_ids import uuid_of
from tests.comfy import PNG, Api, comfy_daemon, install
from tests.harness import OLD_NS, Daemon, write

SIZES = {"base": 4096, "foo_bar": 1000, "fooxbar": 2000, "foobar": 3000, "style": 500}
CONTENT = {name: os.urandom(size) for name, size in SIZES.items()}
BASE_META = {"purpose": "test", "epoch": 1, "flags": ["x", "y"], "rate": 1.23, "active": True}
STYLE_META = {
    "epoch": 2,
    "mix": ["1", 1, True, None],
    "nested": {"a": 1, "b": [1, 2]},
    "objs": [{"k": 1}, {"k": 2}],
    "weird.key": "v",
    "path/like": "p",
    "with:colon": "c",
    "ключ": "значение",
    "emoji": "🙂",
}
FOOBAR_META = {"count": 0, "choices": [True, False], "maybe": None}
TOTAL = 11  # the files the fixture writes


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Path]]:
    """One daemon for the read-only tests: models, inputs and outputs, with tags and
    metadata given through the API."""
    tmp = tmp_path_factory.mktemp("comfy-read")
    comfy = install(tmp / "ComfyUI")
    ckpt = comfy / "models" / "checkpoints"
    write(ckpt / "sdxl" / "base.safetensors", CONTENT["base"], OLD_NS)
    for name in ("foo_bar", "fooxbar", "foobar"):
        write(ckpt / f"{name}.safetensors", CONTENT[name], OLD_NS)
    write(comfy / "models" / "loras" / "style.safetensors", CONTENT["style"], OLD_NS)
    write(comfy / "models" / "loras" / "CaseMix.SAFE", "case", OLD_NS)
    write(comfy / "input" / "pic.png", PNG, OLD_NS)
    write(comfy / "input" / "100%_done" / "x y.png", PNG + b"2", OLD_NS)
    write(comfy / "output" / "page.html", "<html><script>1</script></html>", OLD_NS)
    write(comfy / "output" / "notes.txt", "plain notes\n", OLD_NS)
    write(comfy / "output" / "drawing.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>", OLD_NS)
    daemon = comfy_daemon(tmp, comfy).start()
    api = Api(daemon)
    try:
        for name, meta in (("base", BASE_META), ("style", STYLE_META), ("foobar", FOOBAR_META)):
            found = api.wait_listed(f"{name}.safetensors")
            assert (
                api.send_json("PUT", f"/api/assets/{found['id']}", {"user_metadata": meta}).status
                == 200
            )
        given = {"base": ["unit-tests", "alpha"], "style": ["unit-tests", "ALPHA"]}
        for name, tags in {**given, "foo_bar": ["unit-tests", "beta"]}.items():
            found = api.wait_listed(f"{name}.safetensors")
            assert (
                api.send_json("POST", f"/api/assets/{found['id']}/tags", {"tags": tags}).status
                == 200
            )
        for name in ("CaseMix.SAFE", "pic.png", "x y.png", "page.html", "notes.txt", "drawing.svg"):
            api.wait_listed(name)
        yield api, comfy
    finally:
        daemon.close()


@pytest.fixture
def api(served: tuple[Api, Path]) -> Api:
    return served[0]


def error(reply: Any, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, reply.body
    body = reply.json
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["details"], dict)
    return dict(body["error"])


# -- ids and the Asset object --------------------------------------------------------


def test_ids_are_uuids_fixed_by_catalog_and_location() -> None:
    """A location's id is a version-8 UUID computed from the catalog, the location id and
    its first sighting; the location id is read back from it, nothing else changes it."""
    from assetd.comfyui.api_ids import location_of

    one = uuid_of("catalog-a", 42, 1.5e9)
    assert uuid.UUID(one).version == 8 and str(uuid.UUID(one)) == one
    assert location_of(one) == location_of(one.upper()) == 42
    assert uuid_of("catalog-a", 42, 1.5e9) == one
    assert uuid_of("catalog-b", 42, 1.5e9) != one  # another catalog's location 42
    assert uuid_of("catalog-a", 42, 1.6e9) != one  # a later location that took id 42
    assert location_of(str(uuid.uuid4())) is None
    assert location_of(uuid_of("c", (1 << 62) - 1, 0.0)) == (1 << 62) - 1


def test_an_asset_is_a_location_in_comfyuis_shape(api: Api) -> None:
    """A model's Asset carries ComfyUI's fields: hash twice, loader path below the
    category, display name below models/, tags sorted, metadata with filename forced,
    times in UTC with Z, no preview for a model; nulls are left out."""
    item = api.by_name("base.safetensors")
    assert uuid.UUID(item["id"]).version == 8
    assert item["hash"] == item["asset_hash"] and item["hash"].startswith("blake3:")
    assert item["loader_path"] == "sdxl/base.safetensors"
    assert item["display_name"] == "checkpoints/sdxl/base.safetensors"
    assert item["size"] == 4096 and item["mime_type"] == "application/x-safetensors"
    assert item["tags"] == sorted(item["tags"])
    assert {
        "alpha",
        "checkpoints",
        "sdxl",
        "models",
        "model_type:checkpoints",
        "unit-tests",
    } <= set(item["tags"])
    assert item["user_metadata"] == {**BASE_META, "filename": "sdxl/base.safetensors"}
    assert item["is_immutable"] is False
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
    for key in ("created_at", "updated_at", "last_access_time"):
        assert stamp.fullmatch(item[key]), item[key]
    assert "preview_url" not in item and None not in item.values()
    assert api.asset(item["id"]) == item


def test_inputs_are_named_below_their_folder_and_previewed(api: Api) -> None:
    """A file under input: loader path and display name below input/, and a preview URL
    into /api/view with the subfolder split off and percent-encoded."""
    pic = api.by_name("pic.png")
    assert pic["loader_path"] == pic["display_name"] == "pic.png"
    assert pic["preview_url"] == "/api/view?type=input&filename=pic.png"
    deep = api.by_name("x y.png")
    assert deep["loader_path"] == "100%_done/x y.png"
    assert deep["preview_url"] == "/api/view?type=input&filename=x%20y.png&subfolder=100%25_done"
    assert "preview_url" in api.by_name("notes.txt")  # text/* is previewed too


def test_unknown_and_foreign_ids_are_not_found(api: Api) -> None:
    """A random UUID, another catalog's UUID of an existing location id, and a path that
    is no UUID: 404 (ASSET_NOT_FOUND for UUIDs, with the id in details)."""
    real = api.by_name("pic.png")["id"]
    from assetd.comfyui.api_ids import location_of

    foreign = uuid_of("another-catalog", location_of(real) or 0, 0.0)
    for asset_id in (str(uuid.uuid4()), foreign):
        body = error(api.get(f"/api/assets/{asset_id}"), 404, "ASSET_NOT_FOUND")
        assert body["details"] == {"id": asset_id}
    assert api.get("/api/assets/not-a-uuid").status == 404
    assert api.get("/api/assets/not-a-uuid/content").status == 404
    assert api.get(f"/api/assets/{real.upper()}").json["id"] == real


# -- the list ------------------------------------------------------------------------


def test_default_order_is_newest_first_with_total_and_has_more(api: Api) -> None:
    """Without sort: created_at descending (ties by id); limit and offset page through,
    has_more says whether the offset has reached the total; beyond the total, nothing."""
    every = api.listed(limit=500)
    total = every["total"]
    assert total == len(every["assets"]) == TOTAL and every["has_more"] is False
    keys = [(a["created_at"], uuid.UUID(a["id"]).int & ((1 << 62) - 1)) for a in every["assets"]]
    assert keys == sorted(keys, reverse=True)
    first = api.listed(limit=3)
    assert first["has_more"] is True and len(first["assets"]) == 3
    assert [a["id"] for a in first["assets"]] == [a["id"] for a in every["assets"][:3]]
    rest = api.listed(limit=3, offset=TOTAL - 1)
    assert [a["id"] for a in rest["assets"]] == [every["assets"][-1]["id"]] and not rest["has_more"]
    beyond = api.listed(offset=50)
    assert beyond["assets"] == [] and beyond["has_more"] is False and beyond["total"] == total


def test_sort_by_name_and_size_both_ways(api: Api) -> None:
    """sort=name is byte order (upper case first); sort=size orders by bytes."""
    names = api.names(sort="name", order="asc", limit=500)
    assert names == sorted(names) and names[0] == "CaseMix.SAFE"
    assert api.names(sort="name", order="desc", limit=500) == names[::-1]
    sizes = [a["size"] for a in api.listed(sort="size", order="asc", limit=500)["assets"]]
    assert sizes == sorted(sizes)
    down = [a["size"] for a in api.listed(sort="size", limit=500)["assets"]]
    assert down == sorted(sizes, reverse=True)


def test_bad_list_queries_are_invalid_query(api: Api) -> None:
    """Out-of-range or malformed parameters: 400 INVALID_QUERY, never a 500."""
    for query in (
        {"offset": "-1"},
        {"limit": "abc"},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": ["1", "2"]},
        {"sort": "bogus"},
        {"sort": "Name"},
        {"order": "up"},
        {"metadata_filter": "{not json"},
        {"metadata_filter": '[{"x": 1}]'},
        {"name_contains": ["a", "b"]},
    ):
        error(api.get("/api/assets", **query), 400, "INVALID_QUERY")
    assert api.listed(limit=500)["total"] == TOTAL


def test_tag_filters_all_any_none_and_their_old_names(api: Api) -> None:
    """include_tags/tags_all need every tag, tags_any one, exclude_tags/tags_none none (and
    win over any); CSV, repeated keys, spaces and repeats are one list; tags are case
    sensitive; an unknown tag matches nothing."""
    assert sorted(api.names(include_tags="unit-tests,alpha")) == ["base.safetensors"]
    assert sorted(api.names(tags_all=["unit-tests", " alpha ", "alpha"])) == ["base.safetensors"]
    assert sorted(api.names(include_tags="unit-tests", exclude_tags="beta")) == [
        "base.safetensors",
        "style.safetensors",
    ]
    assert api.names(tags_all="ALPHA") == ["style.safetensors"]
    assert sorted(api.names(tags_any="alpha,beta")) == ["base.safetensors", "foo_bar.safetensors"]
    assert sorted(api.names(tags_any=["alpha", "beta"], tags_none="beta")) == ["base.safetensors"]
    assert api.names(tags_all="unit-tests", tags_any="beta") == ["foo_bar.safetensors"]
    assert api.names(include_tags="no-such-tag") == []
    assert api.listed(tags_any="", tags_none="", include_tags="loras")["total"] == 2
    assert api.names(include_tags="input", tags_none="100%_done") == ["pic.png"]
    mixed = api.listed(include_tags="unit-tests", tags_none="beta")  # old and new, other slots
    assert mixed["total"] == 2
    legacy_clash = api.listed(include_tags="alpha", exclude_tags="alpha")
    assert legacy_clash["assets"] == [] and legacy_clash["total"] == 0


def test_tag_filter_conflicts_are_invalid_tag_filter(api: Api) -> None:
    """One slot named twice, a tag both required and rejected, and more than 100 tags in
    one list: 400 INVALID_TAG_FILTER with ComfyUI's details; any/none overlap is fine."""
    body = error(api.get("/api/assets", include_tags="a", tags_all="b"), 400, "INVALID_TAG_FILTER")
    assert body["details"] == {"parameters": ["include_tags", "tags_all"]}
    body = error(api.get("/api/assets", exclude_tags="a", tags_none="b"), 400, "INVALID_TAG_FILTER")
    assert body["details"] == {"parameters": ["exclude_tags", "tags_none"]}
    body = error(
        api.get("/api/assets", include_tags="b,a", tags_none="a,b,c"), 400, "INVALID_TAG_FILTER"
    )
    assert body["details"] == {
        "conflicting_tags": ["a", "b"],
        "parameters": ["include_tags", "tags_none"],
    }
    many = ",".join(f"t{n}" for n in range(101))
    body = error(api.get("/api/assets", tags_any=many), 400, "INVALID_TAG_FILTER")
    assert body["details"] == {"parameter": "tags_any", "count": 101, "max": 100}
    assert api.get("/api/assets", include_tags=",".join(f"t{n}" for n in range(100))).status == 200
    assert api.get("/api/assets", tags_any=",".join(["same"] * 150)).status == 200
    assert api.get("/api/assets", tags_any="a", tags_none="a").status == 200
    assert api.get("/api/assets", tags_all="ALPHA", tags_none="alpha").status == 200


def test_name_contains_is_case_insensitive_and_literal(api: Api) -> None:
    """name_contains ignores (ASCII) case, and takes _ and % as themselves."""
    assert api.names(name_contains="casemix") == ["CaseMix.SAFE"]
    assert "CaseMix.SAFE" in api.names(name_contains=".SAFE") == api.names(name_contains=".safe")
    assert api.names(name_contains="case") == ["CaseMix.SAFE"]
    found = api.listed(name_contains="foo_bar")
    assert found["total"] == 1 and found["assets"][0]["name"] == "foo_bar.safetensors"
    assert sorted(api.names(name_contains="foo")) == [
        "foo_bar.safetensors",
        "foobar.safetensors",
        "fooxbar.safetensors",
    ]
    assert api.names(name_contains="%") == []
    assert api.listed(name_contains="")["total"] == TOTAL


def test_a_cursor_walks_every_sort_completely_in_order(api: Api) -> None:
    """after/next_cursor: each walk meets every asset once, in order; the last page has
    no next_cursor and has_more false; the first page mints a cursor without after."""
    every = api.listed(limit=500, sort="name", order="asc")["assets"]
    for sort, order in (
        ("name", "asc"),
        ("created_at", "desc"),
        ("updated_at", "desc"),
        ("size", "desc"),
    ):
        pages = list(api.walk(sort=sort, order=order, limit=3))
        seen = [a["id"] for page in pages for a in page["assets"]]
        assert sorted(seen) == sorted(a["id"] for a in every) and len(seen) == len(set(seen))
        assert all(p["has_more"] for p in pages[:-1]) and not pages[-1]["has_more"]
        assert "next_cursor" not in pages[-1] and pages[0]["total"] == TOTAL
    walked = [
        a["name"] for page in api.walk(sort="name", order="asc", limit=2) for a in page["assets"]
    ]
    assert walked == [a["name"] for a in every]
    sizes = [
        a["size"] for page in api.walk(sort="size", order="desc", limit=2) for a in page["assets"]
    ]
    assert sizes == sorted(sizes, reverse=True)
    assert "next_cursor" not in api.listed(limit=500)
    assert "next_cursor" not in api.listed(limit=TOTAL)  # exactly filled: no phantom cursor
    assert "next_cursor" not in api.listed(limit=2, sort="last_access_time")


def test_bad_cursors_are_invalid_cursor(api: Api) -> None:
    """Garbage, a cursor for another sort or order, an absurd value, or after with
    last_access_time: 400 INVALID_CURSOR; after wins over offset."""
    cursor = api.listed(sort="name", order="asc", limit=2)["next_cursor"]
    second = api.listed(sort="name", order="asc", limit=2, after=cursor)
    assert api.listed(sort="name", order="asc", limit=2, after=cursor, offset=999) == second
    for query in (
        {"after": "garbage!!"},
        {"after": cursor, "sort": "created_at", "order": "asc"},
        {"after": cursor, "sort": "name", "order": "desc"},
        {"after": cursor, "sort": "last_access_time", "order": "asc"},
        {"after": "eyJzIjoiY3JlYXRlZF9hdCIsIm8iOiJkZXNjIiwidiI6MWUzMDAsImlkIjoxfQ"},
    ):
        error(
            api.get("/api/assets", **{"sort": "name", "order": "asc", **query}),
            400,
            "INVALID_CURSOR",
        )


def test_metadata_filter_follows_comfyuis_rules(api: Api) -> None:
    """Keys AND; scalars by type and value; lists OR; null is an absent key; objects by
    equality; stored lists match any element; filename is the loader path."""

    def names(flt: str, **more: Any) -> list[str]:
        return sorted(api.names(metadata_filter=flt, limit=500, **more))

    base, style, foobar = "base.safetensors", "style.safetensors", "foobar.safetensors"
    assert names('{"purpose": "test", "epoch": 1, "active": true, "rate": 1.23}') == [base]
    assert names('{"purpose": "test", "epoch": 2}') == []
    assert names('{"epoch": "1"}') == [] and names('{"active": "true"}') == []
    assert names('{"epoch": 1.0}') == [base]
    assert names('{"flags": "y"}') == [base] and names('{"flags": ["z", "y"]}') == [base]
    assert names('{"flags": ["z", "w"]}') == [] and names('{"flags": ["y", "y", "y"]}') == [base]
    assert len(names('{"maybe": null}')) == TOTAL and names('{"maybe": "x"}') == []
    assert base not in names('{"purpose": null}') and foobar in names('{"purpose": null}')
    assert names('{"purpose": [null, "test"]}') == names("{}") and len(names("{}")) == TOTAL
    assert names('{"nested": {"a": 1, "b": [1, 2]}}') == [style]
    assert names('{"nested": {"a": 1}}') == [] and names('{"objs": {"k": 2}}') == [style]
    assert names('{"weird.key": "v", "path/like": "p", "with:colon": "c"}') == [style]
    assert names('{"ключ": "значение", "emoji": "🙂"}') == [style]
    assert names('{"count": 0}') == [foobar] and names('{"choices": true}') == [foobar]
    assert names('{"mix": [2, 1]}') == [style] and names('{"mix": false}') == []
    assert names('{"mix": "1"}') == [style]
    assert len(names('{"unknown": null}')) == TOTAL and names('{"unknown": 1}') == []
    assert names('{"filename": "sdxl/base.safetensors"}') == [base]
    assert names('{"epoch": [1, 2]}', include_tags="unit-tests", name_contains="safe") == [
        base,
        style,
    ]
    paged = api.listed(
        metadata_filter='{"unknown": null}', sort="size", order="asc", limit=2, offset=2
    )
    everything = api.listed(sort="size", order="asc", limit=500)["assets"]
    assert [a["id"] for a in paged["assets"]] == [a["id"] for a in everything[2:4]]
    assert paged["total"] == TOTAL and paged["has_more"] is True
    walked = [
        a["id"]
        for p in api.walk(metadata_filter="{}", sort="size", order="asc", limit=3)
        for a in p["assets"]
    ]
    assert walked == [a["id"] for a in everything]


# -- detail, content, hash -----------------------------------------------------------


def test_content_sends_the_bytes_as_an_attachment_by_default(
    api: Api, served: tuple[Api, Path]
) -> None:
    """GET …/content: the file's bytes with its type, nosniff, attachment (inline when
    asked) with the name as RFC 5987 UTF-8; a Range is answered with 206."""
    item = api.by_name("base.safetensors")
    reply = api.get(f"/api/assets/{item['id']}/content")
    assert reply.status == 200 and reply.body == CONTENT["base"]
    assert reply.headers["Content-Type"] == "application/x-safetensors"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Content-Disposition"] == "attachment; filename*=UTF-8''base.safetensors"
    assert reply.headers["Content-Length"] == "4096"
    inline = api.get(f"/api/assets/{item['id']}/content", disposition="inline")
    assert inline.headers["Content-Disposition"].startswith("inline;")
    spaced = api.get(f"/api/assets/{api.by_name('x y.png')['id']}/content")
    assert spaced.headers["Content-Disposition"] == "attachment; filename*=UTF-8''x%20y.png"
    part = api.request(
        "GET", f"/api/assets/{item['id']}/content", headers={"Range": "bytes=10-109"}
    )
    assert part.status == 206 and part.body == CONTENT["base"][10:110]
    assert part.headers["Content-Range"] == "bytes 10-109/4096"


def test_content_of_a_page_type_is_a_download(api: Api) -> None:
    """HTML and SVG (types a browser runs) go as application/octet-stream, attachment,
    even when asked inline; an SVG asked for as an image may stay one."""
    page = api.by_name("page.html")
    reply = api.get(f"/api/assets/{page['id']}/content", disposition="inline")
    assert reply.status == 200 and reply.body.startswith(b"<html>")
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.headers["Content-Disposition"].startswith("attachment;")
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Cache-Control"] == "no-store"
    svg = api.by_name("drawing.svg")["id"]
    download = api.get(f"/api/assets/{svg}/content", disposition="inline")
    assert download.headers["Content-Type"] == "application/octet-stream"
    as_image = api.request("GET", f"/api/assets/{svg}/content", headers={"Sec-Fetch-Dest": "image"})
    assert as_image.headers["Content-Type"] == "image/svg+xml"
    assert as_image.headers["Vary"] == "Sec-Fetch-Dest"


def test_head_by_hash_answers_whether_the_content_is_known(api: Api) -> None:
    """HEAD /api/assets/hash/H: 200 for a known hash (any case), 404 for another, 400 with
    no body for a malformed one; other methods 405."""
    digest = api.by_name("base.safetensors")["hash"]
    known = api.request("HEAD", f"/api/assets/hash/{digest.upper().replace('BLAKE3', 'blake3')}")
    assert known.status == 200 and known.body == b""
    assert api.request("HEAD", f"/api/assets/hash/blake3:{'0' * 64}").status == 404
    bad = api.request("HEAD", "/api/assets/hash/not_a_hash")
    assert bad.status == 400 and bad.body == b""
    assert api.request("HEAD", "/api/assets/hash/sha256:" + "0" * 64).status == 400
    assert api.get(f"/api/assets/hash/{digest}").status == 405


# -- tags ----------------------------------------------------------------------------


def test_tag_counts_over_visible_live_locations(api: Api) -> None:
    """GET /api/tags: counts per tag, most used first (ties by name), or by name; a prefix
    is literal and case-sensitive; totals and has_more page the list."""
    tags = api.get("/api/tags", limit=1000).json
    counts = {t["name"]: t["count"] for t in tags["tags"]}
    assert counts["models"] == 6 and counts["model_type:checkpoints"] == 4
    assert counts["unit-tests"] == 3 and counts["input"] == 2 and counts["alpha"] == 1
    ordered = [(-t["count"], t["name"]) for t in tags["tags"]]
    assert ordered == sorted(ordered) and tags["total"] == len(tags["tags"])
    by_name = [t["name"] for t in api.get("/api/tags", order="name_asc", limit=1000).json["tags"]]
    assert by_name == sorted(by_name)
    prefixed = api.get("/api/tags", prefix="uni").json
    assert [t["name"] for t in prefixed["tags"]] == ["unit-tests"]
    assert api.get("/api/tags", prefix="100%_").json["total"] == 1
    assert api.get("/api/tags", prefix="100%x").json["total"] == 0
    assert api.get("/api/tags", prefix="Uni").json["total"] == 0
    page = api.get("/api/tags", limit=2, offset=1).json
    assert len(page["tags"]) == 2 and page["has_more"] is True
    assert [t["name"] for t in page["tags"]] == [t["name"] for t in tags["tags"][1:3]]


def test_bad_tag_queries_are_invalid_query(api: Api) -> None:
    """limit beyond 1000, a blank prefix, an unknown order or a bad boolean: 400."""
    bad = ("limit", "1001"), ("prefix", "  "), ("order", "count"), ("include_zero", "maybe")
    for query in [dict([pair]) for pair in bad] + [{"offset": "-1"}]:
        error(api.get("/api/tags", **query), 400, "INVALID_QUERY")
    assert api.get("/api/tags", include_zero="off").status == 200


def test_refine_counts_the_tags_of_the_matches(api: Api) -> None:
    """GET /api/assets/tags/refine: the tags of the matching assets with their counts,
    most used first; its filters are the list's."""
    refined = api.get("/api/assets/tags/refine", tags_any="alpha,beta", tags_none="alpha").json
    assert refined["tag_counts"]["beta"] == 1 and "alpha" not in refined["tag_counts"]
    counts = api.get("/api/assets/tags/refine", include_tags="unit-tests").json["tag_counts"]
    assert counts["unit-tests"] == counts["models"] == 3 and list(counts)[:2] == [
        "models",
        "unit-tests",
    ]
    assert api.get("/api/assets/tags/refine", include_tags="a", exclude_tags="a").json == {
        "tag_counts": {}
    }
    error(
        api.get("/api/assets/tags/refine", include_tags="a", tags_all="b"),
        400,
        "INVALID_TAG_FILTER",
    )


# -- routes --------------------------------------------------------------------------


def test_unknown_routes_and_methods_answer_in_the_envelope(api: Api) -> None:
    """No such route: 404; a route's other methods: 405; both as ComfyUI's error object."""
    error(api.get("/api/nothing"), 404, "NOT_FOUND")
    error(api.get("/assets"), 404, "NOT_FOUND")  # ComfyUI has no /assets without /api
    error(api.request("PATCH", "/api/assets"), 405, "METHOD_NOT_ALLOWED")
    error(api.request("POST", "/api/tags"), 405, "METHOD_NOT_ALLOWED")
    assert api.get("/api/features").json["assets"] is True


def test_the_address_is_logged_and_in_the_status(served: tuple[Api, Path]) -> None:
    """The daemon logs the API's address and reports it in its status (feed part)."""
    api, _ = served
    daemon: Daemon = api.daemon
    assert f"ComfyUI asset API at http://{api.address}/api/assets" in daemon.log_text()
    assert daemon.status()["feed"]["comfyui_api"] == api.address
