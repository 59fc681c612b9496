"""ComfyUI's asset API, creating: multipart uploads stored as <hash><ext> where their tags
say, known content answered by a location of it, from-hash, errors; and /api/view."""

from __future__ import annotations

import concurrent.futures
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.comfy import PNG, Api, comfy_daemon, install, served_api
from tests.harness import OLD_NS, write

MODEL_TAGS = ["models", "model_type:checkpoints", "unit-tests", "alpha"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Path]]:
    with served_api(tmp_path_factory.mktemp("comfy-upload")) as api:
        yield api


def error(reply: Any, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    assert reply.json["error"]["code"] == code, reply.json


def upload(api: Api, data: bytes, tags: list[str], filename: str = "file.bin", **more: Any) -> Any:
    fields: list[tuple[str, Any]] = [("file", (filename, data)), ("tags", json.dumps(tags))]
    fields += [(key, value) for key, value in more.items()]
    return api.upload(fields)


def no_temp_files(comfy: Path) -> bool:
    """Nothing half-received is left anywhere in the install."""
    return not [p for p in comfy.rglob("*") if p.name.endswith(".part")]


# -- new content ---------------------------------------------------------------------


def test_a_model_upload_is_stored_by_its_hash_and_catalogued_at_once(
    served: tuple[Api, Path],
) -> None:
    """201, created_new: the bytes at models/checkpoints/<hex>.safetensors, hashed while
    received; the answer names it as ComfyUI does, with the caller's tags and metadata
    plus uploaded, and the feed never saw a temporary file."""
    api, comfy = served
    seq = api.daemon.catalog.latest_seq()
    data = os.urandom(4096)
    reply = upload(
        api, data, MODEL_TAGS, "unit_1_example.safetensors", user_metadata=json.dumps({"epoch": 1})
    )
    assert reply.status == 201, reply.body
    item = reply.json
    hexdigest = item["hash"].removeprefix("blake3:")
    assert item["created_new"] is True and item["hash"] == item["asset_hash"]
    stored = comfy / "models" / "checkpoints" / f"{hexdigest}.safetensors"
    assert stored.read_bytes() == data
    assert item["name"] == "unit_1_example.safetensors"
    assert item["loader_path"] == f"{hexdigest}.safetensors"
    assert item["display_name"] == f"checkpoints/{hexdigest}.safetensors"
    assert set(MODEL_TAGS) | {"uploaded", "checkpoints"} == set(item["tags"])
    assert item["user_metadata"] == {"epoch": 1, "filename": f"{hexdigest}.safetensors"}
    assert item["mime_type"] == "application/x-safetensors" and "logical_path" not in item
    detail = api.asset(item["id"])
    assert detail == {k: v for k, v in item.items() if k != "created_new"}
    assert api.by_name("unit_1_example.safetensors")["id"] == item["id"]
    changes = api.daemon.catalog.changes_since(seq)
    assert all(".assetd-upload" not in c["location"]["path"] for c in changes)
    assert changes and changes[-1]["location"]["hash"] == item["hash"]
    assert no_temp_files(comfy)


def test_input_and_output_uploads_land_flat_in_their_folder(served: tuple[Api, Path]) -> None:
    """input and output: <hex><ext> directly in the folder, loader path and display name
    the file name, a preview URL into /api/view; other tags are labels, never folders."""
    api, comfy = served
    for role in ("input", "output"):
        data = PNG + role.encode()
        item = upload(api, data, [role, "..", "zzz", "unit-tests"], "cat.png").json
        hexdigest = item["hash"].removeprefix("blake3:")
        assert (comfy / role / f"{hexdigest}.png").read_bytes() == data
        assert item["loader_path"] == item["display_name"] == f"{hexdigest}.png"
        assert item["preview_url"] == f"/api/view?type={role}&filename={hexdigest}.png"
        assert {"..", "zzz", role, "uploaded"} <= set(item["tags"])


def test_a_file_sent_before_its_tags_still_lands_where_they_say(served: tuple[Api, Path]) -> None:
    """The tags may come after the file; several tags parts (JSON and CSV) are merged."""
    api, comfy = served
    data = os.urandom(3000)
    reply = api.upload(
        [
            ("file", ("late.safetensors", data)),
            ("tags", '["models"]'),
            ("tags", "model_type:loras, unit-tests"),
        ]
    )
    assert reply.status == 201, reply.body
    item = reply.json
    assert (comfy / "models" / "loras" / f"{item['hash'][7:]}.safetensors").read_bytes() == data
    assert {"models", "model_type:loras", "unit-tests", "uploaded"} <= set(item["tags"])
    assert no_temp_files(comfy)


def test_a_diffusion_model_goes_to_the_categorys_first_folder(served: tuple[Api, Path]) -> None:
    """model_type:diffusion_models lands in models/unet, ComfyUI's first folder of it;
    the alias unet is no category for uploads."""
    api, comfy = served
    item = upload(api, os.urandom(500), ["models", "model_type:diffusion_models"], "u.sft").json
    assert (comfy / "models" / "unet" / f"{item['hash'][7:]}.sft").exists()
    error(upload(api, os.urandom(10), ["models", "model_type:unet"]), 400, "INVALID_BODY")


def test_an_upload_may_name_its_preview(served: tuple[Api, Path]) -> None:
    """preview_id of a visible asset: echoed, and its preview URL is the preview's; an
    unknown one is dropped."""
    api, _ = served
    thumb = upload(api, PNG + b"thumb", ["output"], "thumb.png").json
    item = upload(
        api, os.urandom(300), MODEL_TAGS, "with-preview.safetensors", preview_id=thumb["id"]
    )
    assert item.status == 201
    assert (
        item.json["preview_id"] == thumb["id"] and item.json["preview_url"] == thumb["preview_url"]
    )
    unknown = "00000000-0000-8000-8000-000000000000"
    plain = upload(api, os.urandom(300), MODEL_TAGS, "no-preview.safetensors", preview_id=unknown)
    assert plain.status == 201 and "preview_id" not in plain.json


# -- known content -------------------------------------------------------------------


def test_known_bytes_answer_with_a_location_that_has_them(served: tuple[Api, Path]) -> None:
    """The same bytes again: 200, created_new false, the same asset (assetd keeps no
    record without a file), with the new tags given and no second file; a hash alone for
    known content, the same."""
    api, comfy = served
    data = os.urandom(2048)
    first = upload(api, data, MODEL_TAGS, "dup.safetensors").json
    again = upload(api, data, ["not-a-destination"], "other-name.safetensors")
    assert again.status == 200 and again.json["created_new"] is False
    assert again.json["id"] == first["id"] and "not-a-destination" in again.json["tags"]
    assert again.json["name"] == "dup.safetensors"
    by_hash = api.upload([("hash", first["hash"]), ("tags", "hash-only")])
    assert by_hash.status == 200 and by_hash.json["created_new"] is False
    assert by_hash.json["id"] == first["id"] and "hash-only" in by_hash.json["tags"]
    with_file = api.upload([("hash", first["hash"]), ("file", ("x", data)), ("tags", "models")])
    assert with_file.status == 200 and with_file.json["id"] == first["id"]
    assert len(list((comfy / "models" / "checkpoints").glob(f"{first['hash'][7:]}*"))) == 1
    assert no_temp_files(comfy)


def test_two_identical_uploads_at_once_make_one_file(served: tuple[Api, Path]) -> None:
    """Two uploads of the same new bytes at once: one created, one not, one location."""
    api, comfy = served
    data = os.urandom(5000)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda n: upload(api, data, ["input"], f"same{n}.bin"), range(2)))
    assert sorted(r.json["created_new"] for r in replies) == [False, True]
    assert len({r.json["id"] for r in replies}) == 1
    assert len(list((comfy / "input").glob(f"{replies[0].json['hash'][7:]}*"))) == 1


def test_from_hash_answers_with_the_known_content(served: tuple[Api, Path]) -> None:
    """POST from-hash: 201, created_new false, a location of that content with the labels
    given (no uploaded); an unknown hash 404; bad bodies 400."""
    api, _ = served
    first = upload(api, os.urandom(700), MODEL_TAGS, "fh.safetensors").json
    body = {"hash": first["hash"], "name": "ignored", "tags": ["models", "checkpoints", "fh-label"]}
    reply = api.send_json("POST", "/api/assets/from-hash", body)
    assert reply.status == 201 and reply.json["created_new"] is False
    assert reply.json["id"] == first["id"] and "fh-label" in reply.json["tags"]
    assert (
        api.send_json(
            "POST", "/api/assets/from-hash", {"hash": first["hash"], "tags": "a,b"}
        ).status
        == 201
    )
    unknown = {"hash": "blake3:" + "0" * 64}
    error(api.send_json("POST", "/api/assets/from-hash", unknown), 404, "ASSET_NOT_FOUND")
    for bad in (
        {"hash": "sha256:" + "0" * 64},
        {},
        [],
        {"hash": first["hash"], "user_metadata": None},
    ):
        error(api.send_json("POST", "/api/assets/from-hash", bad), 400, "INVALID_BODY")
    error(api.request("POST", "/api/assets/from-hash", b"{no"), 400, "INVALID_JSON")


def test_from_hash_brings_back_a_deleted_location(served: tuple[Api, Path]) -> None:
    """Every location of some content deleted through the API: HEAD by hash is still
    200, and from-hash makes one visible again (ComfyUI makes a new reference)."""
    api, _ = served
    first = upload(api, os.urandom(900), ["output"], "gone.png").json
    assert api.request("DELETE", f"/api/assets/{first['id']}").status == 204
    assert api.request("HEAD", f"/api/assets/hash/{first['hash']}").status == 200
    back = api.send_json("POST", "/api/assets/from-hash", {"hash": first["hash"]})
    assert back.status == 201 and back.json["id"] == first["id"]
    assert api.asset(first["id"])["hash"] == first["hash"]


# -- errors --------------------------------------------------------------------------


def test_upload_errors_are_comfyuis(served: tuple[Api, Path]) -> None:
    """Each malformed upload gets ComfyUI's code, and leaves no file behind."""
    api, comfy = served
    files = sorted(p for p in comfy.rglob("*") if p.is_file())
    error(upload(api, b"", ["input"]), 400, "EMPTY_UPLOAD")
    error(api.upload([("tags", "input")]), 400, "MISSING_FILE")
    error(api.upload([("hash", "blake3:" + "1" * 64), ("tags", "input")]), 400, "MISSING_FILE")
    error(api.upload([("hash", "md5:abc"), ("file", ("a", b"x"))]), 400, "INVALID_HASH")
    error(
        api.upload([("id", "x"), ("file", ("a", b"x")), ("tags", "input")]),
        400,
        "UNSUPPORTED_FIELD",
    )
    mismatch = [("hash", "blake3:" + "2" * 64), ("file", ("a", os.urandom(9))), ("tags", "input")]
    error(api.upload(mismatch), 400, "HASH_MISMATCH")
    for tags in ([], ["unit-tests"], ["models"], ["input", "output"], ["models", "model_type:nope"],
                 ["models", "model_type:configs"], ["models", "model_type:custom_nodes"],
                 ["models", "model_type:loras", "model_type:vae"]):  # fmt: skip
        error(upload(api, os.urandom(16), tags), 400, "INVALID_BODY")
    error(upload(api, os.urandom(16), ["input"], user_metadata="{nope"), 400, "INVALID_BODY")
    error(upload(api, os.urandom(16), ["input"], user_metadata="[1]"), 400, "INVALID_BODY")
    error(upload(api, os.urandom(16), ["input"], name="n" * 513), 400, "INVALID_BODY")
    error(api.upload([("tags", "[1, 2]"), ("file", ("a", b"x"))]), 400, "INVALID_BODY")
    json_body = api.send_json("POST", "/api/assets", {"tags": ["input"]})
    error(json_body, 415, "UNSUPPORTED_MEDIA_TYPE")
    broken = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc'  # never ends
    reply = api.request(
        "POST", "/api/assets", broken, {"Content-Type": "multipart/form-data; boundary=b"}
    )
    error(reply, 400, "INVALID_BODY")
    assert sorted(p for p in comfy.rglob("*") if p.is_file()) == files


def test_a_full_disk_is_an_upload_io_error_with_nothing_left(tmp_path: Path) -> None:
    """A write that fails (here: beyond the file size limit, as a full disk fails it):
    500 UPLOAD_IO_ERROR, the temporary file removed, and the daemon still serving."""
    comfy = install(tmp_path / "ComfyUI")
    daemon = comfy_daemon(tmp_path, comfy).start(prefix=("prlimit", "--fsize=4000000", "--"))
    api = Api(daemon)
    try:
        error(upload(api, os.urandom(6_000_000), ["input"], "big.bin"), 500, "UPLOAD_IO_ERROR")
        assert no_temp_files(comfy) and not list((comfy / "input").iterdir())
        assert upload(api, os.urandom(1000), ["input"], "small.bin").status == 201
    finally:
        daemon.close()


# -- /api/view -----------------------------------------------------------------------


def test_view_serves_catalogued_files_with_ranges(served: tuple[Api, Path]) -> None:
    """A preview URL answers with the bytes and the type; a Range gets exactly that slice
    (206); text is served, a page type goes as an attachment."""
    api, comfy = served
    data = PNG + os.urandom(500)
    item = upload(api, data, ["output"], "shot.png").json
    full = api.get(item["preview_url"])
    assert full.status == 200 and full.body == data and full.headers["Content-Type"] == "image/png"
    assert full.headers["Content-Disposition"].startswith("inline;")
    part = api.request("GET", item["preview_url"], headers={"Range": "bytes=10-109"})
    assert part.status == 206 and part.body == data[10:110]
    tail = api.request("GET", item["preview_url"], headers={"Range": "bytes=-5"})
    assert tail.status == 206 and tail.body == data[-5:]
    beyond = api.request("GET", item["preview_url"], headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status == 416
    write(comfy / "output" / "note.txt", "hello\n", OLD_NS)
    write(comfy / "output" / "sub dir" / "page.html", "<html></html>", OLD_NS)
    note = api.wait_listed("note.txt")
    assert api.get(note["preview_url"]).body == b"hello\n"
    page = api.wait_listed("page.html")
    assert page["preview_url"] == "/api/view?type=output&filename=page.html&subfolder=sub%20dir"
    served_page = api.get(page["preview_url"])
    assert served_page.headers["Content-Type"] == "application/octet-stream"
    assert served_page.headers["Content-Disposition"].startswith("attachment;")


def test_view_never_serves_outside_the_catalog(served: tuple[Api, Path]) -> None:
    """'..' in the name, a subfolder out of the folder, an unknown type, a file on disk the
    catalog does not list, a missing file: refused, never served."""
    api, comfy = served
    (comfy / "main.py").write_text("# ComfyUI\n")
    assert api.get("/api/view", type="input", filename="../main.py").status == 400
    assert api.get("/api/view", type="input", subfolder="..", filename="main.py").status == 403
    assert api.get("/api/view", type="input", subfolder="../..", filename="etc").status == 403
    assert api.get("/api/view", type="models", filename="x").status == 400
    assert api.get("/api/view", type="input").status == 400
    assert api.get("/api/view", type="input", filename="nothing-here.png").status == 404
    os.symlink(comfy / "main.py", comfy / "output" / "link.py")  # not catalogued: a symlink
    assert api.get("/api/view", type="output", filename="link.py").status == 404
