"""What made a ComfyUI output: the models and the positive prompt of the graph its image
embeds, from real-shaped graphs, ComfyUI's own templates and hostile ones."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from assetd.comfyui.embedded import read_texts
from assetd.comfyui.generation import MAX_PROMPT, generation, generation_json
from tests.test_comfyui_check_templates import TEMPLATES

DATA = Path(__file__).parent / "data" / "workflows"


def api(**nodes: tuple[str, dict[str, Any]]) -> dict[str, str]:
    """The texts of an image whose ``prompt`` chunk holds these API-format nodes."""
    graph = {key.lstrip("n"): {"class_type": c, "inputs": i} for key, (c, i) in nodes.items()}
    return {"prompt": json.dumps(graph)}


def ui(nodes: list[dict[str, Any]], links: list[Any], **extra: Any) -> dict[str, str]:
    """The texts of an image whose only graph is a UI-format ``workflow``."""
    return {"workflow": json.dumps({"nodes": nodes, "links": links, **extra})}


def node(id: int, kind: str, values: Any = (), **inputs: int | None) -> dict[str, Any]:
    entries = [{"name": k, "type": "*", "link": v} for k, v in inputs.items()]
    return {"id": id, "type": kind, "inputs": entries, "widgets_values": list(values)}


CKPT = ("CheckpointLoaderSimple", {"ckpt_name": "sd15.safetensors"})
NEG = ("CLIPTextEncode", {"text": "blurry", "clip": ["1", 1]})

PROMPTS: list[tuple[str, dict[str, str], str | None]] = [
    (
        "KSampler from CLIPTextEncode",
        {"prompt": (DATA / "api_format.json").read_text()},
        "a cat on a desk, beside a file named model.pt",
    ),
    (
        "negative listed first, positive followed",
        api(
            n1=CKPT,
            n2=NEG,
            n3=("CLIPTextEncode", {"text": "a red fox", "clip": ["1", 1]}),
            n4=("KSampler", {"negative": ["2", 0], "positive": ["3", 0], "model": ["1", 0]}),
        ),
        "a red fox",
    ),
    (
        "KSamplerAdvanced from CLIPTextEncodeSDXL text_g",
        api(
            n1=("CLIPTextEncodeSDXL", {"width": 1024, "text_g": "a castle", "text_l": "castle"}),
            n2=("KSamplerAdvanced", {"positive": ["1", 0], "negative": ["1", 0]}),
        ),
        "a castle",
    ),
    (
        "SamplerCustomAdvanced, BasicGuider, FluxGuidance, CLIPTextEncodeFlux t5xxl",
        api(
            n6=("CLIPTextEncodeFlux", {"clip_l": "", "t5xxl": "a neon city", "guidance": 3.5}),
            n26=("FluxGuidance", {"conditioning": ["6", 0], "guidance": 3.5}),
            n22=("BasicGuider", {"model": ["12", 0], "conditioning": ["26", 0]}),
            n13=("SamplerCustomAdvanced", {"noise": ["25", 0], "guider": ["22", 0]}),
        ),
        "a neon city",
    ),
    (
        "CFGGuider positive through ControlNetApplyAdvanced and ConditioningCombine",
        api(
            n1=("CLIPTextEncode", {"text": "a lighthouse", "clip": ["9", 0]}),
            n2=("CLIPTextEncode", {"text": "storm clouds", "clip": ["9", 0]}),
            n3=("ConditioningCombine", {"conditioning_1": ["1", 0], "conditioning_2": ["2", 0]}),
            n4=("ControlNetApplyAdvanced", {"negative": ["7", 0], "positive": ["3", 0]}),
            n5=("CFGGuider", {"negative": ["7", 0], "positive": ["4", 0], "cfg": 4}),
            n7=NEG,
            n8=("SamplerCustomAdvanced", {"guider": ["5", 0]}),
        ),
        "a lighthouse",
    ),
    (
        "text from a linked primitive, through a switch",
        api(
            n1=("PrimitiveStringMultiline", {"value": "an astronaut on a horse"}),
            n2=("PrimitiveStringMultiline", {"value": "the other branch"}),
            n3=("ComfySwitchNode", {"on_false": ["2", 0], "on_true": ["1", 0], "switch": True}),
            n4=("CLIPTextEncode", {"text": ["3", 0], "clip": ["9", 0]}),
            n5=("KSampler", {"positive": ["4", 0], "negative": ["4", 0]}),
        ),
        "an astronaut on a horse",
    ),
    (
        "no sampler: a partner's API node, as its saver sees it",
        api(
            n1=("OpenAIGPTImage1", {"prompt": "a felt Eiffel tower", "quality": "low"}),
            n2=("SaveImage", {"filename_prefix": "ComfyUI", "images": ["1", 0]}),
        ),
        "a felt Eiffel tower",
    ),
    (
        "a cycle of conditioning nodes ends, with no prompt",
        api(
            n1=("ConditioningCombine", {"conditioning_1": ["2", 0]}),
            n2=("ConditioningCombine", {"conditioning_1": ["1", 0]}),
            n3=("KSampler", {"positive": ["1", 0]}),
        ),
        None,
    ),
    (
        "UI format: CLIPTextEncode's widget through a Reroute",
        ui(
            [
                node(4, "CheckpointLoaderSimple", ["sd15.safetensors"]),
                node(6, "CLIPTextEncode", ["a quiet harbour at dawn"], clip=None),
                node(7, "CLIPTextEncode", ["blurry"], clip=None),
                node(8, "Reroute", [], **{"": 1}),
                node(3, "KSampler", [1, "fixed", 20], positive=2, negative=3),
            ],
            [[1, 6, 0, 8, 0, "CONDITIONING"], [2, 8, 0, 3, 1, "*"], [3, 7, 0, 3, 2, "*"]],
        ),
        "a quiet harbour at dawn",
    ),
    (
        "UI format: CLIPTextEncodeSDXL by position; a bypassed sampler is passed over",
        ui(
            [
                node(1, "CLIPTextEncode", ["muted branch"]),
                {**node(2, "KSampler", [], positive=1), "mode": 4},
                node(3, "CLIPTextEncodeSDXL", [1024, 1024, 0, 0, 1024, 1024, "a koi pond", "koi"]),
                node(4, "KSampler", [], positive=2),
            ],
            [
                {"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0},
                {"id": 2, "origin_id": 3, "origin_slot": 0, "target_id": 4, "target_slot": 0},
            ],
        ),
        "a koi pond",
    ),
    (
        "UI format: the text of a subgraph's input, kept on the node that instances it",
        ui(
            [node(9, "sub-1", ["a glass whale", 20], text=None, steps=None)],
            [],
            definitions={
                "subgraphs": [
                    {
                        "id": "sub-1",
                        "inputNode": {"id": -10},
                        "inputs": [
                            {"name": "text", "type": "STRING", "linkIds": [1]},
                            {"name": "steps", "type": "INT", "linkIds": []},
                        ],
                        "outputs": [],
                        "nodes": [
                            node(1, "CLIPTextEncode", [""], text=1),
                            node(2, "KSampler", [], positive=2),
                        ],
                        "links": [[1, -10, 0, 1, 0, "STRING"], [2, 1, 0, 2, 1, "CONDITIONING"]],
                    }
                ]
            },
        ),
        "a glass whale",
    ),
    (
        "UI format with a subgraph whose prompt the inner node keeps (the test data)",
        {"workflow": (DATA / "subgraph.json").read_text()},
        "a lighthouse at dusk",
    ),
]


@pytest.mark.parametrize(("case", "texts", "prompt"), PROMPTS, ids=[c for c, _, _ in PROMPTS])
def test_the_positive_prompt_is_found_back_from_the_sampler(
    case: str, texts: dict[str, str], prompt: str | None
) -> None:
    """Each graph's positive prompt is the first text back from its sampler's positive
    input, through guiders, conditioning nodes, reroutes, switches and subgraphs."""
    found = generation(texts)
    assert found is not None
    assert found["prompt"] == prompt


def test_models_come_from_the_graph_that_ran_once_each_in_order() -> None:
    """The models are the API graph's (what ComfyUI ran), deduplicated, in first-seen
    order, each with its category (None where no loader says); the UI graph is read
    for them only when there is no API graph."""
    texts = {
        "prompt": (DATA / "api_format.json").read_text(),
        "workflow": (DATA / "subgraph.json").read_text(),
    }
    assert generation(texts) == {
        "models": [
            {"name": "SDXL/sd_xl_base_1.0.safetensors", "category": "checkpoints"},
            {"name": "styles/ink.safetensors", "category": "loras"},
            {"name": "4x_ultra.pth", "category": None},
        ],
        "prompt": "a cat on a desk, beside a file named model.pt",
    }
    only_ui = generation({"workflow": texts["workflow"]})
    assert only_ui is not None
    assert [m["name"] for m in only_ui["models"]] == [
        "flux1-dev.safetensors",
        "clip_l.safetensors",
        "t5xxl_fp16.safetensors",
        "ae.safetensors",
    ]


HOSTILE: list[tuple[str, dict[str, str]]] = [
    ("no texts", {}),
    ("not JSON", {"prompt": "{not json", "workflow": "\x00\xff"}),
    ("JSON that is no graph", {"prompt": "[1, 2]", "workflow": '{"nodes": 3}'}),
    ("nesting deeper than the parser goes", {"prompt": "[" * 100_000}),
    ("an object with no class_type", {"prompt": '{"1": {"inputs": {}}}'}),
]


@pytest.mark.parametrize(("case", "texts"), HOSTILE, ids=[c for c, _ in HOSTILE])
def test_what_is_no_comfyui_graph_makes_none(case: str, texts: dict[str, str]) -> None:
    """Texts that hold no ComfyUI graph make no generation, and never an exception."""
    assert generation(texts) is None
    assert generation_json(texts) is None


MALFORMED: list[tuple[str, dict[str, str]]] = [
    ("inputs that are not objects", api(n1=("KSampler", "positive"))),  # type: ignore[arg-type]
    ("links to nowhere", api(n1=("KSampler", {"positive": ["99", 0], "guider": [None, "x"]}))),
    (
        "a chain far longer than any graph",
        api(
            n0=("KSampler", {"positive": ["1", 0]}),
            **{
                f"n{i}": ("ConditioningSetArea", {"conditioning": [str(i + 1), 0]})
                for i in range(1, 5000)
            },
            n5000=("CLIPTextEncode", {"text": "too far"}),
        ),
    ),
    (
        "UI nodes and links of every wrong type",
        {
            "workflow": json.dumps(
                {
                    "nodes": [
                        None,
                        3,
                        {"id": "x"},
                        {"id": 1, "type": "KSampler", "inputs": 5},
                        {"id": 2, "type": "KSampler", "inputs": [{"name": "positive", "link": 7}]},
                    ],
                    "links": [None, [7], [7, "a", 0], {"id": 7, "origin_id": 2, "origin_slot": 0}],
                    "definitions": {"subgraphs": [None, {"id": 5}, {"id": "s", "nodes": "x"}]},
                }
            )
        },
    ),
]


@pytest.mark.parametrize(("case", "texts"), MALFORMED, ids=[c for c, _ in MALFORMED])
def test_a_malformed_graph_has_no_prompt_and_raises_nothing(
    case: str, texts: dict[str, str]
) -> None:
    """A graph broken or built to cost gives up quietly: no prompt, never an exception."""
    found = generation(texts)
    assert found is None or found["prompt"] is None


def test_the_prompt_is_bounded_and_trimmed() -> None:
    """A prompt of megabytes is kept to MAX_PROMPT characters, and surrounding space goes."""
    texts = api(
        n1=("CLIPTextEncode", {"text": "  " + "x" * 1_000_000}),
        n2=("KSampler", {"positive": ["1", 0]}),
    )
    found = generation(texts)
    assert found is not None and found["prompt"] == "x" * MAX_PROMPT


def png(tmp_path: Path, **texts: str) -> Path:
    path = tmp_path / "ComfyUI_00001_.png"
    info = PngInfo()
    for key, text in texts.items():
        info.add_text(key, text)
    Image.new("RGB", (64, 64), "teal").save(path, pnginfo=info)
    return path


def test_an_image_s_texts_are_read_within_a_bound(tmp_path: Path) -> None:
    """read_texts gives the ``prompt`` and ``workflow`` chunks of a PNG, leaves out a
    chunk past its bound, and gives nothing for a file that is no PNG or WebP."""
    path = png(tmp_path, prompt='{"1": {}}', workflow="w" * 5000, parameters="other")
    with path.open("rb") as file:
        assert read_texts(file) == {"prompt": '{"1": {}}', "workflow": "w" * 5000}
        assert read_texts(file, limit=1000) == {"prompt": '{"1": {}}'}
    assert read_texts(io.BytesIO(b"GIF89a" + b"\0" * 100)) == {}


def test_the_templates_never_raise_and_most_text_to_image_ones_have_a_prompt() -> None:
    """Over every ComfyUI template (the UI format, subgraphs and all), generation never
    raises; nearly every text-to-image template yields its prompt."""
    names = sorted(p.name for p in TEMPLATES.glob("*.json"))
    t2i = [n for n in names if "t2i" in n or "text_to_image" in n]
    graphs = prompted = t2i_prompted = 0
    for name in names:
        found = generation({"workflow": (TEMPLATES / name).read_text(encoding="utf-8")})
        if found is None:
            continue
        graphs += 1
        prompted += found["prompt"] is not None
        t2i_prompted += name in t2i and found["prompt"] is not None
    print(
        f"templates: {len(names)} files, {graphs} graphs, {prompted} with a prompt; "
        f"text to image: {t2i_prompted} of {len(t2i)}"
    )
    assert len(t2i) > 40
    assert t2i_prompted >= 0.9 * len(t2i)
    assert prompted > 300


def test_ascii_is_not_required_in_the_kept_json() -> None:
    """The kept JSON is compact and keeps non-ASCII text as it is."""
    texts = api(n1=("CLIPTextEncode", {"text": "雪の森"}), n2=("KSampler", {"positive": ["1", 0]}))
    kept = generation_json(texts)
    assert kept == '{"models":[],"prompt":"雪の森"}'
