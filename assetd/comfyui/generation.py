"""What made a ComfyUI output: the models and the positive prompt of the graph it embeds.

Pure: :func:`generation` takes the ``workflow`` and ``prompt`` texts an image carries
(:func:`assetd.comfyui.embedded.read_texts`) and never raises. The models come from
:func:`assetd.comfyui.workflow.model_refs`. The prompt is found by following the links
back from a sampler's ``positive`` input (or its guider's) to the first string: through
conditioning nodes, reroutes, switches and subgraphs, to a text encoder's text or the
primitive that feeds it. The API format (``prompt``) is what ComfyUI ran, so it is read
first; the UI format (``workflow``) only when there is no API graph.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from assetd.comfyui.workflow import MODEL_EXTENSIONS, model_refs
from assetd.exceptions import InvalidRequestError

__all__ = ["MAX_MODELS", "MAX_PROMPT", "generation", "generation_json"]

MAX_PROMPT = 4000  # characters of prompt kept: enough to recognise it, bounded per asset
MAX_MODELS = 64
# Links followed from a sampler to its text, and nodes looked at in all: a real graph
# needs a handful; a hostile one (a cycle, a chain of thousands) stops here.
_MAX_HOPS = 32
_MAX_VISITS = 2000

# Inputs that hold or bring the text, most telling first.
_TEXT_INPUTS = (
    "text",
    "text_g",
    "t5xxl",
    "prompt",
    "user_prompt",
    "positive_prompt",
    "value",
    "string",
    "string_a",
    "text_l",
    "clip_l",
    "clip_g",
    "bert",
    "mt5xl",
    "caption",
)
# Inputs that bring the positive conditioning (never ``negative``), or pass a value on.
_FOLLOW_INPUTS = (
    "positive",
    "guider",
    "conditioning",
    "conditioning_1",
    "conditioning_to",
    "cond1",
    "cond",
    "conditioning_from",
    "conditioning_2",
    "source",
    "input",
    "any",
)
_SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_SAMPLER_INPUTS = ("positive", "guider")
# UI-format widget positions of the text widgets of ComfyUI's own text nodes: the UI
# format keeps widget values by position only.
_UI_WIDGETS: dict[str, dict[str, int]] = {
    "CLIPTextEncode": {"text": 0},
    "CLIPTextEncodeSDXL": {"text_g": 6, "text_l": 7},
    "CLIPTextEncodeSDXLRefiner": {"text": 3},
    "CLIPTextEncodeFlux": {"clip_l": 0, "t5xxl": 1},
    "CLIPTextEncodeSD3": {"clip_l": 0, "clip_g": 1, "t5xxl": 2},
    "CLIPTextEncodeHunyuanDiT": {"bert": 0, "mt5xl": 1},
    "CLIPTextEncodeLumina2": {"user_prompt": 1},
    "TextEncodeQwenImageEdit": {"prompt": 0},
    "TextEncodeQwenImageEditPlus": {"prompt": 0},
    "PrimitiveNode": {"value": 0},
    "PrimitiveString": {"value": 0},
    "PrimitiveStringMultiline": {"value": 0},
    "StringConcatenate": {"string_a": 0},
}
# Types a subgraph input has when it is a widget: the instance keeps its value by position.
_WIDGET_TYPES = frozenset({"STRING", "INT", "FLOAT", "BOOLEAN", "COMBO"})
_SKIPPED_MODES = (2, 4)  # muted, bypassed
_NOTES = frozenset({"Note", "MarkdownNote"})


def generation(texts: Mapping[str, str]) -> dict[str, Any] | None:
    """``{"models": [{"name", "category"}...], "prompt": text | None}`` of the graph in
    ``texts`` (``workflow`` and ``prompt``); None when neither holds a ComfyUI graph."""
    try:
        return _generation(texts)
    except (RecursionError, ValueError, TypeError, KeyError, AttributeError, IndexError):
        return None  # a graph malformed past what the checks below foresee: nothing to say


def generation_json(texts: Mapping[str, str]) -> str | None:
    """:func:`generation` as compact JSON text, as the catalog keeps it."""
    found = generation(texts)
    return None if found is None else json.dumps(found, ensure_ascii=False, separators=(",", ":"))


def _generation(texts: Mapping[str, str]) -> dict[str, Any] | None:
    api = _parsed(texts.get("prompt"))
    api = api if isinstance(api, dict) and any(_is_api_node(n) for n in api.values()) else None
    models = _models(api) if api is not None else []
    prompt = _api_prompt(api) if api is not None else None
    if models and prompt is not None:
        return {"models": models, "prompt": _bounded(prompt)}
    # The UI graph, often ten times the API one, is parsed only for what that lacks.
    ui = _parsed(texts.get("workflow"))
    ui = ui if isinstance(ui, dict) and isinstance(ui.get("nodes"), list) else None
    if api is None and ui is None:
        return None
    if ui is not None:
        models = models or _models(ui)
        prompt = prompt if prompt is not None else _UiGraphs(ui).prompt()
    return {"models": models, "prompt": _bounded(prompt)}


def _bounded(prompt: str | None) -> str | None:
    return prompt.strip()[:MAX_PROMPT] or None if prompt is not None else None


def _parsed(text: object) -> object:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _is_api_node(node: object) -> bool:
    return isinstance(node, dict) and isinstance(node.get("class_type"), str)


def _models(graph: object) -> list[dict[str, Any]]:
    try:
        refs = model_refs(graph)
    except InvalidRequestError:
        return []
    return [{"name": r.name, "category": r.category} for r in refs[:MAX_MODELS]]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


@dataclass
class _Budget:
    visits: int = 0

    def spend(self) -> bool:
        self.visits += 1
        return self.visits <= _MAX_VISITS


# -- the API format: {node id: {"class_type", "inputs": {name: value | [id, slot]}}} ----


def _api_prompt(graph: dict[str, Any]) -> str | None:
    budget = _Budget()
    nodes = [(str(k), v) for k, v in graph.items() if _is_api_node(v)]
    ranked = sorted(nodes, key=lambda item: not _is_sampler(item[1]["class_type"]))
    for _node_id, node in ranked:
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            continue
        for name in _SAMPLER_INPUTS:
            if (link := _api_link(inputs.get(name))) is not None:
                found = _api_text(graph, link, 0, budget)
                if found is not None:
                    return found
    for _node_id, node in nodes:  # no sampler: the node whose images are saved made them
        inputs = node.get("inputs")
        images = (
            inputs.get("images")
            if _saves(node["class_type"]) and isinstance(inputs, dict)
            else None
        )
        if (link := _api_link(images)) is not None:
            found = _api_text(graph, link, 0, budget)
            if found is not None:
                return found
    return None


def _saves(kind: object) -> bool:
    """A node that saves or shows the images it is given."""
    return isinstance(kind, str) and kind.startswith(("Save", "Preview"))


def _is_sampler(kind: str) -> bool:
    return kind in _SAMPLERS or "sampler" in kind.lower()


def _api_link(value: object) -> str | None:
    """The node a ``[node id, output slot]`` input comes from."""
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], int):
        return None
    origin = value[0]
    return str(origin) if isinstance(origin, str | int) and not isinstance(origin, bool) else None


def _api_text(graph: dict[str, Any], node_id: str, hops: int, budget: _Budget) -> str | None:
    if hops > _MAX_HOPS or not budget.spend():
        return None
    node = graph.get(node_id)
    inputs = node.get("inputs") if isinstance(node, dict) else None
    if not isinstance(inputs, dict):
        return None
    kind = node.get("class_type") if isinstance(node, dict) else None
    for name in _switched(kind, inputs.get("switch")) + _TEXT_INPUTS + _FOLLOW_INPUTS:
        value = inputs.get(name)
        if name in _TEXT_INPUTS and (text := _text(value)) is not None:
            return text
        if (link := _api_link(value)) is not None:
            found = _api_text(graph, link, hops + 1, budget)
            if found is not None:
                return found
    return None


def _switched(kind: object, switch: object) -> tuple[str, ...]:
    """The input a switch node passes on, when its switch is a plain value."""
    if kind != "ComfySwitchNode" or not isinstance(switch, bool):
        return ()
    return ("on_true",) if switch else ("on_false",)


# -- the UI format: nodes with positional widgets, links by id, subgraphs ---------------


@dataclass
class _Graph:
    nodes: dict[int, dict[str, Any]]
    links: dict[int, tuple[int, int]]  # link id -> (origin node id, origin slot)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # a subgraph's inputs
    outputs: list[dict[str, Any]] = field(default_factory=list)
    input_node: int = -10
    parent: tuple[str, int] | None = None  # (graph, instance node) of a subgraph


class _UiGraphs:
    """The top graph of a UI-format workflow and its subgraphs, by id ("" the top)."""

    def __init__(self, workflow: dict[str, Any]) -> None:
        self.graphs: dict[str, _Graph] = {"": _graph(workflow)}
        definitions = workflow.get("definitions")
        subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
        for sub in subgraphs if isinstance(subgraphs, list) else ():
            if isinstance(sub, dict) and isinstance(sub.get("id"), str):
                self.graphs[sub["id"]] = _graph(sub)
        for gid, graph in list(self.graphs.items()):
            for node_id, node in graph.nodes.items():
                kind = node.get("type")
                if isinstance(kind, str) and kind in self.graphs and kind != gid:
                    inner = self.graphs[kind]
                    if inner.parent is None:
                        inner.parent = (gid, node_id)
        self.budget = _Budget()

    def prompt(self) -> str | None:
        samplers: list[tuple[str, int]] = []
        others: list[tuple[str, int]] = []
        for gid, graph in self.graphs.items():
            for node_id, node in graph.nodes.items():
                if node.get("mode") in _SKIPPED_MODES:
                    continue
                kind = node.get("type")
                if isinstance(kind, str) and _is_sampler(kind):
                    samplers.append((gid, node_id))
                elif kind not in _NOTES:
                    others.append((gid, node_id))
        for gid, node_id in samplers + others:
            for name in _SAMPLER_INPUTS:
                if (origin := self._origin(gid, node_id, name)) is not None:
                    found = self._text(origin[0], origin[1], 1, origin[2])
                    if found is not None:
                        return found
        # No sampler: a node that makes the image itself (a partner's API node), as the
        # node that saves or shows its ``images`` sees it.
        for gid, node_id in others:
            if not _saves(self.graphs[gid].nodes[node_id].get("type")):
                continue
            if (origin := self._origin(gid, node_id, "images")) is not None:
                found = self._text(origin[0], origin[1], 1, origin[2], maker=True)
                if found is not None:
                    return found
        return None

    def _origin(self, gid: str, node_id: int, name: str) -> tuple[str, int, int] | None:
        """(graph, node, output slot) the input ``name`` of a node is linked from."""
        node = self.graphs[gid].nodes.get(node_id)
        for entry in _entries(node.get("inputs") if node else None):
            if entry.get("name") == name and isinstance(entry.get("link"), int):
                return self._link(gid, entry["link"])
        return None

    def _link(self, gid: str, link: int) -> tuple[str, int, int] | None:
        graph = self.graphs[gid]
        found = graph.links.get(link)
        if found is None:
            return None
        origin, slot = found
        return (gid, origin, slot)

    def _text(
        self, gid: str, node_id: int, hops: int, slot: int = 0, *, maker: bool = False
    ) -> str | None:
        """The first text found back from output ``slot`` of a node; ``maker``: the node
        made the image, and its longest text widget is its prompt if nothing else is."""
        if hops > _MAX_HOPS or not self.budget.spend():
            return None
        graph = self.graphs[gid]
        if node_id == graph.input_node:
            return self._from_instance(gid, slot, hops)
        node = graph.nodes.get(node_id)
        if node is None:
            return None
        kind = node.get("type")
        if isinstance(kind, str) and kind in self.graphs and kind != gid:
            found = self._from_subgraph_output(kind, slot, hops)
            return (
                found
                if found is not None or not maker
                else _longest_text(node.get("widgets_values"))
            )
        entries = {e.get("name"): e for e in _entries(node.get("inputs"))}
        if kind == "Reroute":
            first = next(iter(entries.values()), None)
            link = first.get("link") if first else None
            origin = self._link(gid, link) if isinstance(link, int) else None
            return self._text(origin[0], origin[1], hops + 1, origin[2]) if origin else None
        values = node.get("widgets_values")
        switch = _widget(kind, values, "switch", {"ComfySwitchNode": {"switch": 0}})
        for name in _switched(kind, switch) + _TEXT_INPUTS + _FOLLOW_INPUTS:
            entry = entries.get(name)
            link = entry.get("link") if entry else None
            if isinstance(link, int) and (origin := self._link(gid, link)) is not None:
                found = self._text(origin[0], origin[1], hops + 1, origin[2])
                if found is not None:
                    return found
            if name in _TEXT_INPUTS and (text := _text(_widget(kind, values, name))) is not None:
                return text
        return _longest_text(values) if maker or _texty(kind) else None

    def _from_instance(self, gid: str, slot: int, hops: int) -> str | None:
        """The value a subgraph's input ``slot`` has at the node that instances it."""
        graph = self.graphs[gid]
        if graph.parent is None or not 0 <= slot < len(graph.inputs):
            return None
        parent, instance_id = graph.parent
        name = graph.inputs[slot].get("name")
        if not isinstance(name, str):
            return None
        if (origin := self._origin(parent, instance_id, name)) is not None:
            return self._text(origin[0], origin[1], hops + 1, origin[2])
        instance = self.graphs[parent].nodes.get(instance_id) or {}
        values = instance.get("widgets_values")
        if not isinstance(values, list) or not values:
            return None  # its widgets are the inner nodes' own (proxied): they say it
        position = sum(1 for i in graph.inputs[:slot] if i.get("type") in _WIDGET_TYPES)
        return _text(values[position]) if position < len(values) else None

    def _from_subgraph_output(self, gid: str, slot: int, hops: int) -> str | None:
        """What a subgraph's output ``slot`` brings, from inside it."""
        graph = self.graphs[gid]
        if not 0 <= slot < len(graph.outputs):
            return None
        for link in graph.outputs[slot].get("linkIds") or ():
            if isinstance(link, int) and (origin := self._link(gid, link)) is not None:
                found = self._text(origin[0], origin[1], hops + 1, origin[2])
                if found is not None:
                    return found
        return None


def _graph(source: dict[str, Any]) -> _Graph:
    nodes: dict[int, dict[str, Any]] = {}
    for node in source.get("nodes") or ():
        if isinstance(node, dict) and isinstance(node.get("id"), int):
            nodes.setdefault(node["id"], node)
    links: dict[int, tuple[int, int]] = {}
    for link in source.get("links") or ():
        # [id, origin, origin slot, target, target slot, type], or the same as an object.
        if isinstance(link, list) and len(link) >= 3:
            key, origin, slot = link[0], link[1], link[2]
        elif isinstance(link, dict):
            key, origin, slot = link.get("id"), link.get("origin_id"), link.get("origin_slot")
        else:
            continue
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (key, origin, slot)):
            links[key] = (origin, slot)
    input_node = source.get("inputNode")
    inputs, outputs = source.get("inputs"), source.get("outputs")
    return _Graph(
        nodes,
        links,
        [i for i in inputs if isinstance(i, dict)] if isinstance(inputs, list) else [],
        [o for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else [],
        input_node.get("id", -10) if isinstance(input_node, dict) else -10,
    )


def _entries(inputs: object) -> Iterator[dict[str, Any]]:
    for entry in inputs if isinstance(inputs, list) else ():
        if isinstance(entry, dict):
            yield entry


def _widget(
    kind: object, values: object, name: str, table: Mapping[str, Mapping[str, int]] = _UI_WIDGETS
) -> object:
    """The widget ``name`` of a UI node: by name, or by its known position."""
    if isinstance(values, dict):
        return values.get(name)
    position = table.get(kind, {}).get(name) if isinstance(kind, str) else None
    if isinstance(values, list) and position is not None and position < len(values):
        return values[position]
    return None


def _texty(kind: object) -> bool:
    """A node whose own widgets likely hold text, when no table says where."""
    words = ("text", "prompt", "string", "primitive", "encode", "caption")
    return isinstance(kind, str) and any(w in kind.lower() for w in words)


def _longest_text(values: object) -> str | None:
    items = list(values.values()) if isinstance(values, dict) else values
    texts = [v for v in items if isinstance(v, str)] if isinstance(items, list) else []
    texts = [t for t in texts if not t.lower().endswith(tuple(MODEL_EXTENSIONS))]
    return _text(max(texts, key=len, default=None))
