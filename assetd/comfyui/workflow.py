"""Which model files a ComfyUI workflow names, and what the catalog knows of each.

Two pure steps. :func:`model_refs` reads a workflow (the UI format with ``nodes``, or the
API format keyed by node id) and lists the model files it refers to; :func:`resolve`
asks a :class:`Lookup` (the catalog, or a fake in tests) where each one is.
"""

from __future__ import annotations

import enum
import posixpath
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeGuard

from assetd.comfyui.install import canonical_category
from assetd.exceptions import InvalidRequestError

__all__ = [
    "MODEL_EXTENSIONS",
    "Found",
    "Lookup",
    "ModelRef",
    "ModelStatus",
    "Status",
    "model_refs",
    "resolve",
]

# ComfyUI's supported_pt_extensions, and the formats of loaders outside its core (GGUF, ONNX).
MODEL_EXTENSIONS = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft", ".gguf", ".onnx"}
)


# The file widgets of ComfyUI's own loader nodes and their categories, in widget order:
# the UI format keeps widget values by position, the API format by input name. These are
# the leading widgets of each node; what follows them (strengths, dtypes) names no file.
_LOADERS: dict[str, tuple[tuple[str, str], ...]] = {
    # nodes.py
    "CheckpointLoaderSimple": (("ckpt_name", "checkpoints"),),
    "CheckpointLoader": (("config_name", "configs"), ("ckpt_name", "checkpoints")),
    "unCLIPCheckpointLoader": (("ckpt_name", "checkpoints"),),
    "LoraLoader": (("lora_name", "loras"),),
    "LoraLoaderModelOnly": (("lora_name", "loras"),),
    "VAELoader": (("vae_name", "vae"),),
    "ControlNetLoader": (("control_net_name", "controlnet"),),
    "DiffControlNetLoader": (("control_net_name", "controlnet"),),
    "UNETLoader": (("unet_name", "diffusion_models"),),
    "CLIPLoader": (("clip_name", "text_encoders"),),
    "DualCLIPLoader": (("clip_name1", "text_encoders"), ("clip_name2", "text_encoders")),
    "CLIPVisionLoader": (("clip_name", "clip_vision"),),
    "StyleModelLoader": (("style_model_name", "style_models"),),
    "GLIGENLoader": (("gligen_name", "gligen"),),
    # comfy_extras/
    "TripleCLIPLoader": tuple((f"clip_name{i}", "text_encoders") for i in (1, 2, 3)),
    "QuadrupleCLIPLoader": tuple((f"clip_name{i}", "text_encoders") for i in (1, 2, 3, 4)),
    "HypernetworkLoader": (("hypernetwork_name", "hypernetworks"),),
    "PhotoMakerLoader": (("photomaker_model_name", "photomaker"),),
    "UpscaleModelLoader": (("model_name", "upscale_models"),),
    "ImageOnlyCheckpointLoader": (("ckpt_name", "checkpoints"),),
    "ModelPatchLoader": (("name", "model_patches"),),
    "AudioEncoderLoader": (("audio_encoder_name", "audio_encoders"),),
    "LatentUpscaleModelLoader": (("model_name", "latent_upscale_models"),),
    "LTXVAudioVAELoader": (("ckpt_name", "checkpoints"),),
    "LTXAVTextEncoderLoader": (("text_encoder", "text_encoders"), ("ckpt_name", "checkpoints")),
    "LoadMoGeModel": (("model_name", "geometry_estimation"),),
    "LoadDA3Model": (("model_name", "geometry_estimation"),),
    "ConditioningLoader": (("conditioning_name", "embeddings"),),
    "LoadBackgroundRemovalModel": (("bg_removal_name", "background_removal"),),
    "SAM3DBody_Loader": (("model_file", "detection"),),
    "FrameInterpolationModelLoader": (("model_name", "frame_interpolation"),),
    "OpticalFlowLoader": (("model_name", "optical_flow"),),
}

# VAELoader also offers names that are no one file: an image TAE is a pair of files in
# vae_approx (taesd_encoder.*, taesd_decoder.*) whose extensions the name leaves open, and
# pixel_space is no file at all. A video TAE is one whole file name in vae_approx.
_VAE_WITHOUT_FILE = frozenset({"taesd", "taesdxl", "taesd3", "taef1", "taef2", "pixel_space"})
_VIDEO_TAES = ("taehv", "lighttaew2_2", "lighttaew2_1", "lighttaehy1_5", "taeltx_2", "taeh3")

# Nodes whose widgets hold text for people, never a file to load.
_TEXT_NODES = frozenset({"Note", "MarkdownNote"})

# Widget values nest (a list of LoRA entries, each an object): a few levels are looked
# into, enough for those and not so deep that a hostile workflow costs anything.
_MAX_DEPTH = 4
_MAX_NAME = 1024
_HEX = frozenset(string.hexdigits.lower())


@dataclass(frozen=True, slots=True)
class ModelRef:
    """One model file a workflow refers to."""

    name: str  # the loader path, with forward slashes: how ComfyUI's loader names the file
    category: str | None  # the models folder it loads from; None: the workflow does not say
    url: str | None = None  # where to get it, if the workflow says
    hash: str | None = None  # "<algorithm>:<hex>": "sha256:…" from a workflow, "blake3:…"
    directory: str | None = None  # the workflow's own ``directory`` for it, as written
    nodes: tuple[str, ...] = ()  # where: node ids ("SUBGRAPH/ID" inside one), "models"

    def merged(self, other: ModelRef) -> ModelRef:
        """This reference, with what ``other`` adds to it."""
        return replace(
            self,
            url=self.url or other.url,
            hash=self.hash or other.hash,
            directory=self.directory or other.directory,
            nodes=tuple(dict.fromkeys(self.nodes + other.nodes)),
        )


def model_refs(workflow: object) -> list[ModelRef]:
    """Every model file ``workflow`` refers to, once each, in the order first seen.

    Raises :class:`InvalidRequestError` when ``workflow`` is a workflow in neither format.
    """
    if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
        return _deduplicated(_ui_refs(workflow))
    if isinstance(workflow, dict) and any(_is_api_node(node) for node in workflow.values()):
        return _deduplicated(_api_refs(workflow))
    raise InvalidRequestError(f"not a ComfyUI workflow: {_shape(workflow)}")


def _shape(value: object) -> str:
    if isinstance(value, dict):
        return "an object with neither a list of nodes nor entries with a class_type"
    names = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return f"{names.get(type(value), 'a number')}, not an object"


def _is_api_node(node: object) -> bool:
    return isinstance(node, dict) and isinstance(node.get("class_type"), str)


def _label(node_id: object) -> str:
    return str(node_id) if isinstance(node_id, str | int) else "?"


def _ui_refs(workflow: dict[str, Any]) -> Iterator[ModelRef]:
    yield from _graph_refs(workflow["nodes"], "")
    definitions = workflow.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    for subgraph in subgraphs if isinstance(subgraphs, list) else ():
        if isinstance(subgraph, dict) and isinstance(subgraph.get("nodes"), list):
            yield from _graph_refs(subgraph["nodes"], f"{_label(subgraph.get('id'))}/")
    yield from _listed_refs(workflow.get("models"), "models")


def _graph_refs(nodes: list[Any], prefix: str) -> Iterator[ModelRef]:
    for node in nodes:
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        kind = kind if isinstance(kind, str) else ""
        if kind in _TEXT_NODES:
            continue
        where = prefix + _label(node.get("id"))
        properties = node.get("properties")
        if isinstance(properties, dict):
            yield from _listed_refs(properties.get("models"), where)
        values = node.get("widgets_values")
        if isinstance(values, list):
            yield from _widget_refs(kind, enumerate(values), where)
        elif isinstance(values, dict):
            yield from _widget_refs(kind, values.items(), where)


def _api_refs(workflow: dict[str, Any]) -> Iterator[ModelRef]:
    for node_id, node in workflow.items():
        if _is_api_node(node) and isinstance(node.get("inputs"), dict):
            yield from _widget_refs(node["class_type"], node["inputs"].items(), _label(node_id))


def _widget_refs(kind: str, values: Iterable[tuple[Any, Any]], where: str) -> Iterator[ModelRef]:
    """References in one node's widget values, keyed by position (UI) or input name (API)."""
    widgets = _LOADERS.get(kind, ())
    by_name = dict(widgets)
    for key, value in values:
        if isinstance(key, int):
            category = widgets[key][1] if key < len(widgets) else None
        else:
            category = by_name.get(key)
        if category is None:
            yield from _guessed_refs(value, where, 0)
        elif (ref := _loader_ref(kind, category, value, where)) is not None:
            yield ref


def _loader_ref(kind: str, category: str, value: object, where: str) -> ModelRef | None:
    """The file a known loader widget names: any file name, whatever its extension."""
    if not _plausible_name(value):
        return None
    name = _loader_path(value)
    if kind == "VAELoader":
        if name in _VAE_WITHOUT_FILE:
            return None
        if name.startswith(_VIDEO_TAES):
            category = "vae_approx"
    return ModelRef(name, category, nodes=(where,))


def _guessed_refs(value: object, where: str, depth: int) -> Iterator[ModelRef]:
    """Values of widgets no table knows: only whole strings that look like a model file."""
    if isinstance(value, str):
        if _looks_like_model_file(value):
            yield ModelRef(_loader_path(value), None, nodes=(where,))
    elif depth < _MAX_DEPTH and isinstance(value, list | dict):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _guessed_refs(item, where, depth + 1)


def _listed_refs(entries: object, where: str) -> Iterator[ModelRef]:
    """The entries of a ``models`` list: name, url, directory, hash (and hash_type)."""
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or not _plausible_name(name := entry.get("name")):
            continue
        directory = entry.get("directory")
        directory = directory if isinstance(directory, str) and directory.strip() else None
        url = entry.get("url")
        yield ModelRef(
            _loader_path(name),
            canonical_category(directory) if directory else None,  # old names: "unet"
            url=url if isinstance(url, str) and url.strip() else None,
            hash=_hash(entry.get("hash"), entry.get("hash_type")),
            directory=directory,
            nodes=(where,),
        )


def _plausible_name(value: object) -> TypeGuard[str]:
    """A string that can be a loader path: one line, not empty, not a URL, not "None"."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_NAME
        and value.isprintable()
        and value.strip() not in ("", "None", "none")
        and "://" not in value
        and not value.endswith(("/", "\\"))
    )


def _looks_like_model_file(value: object) -> bool:
    """A whole value that reads as a model file's name, not as text that mentions one."""
    if not _plausible_name(value):
        return False
    base = _loader_path(value).rpartition("/")[2]
    stem, extension = posixpath.splitext(base)
    # A prompt that happens to end in ".pt" reads as a sentence; a file name rarely does.
    sentence = ", " in value or ": " in value or "  " in value
    return extension.lower() in MODEL_EXTENSIONS and bool(stem.strip()) and not sentence


def _loader_path(name: str) -> str:
    # ComfyUI's loaders name files with forward slashes; workflows saved on Windows carry
    # backslashes for the same file.
    return name.replace("\\", "/")


def _algorithm(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def _hash(value: object, algorithm: object) -> str | None:
    """``"<algorithm>:<hex>"`` from a workflow's hash and hash_type; None when unclear.

    A bare digest with no hash_type stays unknown: SHA-256 and BLAKE3 are both 64 hex
    digits, and a guessed algorithm would compare unlike with unlike.
    """
    if not isinstance(value, str):
        return None
    prefix, colon, digest = value.strip().lower().rpartition(":")
    named = _algorithm(algorithm) if isinstance(algorithm, str) else ""
    if colon and named and _algorithm(prefix) != named:
        return None
    prefix = named or (_algorithm(prefix) if colon else "")
    if not prefix or not digest or not set(digest) <= _HEX:
        return None
    return f"{prefix}:{digest}"


def _deduplicated(refs: Iterable[ModelRef]) -> list[ModelRef]:
    by_key: dict[tuple[str, str | None], ModelRef] = {}
    for ref in refs:
        key = (ref.name, ref.category)
        by_key[key] = by_key[key].merged(ref) if key in by_key else ref
    # A value whose node says nothing of its category (a subgraph's promoted widget, a
    # custom node) is the same file as a reference of that name whose category is known.
    known: dict[str, list[tuple[str, str | None]]] = {}
    for name, category in by_key:
        if category is not None:
            known.setdefault(name, []).append((name, category))
    for name, category in list(by_key):
        if category is None and name in known:
            unplaced = by_key.pop((name, None))
            for key in known[name]:
                by_key[key] = by_key[key].merged(unplaced)
    return list(by_key.values())


class Status(enum.StrEnum):
    """Where a model stands, as the contract names it."""

    PRESENT = "present"  # live where ComfyUI's loader looks (content matching, if hashed)
    ELSEWHERE = "elsewhere"  # live under another folder or name: see candidates
    MISSING = "missing"  # the catalog knew it, by hash or loader path, and it is gone
    UNKNOWN = "unknown"  # the catalog has never seen it


@dataclass(frozen=True, slots=True)
class Found:
    """A location the catalog holds, live or missing, as a :class:`Lookup` reports it."""

    path: str  # absolute
    hash: str | None  # "blake3:<hex>"; None while not hashed yet
    is_missing: bool
    category: str | None = None  # its ComfyUI category and loader path, if in one
    loader_path: str | None = None


class Lookup(Protocol):
    """What :func:`resolve` asks the catalog: live and missing locations alike, the most
    telling first (the location a model was last seen at leads the missing ones)."""

    def at_loader_path(self, category: str | None, loader_path: str) -> Sequence[Found]:
        """Locations ComfyUI lists as ``loader_path`` in ``category`` (None: any category)."""
        ...

    def by_hash(self, hash: str) -> Sequence[Found]:
        """Locations with this content hash; none for an algorithm the catalog does not keep."""
        ...

    def by_file_name(self, name: str) -> Sequence[Found]:
        """Locations whose file has this name (a path's last part), in any folder."""
        ...


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """Where one model a workflow needs stands in the catalog."""

    ref: ModelRef
    status: Status
    path: str | None = None  # present: where it is; missing: where it last was
    hash: str | None = None  # the workflow's hash, else that of the location at ``path``
    candidates: tuple[str, ...] = ()  # elsewhere: the live locations that would do

    def to_json(self, workflow: str | None = None) -> dict[str, Any]:
        """The contract's object for this model; without ``workflow``, the feed's item."""
        head = {} if workflow is None else {"workflow": workflow}
        return {
            **head,
            "name": self.ref.name,
            "category": self.ref.category,
            "status": self.status.value,
            "path": self.path,
            "hash": self.hash,
            "url": self.ref.url,
            "candidates": list(self.candidates),
        }


def resolve(refs: Iterable[ModelRef], lookup: Lookup) -> list[ModelStatus]:
    """The status of each reference, in order."""
    return [_resolve_one(ref, lookup) for ref in refs]


def _resolve_one(ref: ModelRef, lookup: Lookup) -> ModelStatus:
    wanted = ref.hash
    here = [f for f in lookup.at_loader_path(ref.category, ref.name) if _agrees(wanted, f.hash)]
    for found in here:
        if not found.is_missing:
            return ModelStatus(ref, Status.PRESENT, found.path, wanted or found.hash)
    same_hash = list(lookup.by_hash(wanted)) if wanted else []
    file_name = ref.name.rpartition("/")[2]
    same_name = [f for f in lookup.by_file_name(file_name) if _agrees(wanted, f.hash)]
    live = [f.path for f in same_hash + same_name if not f.is_missing]
    if live:
        candidates = tuple(dict.fromkeys(live))
        return ModelStatus(ref, Status.ELSEWHERE, hash=wanted, candidates=candidates)
    gone = [f for f in here + same_hash if f.is_missing]
    if gone:
        return ModelStatus(ref, Status.MISSING, gone[0].path, wanted or gone[0].hash)
    return ModelStatus(ref, Status.UNKNOWN, hash=wanted)


def _agrees(wanted: str | None, have: str | None) -> bool:
    """Whether content may be the one wanted: only hashes of one algorithm can differ."""
    if wanted is None or have is None:
        return True
    algorithm, _, digest = wanted.partition(":")
    other, _, other_digest = have.partition(":")
    return algorithm != other or digest == other_digest
