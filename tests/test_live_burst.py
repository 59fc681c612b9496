"""A burst of new files in the live path: made ready in worker processes, inserted once.

Real files, a real catalog (SQLite, and PostgreSQL where it runs). The first test uses
real worker processes; the others hold the workers' tasks at their seam (the real
``prepare`` runs when the test lets it), so that what happens while files are out is
not left to timing.
"""

from __future__ import annotations

import logging
import os
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
from assetd.prepare import Prepared, prepare_elsewhere
from assetd.reconciler import Reconciler
from tests.conftest import OLD_NS, wait_for, write
from tests.harness import locations_by_path

BURST = 40  # new files in a batch from which they are made ready elsewhere (these tests)


class HeldTasks:
    """The worker processes' seam: each task waits for the test, then runs the real
    ``prepare`` here, on its own connection to the catalog, as a worker would."""

    def __init__(self) -> None:
        self.tasks: list[tuple[tuple[Any, ...], Future[Prepared]]] = []

    def submit(self, function: str, *args: Any) -> Future[Prepared]:
        assert function == "assetd.prepare:prepare_elsewhere"
        future: Future[Prepared] = Future()
        self.tasks.append((args, future))
        return future

    def prepare(self, index: int = 0) -> Prepared:
        return prepare_elsewhere(*self.tasks[index][0])


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
        files = burst(tmp_path / "r" / "a", BURST)
        closed(rec, files)
        wait_for(lambda: held.tasks, 10, "a task handed out")
        made = held.prepare()  # made ready now, written only later
        changed, deleted = files[0], files[1]
        write(changed, "another content, longer", OLD_NS + 10**9)
        deleted.unlink()
        rec.put(Hint(HintKind.CLOSED, os.fsencode(changed)))
        rec.put(Hint(HintKind.CHANGED, os.fsencode(deleted)))
        wait_for(lambda: rec.hints_seen == BURST + 2, 10, "the hints taken")
        assert live(catalog) == {}  # nothing is written for them meanwhile
        held.tasks[0][1].set_result(made)
        settle(rec)
        rows = live(catalog)
        assert rows[str(changed)]["hash"] == hash_file(os.fsencode(changed)).hash
        assert rows[str(changed)]["size"] == len("another content, longer")
        assert str(deleted) not in rows
        assert locations_by_path(catalog, include_missing=True)[str(deleted)]["is_missing"]
        for path in files[2:]:
            assert rows[str(path)]["hash"] == hash_file(os.fsencode(path)).hash
    finally:
        for _, future in held.tasks:
            if not future.done():
                future.set_exception(WorkerDied("test over"))
        rec.stop()


def test_a_folder_renamed_while_its_files_are_out_takes_them_along(
    tmp_path: Path, catalog: Catalog, pool: HashPool
) -> None:
    """A folder move waits for the files out in it: they go in, then move with it, each
    location keeping its asset; nothing is left at the old paths."""
    held = HeldTasks()
    rec = start(tmp_path, catalog, pool, held)
    try:
        files = burst(tmp_path / "r" / "a", BURST)
        closed(rec, files)
        wait_for(lambda: held.tasks, 10, "a task handed out")
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
        held.tasks[0][1].set_result(made)  # the writer waits for it, then moves the folder
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
            held.tasks[0][1].set_exception(WorkerDied("worker 123 died (SIGKILL)"))
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
    held.tasks[0][1].set_result(held.prepare())
    stopping.join(20)
    assert not stopping.is_alive()
    rows = live(catalog)
    assert sorted(rows) == sorted(map(str, files))
