"""The workflow check's pure core: the models a ComfyUI workflow names, the workflow a
file holds, and where each model stands against a catalog (a fake one at the seam)."""

from __future__ import annotations

import copy
import json
import os
import posixpath
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from assetd.comfyui.embedded import MAX_JSON_BYTES, read_workflow_file
from assetd.comfyui.workflow import Found, ModelRef, ModelStatus, Status, model_refs, resolve
from assetd.exceptions import InvalidRequestError

DATA = Path(__file__).parent / "data" / "workflows"
SHA = "sha256:" + "ab" * 32
BLAKE = "blake3:" + "cd" * 32
OTHER_BLAKE = "blake3:" + "ef" * 32


def ui(*nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A UI-format workflow of these nodes."""
    return {"nodes": list(nodes), "links": [], **top}


def node(kind: str, *values: Any, id: int = 1, **fields: Any) -> dict[str, Any]:
    return {"id": id, "type": kind, "properties": {}, "widgets_values": list(values), **fields}


def found(workflow: object) -> list[tuple[str, str | None]]:
    return [(ref.name, ref.category) for ref in model_refs(workflow)]


# (node type, its widget values in UI order, its API inputs, the files it names)
CORE_LOADERS = [
    ("CheckpointLoaderSimple", ["a.safetensors"], {"ckpt_name": "a.safetensors"},
     [("a.safetensors", "checkpoints")]),
    ("CheckpointLoader", ["v1.yaml", "a.ckpt"], {"config_name": "v1.yaml", "ckpt_name": "a.ckpt"},
     [("v1.yaml", "configs"), ("a.ckpt", "checkpoints")]),
    ("LoraLoader", ["l.safetensors", 1.0, 1.0], {"lora_name": "l.safetensors"},
     [("l.safetensors", "loras")]),
    ("LoraLoaderModelOnly", ["l.safetensors", 0.8], {"lora_name": "l.safetensors"},
     [("l.safetensors", "loras")]),
    ("VAELoader", ["ae.sft"], {"vae_name": "ae.sft"}, [("ae.sft", "vae")]),
    ("UNETLoader", ["u.gguf", "default"], {"unet_name": "u.gguf"},
     [("u.gguf", "diffusion_models")]),
    ("CLIPLoader", ["t5.safetensors", "sd3", "default"], {"clip_name": "t5.safetensors"},
     [("t5.safetensors", "text_encoders")]),
    ("DualCLIPLoader", ["l.pt", "g.pt", "sdxl"], {"clip_name1": "l.pt", "clip_name2": "g.pt"},
     [("l.pt", "text_encoders"), ("g.pt", "text_encoders")]),
    ("TripleCLIPLoader", ["l.pt", "g.pt", "t5.pt"],
     {"clip_name1": "l.pt", "clip_name2": "g.pt", "clip_name3": "t5.pt"},
     [("l.pt", "text_encoders"), ("g.pt", "text_encoders"), ("t5.pt", "text_encoders")]),
    ("CLIPVisionLoader", ["v.safetensors"], {"clip_name": "v.safetensors"},
     [("v.safetensors", "clip_vision")]),
    ("ControlNetLoader", ["c.pth"], {"control_net_name": "c.pth"}, [("c.pth", "controlnet")]),
    ("DiffControlNetLoader", ["c.pth"], {"control_net_name": "c.pth"}, [("c.pth", "controlnet")]),
    ("UpscaleModelLoader", ["4x.pth"], {"model_name": "4x.pth"}, [("4x.pth", "upscale_models")]),
    ("StyleModelLoader", ["s.safetensors"], {"style_model_name": "s.safetensors"},
     [("s.safetensors", "style_models")]),
    ("GLIGENLoader", ["g.safetensors"], {"gligen_name": "g.safetensors"},
     [("g.safetensors", "gligen")]),
    ("HypernetworkLoader", ["h.pt", 1.0], {"hypernetwork_name": "h.pt"},
     [("h.pt", "hypernetworks")]),
    ("PhotoMakerLoader", ["p.bin"], {"photomaker_model_name": "p.bin"}, [("p.bin", "photomaker")]),
    ("unCLIPCheckpointLoader", ["u.ckpt"], {"ckpt_name": "u.ckpt"}, [("u.ckpt", "checkpoints")]),
    ("ImageOnlyCheckpointLoader", ["svd.safetensors"], {"ckpt_name": "svd.safetensors"},
     [("svd.safetensors", "checkpoints")]),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "values", "inputs", "expected"), CORE_LOADERS)
def test_core_loader_names_its_files_in_its_category(
    kind: str, values: list[Any], inputs: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    """A core loader's file widgets give their ComfyUI category, by position (UI) or name (API)."""
    assert found(ui(node(kind, *values))) == expected
    api = {"1": {"class_type": kind, "inputs": {**inputs, "model": ["4", 0]}}}
    assert found(api) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ae.safetensors", [("ae.safetensors", "vae")]),
        ("taehv.safetensors", [("taehv.safetensors", "vae_approx")]),
        ("taesd", []),
        ("taef1", []),
        ("pixel_space", []),
    ],
)
def test_vae_loader_names_tae_files_in_vae_approx(
    value: str, expected: list[tuple[str, str]]
) -> None:
    """VAELoader: a video TAE is a vae_approx file; an image TAE pair or pixel_space no one file."""
    assert found(ui(node("VAELoader", value))) == expected


def test_windows_backslashes_become_forward_slashes() -> None:
    """A loader path saved on Windows is the same loader path with forward slashes."""
    workflow = ui(node("CheckpointLoaderSimple", "SDXL\\base\\model.safetensors"))
    assert found(workflow) == [("SDXL/base/model.safetensors", "checkpoints")]


def test_properties_models_give_category_url_and_hash() -> None:
    """A node's properties.models entry: its directory is the category, url and hash kept."""
    entry = {
        "name": "w.safetensors",
        "url": "https://example.org/w.safetensors",
        "hash": "AB" * 32,
        "hash_type": "SHA256",
        "directory": "unet",
    }
    workflow = ui(node("SomeCustomLoader", "w.safetensors", properties={"models": [entry]}))
    assert model_refs(workflow) == [
        ModelRef(
            "w.safetensors",
            "diffusion_models",
            url="https://example.org/w.safetensors",
            hash=SHA,
            directory="unet",
            nodes=("1",),
        )
    ]


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("AB" * 32, "SHA256", SHA),
        ("ab" * 32, "sha-256", SHA),
        (SHA, None, SHA),
        (SHA.upper(), "sha256", SHA),
        (BLAKE, None, BLAKE),
        ("cd" * 32, "BLAKE3", BLAKE),
        ("ab" * 32, None, None),  # a bare digest: SHA-256 or BLAKE3? not guessed
        (SHA, "blake3", None),  # the two disagree
        ("not-hex", "sha256", None),
        (12, "sha256", None),
        ("", "sha256", None),
    ],
)
def test_hash_keeps_its_algorithm(value: object, kind: object, expected: str | None) -> None:
    """A workflow's hash becomes "<algorithm>:<hex>", or nothing when its algorithm is unclear."""
    entry = {"name": "m.safetensors", "directory": "loras", "hash": value, "hash_type": kind}
    (ref,) = model_refs(ui(node("X", properties={"models": [entry]})))
    assert ref.hash == expected


def test_top_level_models_list_counts() -> None:
    """The workflow's own models list names files like a node's properties.models."""
    workflow = ui(models=[{"name": "x.pt", "directory": "loras", "url": "https://e.org/x.pt"}])
    assert model_refs(workflow) == [
        ModelRef("x.pt", "loras", url="https://e.org/x.pt", directory="loras", nodes=("models",))
    ]


def test_subgraph_nodes_count_like_any_other() -> None:
    """Nodes inside definitions.subgraphs are read; a promoted widget takes its inner node's
    category; a Markdown note naming a file is text, not a reference."""
    document = json.loads((DATA / "subgraph.json").read_text())
    refs = model_refs(document)
    inner = "a1b2c3d4-0000-4000-8000-00000000000a/"
    assert [(r.name, r.category, r.nodes) for r in refs] == [
        ("flux1-dev.safetensors", "diffusion_models", (inner + "7", "12")),
        ("clip_l.safetensors", "text_encoders", (inner + "8",)),
        ("t5xxl_fp16.safetensors", "text_encoders", (inner + "8",)),
        ("ae.safetensors", "vae", (inner + "9", "models")),
    ]
    assert refs[0].hash == "sha256:8e91b68084b53a7fc44ed2a3756d821e355ac1a7b6fe29be760c1db532f3d88a"
    assert refs[3].url == document["models"][0]["url"]


def test_api_format_file() -> None:
    """The API format: loaders by input name; an unknown node's file-like input, no category;
    a prompt that mentions a file, nothing."""
    assert found(json.loads((DATA / "api_format.json").read_text())) == [
        ("SDXL/sd_xl_base_1.0.safetensors", "checkpoints"),
        ("styles/ink.safetensors", "loras"),
        ("4x_ultra.pth", None),
    ]


def test_one_file_named_twice_is_one_reference() -> None:
    """The same (name, category) from several nodes is one reference listing every node."""
    workflow = ui(
        node("LoraLoaderModelOnly", "a.safetensors", 1.0, id=4),
        node("LoraLoader", "a.safetensors", 1.0, 1.0, id=9),
        node("CheckpointLoaderSimple", "a.safetensors", id=5),
    )
    assert [(r.name, r.category, r.nodes) for r in model_refs(workflow)] == [
        ("a.safetensors", "loras", ("4", "9")),
        ("a.safetensors", "checkpoints", ("5",)),
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["my-model.safetensors", 7], [("my-model.safetensors", None)]),
        (["sub dir/Some Model v2.gguf"], [("sub dir/Some Model v2.gguf", None)]),
        ([[{"on": True, "lora": "ink.safetensors", "strength": 1}]], [("ink.safetensors", None)]),
        (["a photo of a cat, model.pt"], []),
        (["style: analog film.safetensors"], []),
        (["first line\nsecond.safetensors"], []),
        (["https://example.org/x.safetensors"], []),
        (["None"], []),
        (["models/"], []),
        ([".safetensors"], []),
        (["picture.png", "clip.txt", 3.5, None, True], []),
    ],
)
def test_unknown_node_values_only_whole_file_names(
    values: list[Any], expected: list[tuple[str, None]]
) -> None:
    """A node no table knows: a whole value that reads as a model file is a reference of no
    category; text that mentions one is not."""
    assert found(ui(node("SomeCustomNode", *values))) == expected


def test_widgets_values_as_an_object() -> None:
    """widgets_values given as an object maps by input name, like the API format."""
    workflow = ui({"id": 1, "type": "UNETLoader", "widgets_values": {"unet_name": "u.safetensors"}})
    assert found(workflow) == [("u.safetensors", "diffusion_models")]


@pytest.mark.parametrize(
    "document",
    [[], [{"nodes": []}], "text", 3, None, True, {}, {"nodes": None}, {"version": 0.4},
     {"1": {"inputs": {"ckpt_name": "a.safetensors"}}}, {"1": {"class_type": 5}}],
)  # fmt: skip
def test_not_a_workflow_raises_one_error(document: object) -> None:
    """Anything that is a workflow in neither format raises InvalidRequestError, one line."""
    with pytest.raises(InvalidRequestError, match=r"^not a ComfyUI workflow: [^\n]+$"):
        model_refs(document)


def deep(levels: int) -> list[Any]:
    value: list[Any] = ["deep.safetensors"]
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "workflow",
    [
        {"nodes": [None, 1, "x", [], {"type": None, "widgets_values": None}]},
        {"nodes": [{"id": {"a": 1}, "type": ["x"], "widgets_values": 5, "properties": []}]},
        {"nodes": [{"type": "VAELoader", "widgets_values": [None, {}, []], "properties": None}]},
        {"nodes": [{"properties": {"models": [None, 1, {"name": 5}, {"name": "a.pt", "url": 1}]}}]},
        {"nodes": [{"type": "X", "widgets_values": deep(50_000)}]},
        {"nodes": [], "definitions": {"subgraphs": [None, {"nodes": None}, {"nodes": [5]}]}},
        {"nodes": [], "definitions": [], "models": {"name": "x"}},
        {"1": {"class_type": "CheckpointLoaderSimple", "inputs": None}, "2": None},
        {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": ["4", 0]}}},
    ],
)
def test_hostile_shapes_give_no_traceback(workflow: dict[str, Any]) -> None:
    """Odd or hostile values where nodes, widgets or models lists belong are passed over."""
    refs = model_refs(workflow)
    assert all(isinstance(ref, ModelRef) for ref in refs)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["a.safetensors", "x\\y.pt", "None", "taesd", "SHA256", "vae"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)  # fmt: skip
NODE_KEYS = st.sampled_from(["id", "type", "widgets_values", "properties", "models", "nodes"])


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["UNETLoader", "VAELoader", "DualCLIPLoader", "Other"]) | JSON,
    fields=st.dictionaries(NODE_KEYS, JSON, max_size=4),
    top=st.dictionaries(st.sampled_from(["definitions", "models", "extra"]), JSON, max_size=2),
)
def test_any_json_in_a_node_gives_refs_or_one_error(
    kind: object, fields: dict[str, Any], top: dict[str, Any]
) -> None:
    """Whatever JSON a node's fields hold, model_refs returns references (or the one error)."""
    as_ui = {"nodes": [{"type": kind, **fields}], **top}
    as_api = {"7": {"class_type": kind, "inputs": fields}}
    for workflow in (as_ui, as_api):
        try:
            refs = model_refs(workflow)
        except InvalidRequestError:
            continue
        assert all(isinstance(ref, ModelRef) and ref.name for ref in refs)


# -- the workflow a file holds


def comfy_png(path: Path, **texts: object) -> Path:
    """A PNG with text chunks, written the way ComfyUI's SaveImage writes them."""
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    return path


def comfy_webp(path: Path, prompt: object, workflow: object) -> Path:
    """An animated WebP with EXIF, written the way ComfyUI's SaveAnimatedWEBP writes it."""
    frames = [Image.new("RGB", (4, 4), color) for color in ("red", "blue")]
    exif = frames[0].getexif()
    exif[0x0110] = f"prompt:{json.dumps(prompt)}"
    exif[0x010F] = f"workflow:{json.dumps(workflow)}"
    exif[0x010E] = f"other:{json.dumps({'a': 1})}"
    frames[0].save(path, save_all=True, duration=100, append_images=frames[1:], exif=exif)
    return path


UI = ui(node("CheckpointLoaderSimple", "ui.safetensors"))
API = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "api.safetensors"}}}


def test_json_file_is_read() -> None:
    """A workflow's JSON file is read as it is."""
    assert read_workflow_file(DATA / "api_format.json") == json.loads(
        (DATA / "api_format.json").read_text()
    )


def test_png_prefers_the_ui_workflow_to_the_prompt(tmp_path: Path) -> None:
    """A PNG ComfyUI saved: its workflow chunk (UI format) wins over its prompt (API format)."""
    path = comfy_png(tmp_path / "out.png", prompt=API, workflow=UI)
    assert read_workflow_file(path) == UI


def test_png_with_only_a_prompt_gives_the_api_format(tmp_path: Path) -> None:
    """A PNG with a prompt chunk alone, or a workflow chunk that is not JSON, gives the prompt."""
    assert read_workflow_file(comfy_png(tmp_path / "a.png", prompt=API)) == API
    assert read_workflow_file(comfy_png(tmp_path / "b.png", workflow="{", prompt=API)) == API


def test_png_compressed_international_text_is_read(tmp_path: Path) -> None:
    """A workflow in a compressed iTXt chunk, non-ASCII names and all, is read."""
    workflow = ui(node("LoraLoader", "ÜberStil.safetensors", 1, 1))
    info = PngInfo()
    info.add_itxt("workflow", json.dumps(workflow, ensure_ascii=False), zip=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "i.png", pnginfo=info)
    assert read_workflow_file(tmp_path / "i.png") == workflow


def test_webp_saved_by_comfyui_gives_its_workflow(tmp_path: Path) -> None:
    """An animated WebP ComfyUI saved: the workflow: EXIF field, else the prompt: one."""
    assert read_workflow_file(comfy_webp(tmp_path / "a.webp", API, UI)) == UI
    assert read_workflow_file(comfy_webp(tmp_path / "b.webp", API, "not json")) == API


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I4s", len(data), kind) + data + b"\0\0\0\0"


PNG_HEAD = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", bytes(13))
WORKFLOW_TEXT = png_chunk(b"tEXt", b"workflow\0" + json.dumps(UI).encode())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "neither JSON nor a PNG or WebP"),
        (os.urandom(300), "neither JSON nor a PNG or WebP"),
        (b"[1, 2]", "its JSON is not an object"),
        (b"[" * 100_000, "neither JSON"),
        (b"\xff\xfe{}", "neither JSON"),
        (PNG_HEAD + png_chunk(b"IEND", b""), "a PNG with no ComfyUI workflow in it"),
        (PNG_HEAD + WORKFLOW_TEXT[:40], "a PNG with no ComfyUI workflow in it"),
        (PNG_HEAD + png_chunk(b"tEXt", b"no separator"), "a PNG with no ComfyUI workflow"),
        (PNG_HEAD + png_chunk(b"zTXt", b"workflow\0\0garbage"), "a PNG with no ComfyUI workflow"),
        (PNG_HEAD + png_chunk(b"tEXt", b"workflow\0[1]"), "a PNG with no ComfyUI workflow"),
        (PNG_HEAD + struct.pack(">I4s", 0xFFFFFFF0, b"IDAT"), "a PNG with no ComfyUI workflow"),
        (b"RIFF\0\0\0\0WEBPVP8 \4\0\0\0abcd", "a WebP with no ComfyUI workflow in it"),
        (b"RIFF\0\0\0\0WEBPEXIF\x10\0\0\0MM\0*\0\0\0\x08\xff\xff\0\0", "a WebP with no"),
        (b"RIFF\0\0\0\0WEBPEXIF\x08\0\0\0II*\0\xff\xff\xff\xff", "a WebP with no"),
    ],
    ids=[
        "empty", "random", "json-list", "json-too-deep", "not-utf8", "png-no-text",
        "png-cut-in-text", "png-bad-text", "png-bad-ztxt", "png-json-not-object",
        "png-huge-chunk", "webp-no-exif", "webp-exif-cut", "webp-exif-bad-offset",
    ],
)  # fmt: skip
def test_files_holding_no_workflow_raise_one_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """Corrupt images and files that are no workflow raise InvalidRequestError, never crash."""
    path = tmp_path / "file"
    path.write_bytes(content)
    with pytest.raises(InvalidRequestError, match=message):
        read_workflow_file(path)


def test_png_text_after_the_image_data_is_found(tmp_path: Path) -> None:
    """A workflow chunk after the image data is found: the image data is skipped, not read."""
    path = tmp_path / "late.png"
    idat = png_chunk(b"IDAT", bytes(100_000))
    path.write_bytes(PNG_HEAD + idat + WORKFLOW_TEXT + png_chunk(b"IEND", b""))
    assert read_workflow_file(path) == UI


def test_oversized_json_is_refused_unread(tmp_path: Path) -> None:
    """A file bigger than any workflow is refused from its size alone (a sparse file here)."""
    path = tmp_path / "model.safetensors"
    with path.open("wb") as file:
        file.write(b"{")
        file.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(InvalidRequestError, match="more than a workflow's 64 MiB"):
        read_workflow_file(path)


def test_unreadable_paths_raise_one_error(tmp_path: Path) -> None:
    """A missing path, a folder or a FIFO (not waited on) raises InvalidRequestError."""
    os.mkfifo(tmp_path / "fifo")
    for path, message in [
        (tmp_path / "absent.json", "cannot open"),
        (tmp_path, "not a regular file"),
        (tmp_path / "fifo", "not a regular file"),
    ]:
        with pytest.raises(InvalidRequestError, match=message):
            read_workflow_file(path)


# -- resolution against a catalog


@dataclass(frozen=True)
class FakeLookup:
    """The catalog as a list of locations, answering the three questions resolve asks."""

    locations: Sequence[Found]

    def at_loader_path(self, category: str | None, loader_path: str) -> Sequence[Found]:
        return [
            f
            for f in self.locations
            if f.loader_path == loader_path and category in (None, f.category)
        ]

    def by_hash(self, hash: str) -> Sequence[Found]:
        return [f for f in self.locations if f.hash == hash]

    def by_file_name(self, name: str) -> Sequence[Found]:
        return [f for f in self.locations if posixpath.basename(f.path) == name]


MODELS = "/srv/ComfyUI/models"


def at(path: str, hash: str | None = BLAKE, *, missing: bool = False) -> Found:
    """A location; under the models folder it has a category and a loader path."""
    category = loader_path = None
    if path.startswith(MODELS + "/"):
        category, _, loader_path = path.removeprefix(MODELS + "/").partition("/")
    return Found(path, hash, missing, category, loader_path)


REF = ModelRef("sdxl/m.safetensors", "checkpoints", url="https://e.org/m.safetensors")
HERE = f"{MODELS}/checkpoints/sdxl/m.safetensors"

RESOLUTIONS = [
    # (case, the reference, the catalog, expected status, path, hash, candidates)
    ("live at the loader path", REF, [at(HERE)], Status.PRESENT, HERE, BLAKE, ()),
    ("same content hash", ModelRef(REF.name, "checkpoints", hash=BLAKE), [at(HERE)],
     Status.PRESENT, HERE, BLAKE, ()),
    ("other algorithm: not compared", ModelRef(REF.name, "checkpoints", hash=SHA), [at(HERE)],
     Status.PRESENT, HERE, SHA, ()),
    ("not hashed yet", REF, [at(HERE, None)], Status.PRESENT, HERE, None, ()),
    ("no category: any category", ModelRef("m.safetensors", None),
     [at(f"{MODELS}/loras/m.safetensors")], Status.PRESENT, f"{MODELS}/loras/m.safetensors",
     BLAKE, ()),
    ("a live row beats a missing one", REF, [at(HERE, missing=True), at(HERE)],
     Status.PRESENT, HERE, BLAKE, ()),
    ("same hash under another folder", ModelRef(REF.name, "checkpoints", hash=BLAKE),
     [at(f"{MODELS}/checkpoints/old/x.safetensors")], Status.ELSEWHERE, None, BLAKE,
     (f"{MODELS}/checkpoints/old/x.safetensors",)),
    ("same file name outside the models", REF, [at("/home/u/Downloads/m.safetensors")],
     Status.ELSEWHERE, None, None, ("/home/u/Downloads/m.safetensors",)),
    ("wrong category folder", REF, [at(f"{MODELS}/loras/sdxl/m.safetensors")],
     Status.ELSEWHERE, None, None, (f"{MODELS}/loras/sdxl/m.safetensors",)),
    ("other content at the loader path", ModelRef(REF.name, "checkpoints", hash=BLAKE),
     [at(HERE, OTHER_BLAKE), at("/backup/copy.bin")], Status.ELSEWHERE, None, BLAKE,
     ("/backup/copy.bin",)),
    ("a live copy beats the missing original", REF,
     [at(HERE, missing=True), at("/tmp/m.safetensors")], Status.ELSEWHERE, None, None,
     ("/tmp/m.safetensors",)),
    ("gone from the loader path", REF, [at(HERE, missing=True)], Status.MISSING, HERE, BLAKE, ()),
    ("gone, known by hash", ModelRef(REF.name, "checkpoints", hash=BLAKE),
     [at("/old/place.bin", missing=True)], Status.MISSING, "/old/place.bin", BLAKE, ()),
    ("never seen", REF, [at(f"{MODELS}/checkpoints/other.safetensors")], Status.UNKNOWN, None,
     None, ()),
    ("same name, other content", ModelRef(REF.name, "checkpoints", hash=BLAKE),
     [at("/x/m.safetensors", OTHER_BLAKE)], Status.UNKNOWN, None, BLAKE, ()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ref", "locations", "status", "path", "hash", "candidates"),
    [case[1:] for case in RESOLUTIONS],
    ids=[case[0] for case in RESOLUTIONS],
)
def test_resolution(
    ref: ModelRef,
    locations: list[Found],
    status: Status,
    path: str | None,
    hash: str | None,
    candidates: tuple[str, ...],
) -> None:
    """Each reference gets the contract's status, with where it is, was, or could come from."""
    (result,) = resolve([ref], FakeLookup(locations))
    assert (result.status, result.path, result.hash, result.candidates) == (
        status,
        path,
        hash,
        candidates,
    )


def test_status_serialises_as_the_contract_says() -> None:
    """to_json gives the contract's object; the feed's item is the same without workflow."""
    status = ModelStatus(REF, Status.UNKNOWN)
    assert status.to_json("wf.png") == {
        "workflow": "wf.png",
        "name": "sdxl/m.safetensors",
        "category": "checkpoints",
        "status": "unknown",
        "path": None,
        "hash": None,
        "url": "https://e.org/m.safetensors",
        "candidates": [],
    }
    feed = status.to_json("wf.png")
    del feed["workflow"]
    assert status.to_json() == feed


def test_a_windows_workflow_resolves_to_the_loader_path() -> None:
    """A workflow saved on Windows finds the file ComfyUI lists with forward slashes."""
    refs = model_refs(json.loads((DATA / "api_format.json").read_text()))
    catalog = FakeLookup([at(f"{MODELS}/checkpoints/SDXL/sd_xl_base_1.0.safetensors")])
    assert [s.status for s in resolve(refs, catalog)] == [
        Status.PRESENT,
        Status.UNKNOWN,
        Status.UNKNOWN,
    ]


# -- ComfyUI's own workflow templates

ALIASES = {"unet": "diffusion_models", "clip": "text_encoders"}
# A few core loaders' file widgets, written out here rather than taken from the module.
WIDGETS = {
    "CheckpointLoaderSimple": {0: "checkpoints"},
    "UNETLoader": {0: "diffusion_models"},
    "VAELoader": {0: "vae"},
    "CLIPLoader": {0: "text_encoders"},
    "DualCLIPLoader": {0: "text_encoders", 1: "text_encoders"},
    "LoraLoaderModelOnly": {0: "loras"},
    "CLIPVisionLoader": {0: "clip_vision"},
}
NO_FILE = {"pixel_space", "taesd", "taesdxl", "taesd3", "taef1"}  # VAELoader's built-ins


def templates() -> list[tuple[str, object]]:
    import comfyui_workflow_templates_json as package  # the test extra has it: never skip

    folder = resources.files(package) / "templates"
    return [
        (entry.name, json.loads(entry.read_text(encoding="utf-8")))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    ]


def all_nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    subgraphs = workflow.get("definitions", {}).get("subgraphs", [])
    return [*workflow["nodes"], *(n for s in subgraphs for n in s["nodes"])]


def without_models_lists(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow with every properties.models and top-level models list taken out."""
    bare = copy.deepcopy(workflow)
    bare.pop("models", None)
    for n in all_nodes(bare):
        n.get("properties", {}).pop("models", None)
    return bare


def test_comfyui_templates() -> None:
    """Every one of ComfyUI's workflow templates reads without error; each properties.models
    entry is found with its directory as category, each core loader's file with its; and
    the widgets alone, every models list taken out, name the same files."""
    counts: Counter[str] = Counter()
    for name, document in templates():
        if not (isinstance(document, dict) and "nodes" in document):  # the index files
            with pytest.raises(InvalidRequestError):
                model_refs(document)
            continue
        refs = {(r.name, r.category): r for r in model_refs(document)}
        counts["workflows"] += 1
        counts["refs"] += len(refs)
        counts["no category"] += sum(category is None for _, category in refs)
        listed = widgets = 0
        for n in all_nodes(document):
            for entry in n.get("properties", {}).get("models", []):
                directory = ALIASES.get(entry["directory"], entry["directory"])
                ref = refs.get((entry["name"].replace("\\", "/"), directory))
                # Two entries for one file may differ in URL (a ?download=true); the first stays.
                assert ref is not None and ref.url is not None, (name, entry)
                listed += 1
            for position, category in WIDGETS.get(n["type"], {}).items():
                value = n["widgets_values"][position]
                if value in NO_FILE:
                    continue
                assert (value.replace("\\", "/"), category) in refs, (name, n["id"], value)
                widgets += 1
        from_widgets = {(r.name, r.category) for r in model_refs(without_models_lists(document))}
        assert from_widgets == set(refs), name
        counts["templates listing models"] += bool(listed)
        counts["properties.models entries"] += listed
        counts["core loader widgets"] += widgets
    # ComfyUI's templates use ComfyUI's own nodes: none should leave a file uncategorised.
    assert counts["no category"] == 0, counts
    assert counts["workflows"] >= 600, counts
    assert counts["templates listing models"] >= 250, counts
    assert counts["refs"] >= 950, counts
    assert counts["core loader widgets"] >= 900, counts
