"""A burst of new files in the live path: made ready in worker processes, inserted once.

Real files, a real catalog (SQLite, and PostgreSQL where it runs). The first test uses
real worker processes; the others hold the workers' tasks at their seam (the real
``prepare`` runs when the test lets it), so that what happens while files are out is
not left to timing.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from assetd.catalog import Catalog
from assetd.config import RootConfig
from assetd.exceptions import WorkerDied
from assetd.hashing import hash_file
from assetd.hashpool import HashPool
from assetd.hints import Hint, HintKind
from assetd.prepare import prepare_elsewhere
from assetd.reconciler import Reconciler
from assetd.survey import survey_new_elsewhere
from tests.conftest import OLD_NS, wait_for, write
from tests.harness import locations_by_path

BURST = 40  # new files in a batch from which they are made ready elsewhere (these tests)
PREPARE = "assetd.prepare:prepare_elsewhere"
SURVEY = "assetd.survey:survey_new_elsewhere"


class HeldTasks:
    """The worker processes' seam: each task waits for the test, then runs the real
    function here, on its own connection to the catalog, as a worker would."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, tuple[Any, ...], Future[Any]]] = []

    def submit(self, function: str, *args: Any) -> Future[Any]:
        assert function in (PREPARE, SURVEY)
        future: Future[Any] = Future()
        self.tasks.append((function, args, future))
        return future

    def prepare(self, index: int = 0) -> Any:
        function, args, _ = self.tasks[index]
        return (prepare_elsewhere if function == PREPARE else survey_new_elsewhere)(*args)

    def run(self, index: int = 0) -> None:
        self.tasks[index][2].set_result(self.prepare(index))

    def fail_the_rest(self) -> None:
        for _, _, future in self.tasks:
            if not future.done():
                future.set_exception(WorkerDied("test over"))


def start(
    tmp_path: Path, catalog: Catalog, pool: HashPool, held: HeldTasks | None = None
) -> Reconciler:
    root = RootConfig("r", str(tmp_path / "r"))
    (tmp_path / "r").mkdir(exist_ok=True)
    catalog.register_roots([(root.name, root.prefix)])
    if held is not None:
        pool.workers = lambda preload=(): held  # type: ignore[assignment,method-assign,return-value]
    rec = Reconciler(catalog, [root], settle_s=0.2, move_window_s=0.2, hash_pool=pool)
    rec.start()
    return rec


@pytest.fixture
def pool() -> Iterator[HashPool]:
    made = HashPool(process_min=BURST)
    yield made
    made.close()


def burst(folder: Path, count: int, *, mtime_ns: int | None = OLD_NS) -> list[Path]:
    return [
        write(folder / f"f{i:03}.bin", f"content {folder.name} {i}", mtime_ns) for i in range(count)
    ]


def closed(rec: Reconciler, paths: list[Path]) -> None:
    for path in paths:
        rec.put(Hint(HintKind.CLOSED, os.fsencode(path)))


def live(catalog: Catalog) -> dict[str, Any]:
    return locations_by_path(catalog, include_missing=False)


def settle(rec: Reconciler) -> None:
    wait_for(rec.idle, 30, "reconciler idle")


def test_a_burst_goes_in_once_a_file_with_its_hash(
    tmp_path: Path, catalog: Catalog, pool: HashPool
) -> None:
    """Many new complete files: each is one ``added`` change carrying its hash, and no
    ``hashed`` follows; one written moments ago keeps its hash too, to be verified."""
    rec = start(tmp_path, catalog, pool)
    try:
        settled = burst(tmp_path / "r" / "a", 150) + burst(tmp_path / "r" / "b", 150)
        fresh = burst(tmp_path / "r" / "c", 60, mtime_ns=None)
        closed(rec, settled + fresh)
        settle(rec)
        rows = live(catalog)
        for path in settled + fresh:
            assert rows[str(path)]["hash"] == hash_file(os.fsencode(path)).hash
        changes = catalog.changes_since(0)
        added = [c for c in changes if c["op"] == "added"]
        assert [c["op"] for c in changes] == ["added"] * len(settled + fresh)
        assert all(c["location"]["hash"] is not None for c in added)
        assert sorted(c["location"]["path"] for c in added) == sorted(map(str, settled + fresh))
        states = catalog.get_states([os.fsencode(p) for p in settled + fresh])
        assert not any(states[os.fsencode(p)].needs_verify for p in settled)
        assert all(states[os.fsencode(p)].needs_verify for p in fresh)  # racy: checked later
    finally:
        rec.stop()


def test_a_look_at_a_file_out_waits_for_its_row(
    tmp_path: Path, catalog: Catalog, pool: HashPool
) -> None:
    """A file changed or deleted while it is being made ready elsewhere: the hints for it
    wait, and once its (by then stale) row is in, the look finds what the disk has."""
    held = HeldTasks()
    rec = start(tmp_path, catalog, pool, held)
    try:
        files = files_out(rec, held, tmp_path / "r" / "a")
        made = held.prepare()  # made ready now, written only later
        changed, deleted = files[0], files[1]
        write(changed, "another content, longer", OLD_NS + 10**9)
        deleted.unlink()
        rec.put(Hint(HintKind.CLOSED, os.fsencode(changed)))
        rec.put(Hint(HintKind.CHANGED, os.fsencode(deleted)))
        wait_for(lambda: rec.hints_seen == BURST + 2, 10, "the hints taken")
        assert live(catalog) == {}  # nothing is written for them meanwhile
        held.tasks[0][2].set_result(made)
        settle(rec)
        rows = live(catalog)
        assert rows[str(changed)]["hash"] == hash_file(os.fsencode(changed)).hash
        assert rows[str(changed)]["size"] == len("another content, longer")
        assert str(deleted) not in rows
        assert locations_by_path(catalog, include_missing=True)[str(deleted)]["is_missing"]
        for path in files[2:]:
            assert rows[str(path)]["hash"] == hash_file(os.fsencode(path)).hash
    finally:
        held.fail_the_rest()
        rec.stop()


def test_a_folder_renamed_while_its_files_are_out_takes_them_along(
    tmp_path: Path, catalog: Catalog, pool: HashPool
) -> None:
    """A folder move waits for the files out in it: they go in, then move with it, each
    location keeping its asset; nothing is left at the old paths."""
    held = HeldTasks()
    rec = start(tmp_path, catalog, pool, held)
    try:
        files = files_out(rec, held, tmp_path / "r" / "a")
        made = held.prepare()
        os.rename(tmp_path / "r" / "a", tmp_path / "r" / "b")
        rec.put(
            Hint(
                HintKind.DIR_MOVED,
                os.fsencode(tmp_path / "r" / "a"),
                os.fsencode(tmp_path / "r" / "b"),
            )
        )
        wait_for(lambda: rec.hints_seen == BURST + 1, 10, "the move taken")
        held.tasks[0][2].set_result(made)  # the writer waits for it, then moves the folder
        settle(rec)
        everything = locations_by_path(catalog, include_missing=True)
        moved = [tmp_path / "r" / "b" / p.name for p in files]
        assert sorted(everything) == sorted(map(str, moved))
        assert all(not everything[str(p)]["is_missing"] for p in moved)
        ops = [c["op"] for c in catalog.changes_since(0)]
        assert ops.count("added") == BURST and ops.count("moved") == BURST
        assert len({everything[str(p)]["asset_id"] for p in moved}) == BURST
    finally:
        rec.stop()


def test_files_whose_worker_died_are_made_ready_here(
    tmp_path: Path, catalog: Catalog, pool: HashPool, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that dies with a task: its files are hashed on the writer's side, with a
    warning, and go in all the same."""
    held = HeldTasks()
    rec = start(tmp_path, catalog, pool, held)
    try:
        files = burst(tmp_path / "r" / "a", BURST)
        with caplog.at_level(logging.WARNING, logger="assetd.preparing"):
            closed(rec, files)
            wait_for(lambda: held.tasks, 10, "a task handed out")
            held.tasks[0][2].set_exception(WorkerDied("worker 123 died (SIGKILL)"))
            settle(rec)
        rows = live(catalog)
        assert all(rows[str(p)]["hash"] == hash_file(os.fsencode(p)).hash for p in files)
        assert any("its new files are read here" in r.getMessage() for r in caplog.records)
    finally:
        rec.stop()


def test_stopping_writes_the_files_out_first(
    tmp_path: Path, catalog: Catalog, pool: HashPool
) -> None:
    """A stop while files are out waits for them and writes them: nothing is lost."""
    held = HeldTasks()
    rec = start(tmp_path, catalog, pool, held)
    files = burst(tmp_path / "r" / "a", BURST)
    closed(rec, files)
    wait_for(lambda: held.tasks, 10, "a task handed out")
    stopping = threading.Thread(target=rec.stop)
    stopping.start()
    held.run()
    stopping.join(20)
    assert not stopping.is_alive()
    rows = live(catalog)
    assert sorted(rows) == sorted(map(str, files))


def folder_burst(rec: Reconciler, folder: Path, files: list[Path]) -> None:
    """The hints a watcher gives for a folder created with files in it: the folder's,
    and a close for each file (enough of them for the writer to hand the folder out)."""
    rec.put(Hint(HintKind.DIR_CHANGED, os.fsencode(folder)))
    closed(rec, files)


def files_out(rec: Reconciler, held: HeldTasks, folder: Path) -> list[Path]:
    """New files written, their closes hinted, and the task that makes them ready out."""
    files = burst(folder, BURST)
    closed(rec, files)
    wait_for(lambda: held.tasks, 10, "a task handed out")
    return files


def folder_out(rec: Reconciler, held: HeldTasks, folder: Path) -> list[Path]:
    """A new folder of files, its hints given, and the survey it makes handed out."""
    files = burst(folder, BURST)
    folder_burst(rec, folder, files)
    wait_for(lambda: held.tasks, 10, "the folder handed out")
    return files


def test_a_new_folder_is_surveyed_elsewhere_and_its_files_go_in_once(
    tmp_path: Path, catalog: Catalog, pool: HashPool
) -> None:
    """A burst's new folder is walked in a worker: its complete files go in once each,
    with their hash; one still being written (fresh, not closed) comes back to the
    writer, which registers it and hashes it once it has settled."""
    held = HeldTasks()
    rec = start(tmp_path, catalog, pool, held)
    try:
        folder = tmp_path / "r" / "new"
        files = burst(folder, BURST)
        writing = write(folder / "writing.part", "half of it")  # fresh, and no close
        folder_burst(rec, folder, files)
        wait_for(lambda: held.tasks, 10, "the folder handed out")
        assert held.tasks[0][0] == SURVEY and len(held.tasks) == 1
        assert live(catalog) == {}
        held.run()
        settle(rec)
        rows = live(catalog)
        for path in [*files, writing]:
            assert rows[str(path)]["hash"] == hash_file(os.fsencode(path)).hash
        ops = [(c["op"], c["location"]["path"]) for c in catalog.changes_since(0)]
        assert sorted(p for op, p in ops if op == "added") == sorted(map(str, [*files, writing]))
        assert [p for op, p in ops if op == "hashed"] == [str(writing)]
    finally:
        held.fail_the_rest()
        rec.stop()


def test_a_folder_made_inside_a_folder_out_waits_for_it(
    tmp_path: Path, catalog: Catalog, pool: HashPool
) -> None:
    """While a folder is surveyed elsewhere, a file in it changes, a folder is made in
    it and another renamed: the writer looks at the file itself (the survey saw it
    earlier), and waits for the survey before the two folders; every file ends up
    cataloged as it is on disk, nothing at the paths left, one ``added`` each."""
    held = HeldTasks()
    rec = start(tmp_path, catalog, pool, held)
    try:
        outer = tmp_path / "r" / "outer"
        files = burst(outer, BURST)
        sub = burst(outer / "sub", 3)
        folder_burst(rec, outer, files + sub)
        wait_for(lambda: held.tasks, 10, "the folder handed out")
        made = held.prepare()  # walked now: the changes below come after
        write(files[0], "changed after the walk", OLD_NS + 10**9)
        inner = burst(outer / "inner", 3)
        os.rename(outer / "sub", outer / "renamed")
        renamed = [outer / "renamed" / p.name for p in sub]
        rec.put(Hint(HintKind.CLOSED, os.fsencode(files[0])))
        rec.put(Hint(HintKind.DIR_CHANGED, os.fsencode(outer / "inner")))
        rec.put(
            Hint(HintKind.DIR_MOVED, os.fsencode(outer / "sub"), os.fsencode(outer / "renamed"))
        )
        wait_for(lambda: rec.hints_seen == BURST + 3 + 4, 10, "the hints taken")
        held.tasks[0][2].set_result(made)
        settle(rec)
        everything = locations_by_path(catalog, include_missing=True)
        assert sorted(everything) == sorted(map(str, [*files, *inner, *renamed]))
        for path in [*files, *inner, *renamed]:
            assert everything[str(path)]["hash"] == hash_file(os.fsencode(path)).hash
            assert not everything[str(path)]["is_missing"]
        added = [c["location"]["path"] for c in catalog.changes_since(0) if c["op"] == "added"]
        assert sorted(added) == sorted(map(str, [*files, *inner, *sub]))
    finally:
        held.fail_the_rest()
        rec.stop()


def test_a_folder_with_rows_under_it_is_surveyed_here(
    tmp_path: Path, catalog: Catalog, pool: HashPool
) -> None:
    """A folder whose files the catalog knows (missing now, back again) is no new
    folder: it is surveyed on the writer's side, and its files are restored."""
    held = HeldTasks()
    rec = start(tmp_path, catalog, pool, held)
    try:
        folder = tmp_path / "r" / "back"
        files = folder_out(rec, held, folder)
        held.run()
        settle(rec)
        shutil.move(folder, tmp_path / "away")
        rec.put(Hint(HintKind.DIR_CHANGED, os.fsencode(folder)))
        settle(rec)
        assert live(catalog) == {}
        shutil.move(tmp_path / "away", folder)
        folder_burst(rec, folder, files)
        settle(rec)
        assert len(held.tasks) == 1  # nothing more was handed out
        assert sorted(live(catalog)) == sorted(map(str, files))
        assert [c["op"] for c in catalog.changes_since(0)].count("restored") == BURST
    finally:
        held.fail_the_rest()
        rec.stop()


def test_a_folder_whose_worker_died_is_surveyed_here(
    tmp_path: Path, catalog: Catalog, pool: HashPool
) -> None:
    """A worker that dies surveying a new folder: the folder is surveyed on the writer's
    side, and its files go in all the same."""
    held = HeldTasks()
    rec = start(tmp_path, catalog, pool, held)
    try:
        folder = tmp_path / "r" / "new"
        files = folder_out(rec, held, folder)
        held.tasks[0][2].set_exception(WorkerDied("worker 7 died (SIGKILL)"))
        settle(rec)
        rows = live(catalog)
        assert all(rows[str(p)]["hash"] == hash_file(os.fsencode(p)).hash for p in files)
        assert [c["op"] for c in catalog.changes_since(0)] == ["added"] * BURST
    finally:
        rec.stop()
