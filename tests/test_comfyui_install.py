"""ComfyUI installs: folder_paths' defaults and extra_model_paths.yaml into roots and categories."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from assetd.comfyui.install import (
    SUPPORTED_PT_EXTENSIONS,
    ComfyInstall,
    Match,
    load_install,
)
from assetd.config import load_config
from assetd.exceptions import ConfigError
from tests.harness import write

ROOT_NAME = re.compile(r"[a-z0-9_.-]+")


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return Path(os.path.realpath(tmp_path))


@pytest.fixture
def comfy(base: Path) -> Path:
    write(base / "ComfyUI" / "main.py", "# ComfyUI\n")
    return base / "ComfyUI"


def load(comfy: Path, *files: Path, env: dict[str, str] | None = None) -> ComfyInstall:
    return load_install(str(comfy), extra_model_paths=[str(f) for f in files], env=env or {})


def yaml_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def at(path: Path) -> bytes:
    return os.fsencode(path)


def folders(install: ComfyInstall, category: str) -> list[str]:
    return [folder.folder for folder in install.folders(category)]


def test_default_install_has_its_four_roots_even_when_nothing_exists(comfy: Path) -> None:
    """models, input, output and temp are the roots; folders that do not exist are kept."""
    install = load(comfy)
    assert install.path == str(comfy)
    assert install.roots == tuple(
        (name, str(comfy / name)) for name in ("models", "input", "output", "temp")
    )


def test_default_table_is_folder_paths(comfy: Path) -> None:
    """The categories, folders and extensions are those of ComfyUI's folder_paths.py."""
    install = load(comfy)
    models = comfy / "models"
    assert list(dict.fromkeys(f.category for f in install.categories)) == [
        "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models",
        "clip_vision", "style_models", "embeddings", "diffusers", "vae_approx", "controlnet",
        "gligen", "upscale_models", "latent_upscale_models", "hypernetworks", "photomaker",
        "classifiers", "model_patches", "audio_encoders",
    ]  # fmt: skip
    assert folders(install, "text_encoders")[:2] == [
        str(models / "text_encoders"),
        str(models / "clip"),
    ]
    assert folders(install, "diffusion_models")[:2] == [
        str(models / "unet"),
        str(models / "diffusion_models"),
    ]
    assert folders(install, "controlnet") == [
        str(models / "controlnet"),
        str(models / "t2i_adapter"),
    ]
    assert install.folders("loras")[0].extensions == SUPPORTED_PT_EXTENSIONS
    pt = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
    assert pt == SUPPORTED_PT_EXTENSIONS
    assert install.folders("configs")[0].extensions == {".yaml"}
    assert not install.folders("custom_nodes")


def test_file_is_classified_with_its_loader_path(comfy: Path) -> None:
    """A model file gets its category and the name below the category folder; others none."""
    install = load(comfy)
    checkpoint = at(comfy / "models/checkpoints/sdxl/model.safetensors")
    assert install.classify(checkpoint) == (Match("checkpoints", "sdxl/model.safetensors"),)
    assert install.category_tags(checkpoint) == {"model_type:checkpoints"}
    assert install.classify(at(comfy / "models/readme.txt")) == ()
    assert install.classify(at(comfy / "input/photo.png")) == ()
    assert install.category_tags(at(comfy / "input/photo.png")) == set()
    odd = at(comfy / "models/loras") + b"/\xff.safetensors"
    assert install.classify(odd) == (Match("loras", os.fsdecode(b"\xff.safetensors")),)


def test_legacy_folders_serve_the_canonical_categories(comfy: Path) -> None:
    """models/unet, models/clip and models/t2i_adapter belong to the categories they alias."""
    install = load(comfy)
    models = comfy / "models"
    assert install.classify(at(models / "unet/flux.sft")) == (
        Match("diffusion_models", "flux.sft"),
    )
    assert install.classify(at(models / "clip/t5.bin")) == (Match("text_encoders", "t5.bin"),)
    assert install.classify(at(models / "t2i_adapter/a.pth")) == (Match("controlnet", "a.pth"),)


@pytest.mark.parametrize(
    ("relative", "category"),
    [
        ("checkpoints/a.SafeTensors", "checkpoints"),  # ComfyUI lower-cases the extension
        ("checkpoints/a.pt2", "checkpoints"),
        ("checkpoints/a.txt", None),
        ("checkpoints/a.yaml", None),
        ("checkpoints/.git/objects/a.ckpt", None),  # ComfyUI never lists inside .git
        ("configs/v1.yaml", "configs"),
        ("configs/v1.yml", None),
        ("configs/v1.safetensors", None),
        ("classifiers/aesthetic", "classifiers"),  # ComfyUI's {""}: no extension only
        ("classifiers/aesthetic.pt", None),
        ("diffusers/sd15/unet/config.json", "diffusers"),  # a diffusers model is a folder
    ],
)
def test_extensions_are_filtered_as_comfyui_does(
    comfy: Path, relative: str, category: str | None
) -> None:
    """A file is in a category only when that category lists its extension."""
    found = load(comfy).classify(at(comfy / "models" / relative))
    assert [match.category for match in found] == ([category] if category else [])


def test_output_subfolders_are_category_folders(comfy: Path) -> None:
    """output/{checkpoints,clip,vae,diffusion_models,loras} come last in their categories."""
    install = load(comfy)
    output = comfy / "output"
    assert folders(install, "checkpoints")[-1] == str(output / "checkpoints")
    assert install.classify(at(output / "checkpoints/mine_00001_.safetensors")) == (
        Match("checkpoints", "mine_00001_.safetensors"),
    )
    assert install.classify(at(output / "clip/te.safetensors")) == (
        Match("text_encoders", "te.safetensors"),
    )
    for name in ("vae", "diffusion_models", "loras"):
        assert [m.category for m in install.classify(at(output / name / "x.pt"))] == [name]
    assert install.classify(at(output / "ComfyUI_00001_.png")) == ()
    assert [name for name, _ in install.roots] == ["models", "input", "output", "temp"]


def test_a1111_example(comfy: Path, base: Path) -> None:
    """The example's a111 section: one root per folder, one folder serving two categories."""
    webui = base / "stable-diffusion-webui"
    extra = yaml_file(
        base / "extra.yaml",
        f"""\
        a111:
            base_path: {webui}/

            checkpoints: models/Stable-diffusion
            configs: models/Stable-diffusion
            vae: models/VAE
            loras: |
                 models/Lora
                 models/LyCORIS
            upscale_models: |
                          models/ESRGAN
                          models/RealESRGAN
                          models/SwinIR
            embeddings: embeddings
            hypernetworks: models/hypernetworks
            controlnet: models/ControlNet
        """,
    )
    install = load(comfy, extra)
    models = webui / "models"
    assert dict(install.roots) == {
        "models": str(comfy / "models"),
        "input": str(comfy / "input"),
        "output": str(comfy / "output"),
        "temp": str(comfy / "temp"),
        "a111-checkpoints": str(models / "Stable-diffusion"),
        "a111-vae": str(models / "VAE"),
        "a111-loras": str(models / "Lora"),
        "a111-loras-2": str(models / "LyCORIS"),
        "a111-upscale_models": str(models / "ESRGAN"),
        "a111-upscale_models-2": str(models / "RealESRGAN"),
        "a111-upscale_models-3": str(models / "SwinIR"),
        "a111-embeddings": str(webui / "embeddings"),
        "a111-hypernetworks": str(models / "hypernetworks"),
        "a111-controlnet": str(models / "ControlNet"),
    }
    sd = models / "Stable-diffusion"
    assert install.classify(at(sd / "v1-5.safetensors")) == (
        Match("checkpoints", "v1-5.safetensors"),
    )
    assert install.classify(at(sd / "v1-5.yaml")) == (Match("configs", "v1-5.yaml"),)
    assert folders(install, "loras") == [
        str(comfy / "models/loras"),
        str(models / "Lora"),
        str(models / "LyCORIS"),
        str(comfy / "output/loras"),
    ]
    assert install.classify(at(models / "LyCORIS/style/a.safetensors")) == (
        Match("loras", "style/a.safetensors"),
    )


def test_comfyui_example_with_is_default_goes_first(comfy: Path, base: Path) -> None:
    """The example's comfyui section, is_default on: its folders are the ones ComfyUI prefers."""
    store = base / "store"
    extra = yaml_file(
        base / "extra.yaml",
        f"""\
        comfyui:
             base_path: {store}/
             is_default: true
             checkpoints: models/checkpoints/
             clip: models/clip/
             clip_vision: models/clip_vision/
             configs: models/configs/
             controlnet: models/controlnet/
             diffusion_models: |
                          models/diffusion_models
                          models/unet
             embeddings: models/embeddings/
             loras: models/loras/
             upscale_models: models/upscale_models/
             vae: models/vae/
        """,
    )
    install = load(comfy, extra)
    first = install.folders("checkpoints")[0]
    assert (first.folder, first.is_default) == (str(store / "models/checkpoints"), True)
    assert install.folders("checkpoints")[1].is_default is False
    assert folders(install, "clip")[0] == str(store / "models/clip")
    # Each default goes to the front, so the last one read is first.
    assert folders(install, "diffusion_models")[:2] == [
        str(store / "models/unet"),
        str(store / "models/diffusion_models"),
    ]
    roots = dict(install.roots)
    assert roots["comfyui-checkpoints"] == str(store / "models/checkpoints")
    assert roots["comfyui-text_encoders"] == str(store / "models/clip")
    assert roots["comfyui-diffusion_models-2"] == str(store / "models/unet")
    assert install.classify(at(store / "models/clip/t5xxl.safetensors")) == (
        Match("text_encoders", "t5xxl.safetensors"),
    )


def test_is_default_moves_a_known_folder_to_the_front(comfy: Path, base: Path) -> None:
    """As add_model_folder_path: defaults are inserted first, others appended, none twice."""
    x, y = base / "x", base / "y"
    extra = yaml_file(
        base / "extra.yaml",
        f"""\
        a:
          checkpoints: {x}
        b:
          is_default: true
          checkpoints: {y}
        c:
          is_default: true
          checkpoints: {x}
        """,
    )
    install = load(comfy, extra)
    assert folders(install, "checkpoints") == [
        str(x),
        str(y),
        str(comfy / "models/checkpoints"),
        str(comfy / "output/checkpoints"),
    ]
    assert [f.is_default for f in install.folders("checkpoints")] == [True, True, False, False]


def test_base_path_expands_home_and_variables_from_the_given_env(
    comfy: Path, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """base_path expands ~ and $VARS from the env passed in; an unset variable stays as written."""
    monkeypatch.setenv("HOME", "/nowhere")
    monkeypatch.setenv("STORE", "/nowhere")
    extra = yaml_file(
        base / "conf/extra.yaml",
        """\
        home:
          base_path: ~/models
          loras: loras
        plain:
          base_path: $STORE/a
          loras: loras
        braced:
          base_path: ${STORE}/b
          loras: loras
        unset:
          base_path: $UNSET/c
          loras: loras
        """,
    )
    env = {"HOME": str(base / "home"), "STORE": str(base / "store")}
    install = load(comfy, extra, env=env)
    assert folders(install, "loras")[1:-1] == [
        str(base / "home/models/loras"),
        str(base / "store/a/loras"),
        str(base / "store/b/loras"),
        str(base / "conf/$UNSET/c/loras"),
    ]


def test_relative_paths_are_against_the_yaml_folder(comfy: Path, base: Path) -> None:
    """A relative base_path, or a relative path without one, starts at the YAML file's folder."""
    extra = yaml_file(
        base / "conf/extra.yaml",
        f"""\
        shared:
          base_path: ../shared
          vae: vae
        bare:
          vae: local/vae
        absolute:
          vae: {base}/abs/vae
        """,
    )
    assert folders(load(comfy, extra), "vae")[1:-1] == [
        str(base / "shared/vae"),
        str(base / "conf/local/vae"),
        str(base / "abs/vae"),
    ]


def test_category_paths_are_not_expanded(comfy: Path, base: Path) -> None:
    """ComfyUI expands only base_path: a ~ or $VAR in a category path is taken literally."""
    extra = yaml_file(
        base / "extra.yaml",
        """\
        s:
          base_path: store
          loras: ~/loras
          vae: $HOME/vae
        """,
    )
    install = load(comfy, extra, env={"HOME": str(base / "home")})
    assert folders(install, "loras")[1] == str(base / "store/~/loras")
    assert folders(install, "vae")[1] == str(base / "store/$HOME/vae")


def test_block_of_paths_names_several_folders(comfy: Path, base: Path) -> None:
    """A `|` block gives one folder a line; blank lines name nothing."""
    extra = yaml_file(
        base / "extra.yaml",
        """\
        s:
          base_path: store
          embeddings: |
            one

            two/deeper
        """,
    )
    install = load(comfy, extra)
    assert folders(install, "embeddings")[1:] == [
        str(base / "store/one"),
        str(base / "store/two/deeper"),
    ]
    assert [name for name, _ in install.roots][4:] == ["s-embeddings", "s-embeddings-2"]


def test_aliases_in_yaml_mean_the_canonical_category(comfy: Path, base: Path) -> None:
    """A section's unet, clip and t2i_adapter keys add folders of the canonical categories."""
    extra = yaml_file(
        base / "extra.yaml",
        """\
        s:
          base_path: store
          unet: u
          clip: c
          t2i_adapter: t
        """,
    )
    install = load(comfy, extra)
    store = base / "store"
    assert str(store / "u") in folders(install, "diffusion_models")
    assert str(store / "u") in folders(install, "unet")  # folders() takes the aliases too
    assert str(store / "c") in folders(install, "text_encoders")
    assert str(store / "t") in folders(install, "controlnet")
    assert install.classify(at(store / "c/te.safetensors")) == (
        Match("text_encoders", "te.safetensors"),
    )
    assert install.classify(at(store / "t/a.pth")) == (Match("controlnet", "a.pth"),)
    assert not {"unet", "clip", "t2i_adapter"} & {f.category for f in install.categories}
    assert dict(install.roots)["s-diffusion_models"] == str(store / "u")


def test_unknown_category_accepts_any_file(comfy: Path, base: Path) -> None:
    """A category ComfyUI does not know lists every file in its folder."""
    extra = yaml_file(base / "extra.yaml", "s:\n  base_path: store\n  ipadapter: ip\n")
    install = load(comfy, extra)
    ip = base / "store/ip"
    assert install.folders("ipadapter")[0].extensions is None
    assert install.classify(at(ip / "notes.txt")) == (Match("ipadapter", "notes.txt"),)
    assert install.classify(at(ip / "face.bin")) == (Match("ipadapter", "face.bin"),)


def test_folder_holding_another_category_gives_both(comfy: Path, base: Path) -> None:
    """A file under two categories' folders matches both, named from each; one root holds them."""
    extra = yaml_file(
        base / "extra.yaml",
        f"""\
        s:
          loras: {base}/all/loras
          checkpoints: {base}/all
        """,
    )
    install = load(comfy, extra)
    assert install.classify(at(base / "all/loras/a.safetensors")) == (
        Match("checkpoints", "loras/a.safetensors"),
        Match("loras", "a.safetensors"),
    )
    # The outer folder is the root, though it was read after the inner one.
    assert install.roots[4:] == (("s-checkpoints", str(base / "all")),)


def test_deepest_folder_of_a_category_names_the_file(comfy: Path, base: Path) -> None:
    """When two folders of one category hold a file, the deeper one gives its loader path."""
    extra = yaml_file(base / "extra.yaml", f"s:\n  loras: |\n    {base}/l/sdxl\n    {base}/l\n")
    install = load(comfy, extra)
    assert install.classify(at(base / "l/sdxl/a.safetensors")) == (Match("loras", "a.safetensors"),)


def test_folders_inside_a_root_are_not_roots(comfy: Path, base: Path) -> None:
    """A section pointing into the install itself adds folders but no roots."""
    extra = yaml_file(
        base / "extra.yaml",
        f"""\
        same:
          base_path: {comfy}
          checkpoints: models/more
          loras: input/loras
        """,
    )
    install = load(comfy, extra)
    assert [name for name, _ in install.roots] == ["models", "input", "output", "temp"]
    assert install.classify(at(comfy / "input/loras/a.pt")) == (Match("loras", "a.pt"),)


def test_outer_folder_replaces_the_install_roots(comfy: Path, base: Path) -> None:
    """A folder that holds the install's folders becomes the root in their place."""
    extra = yaml_file(base / "extra.yaml", f"everything:\n  checkpoints: {base}\n")
    install = load(comfy, extra)
    assert install.roots == (("everything-checkpoints", str(base)),)


def test_symlinked_category_folder_becomes_a_root(comfy: Path, base: Path) -> None:
    """A default folder that is a symlink out of the install resolves there and is a root."""
    (base / "big/loras").mkdir(parents=True)
    (comfy / "models").mkdir()
    (comfy / "models/loras").symlink_to(base / "big/loras")
    install = load(comfy)
    assert dict(install.roots)["models-loras"] == str(base / "big/loras")
    assert install.classify(at(base / "big/loras/a.safetensors")) == (
        Match("loras", "a.safetensors"),
    )


def test_root_names_are_sanitised_unique_and_valid_config(comfy: Path, base: Path) -> None:
    """Names fit [a-z0-9_.-]+, clash with a suffix, and load_config accepts the roots."""
    one = yaml_file(base / "one.yaml", f"'My Models!':\n  checkpoints: {base}/a\n")
    two = yaml_file(
        base / "two.yaml", f"'My Models!':\n  checkpoints: {base}/b\n模型:\n  vae: {base}/c\n"
    )
    install = load(comfy, one, two)
    names = [name for name, _ in install.roots]
    assert names[4:] == ["my-models-checkpoints", "my-models-checkpoints-2", "vae"]
    assert all(ROOT_NAME.fullmatch(name) for name in names)
    configs = load_config(roots=install.roots, env={}).roots
    assert [(r.name, r.path) for r in configs] == list(install.roots)


def test_custom_nodes_is_not_a_category(comfy: Path, base: Path) -> None:
    """custom_nodes holds code: it adds neither a category nor a root."""
    extra = yaml_file(base / "extra.yaml", f"other_ui:\n  custom_nodes: {base}/nodes\n")
    install = load(comfy, extra)
    assert not install.folders("custom_nodes")
    assert len(install.roots) == 4
    assert install.classify(at(base / "nodes/node/__init__.py")) == ()
    assert install.classify(at(comfy / "custom_nodes/node/model.safetensors")) == ()


def test_install_yaml_is_read_before_the_extra_files(comfy: Path, base: Path) -> None:
    """extra_model_paths.yaml beside main.py comes first, then each extra file in order."""
    yaml_file(comfy / "extra_model_paths.yaml", f"own:\n  checkpoints: {base}/own\n")
    extra = yaml_file(base / "extra.yaml", f"more:\n  checkpoints: {base}/more\n")
    assert folders(load(comfy, extra), "checkpoints")[1:3] == [
        str(base / "own"),
        str(base / "more"),
    ]


def test_empty_file_and_empty_section_add_nothing(comfy: Path, base: Path) -> None:
    """A file that is all comments, or a section with nothing under it, is skipped."""
    empty = yaml_file(base / "empty.yaml", "# comfyui:\n#   base_path: x\n")
    bare = yaml_file(base / "bare.yaml", "comfyui:\n")
    assert load(comfy, empty, bare) == load(comfy)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a: [unclosed\n", "invalid YAML"),
        ("- checkpoints\n- loras\n", "top level"),
        ("sec: models/checkpoints\n", "section 'sec' must map"),
        ("sec:\n  checkpoints: 3\n", "section 'sec': 'checkpoints' must be a folder path"),
        ("sec:\n  checkpoints:\n", "section 'sec': 'checkpoints' must be a folder path"),
        ("sec:\n  base_path: [a, b]\n", "section 'sec': 'base_path' must be a folder path"),
        ("sec:\n  is_default: 'yes'\n", "section 'sec': 'is_default' must be true or false"),
    ],
    ids=["broken", "list", "section", "number", "empty-value", "base-path", "is-default"],
)
def test_malformed_yaml_is_a_config_error_naming_the_file(
    comfy: Path, base: Path, text: str, says: str
) -> None:
    """A file ComfyUI could not read is one line naming the file, the section and the fix."""
    bad = yaml_file(base / "bad.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load(comfy, bad)
    message = str(caught.value)
    assert message.startswith(f"{bad}: ") and says in message
    assert "\n" not in message


def test_missing_extra_file_is_a_config_error(comfy: Path, base: Path) -> None:
    """An extra file that does not exist is named in the error."""
    with pytest.raises(ConfigError, match="does not exist"):
        load(comfy, base / "nope.yaml")


def test_missing_folders_stay_roots(comfy: Path, base: Path) -> None:
    """A folder that does not exist is still a root (offline until it appears)."""
    extra = yaml_file(base / "extra.yaml", f"s:\n  loras: {base}/not/yet\n")
    install = load(comfy, extra)
    assert not (base / "not").exists()
    assert ("s-loras", str(base / "not/yet")) in install.roots
