"""ComfyUI's asset API, changing things: tags added and removed, PUT, DELETE (hidden from
the API only), missing files, downloads, and ids that survive renames and restarts."""

from __future__ import annotations

import concurrent.futures
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.comfy import Api, comfy_daemon, install, served_api
from tests.harness import OLD_NS, run_cli, wait_for, write


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Path]]:
    """One daemon for these tests; each test works on files of its own."""
    with served_api(tmp_path_factory.mktemp("comfy-writes")) as api:
        yield api


def model(served: tuple[Api, Path], name: str, content: bytes | None = None) -> dict[str, Any]:
    """A new checkpoint file, once the API lists it with its hash."""
    api, comfy = served
    write(comfy / "models" / "checkpoints" / name, content or os.urandom(64), OLD_NS)
    return api.wait_listed(name)


def error(reply: Any, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    assert reply.json["error"]["code"] == code, reply.json


def cli(api: Api, *args: str) -> Any:
    """The command line, reaching the same daemon."""
    proc = run_cli(*args, "--config", str(api.daemon.config))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# -- tags ----------------------------------------------------------------------------


def test_tags_added_and_removed_with_comfyuis_answers(served: tuple[Api, Path]) -> None:
    """Add: repeats collapse, added and already present are told apart, all sorted, with
    the whole set after; remove: removed and not present; the rest stays."""
    api, _ = served
    item = model(served, "tagged.safetensors")
    url = f"/api/assets/{item['id']}/tags"
    assert api.send_json("POST", url, {"tags": ["unit-tests"]}).status == 200
    added = api.send_json("POST", url, {"tags": ["NewTag", "unit-tests", "NewTag", " BETA "]}).json
    assert added["added"] == ["BETA", "NewTag"] and added["already_present"] == ["unit-tests"]
    assert {"BETA", "NewTag", "unit-tests", "models"} <= set(added["total_tags"])
    assert added["total_tags"] == sorted(added["total_tags"])
    assert api.asset(item["id"])["tags"] == added["total_tags"]
    removed = api.send_json("DELETE", url, {"tags": ["NewTag", "does-not-exist"]}).json
    assert removed["removed"] == ["NewTag"] and removed["not_present"] == ["does-not-exist"]
    assert removed["protected"] == [] and "BETA" in removed["total_tags"]
    assert "NewTag" not in api.asset(item["id"])["tags"]
    blank = api.send_json("POST", url, {"tags": ["  "]}).json
    assert blank["added"] == [] and blank["already_present"] == [] and blank["total_tags"]


def test_api_tags_are_assetds_user_tags(served: tuple[Api, Path]) -> None:
    """A tag added through the API is a user tag of the asset: the command line's ls
    shows it, and a tag added there shows in the API."""
    api, comfy = served
    item = model(served, "shared-tags.safetensors")
    api.send_json("POST", f"/api/assets/{item['id']}/tags", {"tags": ["from-api"]})
    path = comfy / "models" / "checkpoints" / "shared-tags.safetensors"
    listed = run_cli("ls", "--json", "--tag", "from-api", "--config", str(api.daemon.config))
    assert [json.loads(line)["path"] for line in listed.stdout.splitlines()] == [str(path)]
    assert "from-cli" in cli(api, "tag", "add", str(path), "from-cli")
    assert "from-cli" in api.asset(item["id"])["tags"]


def test_automatic_tags_are_protected_from_removal(served: tuple[Api, Path]) -> None:
    """Removing a tag the location has by where it is (its root, a folder, its category):
    200, the tag kept and listed as protected, still in total_tags."""
    api, _ = served
    item = model(served, "auto.safetensors")
    url = f"/api/assets/{item['id']}/tags"
    reply = api.send_json("DELETE", url, {"tags": ["models", "model_type:checkpoints", "nope"]})
    assert reply.status == 200
    body = reply.json
    assert body["removed"] == [] and body["not_present"] == ["nope"]
    assert body["protected"] == ["model_type:checkpoints", "models"]
    assert {"models", "model_type:checkpoints"} <= set(body["total_tags"])
    added = api.send_json("POST", url, {"tags": ["models"]}).json  # automatic: present
    assert added["added"] == [] and added["already_present"] == ["models"]


def test_any_label_is_a_tag(served: tuple[Api, Path]) -> None:
    """Labels that look like system tags are accepted as plain tags."""
    api, _ = served
    item = model(served, "labels.safetensors")
    labels = ["model_type:manual", "model:true", "models:foo", "input:true", "temporary"]
    body = api.send_json("POST", f"/api/assets/{item['id']}/tags", {"tags": labels}).json
    assert set(labels) <= set(body["total_tags"]) and sorted(body["added"]) == sorted(labels)


def test_bad_tag_bodies(served: tuple[Api, Path]) -> None:
    """An empty list, a non-string, no list: 400 INVALID_BODY; not JSON: INVALID_JSON; an
    unknown id: 404; a tag assetd cannot keep (control characters): INVALID_BODY."""
    api, _ = served
    item = model(served, "bodies.safetensors")
    url = f"/api/assets/{item['id']}/tags"
    for method in ("POST", "DELETE"):
        for body in ({"tags": []}, {"tags": [123]}, {"tag": ["x"]}, ["x"]):
            error(api.send_json(method, url, body), 400, "INVALID_BODY")
        error(api.request(method, url, b"{nope"), 400, "INVALID_JSON")
    error(api.send_json("POST", url, {"tags": ["bad\x01tag"]}), 400, "INVALID_BODY")
    unknown = "00000000-0000-8000-8000-000000000000"
    error(
        api.send_json("POST", f"/api/assets/{unknown}/tags", {"tags": ["x"]}),
        404,
        "ASSET_NOT_FOUND",
    )


# -- PUT -----------------------------------------------------------------------------


def test_put_renames_and_replaces_metadata(served: tuple[Api, Path]) -> None:
    """PUT name and user_metadata: the name changes, the metadata is replaced (no merge)
    with filename still the loader path, tags stay, updated_at moves and sorts first."""
    api, comfy = served
    item = model(served, "put.safetensors")
    url = f"/api/assets/{item['id']}"
    assert api.send_json("PUT", url, {"user_metadata": {"old": 1}}).status == 200
    reply = api.send_json("PUT", url, {"name": "Renamed", "user_metadata": {"purpose": "updated"}})
    assert reply.status == 200, reply.body
    body = reply.json
    assert body["name"] == "Renamed" and body["tags"] == item["tags"]
    assert body["user_metadata"] == {"purpose": "updated", "filename": "put.safetensors"}
    assert body["updated_at"] > item["updated_at"] and body["created_at"] == item["created_at"]
    assert api.asset(item["id"]) == body
    assert api.names(sort="updated_at", limit=1) == ["Renamed"]
    assert api.names(name_contains="renam") == ["Renamed"]
    path = comfy / "models" / "checkpoints" / "put.safetensors"
    assert cli(api, "meta", str(path)) == {"purpose": "updated"}  # filename is the API's


def test_bad_puts(served: tuple[Api, Path]) -> None:
    """Nothing to change, wrong types, not JSON, an unknown id or preview: 400 or 404."""
    api, _ = served
    item = model(served, "badput.safetensors")
    url = f"/api/assets/{item['id']}"
    for body in ({}, [], {"name": 5}, {"user_metadata": [1]}, {"name": None}):
        error(api.send_json("PUT", url, body), 400, "INVALID_BODY")
    error(api.request("PUT", url, b"not json"), 400, "INVALID_JSON")
    error(api.request("PUT", url, b""), 400, "INVALID_JSON")
    unknown = "00000000-0000-8000-8000-000000000000"
    error(api.send_json("PUT", f"/api/assets/{unknown}", {"name": "x"}), 404, "ASSET_NOT_FOUND")
    error(api.send_json("PUT", url, {"preview_id": unknown}), 404, "ASSET_NOT_FOUND")
    huge = b'{"name": "' + b"x" * (2 << 20) + b'"}'
    assert api.request("PUT", url, huge).status == 413
    assert api.asset(item["id"])["name"] == "badput.safetensors"


def test_a_preview_of_its_own(served: tuple[Api, Path]) -> None:
    """PUT preview_id: the asset's preview_url is the preview's; hidden, it has none."""
    api, comfy = served
    write(comfy / "output" / "thumb.png", b"\x89PNG" + os.urandom(40), OLD_NS)
    thumb = api.wait_listed("thumb.png")
    item = model(served, "previewed.safetensors")
    body = api.send_json("PUT", f"/api/assets/{item['id']}", {"preview_id": thumb["id"]}).json
    assert body["preview_id"] == thumb["id"] and body["preview_url"] == thumb["preview_url"]
    assert api.request("DELETE", f"/api/assets/{thumb['id']}").status == 204
    after = api.asset(item["id"])
    assert after["preview_id"] == thumb["id"] and "preview_url" not in after


# -- DELETE --------------------------------------------------------------------------


def test_delete_hides_from_the_api_only(served: tuple[Api, Path]) -> None:
    """DELETE: 204; then 404 for detail, content and a second DELETE; gone from the list
    and the tag counts; HEAD by hash still 200; the file stays, the command line still
    lists it, and a pass does not bring it back."""
    api, comfy = served
    item = model(served, "doomed.safetensors")
    api.send_json("POST", f"/api/assets/{item['id']}/tags", {"tags": ["doomed-tag"]})
    assert api.get("/api/tags", prefix="doomed", include_zero="false").json["total"] == 1
    assert api.request("DELETE", f"/api/assets/{item['id']}").status == 204
    error(api.get(f"/api/assets/{item['id']}"), 404, "ASSET_NOT_FOUND")
    error(api.get(f"/api/assets/{item['id']}/content"), 404, "ASSET_NOT_FOUND")
    error(api.request("DELETE", f"/api/assets/{item['id']}"), 404, "ASSET_NOT_FOUND")
    assert api.names(name_contains="doomed") == []
    assert api.get("/api/tags", prefix="doomed", include_zero="false").json["tags"] == []
    assert api.request("HEAD", f"/api/assets/hash/{item['hash']}").status == 200
    path = comfy / "models" / "checkpoints" / "doomed.safetensors"
    assert path.exists()
    listed = run_cli("ls", "--json", "--config", str(api.daemon.config)).stdout
    assert str(path) in listed
    assert api.request("POST", "/api/assets/seed", wait="true").status == 200
    assert api.names(name_contains="doomed") == []


def test_a_delete_between_pages_does_not_disturb_the_next(served: tuple[Api, Path]) -> None:
    """Keyset pages: deleting an item already returned leaves the next page as it was."""
    api, _ = served
    for n in range(5):
        model(served, f"page-{n}.safetensors")
    query = {"name_contains": "page-", "sort": "name", "order": "asc", "limit": 2}
    first = api.listed(**query)
    second = api.listed(**query, after=first["next_cursor"])
    assert api.request("DELETE", f"/api/assets/{first['assets'][0]['id']}").status == 204
    assert api.listed(**query, after=first["next_cursor"])["assets"] == second["assets"]


def test_concurrent_deletes_hide_once(served: tuple[Api, Path]) -> None:
    """Four DELETEs of one asset at once: exactly one 204, three 404."""
    api, _ = served
    item = model(served, "racing.safetensors")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(
            pool.map(lambda _: api.request("DELETE", f"/api/assets/{item['id']}").status, range(4))
        )
    assert sorted(statuses) == [204, 404, 404, 404]


# -- missing files, downloads, identity ----------------------------------------------


def test_a_missing_file_keeps_its_detail_with_the_missing_tag(served: tuple[Api, Path]) -> None:
    """A file deleted from disk: gone from the list, detail 200 with "missing", content
    404 FILE_NOT_FOUND, counted under the missing tag; back, it is listed again."""
    api, comfy = served
    content = os.urandom(80)
    item = model(served, "vanishing.safetensors", content)
    path = comfy / "models" / "checkpoints" / "vanishing.safetensors"
    missing_before = _count(api, "missing")
    path.unlink()
    wait_for(lambda: "missing" in api.asset(item["id"])["tags"], 20, "the missing tag")
    assert api.names(name_contains="vanishing") == []
    error(api.get(f"/api/assets/{item['id']}/content"), 404, "FILE_NOT_FOUND")
    assert _count(api, "missing") == missing_before + 1
    write(path, content, OLD_NS)
    wait_for(lambda: api.names(name_contains="vanishing"), 20, "the file listed again")
    assert "missing" not in api.asset(item["id"])["tags"]


def _count(api: Api, tag: str) -> int:
    tags = api.get("/api/tags", prefix=tag, include_zero="false", limit=1000).json["tags"]
    return next((t["count"] for t in tags if t["name"] == tag), 0)


def test_content_comes_from_a_live_copy_when_the_file_is_gone(served: tuple[Api, Path]) -> None:
    """A location whose file is gone downloads from another live location of the same
    content."""
    api, comfy = served
    content = os.urandom(96)
    first = model(served, "twin-a.safetensors", content)
    model(served, "twin-b.safetensors", content)
    (comfy / "models" / "checkpoints" / "twin-a.safetensors").unlink()
    wait_for(lambda: not api.names(name_contains="twin-a"), 20, "twin-a gone from the list")
    reply = api.get(f"/api/assets/{first['id']}/content")
    assert reply.status == 200 and reply.body == content


def test_a_download_moves_last_access_time(served: tuple[Api, Path]) -> None:
    """GET …/content bumps last_access_time: sorted by it, the download comes first."""
    api, _ = served
    model(served, "early.safetensors")
    item = model(served, "downloaded.safetensors")
    model(served, "late.safetensors")
    assert api.get(f"/api/assets/{item['id']}/content").status == 200
    first = api.listed(sort="last_access_time", limit=1)["assets"][0]
    assert first["id"] == item["id"] and first["last_access_time"] > item["last_access_time"]


def test_an_id_survives_a_rename_and_a_restart(tmp_path: Path) -> None:
    """A file renamed keeps its id (its name follows the file); after a restart every id
    is the same."""
    comfy = install(tmp_path / "ComfyUI")
    write(comfy / "input" / "before.png", b"\x89PNG" + os.urandom(30), OLD_NS)
    daemon = comfy_daemon(tmp_path, comfy).start()
    api = Api(daemon)
    try:
        item = api.wait_listed("before.png")
        os.rename(comfy / "input" / "before.png", comfy / "input" / "after.png")
        moved = api.wait_listed("after.png")
        assert moved["id"] == item["id"] and moved["loader_path"] == "after.png"
        ids = sorted(a["id"] for a in api.listed(limit=500)["assets"])
        daemon.stop()
        daemon.start()
        assert sorted(a["id"] for a in api.listed(limit=500)["assets"]) == ids
    finally:
        daemon.close()
