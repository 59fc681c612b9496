"""A ComfyUI install as assetd sees it: its roots and the folders of its model categories."""

# What ComfyUI does, and so what this module does:
#
# - The install's folders come from folder_paths.py: DIR/models/<category folders>,
#   DIR/input, DIR/output, DIR/temp, with DIR the real folder of main.py. main.py then
#   reads DIR/extra_model_paths.yaml (if there is one) and each --extra-model-paths-config
#   file, and last registers DIR/output/{checkpoints,clip,vae,diffusion_models,loras} as
#   folders of their categories (where CheckpointSave and friends write).
# - A folder marked is_default goes to the front of its category's list, others to the
#   back; a loader takes a name from the first folder that has it. `categories` keeps
#   that order within each category.
# - Only base_path has `~` and `$VARS` expanded; the paths under it are joined as written.
# - custom_nodes holds code, not models: it is neither a category nor a root here.
#
# What assetd adds:
#
# - Every folder is resolved (symlinks followed), as roots are, so that it matches the
#   paths the catalog stores. A category folder that resolves outside every other
#   candidate becomes a root of its own; one inside another is not (roots may not
#   nest); a folder that holds others wins over them, whatever the order.
# - Roots are `models`, `input`, `output`, `temp`, then `{section}-{category}` for a
#   YAML folder (`models-{folder}`, `output-{folder}` for an install folder that is a
#   symlink out), sanitised to [a-z0-9_.-], made unique with `-2`, `-3`, ... in order.
# - A file may belong to several categories (one folder can serve checkpoints and
#   configs, or hold another category's folder): `classify` returns every match, the
#   deepest folder of each category naming the file.

from __future__ import annotations

import hashlib
import os
import pwd
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import yaml

from assetd.exceptions import ConfigError

__all__ = [
    "ALIASES",
    "DEFAULT_CATEGORIES",
    "SUPPORTED_PT_EXTENSIONS",
    "CategoryFolder",
    "ComfyInstall",
    "Match",
    "canonical_category",
    "load_install",
]

SUPPORTED_PT_EXTENSIONS = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
)
_PT = SUPPORTED_PT_EXTENSIONS

# folder_paths.py's table: category, its folders under DIR/models in ComfyUI's order, and
# the extensions it lists (lower case, with the dot; None: any file).
DEFAULT_CATEGORIES: tuple[tuple[str, tuple[str, ...], frozenset[str] | None], ...] = (
    ("checkpoints", ("checkpoints",), _PT),
    ("configs", ("configs",), frozenset({".yaml"})),
    ("loras", ("loras",), _PT),
    ("vae", ("vae",), _PT),
    ("text_encoders", ("text_encoders", "clip"), _PT),
    ("diffusion_models", ("unet", "diffusion_models"), _PT),
    ("clip_vision", ("clip_vision",), _PT),
    ("style_models", ("style_models",), _PT),
    ("embeddings", ("embeddings",), _PT),
    # ComfyUI lists a diffusers model by its folder (the one holding model_index.json),
    # never a file: every file in there is part of such a model.
    ("diffusers", ("diffusers",), None),
    ("vae_approx", ("vae_approx",), _PT),
    ("controlnet", ("controlnet", "t2i_adapter"), _PT),
    ("gligen", ("gligen",), _PT),
    ("upscale_models", ("upscale_models",), _PT),
    ("latent_upscale_models", ("latent_upscale_models",), _PT),
    ("hypernetworks", ("hypernetworks",), _PT),
    ("photomaker", ("photomaker",), _PT),
    # ComfyUI's extension set here is {""}: it lists only files without an extension.
    ("classifiers", ("classifiers",), frozenset({""})),
    ("model_patches", ("model_patches",), _PT),
    ("audio_encoders", ("audio_encoders",), _PT),
)
_EXTENSIONS = {category: extensions for category, _, extensions in DEFAULT_CATEGORIES}

# ComfyUI's map_legacy (unet, clip), plus t2i_adapter: models/t2i_adapter is a controlnet folder.
ALIASES = MappingProxyType(
    {"unet": "diffusion_models", "clip": "text_encoders", "t2i_adapter": "controlnet"}
)
_NOT_MODELS = frozenset({"custom_nodes"})
_INSTALL_ROOTS = ("models", "input", "output", "temp")
_OUTPUT_FOLDERS = ("checkpoints", "clip", "vae", "diffusion_models", "loras")
_SKIPPED_DIRS = frozenset({b".git"})  # ComfyUI's listings never descend into these
_VAR = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)  # the $NAME and ${NAME} of expandvars
_PATHS_HINT = "a folder path or a `|` block of paths, one a line"
_NOT_IN_NAME = re.compile(r"[^a-z0-9_.]+")  # '-' too, so that a run of them becomes one


def canonical_category(name: str) -> str:
    """The category ComfyUI means by ``name`` (``unet`` is ``diffusion_models``)."""
    return ALIASES.get(name, name)


class Match(NamedTuple):
    """A file's category and the name ComfyUI's loaders give it there."""

    category: str
    loader_path: str  # below the category folder, '/'-separated: "sdxl/model.safetensors"


@dataclass(frozen=True)
class CategoryFolder:
    """One folder ComfyUI searches for the files of one category."""

    category: str
    folder: str  # absolute and resolved, like a root's path; may not exist
    extensions: frozenset[str] | None  # None accepts any file
    is_default: bool = False
    prefix: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", os.fsencode(self.folder).rstrip(b"/") + b"/")

    def accepts(self, name: bytes) -> bool:
        """Whether ComfyUI lists a file of this name here (extension compared in lower case)."""
        if self.extensions is None:
            return True
        return os.fsdecode(os.path.splitext(name)[1]).lower() in self.extensions


@dataclass(frozen=True)
class ComfyInstall:
    """The roots of a ComfyUI install and the folders of its categories."""

    path: str  # the install's folder (the one with main.py), resolved
    roots: tuple[tuple[str, str], ...]  # (name, resolved path); none inside another
    categories: tuple[CategoryFolder, ...]  # grouped by category, in ComfyUI's search order

    def folders(self, category: str) -> tuple[CategoryFolder, ...]:
        """The folders of ``category`` (or its alias), the one ComfyUI prefers first."""
        name = canonical_category(category)
        return tuple(folder for folder in self.categories if folder.category == name)

    def classify(self, path: bytes) -> tuple[Match, ...]:
        """Every category the file at absolute ``path`` belongs to, in table order."""
        deepest: dict[str, CategoryFolder] = {}
        for folder in self.categories:
            held = deepest.get(folder.category)
            deeper = held is None or len(folder.prefix) > len(held.prefix)
            if deeper and path.startswith(folder.prefix):
                deepest[folder.category] = folder
        matches = []
        for category, folder in deepest.items():
            rest = path[len(folder.prefix) :]
            if _listed(rest) and folder.accepts(rest):
                matches.append(Match(category, os.fsdecode(rest)))
        return tuple(matches)

    def category_tags(self, path: bytes) -> set[str]:
        """The automatic tags the file's categories give it: ``model_type:CATEGORY``."""
        return {f"model_type:{match.category}" for match in self.classify(path)}

    def describe(self, path: bytes) -> dict[str, Any]:
        """What a Location of ``path`` gains: ``comfyui`` with its first category and
        the loader path there (none for a file no category lists)."""
        matches = self.classify(path)
        if not matches:
            return {}
        first = matches[0]
        return {"comfyui": {"category": first.category, "loader_path": first.loader_path}}

    def rules_id(self) -> str:
        """Names the category table: another one (an install or a YAML changed) retags."""
        text = repr(
            [(c.category, c.folder, sorted(c.extensions or ["*"])) for c in self.categories]
        )
        return "comfyui:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class _Entry(NamedTuple):
    label: str  # the root's name, should the folder become one
    category: str  # canonical
    folder: str  # absolute and normalised, as ComfyUI computes it
    is_default: bool


def load_install(
    path: str, *, extra_model_paths: Sequence[str] = (), env: Mapping[str, str]
) -> ComfyInstall:
    """Read the install at ``path``, its extra_model_paths.yaml, then each extra file.

    ``env`` expands ``$VARS`` (and ``~``) in base paths. Raises ConfigError for a YAML
    file that is missing, unreadable or not shaped as ComfyUI reads it.
    """
    install = os.path.realpath(path)  # ComfyUI's base is the real folder of main.py
    own = os.path.join(install, "extra_model_paths.yaml")
    files = [own] if os.path.isfile(own) else []
    entries = list(_default_entries(install))
    for yaml_path in [*files, *extra_model_paths]:
        entries.extend(_read_yaml_file(yaml_path, env))
    entries.extend(_output_entries(install))
    return _build(install, entries)


def _default_entries(install: str) -> Iterator[_Entry]:
    for category, folders, _ in DEFAULT_CATEGORIES:
        for name in folders:
            yield _Entry(f"models-{name}", category, os.path.join(install, "models", name), False)


def _output_entries(install: str) -> Iterator[_Entry]:
    for name in _OUTPUT_FOLDERS:
        folder = os.path.join(install, "output", name)
        yield _Entry(f"output-{name}", canonical_category(name), folder, False)


def _build(install: str, entries: Sequence[_Entry]) -> ComfyInstall:
    table: dict[str, list[CategoryFolder]] = {}
    candidates = [(name, os.path.realpath(os.path.join(install, name))) for name in _INSTALL_ROOTS]
    for entry in entries:
        folder = os.path.realpath(entry.folder)
        _add_folder(table.setdefault(entry.category, []), entry, folder)
        candidates.append((entry.label, folder))
    categories = tuple(folder for folders in table.values() for folder in folders)
    return ComfyInstall(
        path=install, roots=_name_roots(_outermost(candidates)), categories=categories
    )


def _add_folder(folders: list[CategoryFolder], entry: _Entry, folder: str) -> None:
    """folder_paths.add_model_folder_path: defaults to the front, once per folder."""
    known = next((held for held in folders if held.folder == folder), None)
    if known is not None:
        if not entry.is_default:
            return
        folders.remove(known)
    extensions = _EXTENSIONS.get(entry.category)  # a category ComfyUI does not know: any file
    added = CategoryFolder(entry.category, folder, extensions, entry.is_default)
    folders.insert(0 if entry.is_default else len(folders), added)


def _outermost(candidates: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The candidates inside no other one (of equal paths, the first)."""
    kept = []
    for index, (label, path) in enumerate(candidates):
        if not any(
            _inside(path, other) and (path != other or earlier < index)
            for earlier, (_, other) in enumerate(candidates)
            if earlier != index
        ):
            kept.append((label, path))
    return kept


def _inside(path: str, other: str) -> bool:
    return path == other or path.startswith(other.rstrip("/") + "/")


def _name_roots(kept: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    taken: set[str] = set()
    roots = []
    for label, path in kept:
        name = _NOT_IN_NAME.sub("-", label.lower()).strip("-.") or "extra"
        suffix = 1
        while (unique := name if suffix == 1 else f"{name}-{suffix}") in taken:
            suffix += 1
        taken.add(unique)
        roots.append((unique, path))
    return tuple(roots)


def _listed(rest: bytes) -> bool:
    parts = rest.split(b"/")
    return bool(parts[-1]) and not _SKIPPED_DIRS.intersection(parts[:-1])


def _read_yaml_file(yaml_path: str, env: Mapping[str, str]) -> Iterator[_Entry]:
    """utils/extra_config.py's reading of one file, with its errors made ConfigErrors."""
    doc = _load_yaml(yaml_path)
    if doc is None:
        return  # an empty file, all commented out: nothing to add (ComfyUI fails on it)
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{yaml_path}: the top level must map section names to sections "
            "(see ComfyUI's extra_model_paths.yaml.example)"
        )
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    for section, conf in doc.items():
        if conf is not None:  # a section with nothing under it, skipped as ComfyUI does
            yield from _section(
                f"{yaml_path}: section {section!r}", str(section), conf, yaml_dir, env
            )


def _load_yaml(yaml_path: str) -> Any:
    try:
        with open(yaml_path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"extra_model_paths file {yaml_path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read extra_model_paths file {yaml_path}: {exc.strerror}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{yaml_path}: not UTF-8 text; save it as UTF-8") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{yaml_path}: invalid YAML ({problem}{where}); fix the file") from exc


def _section(
    where: str, section: str, conf: Any, yaml_dir: str, env: Mapping[str, str]
) -> Iterator[_Entry]:
    if not isinstance(conf, dict):
        raise ConfigError(f"{where} must map categories to folders, as `checkpoints: models/ckpt`")
    conf = dict(conf)
    base = yaml_dir
    if "base_path" in conf:  # relative to the YAML file's folder, as ComfyUI resolves it
        raw = _string(conf.pop("base_path"), "base_path", where, "a folder path")
        base = os.path.join(yaml_dir, _expand(raw, env))
    is_default = conf.pop("is_default", False)
    if not isinstance(is_default, bool):
        raise ConfigError(f"{where}: 'is_default' must be true or false")
    for key, value in conf.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: the category {key!r} must be a name such as 'loras'")
        lines = _string(value, key, where, _PATHS_HINT).split("\n")
        if key in _NOT_MODELS:
            continue
        category = canonical_category(key)
        for line in filter(None, lines):  # a block's blank lines name nothing
            # An absolute line stands alone, as os.path.join makes it in ComfyUI.
            folder = os.path.normpath(os.path.join(base, line))
            yield _Entry(f"{section}-{category}", category, folder, is_default)


def _string(value: Any, key: str, where: str, hint: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key!r} must be {hint}; got {type(value).__name__}")
    return value


def _expand(text: str, env: Mapping[str, str]) -> str:
    """os.path.expandvars(os.path.expanduser(text)), over ``env`` instead of os.environ."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        name = name[1:-1] if name.startswith("{") else name
        return env.get(name, match.group(0))  # an unset variable is left as written

    return _VAR.sub(value, _expanduser(text, env))


def _expanduser(text: str, env: Mapping[str, str]) -> str:
    if not text.startswith("~"):
        return text
    end = text.find("/")
    end = len(text) if end < 0 else end
    user = text[1:end]
    try:
        if user:
            home = pwd.getpwnam(user).pw_dir
        else:
            home = env.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return text  # no such user: left as written, as expanduser does
    return (home.rstrip("/") + text[end:]) or "/"
