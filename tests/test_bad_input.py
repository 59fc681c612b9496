"""Bad input: a clear record, nothing lost, and the scan goes on."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assetd.catalog import Catalog
from assetd.config import RootConfig
from assetd.hashing import HashResult, hash_file
from assetd.seeder import AssetSeeder
from tests.conftest import OLD_NS, WITHOUT_DAC_CAPS, make_root, run_cli, write
from tests.harness import checkout_env, item_path, listed_by_path, locations_by_path


@pytest.fixture
def scan(catalog: Catalog) -> Iterator[Any]:
    seeders: list[AssetSeeder] = []

    def go(
        roots: list[RootConfig], names: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        seeder = AssetSeeder(catalog, roots, **kwargs)
        seeders.append(seeder)
        assert seeder.start(names)
        assert seeder.wait(60)
        return seeder.get_status()

    yield go
    for seeder in seeders:
        seeder.shutdown()


def locations(catalog: Catalog) -> dict[bytes, dict[str, Any]]:
    return locations_by_path(catalog, key=item_path)


def test_names_that_are_not_utf8_or_have_newlines(
    tmp_path: Path, catalog: Catalog, scan: Any
) -> None:
    """Invalid UTF-8 and newlines in names are cataloged exactly and carried as bytes."""
    root = make_root(tmp_path, "r")
    base = os.fsencode(root.path)
    odd = [
        base + b"/bad\xff\xfe.png",
        base + b"/new\nline.txt",
        base + b"/dir\x80/inner",
        base + b"/tab\there",
    ]
    for path in odd:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(path)
    status = scan([root])
    assert status["errors"] == []
    found = locations(catalog)
    assert set(found) == set(odd)
    assert all(item["hash"] for item in found.values())
    assert "path_bytes_b64" in found[base + b"/bad\xff\xfe.png"]
    assert "path_bytes_b64" not in found[base + b"/new\nline.txt"]
    assert "dir\ufffd" in found[base + b"/dir\x80/inner"]["tags"]


@pytest.mark.timeout(30)
def test_fifos_sockets_and_devices_are_skipped_never_opened(
    tmp_path: Path, catalog: Catalog, scan: Any
) -> None:
    """Special files are skipped; a FIFO with no writer cannot hang the scan."""
    root = make_root(tmp_path, "r")
    os.mkfifo(tmp_path / "r" / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "r" / "sock"))
    with contextlib.suppress(PermissionError):  # where mknod is refused, FIFOs still prove it
        os.mknod(tmp_path / "r" / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    write(tmp_path / "r" / "real.txt", "real")
    try:
        status = scan([root])
    finally:
        sock.close()
    assert status["errors"] == []
    assert [p.rsplit(b"/", 1)[1] for p in locations(catalog)] == [b"real.txt"]


def test_symlinks_are_not_followed_by_default(tmp_path: Path, catalog: Catalog, scan: Any) -> None:
    """Symlinks to files and folders are ignored unless follow_symlinks is on."""
    root = make_root(tmp_path, "r")
    outside = write(tmp_path / "outside" / "secret.txt", "secret")
    (tmp_path / "r" / "link.txt").symlink_to(outside)
    (tmp_path / "r" / "linkdir").symlink_to(outside.parent)
    write(tmp_path / "r" / "plain.txt", "plain")
    scan([root])
    assert [p.rsplit(b"/", 1)[1] for p in locations(catalog)] == [b"plain.txt"]


def test_followed_symlink_loops_are_detected(tmp_path: Path, catalog: Catalog, scan: Any) -> None:
    """With follow_symlinks, links are cataloged under their own path; loops are reported."""
    root = make_root(tmp_path, "r")
    write(tmp_path / "r" / "a" / "f.txt", "f")
    (tmp_path / "r" / "a" / "loop").symlink_to(tmp_path / "r")
    (tmp_path / "r" / "a" / "self").symlink_to(".")
    (tmp_path / "r" / "to-f").symlink_to(tmp_path / "r" / "a" / "f.txt")
    (tmp_path / "r" / "dangling").symlink_to(tmp_path / "nowhere")
    status = scan([root], follow_symlinks=True)
    names = sorted(p[len(os.fsencode(root.path)) + 1 :] for p in locations(catalog))
    assert names == [b"a/f.txt", b"to-f"]
    loops = [e for e in status["errors"] if "symlink loop" in e["message"]]
    assert {e["path"].rsplit("/", 1)[1] for e in loops} == {"loop", "self"}


def test_zero_byte_files_are_valid_assets(tmp_path: Path, catalog: Catalog, scan: Any) -> None:
    """Empty files are hashed like any other, and two empty files share one asset."""
    root = make_root(tmp_path, "r")
    write(tmp_path / "r" / "a", b"")
    write(tmp_path / "r" / "b", b"")
    scan([root])
    items = list(locations(catalog).values())
    assert [i["size"] for i in items] == [0, 0]
    assert (
        items[0]["hash"]
        == items[1]["hash"]
        == "blake3:" + "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )
    assert items[0]["asset_id"] == items[1]["asset_id"]


def test_root_that_does_not_exist(tmp_path: Path, catalog: Catalog, scan: Any) -> None:
    """A missing root is reported; other roots are scanned; nothing under it is marked missing."""
    gone, fine = make_root(tmp_path, "gone"), make_root(tmp_path, "fine")
    write(tmp_path / "gone" / "kept.bin", "kept", OLD_NS)
    scan([gone, fine])
    shutil.rmtree(tmp_path / "gone")
    write(tmp_path / "fine" / "new.bin", "new", OLD_NS)
    status = scan([gone, fine])
    assert any("offline" in e["message"] and e["root"] == "gone" for e in status["errors"])
    items = locations(catalog)
    assert items[os.fsencode(tmp_path / "gone" / "kept.bin")]["is_missing"] is False
    assert os.fsencode(tmp_path / "fine" / "new.bin") in items


# A settled file is hashed as it is registered, and one gone by then never goes in; a
# file modified moments ago goes in first and is hashed after, and is then missing.
WHEN_HASHED = pytest.mark.parametrize(
    "mtime", [OLD_NS, None], ids=["hashed while registering", "hashed after"]
)


@WHEN_HASHED
def test_file_vanishing_before_it_is_hashed(
    tmp_path: Path, catalog: Catalog, scan: Any, mtime: int | None
) -> None:
    """A file listed and then deleted before it could be hashed is not cataloged when it
    was to be hashed as it went in (no tombstone for a file the catalog never had), and
    missing when it was in already; the scan completes without an error."""
    root = make_root(tmp_path, "r")
    doomed = write(tmp_path / "r" / "doomed", "x", mtime)
    write(tmp_path / "r" / "stays", "y", OLD_NS)

    def deleting(path: bytes, **kwargs: Any) -> HashResult:
        if path.endswith(b"doomed"):
            os.unlink(path)
        return hash_file(path, **kwargs)

    status = scan([root], hasher=deleting)
    assert status["errors"] == []
    items = locations(catalog)
    if mtime is None:
        assert items[os.fsencode(doomed)]["is_missing"] is True
    else:
        assert os.fsencode(doomed) not in items
    assert items[os.fsencode(tmp_path / "r" / "stays")]["hash"] is not None


@WHEN_HASHED
def test_file_replaced_by_fifo_before_hashing(
    tmp_path: Path, catalog: Catalog, scan: Any, mtime: int | None
) -> None:
    """A file swapped for a FIFO between listing and hashing is never opened for reading
    (the scan would hang): not cataloged, or missing, as above."""
    root = make_root(tmp_path, "r")
    write(tmp_path / "r" / "swap", "x", mtime)

    def swapping(path: bytes, **kwargs: Any) -> HashResult:
        os.unlink(path)
        os.mkfifo(path)
        return hash_file(path, **kwargs)

    status = scan([root], hasher=swapping)
    assert status["errors"] == []
    items = locations(catalog)
    if mtime is None:
        assert items[os.fsencode(tmp_path / "r" / "swap")]["is_missing"] is True
    else:
        assert os.fsencode(tmp_path / "r" / "swap") not in items


def test_file_changing_between_stat_and_hash(tmp_path: Path, catalog: Catalog, scan: Any) -> None:
    """A file rewritten after the walk is recorded with the stat and hash of what was read."""
    root = make_root(tmp_path, "r")
    f = write(tmp_path / "r" / "f", "before", OLD_NS)

    def rewriting(path: bytes, **kwargs: Any) -> HashResult:
        write(f, "after, and longer", OLD_NS + 10**9)
        return hash_file(path, **kwargs)

    scan([root], hasher=rewriting)
    item = locations(catalog)[os.fsencode(f)]
    assert item["size"] == len("after, and longer") and item["mtime_ns"] == OLD_NS + 10**9
    assert item["hash"] == hash_file(os.fsencode(f)).hash


def test_unreadable_folder_and_file(tmp_path: Path) -> None:
    """An unreadable folder is an error entry; the rest is scanned; its rows stay as they were."""
    r = tmp_path / "r"
    write(r / "open" / "a.txt", "a", OLD_NS)
    write(r / "closed" / "b.txt", "b", OLD_NS)
    write(r / "secret.txt", "s", OLD_NS)
    state = tmp_path / "state"
    state.mkdir()
    db = f"sqlite:///{state}/c.db"
    first = run_cli("scan", "--db", db, "--root", f"r={r}")
    assert first.returncode == 0, first.stderr
    write(r / "open" / "new.txt", "n", OLD_NS)
    os.chmod(r / "closed", 0o000)
    os.chmod(r / "secret.txt", 0o000)
    prefix = WITHOUT_DAC_CAPS if os.geteuid() == 0 else ()
    second = run_cli("scan", "--db", db, "--root", f"r={r}", prefix=prefix)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["created"] == 1 and summary["marked_missing"] == 0
    assert summary["errors"] >= 2
    assert "closed" in second.stderr and "secret.txt" in second.stderr
    listed = run_cli("ls", "--db", db, "--json", "--include-missing")
    items = listed_by_path(listed.stdout)
    assert set(items) == {
        str(r / p) for p in ("open/a.txt", "open/new.txt", "closed/b.txt", "secret.txt")
    }
    assert not any(item["is_missing"] for item in items.values())
    os.chmod(r / "closed", 0o755)  # let pytest clean up


HOSTILE = [
    b"new\nline.txt",
    b"tab\there.txt",
    b"cr\rhere.txt",
    b"\x1b[31mred.txt",
    b"\xff\xfe.bin",
    b"del\x7f.txt",
    "c1\u0085next.txt".encode(),
    "sep\u2028line.txt".encode(),
    b"back\\slash.txt",
    b"looks\\x41escaped.txt",
    b"lookslikeA.txt",
    "caf\u00e9.png".encode(),
    b"dir\nwith\tcontrols/inner.txt",
]


def unescape(text: bytes) -> bytes:
    """The name an escaped ``ls`` path stands for (docs/cli.md, plain output)."""
    named = {b"\\": b"\\", b"n": b"\n", b"t": b"\t", b"r": b"\r"}
    return re.sub(
        rb"\\(x[0-9a-f]{2}|[\\ntr])",
        lambda m: bytes([int(m[1][1:], 16)]) if m[1][:1] == b"x" else named[m[1]],
        text,
    )


def test_plain_ls_is_one_line_per_location_whatever_the_names(tmp_path: Path) -> None:
    """Names with newlines, tabs, escape sequences, C1 controls, line separators,
    backslashes and bytes that are not UTF-8, scanned and listed by the real commands:
    ``assetd ls`` prints exactly one line of printable UTF-8 per location, and each line
    gives back its path's exact bytes."""
    r = tmp_path / "r"
    base = os.fsencode(r)
    paths = [base + b"/" + name for name in HOSTILE]
    for path in paths:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(path)
    db = f"sqlite:///{tmp_path / 'state' / 'c.db'}"
    assert run_cli("scan", "--db", db, "--root", f"r={r}").returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "assetd", "ls", "--db", db],
        capture_output=True,
        env=checkout_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode("utf-8")  # strict: no stray byte
    lines = text.splitlines()  # every line end Python knows, not only "\n"
    assert len(lines) == len(paths) == len(text.split("\n")) - 1
    for line in lines:
        assert line.count("\t") == 1  # the one between path and the rest
        assert line.replace("\t", " ").isprintable()
    listed = sorted(unescape(line.split("\t")[0].encode()) for line in lines)
    assert listed == sorted(paths)
    (dir_line,) = [line for line in lines if line.startswith(f"{r}/dir\\n")]
    assert dir_line.endswith("[dir\\nwith\\tcontrols,r]")  # a folder's name as a tag, too
