"""The command line of CONTRACT.md, run in a subprocess as a user would."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OLD_NS, run_cli, write
from tests.harness import checkout_env, listed_by_path

LOCATION_KEYS = {
    "path",
    "root",
    "asset_id",
    "hash",
    "size",
    "mtime_ns",
    "mime_type",
    "is_missing",
    "needs_verify",
    "tags",
    "user_tags",
}
SUMMARY_KEYS = {"scanned", "total", "created", "skipped", "hashed", "marked_missing", "restored"}


class Cli:
    """The assetd command bound to one catalog and one set of roots."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"
        self.models = tmp_path / "models"
        self.output = tmp_path / "output"
        self.roots = [f"models={self.models}", f"output={self.output}"]

    def __call__(self, *args: str, roots: list[str] | None = None, ok: bool = True) -> Any:
        flags = ["--db", self.db]
        for root in self.roots if roots is None else roots:
            flags += ["--root", root]
        proc = run_cli(*args, *flags)
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self(*args, **kwargs).stdout.strip().splitlines()[-1])

    def ls(self, *args: str) -> dict[str, dict[str, Any]]:
        return listed_by_path(self("ls", "--json", *args).stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = Cli(tmp_path)
    write(c.models / "checkpoints" / "sd.safetensors", "weights", OLD_NS)
    write(c.models / "loras" / "style.safetensors", "lora", OLD_NS)
    write(c.output / "img1.png", "png1", OLD_NS)
    return c


def test_scan_then_ls(cli: Cli) -> None:
    """scan prints a JSON summary last; ls --json prints one Location per line."""
    summary = cli.json("scan")
    assert set(summary) >= SUMMARY_KEYS
    assert summary["created"] == summary["hashed"] == summary["total"] == 3
    items = cli.ls()
    assert len(items) == 3
    for item in items.values():
        assert set(item) == LOCATION_KEYS
        assert item["hash"].startswith("blake3:") and len(item["hash"]) == 7 + 64
    sd = items[str(cli.models / "checkpoints" / "sd.safetensors")]
    assert sd["root"] == "models" and sd["tags"] == ["checkpoints", "models"]
    assert sd["size"] == len("weights") and sd["mtime_ns"] == OLD_NS
    assert list(cli.ls("--in", "output")) == [str(cli.output / "img1.png")]
    again = cli.json("scan")
    assert again["skipped"] == 3 and again["created"] == again["hashed"] == 0


def test_scan_named_root_no_hash_and_prune_first(cli: Cli) -> None:
    """scan ROOT --no-hash registers that root only, without hashes; --prune-first prunes."""
    summary = cli.json("scan", "models", "--no-hash")
    assert summary["created"] == 2 and summary["hashed"] == 0
    assert all(i["hash"] is None for i in cli.ls().values())
    cli.json("scan")
    summary = cli.json("scan", "--prune-first", roots=[f"models={cli.models}"])
    assert summary["marked_missing"] == 1
    assert list(cli.ls("--missing")) == [str(cli.output / "img1.png")]


def test_ls_human_output(cli: Cli) -> None:
    """ls without --json prints one line per location with path, root, size, hash and tags."""
    cli("scan")
    lines = cli("ls").stdout.splitlines()
    assert len(lines) == 3
    assert lines[-1].startswith(str(cli.output / "img1.png") + "\toutput 4 ")


def test_tag_add_rm_and_filter(cli: Cli) -> None:
    """tag add/rm print the location's tags; ls --tag filters by them; removing an
    automatic tag exits 2 with one line saying so, and changes nothing."""
    cli("scan")
    sd = str(cli.models / "checkpoints" / "sd.safetensors")
    assert cli.json("tag", "add", sd, "fav", "sdxl") == ["checkpoints", "fav", "models", "sdxl"]
    assert list(cli.ls("--tag", "fav")) == [sd]
    assert cli.json("tag", "rm", sd, "sdxl") == ["checkpoints", "fav", "models"]
    refused = cli("tag", "rm", sd, "fav", "models", ok=False)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "models: automatic at" in refused.stderr
    assert cli.ls("--tag", "fav")[sd]["tags"] == ["checkpoints", "fav", "models"]
    assert len(cli.ls("--tag", "models")) == 2


def test_meta(cli: Cli) -> None:
    """meta reads, sets strings and JSON values, and unsets keys."""
    cli("scan")
    sd = str(cli.models / "checkpoints" / "sd.safetensors")
    assert cli.json("meta", sd) == {}
    assert cli.json("meta", sd, "base=sdxl", "steps:=30", 'extra:={"a": [1]}') == {
        "base": "sdxl",
        "steps": 30,
        "extra": {"a": [1]},
    }
    assert cli.json("meta", sd, "--unset", "extra", "steps") == {"base": "sdxl"}
    bad = cli("meta", sd, "steps:=[not json", ok=False)
    assert bad.returncode == 2 and "JSON" in bad.stderr


def test_missing_restore_and_tags_survive(cli: Cli, tmp_path: Path) -> None:
    """A deleted file is hidden but listed with --missing; restore brings it back with its tags."""
    cli("scan")
    img, aside = cli.output / "img1.png", tmp_path / "aside.png"
    cli("tag", "add", str(img), "keeper")
    img.rename(aside)
    assert cli.json("scan")["marked_missing"] == 1
    assert str(img) not in cli.ls()
    assert cli.ls("--missing")[str(img)]["tags"] == ["keeper", "missing", "output"]
    assert cli.ls("--include-missing")[str(img)]["is_missing"] is True
    assert cli.json("restore", str(img)) == {"restored": 0}  # not back yet
    aside.rename(img)
    assert cli.json("restore", str(img)) == {"restored": 1}
    assert cli.ls()[str(img)]["tags"] == ["keeper", "output"]


def test_prune(cli: Cli) -> None:
    """prune marks missing what lies outside every configured root."""
    cli("scan")
    assert cli.json("prune", roots=[f"models={cli.models}"]) == {"marked": 1}
    assert cli.json("prune", roots=[f"models={cli.models}"]) == {"marked": 0}
    assert list(cli.ls("--missing")) == [str(cli.output / "img1.png")]


def test_cleanup(cli: Cli) -> None:
    """cleanup deletes unhashed unreferenced assets; with an age, old tombstones too."""
    cli("scan", "--no-hash")
    (cli.output / "img1.png").unlink()
    cli("scan", "--no-hash")
    assert cli.json("cleanup", "--dry-run") == {"deleted": 1}
    assert len(cli.ls("--include-missing")) == 3
    assert cli.json("cleanup") == {"deleted": 1}
    assert len(cli.ls("--include-missing")) == 2
    cli("scan")
    (cli.models / "loras" / "style.safetensors").unlink()
    cli("scan")
    assert cli.json("cleanup") == {"deleted": 0}  # hashed: survives a plain cleanup
    assert cli.json("cleanup", "--missing-older-than", "1") == {"deleted": 0}
    assert cli.json("cleanup", "--missing-older-than", "0") == {"deleted": 1}
    assert len(cli.ls("--include-missing")) == 1


def test_non_utf8_path_on_the_command_line(cli: Cli) -> None:
    """A name that is not UTF-8 is typed with surrogateescape and listed with its bytes."""
    raw = os.fsencode(cli.output) + b"/caf\xe9.png"
    with open(raw, "wb") as fh:
        fh.write(b"latin-1 name")
    cli("scan")
    assert cli.json("tag", "add", os.fsdecode(raw), "odd") == ["odd", "output"]
    (item,) = [i for i in cli.ls("--tag", "odd").values()]
    import base64

    assert base64.b64decode(item["path_bytes_b64"]) == raw


def test_config_file_and_environment(cli: Cli, tmp_path: Path) -> None:
    """Roots and database come from --config or $ASSETD_CONFIG when no flags are given."""
    conf = tmp_path / "assetd.toml"
    conf.write_text(
        f'[daemon]\ndatabase = "{cli.db}"\n[[roots]]\nname = "models"\npath = "{cli.models}"\n'
    )
    proc = run_cli("scan", "--config", str(conf))
    assert proc.returncode == 0 and json.loads(proc.stdout)["created"] == 2
    proc = run_cli("ls", "--json", env={"ASSETD_CONFIG": str(conf)})
    assert len(proc.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "--root", "Bad Name=/x"], "root name 'Bad Name' is invalid"),
        (["scan", "--root", "a=relative"], "not absolute"),
        (["scan", "--root", "a=/x", "--root", "a=/y"], "duplicate root name"),
        (["scan", "--root", "a=/x", "--root", "b=/x/y"], "must not nest"),
        (["scan", "--root", "a=/x", "nope"], "no root named 'nope'"),
        (["scan"], "no roots configured"),
        (["scan", "--root", "noequals"], "NAME=PATH"),
        (["ls", "--listen", "bogus"], "HOST:PORT"),
        (["scan", "--config", "/nonexistent/assetd.toml"], "does not exist"),
    ],
)
def test_bad_configuration_exits_2_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """A bad configuration exits 2 with one clear line on stderr, before anything is written."""
    db = tmp_path / "state" / "never.db"
    proc = run_cli(*args, "--db", f"sqlite:///{db}")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""
    assert not db.parent.exists()


def test_unknown_key_in_file_exits_2(tmp_path: Path) -> None:
    """An unknown key in the file exits 2 naming the key."""
    conf = tmp_path / "assetd.toml"
    conf.write_text("[daemon]\nfollow_symlink = true\n")
    proc = run_cli("scan", "--config", str(conf))
    assert proc.returncode == 2 and "unknown key 'follow_symlink'" in proc.stderr


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    """Unknown flags, commands and missing arguments exit 2 with one line on stderr."""
    for args in (
        ["scan", "--frobnicate"],
        ["frobnicate"],
        ["tag", "add"],
        ["cleanup", "--missing-older-than", "x"],
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, args
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("assetd")


def test_tag_lands_on_the_content_there_now(cli: Cli) -> None:
    """A file changed since the last scan is looked at first: the tag goes to its new content."""
    cli("scan")
    img = cli.output / "img1.png"
    old = cli.ls()[str(img)]
    write(img, "repainted", OLD_NS + 10**9)
    assert "kept" in cli.json("tag", "add", str(img), "kept")
    now = cli.ls()[str(img)]
    assert now["hash"] != old["hash"] and now["size"] == len("repainted")
    cli("scan")
    assert "kept" in cli.ls()[str(img)]["tags"]  # and stays with it
    write(img, "repainted again", OLD_NS + 2 * 10**9)
    assert cli.json("meta", str(img), "k=v") == {"k": "v"}
    assert "kept" not in cli.ls()[str(img)]["tags"]  # other content: the tag stayed behind
    cli("scan")
    assert cli.json("meta", str(img)) == {"k": "v"}


def test_tag_catalogs_a_file_not_scanned_yet(cli: Cli, tmp_path: Path) -> None:
    """A new file under a root is cataloged and hashed when tagged; an excluded one is not."""
    new = write(cli.output / "new.png", "fresh", OLD_NS)
    assert cli.json("tag", "add", str(new), "x") == ["output", "x"]
    item = cli.ls()[str(new)]
    assert item["hash"] is not None and item["tags"] == ["output", "x"]
    config = tmp_path / "assetd.toml"
    config.write_text(f'[[roots]]\nname = "output"\npath = "{cli.output}"\nexclude = ["*.tmp"]\n')
    skipped = write(cli.output / "draft.tmp", "tmp", OLD_NS)
    proc = cli("tag", "add", str(skipped), "x", "--config", str(config), roots=[], ok=False)
    assert proc.returncode == 1 and "draft.tmp is not in the catalog" in proc.stderr


def test_tag_on_unknown_path_exits_1(cli: Cli) -> None:
    """Tagging a path the catalog does not know exits 1 with the path in the message."""
    cli("scan")
    proc = cli("tag", "add", str(cli.models / "nope.bin"), "x", ok=False)
    assert proc.returncode == 1 and "nope.bin is not in the catalog" in proc.stderr


def test_a_command_leaves_its_catalog_closed(cli: Cli, tmp_path: Path) -> None:
    """A command exits without the interpreter's teardown: it closes every connection
    first (its pass thread's too), so SQLite checkpoints and removes the WAL."""
    summary = cli.json("scan")
    assert summary["created"] == 3 and summary["hashed"] == 3
    state = tmp_path / "state"
    assert sorted(p.name for p in state.iterdir()) == ["assetd.db"]
    assert len(cli.ls()) == 3
    assert sorted(p.name for p in state.iterdir()) == ["assetd.db"]


def test_output_is_whole_and_the_exit_status_kept(cli: Cli, tmp_path: Path) -> None:
    for i in range(300):
        write(cli.models / "many" / f"f{i:03}.bin", f"x{i}", OLD_NS)
    cli("scan")
    lines = cli("ls", "--json").stdout.splitlines()
    assert len(lines) == 303 and all(json.loads(line)["path"] for line in lines)
    proc = cli("tag", "rm", str(cli.models / "loras" / "style.safetensors"), "loras", ok=False)
    assert proc.returncode == 2 and "automatic" in proc.stderr


def test_a_reader_gone_early_is_no_traceback(cli: Cli) -> None:
    for i in range(3000):
        write(cli.models / "many" / f"f{i:04}.bin", f"x{i}", OLD_NS)
    cli("scan")
    flags = ["--db", cli.db, *(f for r in cli.roots for f in ("--root", r))]
    done = subprocess.run(
        shlex.join([sys.executable, "-m", "assetd", "ls", *flags]) + " | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=checkout_env(),
        timeout=60,
    )
    assert len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
