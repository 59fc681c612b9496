"""The cold index: new files made ready in worker processes, inserted once by the writer."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from assetd.apply import Tally, apply_observations, apply_ready, observe, regular_stat
from assetd.catalog import Catalog
from assetd.hashing import LARGE_FILE, hash_file, hash_path
from assetd.hashpool import HashPool
from assetd.prepare import prepare
from assetd.seeder import AssetSeeder
from assetd.walk import Entry, first_cuts, walk_root
from tests.conftest import OLD_NS, make_root, write
from tests.harness import locations_by_path


def _tree(top: Path) -> dict[Path, bytes]:
    """A tree worth cutting: 90 folders of small files, two large files, the same
    content at two places, and names that need care in JSON."""
    files: dict[Path, bytes] = {}
    for i in range(90):
        for j in range(4):
            files[top / f"d{i:02}" / f"f{j}.png"] = b"file %d %d" % (i, j)
    files[top / "d05" / "copy.png"] = files[top / "d40" / "f1.png"]  # the same content
    files[top / "big" / "a.safetensors"] = os.urandom(LARGE_FILE + 10)
    files[top / "big" / "b.safetensors"] = os.urandom(2 * LARGE_FILE)
    files[top / "d07" / 'a "quoted" name.txt'] = b"quoted"
    files[Path(os.fsdecode(os.fsencode(str(top / "d08")) + b"/not-utf8-\xff.bin"))] = b"bytes"
    for path, content in files.items():
        write(path, content, OLD_NS)
    return files


def _shown(path: Path) -> str:
    """A path as a Location's ``path`` shows it (bytes that are not UTF-8 replaced)."""
    return os.fsencode(str(path)).decode("utf-8", "replace")


@pytest.mark.parametrize("worker_fails", [False, True], ids=["workers", "a worker fails"])
def test_a_first_scan_walks_and_hashes_in_workers_and_inserts_each_file_once(
    tmp_path: Path, catalog: Catalog, worker_fails: bool, monkeypatch: Any
) -> None:
    """A tree the catalog does not know is cut by its first levels' names and walked in
    worker processes: every file goes in, a settled small file once with its hash (one
    ``added`` that carries it, no ``hashed``), a large one unhashed and hashed after;
    each change body built in a worker is the committed row's own Location; the same
    content is one asset. When a worker fails, its spans are walked here, same result."""
    from assetd import seeder as seeder_module

    root = make_root(tmp_path, "r")
    files = _tree(Path(root.path))
    monkeypatch.setattr(seeder_module, "CUT_LEAST", 64)  # a tree this small is cut too
    if worker_fails:
        monkeypatch.setattr(seeder_module, "INDEX_SPAN", "assetd.survey:no_such_function")
    pool = HashPool(processes=2)
    seeder = AssetSeeder(catalog, [root], hash_pool=pool)
    try:
        assert seeder.start() and seeder.wait(60)
        assert pool.worker_pids(), "no worker process walked a span"
    finally:
        seeder.shutdown()
        pool.close()
    status = seeder.get_status()
    assert status["errors"] == []
    assert status["progress"]["created"] == status["progress"]["hashed"] == len(files)
    listed = locations_by_path(catalog)
    assert sorted(listed) == sorted(_shown(p) for p in files)
    for path in files:
        item = listed[_shown(path)]
        assert item["hash"] == hash_file(os.fsencode(str(path))).hash
        assert not item["needs_verify"]
    changes = catalog.changes_since(0, limit=10_000)
    by_path: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        by_path.setdefault(change["location"]["path"], []).append(change)
    for path, seen in by_path.items():
        ops = [c["op"] for c in seen]
        if "/big/" in path:
            assert ops == ["added", "hashed"] and seen[0]["location"]["hash"] is None
        else:
            assert ops == ["added"], path
            assert seen[0]["location"] == listed[path]  # built in a worker, as committed
    copy, original = (os.fsencode(str(Path(root.path) / p)) for p in ("d05/copy.png", "d40/f1.png"))
    states = catalog.get_states([copy, original])
    assert states[copy].asset_id == states[original].asset_id


def test_ready_files_that_meet_a_row_are_written_the_checked_way(
    tmp_path: Path, catalog: Catalog
) -> None:
    """Files made ready while another writer put one of their paths in, and content one
    of them has: nothing is inserted twice, the other writer's row stays, the file with
    known content joins its asset, and every file is cataloged with its hash."""
    root = make_root(tmp_path, "r")
    catalog.register_roots([(root.name, root.prefix)])
    paths = [write(tmp_path / "r" / f"f{i}", b"content %d" % i, OLD_NS) for i in range(6)]
    elsewhere = write(tmp_path / "r" / "sub" / "same-as-f3", b"content 3", OLD_NS)
    walked = [(e.path, e.stat) for e in walk_root(os.fsencode(root.path)) if isinstance(e, Entry)]
    prepared = prepare(catalog, root.name, [w for w in walked if w[0] != os.fsencode(elsewhere)])
    assert len(prepared.ready) == 6 and not prepared.moved
    first, other = os.fsencode(paths[0]), os.fsencode(elsewhere)
    for path in (first, other):  # the live path is first: a row, and content, by now
        seen = observe(path, root.name, regular_stat(path, False), None)
        hashes = {path: hash_path(path)}
        apply_observations(catalog, [seen], Tally(), check=False, hashes=hashes)
    before = catalog.get_state(first)
    assert before is not None
    tally = Tally()
    apply_ready(catalog, prepared.ready, tally)
    assert catalog.get_state(first) == before  # the other writer's row, untouched
    listed = locations_by_path(catalog)
    assert sorted(listed) == sorted(str(p) for p in [*paths, elsewhere])
    for path in paths[1:]:
        assert listed[str(path)]["hash"] == hash_file(os.fsencode(path)).hash
    states = catalog.get_states([os.fsencode(paths[3]), other])
    assert len({s.asset_id for s in states.values()}) == 1  # one asset for one content
    assert tally.created == 5  # f1..f5; f0 was the other writer's


def test_a_new_tree_is_cut_by_the_names_of_its_first_levels(tmp_path: Path) -> None:
    """The spans between the cuts walk every file exactly once, in order, for a tree of
    folders and for one flat folder; a tree too small to share is not cut."""
    nested, flat, small = tmp_path / "nested", tmp_path / "flat", tmp_path / "small"
    for i in range(30):
        for j in range(5):
            write(nested / f"a{i:02}" / f"b{j}" / "f.bin", b"x")
    for i in range(300):
        write(flat / f"f{i:03}.bin", b"x")
    for i in range(3):
        write(small / f"f{i}", b"x")
    for top in (nested, flat):
        raw = os.fsencode(str(top))
        cuts = first_cuts(raw, 6, least=64)
        assert 3 <= len(cuts) <= 5
        whole = [e.path for e in walk_root(raw) if isinstance(e, Entry)]
        bounds: list[bytes | None] = [None, *cuts, None]
        pieces: list[bytes] = []
        for low, high in itertools.pairwise(bounds):
            span = [e.path for e in walk_root(raw, span=(low, high)) if isinstance(e, Entry)]
            assert span, "an empty span"
            pieces += span
        assert pieces == whole
    assert first_cuts(os.fsencode(str(small)), 6, least=64) == []


def test_a_file_written_moments_ago_goes_in_first_and_is_hashed_after(
    tmp_path: Path, catalog: Catalog
) -> None:
    """A file modified within the racy window may still be being written: it is not
    hashed as it goes in (``added`` without a hash), then hashed once (``hashed``)."""
    root = make_root(tmp_path, "r")
    write(tmp_path / "r" / "fresh", b"just written")
    seeder = AssetSeeder(catalog, [root])
    try:
        assert seeder.start() and seeder.wait(30)
    finally:
        seeder.shutdown()
    ops = [(c["op"], c["location"]["hash"] is None) for c in catalog.changes_since(0)]
    assert ops == [("added", True), ("hashed", False)]
    assert seeder.get_status()["progress"]["hashed"] == 1
