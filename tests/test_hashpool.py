"""The hash pool: worker processes give the hashes hash_file gives, and never get lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assetd.decide import CachedState, FileStat
from assetd.exceptions import WorkerDied
from assetd.hashing import hash_file
from assetd.hashpool import MAP_ELSEWHERE, HashPool
from assetd.procs import Processes
from tests.conftest import OLD_NS, REPO, wait_for, write


def states_of(paths: list[Path]) -> list[CachedState]:
    out = []
    for i, path in enumerate(paths):
        try:
            st = FileStat.from_os(os.lstat(path))
        except FileNotFoundError:
            st = FileStat(1, 0, 0, 0, 0)
        out.append(CachedState(i + 1, os.fsencode(path), "r", i + 1, st, True, False))
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: it only waits to be reaped.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[-1][0] != "Z"


@pytest.fixture
def pool() -> Iterator[HashPool]:
    p = HashPool(processes=1, process_min=8)
    yield p
    p.close()


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return [write(tmp_path / f"f{i:03}", os.urandom(i * 37), OLD_NS) for i in range(40)]


def test_many_small_files_are_hashed_in_a_worker_process(pool: HashPool, files: list[Path]) -> None:
    """A batch of many small files goes to a worker process, with hash_file's results."""
    outcomes = pool.run(states_of(files))
    assert pool.worker_pids(), "no worker process was started"
    got = {o.state.path: o.result for o in outcomes}
    for path in files:
        assert got[os.fsencode(path)] == hash_file(os.fsencode(path))


def test_few_files_stay_in_this_process(files: list[Path]) -> None:
    """Below the threshold no process is started: a round trip would only add latency."""
    p = HashPool(processes=1, process_min=100)
    try:
        outcomes = p.run(states_of(files[:5]))
        assert p.worker_pids() == []
        assert all(o.result is not None for o in outcomes)
        assert p.offloads(states_of(files[:5]))  # so few that the GIL hardly notices
    finally:
        p.close()


def test_bad_files_in_a_worker_are_reported_as_in_this_process(
    pool: HashPool, files: list[Path], tmp_path: Path
) -> None:
    """A vanished file, a FIFO and a symlink come back as gone, not as a worker failure."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(files[0])
    vanished = tmp_path / "vanished"
    outcomes = pool.run(states_of([*files, fifo, link, vanished]))
    by_path = {o.state.path: o for o in outcomes}
    assert pool.worker_pids()
    for bad in (fifo, link, vanished):
        assert by_path[os.fsencode(bad)].gone
    assert all(by_path[os.fsencode(f)].result is not None for f in files)


def test_a_killed_worker_loses_no_file(pool: HashPool, files: list[Path]) -> None:
    """When a worker dies, its files are hashed here, and the next batch gets a new one."""
    pool.run(states_of(files))
    (first,) = pool.worker_pids()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="the worker to die")
    outcomes = pool.run(states_of(files))
    assert all(o.result is not None for o in outcomes)
    assert len(outcomes) == len(files)
    outcomes = pool.run(states_of(files))
    assert all(o.result is not None for o in outcomes)
    (second,) = pool.worker_pids()
    assert second != first


def test_close_ends_every_worker(files: list[Path]) -> None:
    """After close no worker process is left, and nothing more is sent to one."""
    p = HashPool(processes=2, process_min=8)
    p.run(states_of(files))
    pids = p.worker_pids()
    assert pids
    p.close()
    for pid in pids:
        assert not alive(pid)
    assert p.worker_pids() == []


def test_workers_end_when_their_parent_is_killed(files: list[Path]) -> None:
    """A parent killed with SIGKILL leaves no worker behind: each sees its stdin close."""
    script = (
        "import os, sys\n"
        "from assetd.hashpool import HashPool\n"
        "from tests.test_hashpool import states_of\n"
        "from pathlib import Path\n"
        "pool = HashPool(processes=1, process_min=8)\n"
        "pool.run(states_of([Path(p) for p in sys.argv[1:]]))\n"
        "print(*pool.worker_pids(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, files)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None and parent.stdin is not None
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert workers
    parent.kill()
    parent.wait()
    parent.stdin.close()
    parent.stdout.close()
    for pid in workers:
        wait_for(lambda pid=pid: not alive(pid), what=f"worker {pid} to exit")


def test_warmed_workers_start_before_their_first_task_with_the_walk_imported() -> None:
    """A pass over a large catalog starts its workers early, importing the walk's code,
    and the first task goes to that same process."""
    import subprocess as sp

    pool = HashPool(processes=1)
    try:
        pool.warm_for_walks()
        (pid,) = pool.worker_pids()
        argv = sp.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
        assert "--preload=assetd.survey" in argv.stdout
        procs = pool.workers()
        assert procs is not None
        assert procs.call("assetd.drivers:kept_out") is False
        assert pool.worker_pids() == [pid]
    finally:
        pool.close()
    assert pool.worker_pids() == []


def test_a_walks_warm_starts_one_worker_per_core_but_this_processs_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This process walks its share of a restart too: the workers warmed for the walk
    make one walker per core with it (at least one worker), the others start only if
    other work needs them."""
    for cores, count, helpers in [(2, 2, 1), (4, 4, 3), (8, 2, 2), (1, 1, 1), (None, 2, 1)]:
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        pool = HashPool(processes=count)
        try:
            procs = pool.workers()
            assert procs is not None
            assert procs.helpers() == helpers, (cores, count)
        finally:
            pool.close()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    pool = HashPool(processes=2)
    try:
        pool.warm_for_walks()
        assert len(pool.worker_pids()) == 1
    finally:
        pool.close()


def test_a_worker_told_to_end_runs_its_exit_calls_first(tmp_path: Path) -> None:
    """A worker ends without the interpreter's teardown, but what its tasks asked to
    be done at its exit (a catalog's connection closed) is done before it ends."""
    marker = tmp_path / "closed"
    procs = Processes(1)
    procs.call("assetd.procs:at_exit", marker.touch)
    (pid,) = procs.pids()
    assert not marker.exists()
    procs.close()
    assert not alive(pid)
    assert marker.exists()


def test_a_worker_back_from_its_task_is_taken_before_a_slot_not_started() -> None:
    """With one of two workers started, tasks one after another all go to that one: a
    second process would cost its start for nothing."""
    procs = Processes(2)
    try:
        procs.warm(1)
        (pid,) = procs.pids()
        for _ in range(4):
            assert procs.call("assetd.drivers:kept_out") is False
        assert procs.pids() == [pid]
    finally:
        procs.close()


def test_a_few_small_files_are_not_kept_waiting_behind_large_ones(tmp_path: Path) -> None:
    """``hash_paths`` (what the writer waits for) has a thread of its own: with every
    large-file thread busy, a small file is still hashed at once."""
    import threading

    release = threading.Event()
    pool = HashPool(threads=2)
    try:
        busy = [pool._threads.submit(release.wait, 30) for _ in range(2)]
        small = tmp_path / "small.txt"
        small.write_bytes(b"small")
        done = threading.Event()
        found: dict[bytes, object] = {}

        def ask() -> None:
            found.update(pool.hash_paths([os.fsencode(small)]))
            done.set()

        asker = threading.Thread(target=ask)
        asker.start()
        assert done.wait(10), "hash_paths waited for the busy large-file threads"
        asker.join()
        assert os.fsencode(small) in found
    finally:
        release.set()
        for future in busy:
            future.result()
        pool.close()


class _Recorder:
    """Wraps a pool's own ``_one`` (this process's hashing) to record what it hashed."""

    def __init__(self, pool: HashPool) -> None:
        self.paths: list[bytes] = []
        self._one = pool._one
        pool._one = self  # type: ignore[method-assign]

    def __call__(self, state: CachedState, among_others: bool = False) -> Any:
        self.paths.append(state.path)
        return self._one(state, among_others)


@pytest.fixture
def started() -> Iterator[HashPool]:
    """A pool with its one worker process started."""
    pool = HashPool(processes=1)
    procs = pool.workers()
    assert procs is not None
    procs.warm()
    yield pool
    pool.close()


@pytest.fixture
def fresh_large(tmp_path: Path) -> Path:
    """A file of 9 MiB written just now (its mtime is the present)."""
    return write(tmp_path / "model.safetensors", os.urandom(MAP_ELSEWHERE + (1 << 20)))


def test_a_large_file_modified_just_now_is_hashed_in_a_started_worker(
    started: HashPool, fresh_large: Path
) -> None:
    """Mapping a file that may still be truncated is safe only in a worker (a SIGBUS
    ends the worker, not the daemon): with one started, the file is hashed there, to
    the hash this process would give."""
    here = _Recorder(started)
    (outcome,) = started.run(states_of([fresh_large]))
    assert here.paths == []
    assert outcome.result == hash_file(os.fsencode(fresh_large))


def test_with_no_worker_started_it_is_read_here_and_workers_start(fresh_large: Path) -> None:
    """A file just closed does not wait for a worker's start: it is read in this process,
    and the workers start in the background for the next one."""
    pool = HashPool(processes=1)
    try:
        here = _Recorder(pool)
        (outcome,) = pool.run(states_of([fresh_large]))
        assert here.paths == [os.fsencode(fresh_large)]
        assert outcome.result == hash_file(os.fsencode(fresh_large))
        wait_for(lambda: pool.worker_pids() != [], what="a worker started in the background")
    finally:
        pool.close()


def test_settled_and_medium_files_stay_here(started: HashPool, tmp_path: Path) -> None:
    """A settled large file is mapped in this process (it is safe), and a file just
    modified below MAP_ELSEWHERE is read here (a round trip costs more than the copy)."""
    settled = write(tmp_path / "old.bin", os.urandom(MAP_ELSEWHERE + 1), OLD_NS)
    medium = write(tmp_path / "new.bin", os.urandom(MAP_ELSEWHERE - 1))
    here = _Recorder(started)
    outcomes = started.run(states_of([settled, medium]))
    assert sorted(here.paths) == sorted([os.fsencode(settled), os.fsencode(medium)])
    assert all(o.result is not None for o in outcomes)


def test_a_worker_that_dies_on_a_file_just_modified_loses_it_not(
    fresh_large: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker ends (as it would on a SIGBUS from a truncation under its mapping):
    the file is read here and a warning says so."""

    class Dying:
        def call(self, function: str, *args: Any, wait: bool = True) -> Any:
            raise WorkerDied("exit status -7")

    pool = HashPool(processes=1)
    try:
        pool._procs = Dying()  # type: ignore[assignment]
        here = _Recorder(pool)
        (outcome,) = pool.run(states_of([fresh_large]))
        assert here.paths == [os.fsencode(fresh_large)]
        assert outcome.result == hash_file(os.fsencode(fresh_large))
        assert "the file is read here" in caplog.text
    finally:
        pool._procs = None
        pool.close()


def test_large_files_hashed_together_keep_to_one_core_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BLAKE3 spreads a large file over every core when it is hashed alone; files of a
    model folder, hashed two at a time, each keep to one."""
    import assetd.hashing

    seen: dict[int, bool] = {}
    digest = assetd.hashing._digest

    def recording(fd: int, size: int, **how: bool) -> str:
        seen[size] = how.get("among_others", False)
        return digest(fd, size, **how)

    monkeypatch.setattr(assetd.hashing, "_digest", recording)
    sizes = [2 << 20, 3 << 20, 4 << 20]
    paths = [write(tmp_path / f"m{i}", os.urandom(n), OLD_NS) for i, n in enumerate(sizes)]
    pool = HashPool(processes=0)
    try:
        together = pool.run(states_of(paths))
        assert seen == dict.fromkeys(sizes, True)
        seen.clear()
        (alone,) = pool.run(states_of(paths[:1]))
        assert seen == {sizes[0]: False}
    finally:
        pool.close()
    assert all(o.result is not None for o in [*together, alone])
    assert alone.result is not None and alone.result.hash == hash_file(os.fsencode(paths[0])).hash
