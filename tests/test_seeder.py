"""The seeder: its state machine and full passes over real folders and a real SQLite file."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from assetd.catalog import Catalog
from assetd.catalog.sql import CHUNK
from assetd.config import RootConfig
from assetd.exceptions import SeederBusyError
from assetd.hashing import HashResult, hash_file
from assetd.seeder import AssetSeeder
from tests.conftest import OLD_NS, make_root, wait_for, write
from tests.harness import locations_by_path


class Events:
    """A recording event sink."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.items.append((kind, data))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.items]


@pytest.fixture
def seeders() -> Iterator[Callable[..., AssetSeeder]]:
    made: list[AssetSeeder] = []

    def make(catalog: Catalog, roots: list[RootConfig], **kwargs: Any) -> AssetSeeder:
        seeder = AssetSeeder(catalog, roots, **kwargs)
        made.append(seeder)
        return seeder

    yield make
    for seeder in made:
        seeder.shutdown()


def run(seeder: AssetSeeder, *args: Any, **kwargs: Any) -> dict[str, Any]:
    assert seeder.start(*args, **kwargs)
    assert seeder.wait(60)
    status = seeder.get_status()
    assert status["state"] == "IDLE"
    return status


def rows(catalog: Catalog, *, missing: bool | None = None) -> dict[str, Any]:
    listed = locations_by_path(catalog)
    return {p: i for p, i in listed.items() if missing is None or i["is_missing"] is missing}


class CountingHasher:
    def __init__(self) -> None:
        self.paths: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, path: bytes, **kwargs: Any) -> HashResult:
        with self.lock:
            self.paths.append(path)
        return hash_file(path, **kwargs)


def test_two_phases_register_then_hash(tmp_path: Path, catalog: Catalog, seeders: Any) -> None:
    """Phase one lists every file from stat alone; phase two fills in every hash."""
    root = make_root(tmp_path, "models")
    for i in range(5):
        write(tmp_path / "models" / "checkpoints" / f"m{i}.bin", f"model {i}", OLD_NS)
    events = Events()
    seeder = seeders(catalog, [root], on_event=events, progress_interval=0)
    status = run(seeder, compute_hashes=False)
    assert status["progress"]["total"] == 5 and status["progress"]["hashed"] == 0
    listed = rows(catalog)
    assert len(listed) == 5
    assert all(item["hash"] is None and item["needs_verify"] for item in listed.values())
    status = run(seeder)
    assert status["progress"]["hashed"] == 5 and status["progress"]["skipped"] == 0
    assert all(item["hash"].startswith("blake3:") for item in rows(catalog).values())
    assert events.kinds()[0] == "assets.seed.started"
    assert events.kinds().count("assets.seed.completed") == 2
    hashing = [
        d for k, d in events.items if k == "assets.seed.progress" and d["phase"] == "hashing"
    ]
    assert hashing and all(d["total"] == 5 and d["scanned"] == 5 for d in hashing)
    assert hashing[-1]["hashed"] == hashing[-1]["to_hash"] == 5


def test_automatic_tags_from_the_path(tmp_path: Path, catalog: Catalog, seeders: Any) -> None:
    """A file gets its root's name and every folder between root and file as tags."""
    root = make_root(tmp_path, "models")
    write(tmp_path / "models" / "checkpoints" / "sdxl" / "x.safetensors", "x", OLD_NS)
    run(seeders(catalog, [root]))
    (item,) = rows(catalog).values()
    assert item["tags"] == ["checkpoints", "models", "sdxl"]
    assert item["mime_type"] == "application/x-safetensors"


def test_ten_concurrent_starts_exactly_one_wins(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """Ten threads call start() at once: exactly one gets True."""
    root = make_root(tmp_path, "r")
    write(tmp_path / "r" / "f", "x")
    seeder = seeders(catalog, [root])
    barrier = threading.Barrier(10)
    results: list[bool] = []

    def go() -> None:
        barrier.wait()
        results.append(seeder.start())

    threads = [threading.Thread(target=go) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 9 + [True]
    assert seeder.wait(30)


def test_cancel_after_first_batch_keeps_what_was_committed(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """A cancel takes effect between batches: the first batch stays, the pass ends IDLE."""
    root = make_root(tmp_path, "r")
    for i in range(CHUNK * 3):
        write(tmp_path / "r" / f"f{i:05}", b"")
    events = Events()
    seeder = seeders(catalog, [root], on_event=events)
    committed: list[int] = []

    def first_commit(msgs: list[Any]) -> None:
        committed.append(len(msgs))
        seeder.cancel()

    catalog.listeners.append(first_commit)
    status = run(seeder)
    assert events.kinds()[-1] == "assets.seed.cancelled"
    assert 0 < committed[0] < CHUNK * 3
    assert status["progress"]["created"] == committed[0]
    assert catalog.models.Location.select().count() == committed[0]
    catalog.listeners.clear()
    run(seeder)
    assert catalog.models.Location.select().count() == CHUNK * 3


def test_error_inside_a_run_ends_idle_with_the_error(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """An unexpected exception ends the pass in IDLE with the error recorded and reported."""
    root = make_root(tmp_path, "r")
    write(tmp_path / "r" / "f", "x")

    def broken(path: bytes, **kwargs: Any) -> HashResult:
        raise RuntimeError("hasher exploded")

    events = Events()
    seeder = seeders(catalog, [root], hasher=broken, on_event=events)
    status = run(seeder)
    assert any("hasher exploded" in e["message"] for e in status["errors"])
    assert events.kinds()[-1] == "assets.seed.error"
    seeder.hasher = hash_file
    assert run(seeder)["errors"] == []


def test_prune_orphans_refuses_while_running(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """prune_orphans() raises while a pass runs and works once IDLE."""
    root = make_root(tmp_path, "r")
    write(tmp_path / "r" / "f", "x")
    release, entered = threading.Event(), threading.Event()

    def slow(path: bytes, **kwargs: Any) -> HashResult:
        entered.set()
        release.wait(30)
        return hash_file(path, **kwargs)

    seeder = seeders(catalog, [root], hasher=slow)
    assert seeder.start()
    entered.wait(30)
    assert seeder.get_status()["state"] == "RUNNING"
    with pytest.raises(SeederBusyError):
        seeder.prune_orphans()
    release.set()
    assert seeder.wait(30)
    assert seeder.prune_orphans() == 0


def test_a_wait_on_a_pass_started_as_the_last_one_ended_waits_for_it(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """A pass started while the one before tells of its end (it is IDLE by then) has
    waiters of its own: the ending pass does not let them go."""
    root = make_root(tmp_path, "r")
    write(tmp_path / "r" / "f", "x")
    release, entered, second = threading.Event(), threading.Event(), threading.Event()

    def gated(path: bytes, **kwargs: Any) -> HashResult:
        entered.set()
        release.wait(30)
        return hash_file(path, **kwargs)

    def events(kind: str, data: dict[str, Any]) -> None:
        if kind == "assets.seed.completed" and not second.is_set():
            assert seeder.start()  # the next pass, hashing: it waits in the hasher
            second.set()

    seeder = seeders(catalog, [root], hasher=gated, on_event=events)
    assert seeder.start(compute_hashes=False)
    first = seeder._thread
    assert second.wait(30) and entered.wait(30)
    assert first is not None and first is not seeder._thread
    first.join(30)  # the first pass has told of its end and let its own waiters go
    assert seeder.wait(0) is False and seeder.get_status()["state"] == "RUNNING"
    release.set()
    assert seeder.wait(30) and seeder.get_status()["state"] == "IDLE"


def test_cancel_when_idle_says_so(tmp_path: Path, catalog: Catalog, seeders: Any) -> None:
    """cancel() on an idle seeder returns False and the status has no progress yet."""
    seeder = seeders(catalog, [make_root(tmp_path, "r")])
    assert seeder.cancel() is False
    assert seeder.get_status() == {"state": "IDLE", "progress": None, "errors": []}


def test_scan_of_one_root_leaves_the_others_alone(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """A models-only scan never marks, deletes or changes locations of input or output."""
    roots = [make_root(tmp_path, n) for n in ("models", "input", "output")]
    for name in ("models", "input", "output"):
        write(tmp_path / name / "a.bin", name, OLD_NS)
    seeder = seeders(catalog, roots)
    run(seeder)
    before = rows(catalog)
    for name in ("models", "input", "output"):
        (tmp_path / name / "a.bin").unlink()
    status = run(seeder, ["models"])
    assert status["progress"]["marked_missing"] == 1
    after = rows(catalog)
    for name in ("input", "output"):
        key = f"{roots[0].path[:-6]}{name}/a.bin"
        assert after[key] == before[key]
    assert after[f"{roots[0].path}/a.bin"]["is_missing"] is True


def test_prune_first_marks_locations_outside_known_roots(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """prune_first marks missing whatever lies outside every configured root, then scans."""
    old, new = make_root(tmp_path, "old"), make_root(tmp_path, "new")
    write(tmp_path / "old" / "a", "a", OLD_NS)
    write(tmp_path / "new" / "b", "b", OLD_NS)
    run(seeders(catalog, [old, new]))
    status = run(seeders(catalog, [new]), prune_first=True)
    assert status["progress"]["marked_missing"] == 1
    assert set(rows(catalog, missing=True)) == {f"{old.path}/a"}


def test_delete_then_restore_keeps_tags(tmp_path: Path, catalog: Catalog, seeders: Any) -> None:
    """A deleted file turns missing with its tags; back with the same stat, it is restored as is."""
    root = make_root(tmp_path, "r")
    f = write(tmp_path / "r" / "pic.png", "content", OLD_NS)
    counting = CountingHasher()
    seeder = seeders(catalog, [root], hasher=counting)
    run(seeder)
    path = os.fsencode(f)
    catalog.change_tags(path, add=["fav"])
    stat_before = os.stat(f)
    moved = tmp_path / "elsewhere"
    os.rename(f, moved)
    status = run(seeder)
    assert status["progress"]["marked_missing"] == 1
    assert rows(catalog)[str(f)]["tags"] == ["fav", "missing", "r"]
    os.rename(moved, f)  # same inode, size, mtime and ctime? rename changes ctime
    counting.paths.clear()
    status = run(seeder)
    assert status["progress"]["restored"] == 1
    item = rows(catalog)[str(f)]
    assert item["is_missing"] is False and item["tags"] == ["fav", "r"]
    assert os.stat(f).st_ino == stat_before.st_ino


def test_restore_with_changed_mtime_rehashes(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """A file back with another mtime is restored and re-hashed (the old system left it missing)."""
    root = make_root(tmp_path, "r")
    f = write(tmp_path / "r" / "pic.png", "content", OLD_NS)
    counting = CountingHasher()
    seeder = seeders(catalog, [root], hasher=counting)
    run(seeder)
    catalog.change_tags(os.fsencode(f), add=["fav"])
    f.unlink()
    run(seeder)
    write(f, "content", OLD_NS + 10**9)
    counting.paths.clear()
    status = run(seeder)
    assert status["progress"]["restored"] == 1 and counting.paths == [os.fsencode(f)]
    item = rows(catalog)[str(f)]
    assert not item["is_missing"] and item["tags"] == ["fav", "r"] and not item["needs_verify"]


def test_changed_content_joins_a_new_asset_and_old_keeps_tags(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """A modified file is re-hashed into the new content's asset; the old asset keeps its tags."""
    root = make_root(tmp_path, "r")
    f = write(tmp_path / "r" / "pic.png", "version 1", OLD_NS)
    seeder = seeders(catalog, [root])
    run(seeder)
    old = rows(catalog)[str(f)]
    catalog.change_tags(os.fsencode(f), add=["v1-tag"])
    write(f, "version 2 is longer", OLD_NS + 10**9)
    status = run(seeder)
    assert status["progress"]["modified"] == 1 and status["progress"]["hashed"] == 1
    new = rows(catalog)[str(f)]
    assert new["hash"] != old["hash"] and new["asset_id"] != old["asset_id"]
    assert "v1-tag" not in new["tags"]
    # The old content has no location left: its user tags stay, folder tags went with the path.
    assert catalog.tags_of([old["asset_id"]])[old["asset_id"]] == ["missing", "v1-tag"]
    ops = [c["op"] for c in catalog.changes_since(0)]
    assert ops[-2:] == ["modified", "hashed"]


def test_offline_rename_is_one_move(tmp_path: Path, catalog: Catalog, seeders: Any) -> None:
    """A file renamed while nothing watched is one move: same location and asset, tags
    and metadata with it, nothing left missing at the old path, nothing read again."""
    root = make_root(tmp_path, "r")
    a = write(tmp_path / "r" / "a.bin", "unique content", OLD_NS)
    seeder = seeders(catalog, [root])
    run(seeder)
    catalog.change_tags(os.fsencode(a), add=["fav"])
    catalog.change_metadata(os.fsencode(a), {"note": "kept"})
    assets_before = catalog.models.Asset.select().count()
    before = rows(catalog)[str(a)]
    seq = catalog.latest_seq()
    b = tmp_path / "r" / "sub" / "b.bin"
    b.parent.mkdir()
    os.rename(a, b)
    run(seeder)
    items = rows(catalog)
    assert str(a) not in items
    assert items[str(b)]["asset_id"] == before["asset_id"]
    assert items[str(b)]["hash"] == before["hash"]
    assert items[str(b)]["tags"] == ["fav", "r", "sub"]
    assert catalog.change_metadata(os.fsencode(b)) == {"note": "kept"}
    assert catalog.models.Asset.select().count() == assets_before
    changes = catalog.changes_since(seq)
    assert [(c["op"], c["location"]["path"], c.get("old_path")) for c in changes] == [
        ("moved", str(b), str(a))
    ]


def test_missing_tag_only_when_no_location_is_live(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """Two copies share one asset; it is 'missing' only once both are gone."""
    root = make_root(tmp_path, "r")
    one = write(tmp_path / "r" / "one.bin", "same", OLD_NS)
    two = write(tmp_path / "r" / "two.bin", "same", OLD_NS)
    seeder = seeders(catalog, [root])
    run(seeder)
    assert rows(catalog)[str(one)]["asset_id"] == rows(catalog)[str(two)]["asset_id"]
    one.unlink()
    run(seeder)
    assert "missing" not in rows(catalog)[str(two)]["tags"]
    two.unlink()
    run(seeder)
    assert "missing" in rows(catalog)[str(two)]["tags"]


def test_unchanged_files_are_never_reread(tmp_path: Path, catalog: Catalog, seeders: Any) -> None:
    """A second pass over an unchanged tree hashes nothing and skips every file."""
    root = make_root(tmp_path, "r")
    for i in range(20):
        write(tmp_path / "r" / f"d{i % 3}" / f"f{i}", f"c{i}", OLD_NS)
    counting = CountingHasher()
    seeder = seeders(catalog, [root], hasher=counting)
    run(seeder)
    assert len(counting.paths) == 20
    counting.paths.clear()
    status = run(seeder)
    assert counting.paths == [] and status["progress"]["skipped"] == 20


def test_racily_clean_files_are_hashed_again(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """A file modified just before it was hashed is verified again on the next pass."""
    root = make_root(tmp_path, "r")
    fresh = write(tmp_path / "r" / "fresh", "just written")
    write(tmp_path / "r" / "settled", "old", OLD_NS)
    counting = CountingHasher()
    seeder = seeders(catalog, [root], hasher=counting)
    run(seeder)
    assert rows(catalog)[str(fresh)]["needs_verify"] is True
    counting.paths.clear()
    run(seeder)
    assert counting.paths == [os.fsencode(fresh)]


def test_special_characters_in_folder_names(tmp_path: Path, catalog: Catalog, seeders: Any) -> None:
    """Roots named like LIKE patterns or with spaces only ever touch their own rows."""
    names = ["100%_done", "1000_done", "has spaces", "has_spaces", "my_folder", "myXfolder"]
    roots = [RootConfig(name=f"r{i}", path=str(tmp_path / "base" / n)) for i, n in enumerate(names)]
    for n in names:
        write(tmp_path / "base" / n / "f.bin", n, OLD_NS)
    seeder = seeders(catalog, roots)
    run(seeder)
    for n in names:
        (tmp_path / "base" / n / "f.bin").unlink()
    for i in range(len(names)):
        status = run(seeder, [f"r{i}"])
        assert status["progress"]["marked_missing"] == 1
        missing = {p for p, item in rows(catalog).items() if item["is_missing"]}
        assert missing == {str(tmp_path / "base" / m / "f.bin") for m in names[: i + 1]}


def test_progress_events_are_throttled(tmp_path: Path, catalog: Catalog, seeders: Any) -> None:
    """With a long interval, a pass sends no progress events in between, only start and end."""
    root = make_root(tmp_path, "r")
    for i in range(CHUNK * 2):
        write(tmp_path / "r" / f"f{i}", b"")
    events = Events()
    clock = iter(range(0, 10**6, 0 + 1))
    run(
        seeders(
            catalog, [root], on_event=events, progress_interval=10**9, clock=lambda: next(clock)
        )
    )
    assert events.kinds() == ["assets.seed.started", "assets.seed.completed"]


def test_wait_times_out_while_running(tmp_path: Path, catalog: Catalog, seeders: Any) -> None:
    """wait(timeout) returns False while a pass is still running."""
    root = make_root(tmp_path, "r")
    write(tmp_path / "r" / "f", "x")
    release = threading.Event()

    def slow(path: bytes, **kwargs: Any) -> HashResult:
        release.wait(30)
        return hash_file(path, **kwargs)

    seeder = seeders(catalog, [root], hasher=slow)
    assert seeder.start()
    assert seeder.wait(0.05) is False
    release.set()
    assert wait_for(lambda: seeder.wait(0.1), what="seeder idle")


def _spread_tree(root: Path) -> dict[Path, bytes]:
    """Files in many folders and at the top, so that any cut falls somewhere real."""
    files = {}
    for i in range(240):
        where = root / f"d{i % 7}" / f"e{i % 3}" if i % 5 else root
        files[write(where / f"f{i:03}.bin", b"%d" % i, OLD_NS)] = b"%d" % i
    return files


@pytest.mark.parametrize("worker_fails", [False, True], ids=["worker", "worker fails"])
def test_a_restart_walks_in_worker_processes_with_the_same_result(
    tmp_path: Path, catalog: Catalog, seeders: Any, worker_fails: bool, monkeypatch: Any
) -> None:
    """A root the catalog knows well is cut into spans walked side by side; the pass sees
    every change in every span, counts as a serial pass does, and falls back to walking
    a span itself when its worker fails."""
    from assetd import seeder as seeder_module
    from assetd.hashpool import HashPool

    root = make_root(tmp_path, "r")
    files = _spread_tree(Path(root.path))
    run(seeders(catalog, [root]))
    ordered = sorted(files)
    for path in ordered[::10]:  # modified, everywhere
        write(path, b"changed " + files[path], OLD_NS + 10**9)
    for path in ordered[5::20]:  # deleted
        path.unlink()
    added = [write(Path(root.path) / f"d{i}" / "new.bin", b"new %d" % i, OLD_NS) for i in range(7)]
    if worker_fails:
        monkeypatch.setattr(seeder_module, "INDEX_SPAN", "assetd.survey:no_such_function")
    pool = HashPool(processes=1)
    try:
        status = run(seeders(catalog, [root], hash_pool=pool, parallel_min=50))
        assert pool.worker_pids(), "no worker process walked a span"
    finally:
        pool.close()
    progress = status["progress"]
    on_disk = [p for p in ordered if p.exists()] + added
    assert progress["scanned"] == progress["total"] == len(on_disk)
    assert progress["modified"] == len(ordered[::10])
    assert progress["created"] == len(added)
    assert progress["marked_missing"] == len(ordered[5::20])
    assert progress["skipped"] == len(on_disk) - len(ordered[::10]) - len(added)
    live = rows(catalog, missing=False)
    assert sorted(live) == sorted(str(p) for p in on_disk)
    for path in on_disk:
        assert live[str(path)]["hash"] == hash_file(os.fsencode(path)).hash


def test_a_restart_walks_beside_one_worker_per_other_core(
    tmp_path: Path, catalog: Catalog, seeders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On two cores a restart's walk is this process's and one worker's: a second
    worker would only add its start to busy cores."""
    from assetd.hashpool import HashPool

    root = make_root(tmp_path, "r")
    files = _spread_tree(Path(root.path))
    run(seeders(catalog, [root]))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    pool = HashPool(processes=2)
    try:
        status = run(seeders(catalog, [root], hash_pool=pool, parallel_min=50))
        assert len(pool.worker_pids()) == 1
    finally:
        pool.close()
    progress = status["progress"]
    assert progress["scanned"] == progress["skipped"] == len(files)


class RacingWriter:
    """The seeder's writer, with the live path getting to the catalog first: before the
    pass's first batch of observations is written, ``live`` runs (as the reconciler
    would, between the pass's read and its write)."""

    def __init__(self, live: Callable[[], None]) -> None:
        self.live, self.raced = live, False

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        from assetd.apply import apply_observations

        if fn is apply_observations and not self.raced:
            self.raced = True
            self.live()
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future


def test_a_pass_yields_to_new_files_the_live_path_cataloged_meanwhile(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """The live path catalogs new files after the pass decided they were new and before
    it wrote them: the pass completes (no failed insert), each file is one location."""
    from assetd.apply import Tally, apply_observations, observe, regular_stat

    root = make_root(tmp_path, "r")
    paths = [os.fsencode(write(tmp_path / "r" / f"f{i}.png", f"{i}", OLD_NS)) for i in range(5)]

    def live() -> None:
        seen = [observe(p, "r", regular_stat(p, False), catalog.get_state(p)) for p in paths[:3]]
        assert apply_observations(catalog, seen, Tally()) == []

    events = Events()
    seeder = seeders(catalog, [root], on_event=events, submit=RacingWriter(live))
    status = run(seeder)
    assert events.kinds()[-1] == "assets.seed.completed", status["errors"]
    listed = rows(catalog)
    assert sorted(listed) == sorted(os.fsdecode(p) for p in paths)
    assert all(item["hash"] for item in listed.values())
    assert catalog.models.Location.select().count() == 5


def test_a_rename_the_live_path_wrote_during_a_pass_keeps_the_file_live_and_tagged(
    tmp_path: Path, catalog: Catalog, seeders: Any
) -> None:
    """A file renamed while a pass walks: the pass saw the old path gone and the new one
    new; the live path moved the location first. The pass must not mark the moved
    location missing nor insert a second one; the user's tag stays with the file."""
    root = make_root(tmp_path, "r")
    old = write(tmp_path / "r" / "old.png", "content", OLD_NS)
    run(seeders(catalog, [root]))
    catalog.change_tags(os.fsencode(old), add=["keep"])
    new = tmp_path / "r" / "new.png"
    old.rename(new)

    def live() -> None:
        assert catalog.move_locations([(os.fsencode(old), os.fsencode(new), "r")]) == 1

    events = Events()
    seeder = seeders(catalog, [root], on_event=events, submit=RacingWriter(live))
    status = run(seeder)
    assert events.kinds()[-1] == "assets.seed.completed", status["errors"]
    listed = rows(catalog, missing=False)
    assert list(listed) == [str(new)]
    assert "keep" in listed[str(new)]["tags"]
    assert catalog.models.Location.select().count() == 1
