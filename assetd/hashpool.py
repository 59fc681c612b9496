"""Where files get hashed: many small ones in worker processes, large ones in threads.

Hashing a small file is mostly system calls and Python, which hold the GIL; in a thread
it would fight the catalog writer for it (every SQLite step gives the GIL up and must
win it back), and both would run slower than one alone. So a batch of many small files
goes to worker processes, which use the other cores without touching the writer's GIL.
Large files spend their time in reads and in BLAKE3, which let go of the GIL: they hash
in threads, where a 1 GiB file needs no process start and BLAKE3 spreads it over every
core. A few small files (a file just closed) hash in a thread too: a round trip to a
process would only add latency.

The worker processes (:mod:`assetd.procs`) are started on first need and kept. When a
worker dies (killed, or a SIGBUS from a file truncated under its mapping), its task is
hashed again here and the next task starts a fresh worker.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from assetd.decide import CachedState, FileStat
from assetd.exceptions import TaskError, WorkerDied, WorkersBusy
from assetd.hashing import (
    LARGE_FILE,
    RACY_WINDOW_NS,
    HashOutcome,
    HashResult,
    hash_file,
    hash_one,
    hash_path,
)
from assetd.procs import Processes, default_count

__all__ = ["HASH_HERE_MAX", "PROCESS_MIN", "HashPool"]

log = logging.getLogger(__name__)

PROCESS_MIN = 256  # small files in one batch before worker processes pay for themselves
TASK_FILES = 250  # small files per task sent to a worker
HASH_HERE_MAX = 32  # small files that may as well be hashed in this process
MAP_ELSEWHERE = 8 << 20  # a file just modified, from this size, is mapped in a worker
WALK_MODULE = "assetd.survey"  # where a worker's walk of a span (index_span) lives


class HashPool:
    """Hashes the files of cache states; thread-safe, and closed with :meth:`close`."""

    def __init__(
        self,
        *,
        follow_symlinks: bool = False,
        hasher: Callable[..., HashResult] = hash_file,
        threads: int = 2,
        processes: int | None = None,
        process_min: int = PROCESS_MIN,
    ) -> None:
        self.follow_symlinks = follow_symlinks
        self.hasher = hasher
        # Beside other files, a large file keeps to one core (hashing.SPREAD_LIMIT); an
        # injected hasher (a test's seam) is used as it is.
        self._beside_others = (
            functools.partial(hash_file, among_others=True) if hasher is hash_file else hasher
        )
        self.processes = default_count() if processes is None else processes
        self.process_min = process_min
        # Two kinds of thread: those running submitted batches, which wait on the others,
        # those hashing large files; one kind waiting on itself could deadlock.
        self._batches = ThreadPoolExecutor(threads, thread_name_prefix="assetd-hash-batch")
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="assetd-hash")
        # The few small files a caller waits for (the writer's, just closed) have a thread
        # of their own: behind a large file in the others they would stall the writer.
        self._now = ThreadPoolExecutor(1, thread_name_prefix="assetd-hash-now")
        self._lock = threading.Lock()
        self._procs: Processes | None = None
        self._closed = False

    def offloads(self, states: Sequence[CachedState]) -> bool:
        """Whether hashing these takes little of this process's GIL: each small file is
        hashed in a worker process, or there are only a few of them."""
        small = sum(1 for s in states if s.stat.size < LARGE_FILE)
        return small < HASH_HERE_MAX or self._to_processes(small)

    def submit(self, states: Sequence[CachedState]) -> Future[list[HashOutcome]]:
        """Hash in the background; the future never raises for a bad file."""
        return self._batches.submit(self.run, list(states))

    def run(self, states: Sequence[CachedState]) -> list[HashOutcome]:
        """Hash now and return one outcome per state (in no particular order)."""
        small = [s for s in states if s.stat.size < LARGE_FILE]
        large = [s for s in states if s.stat.size >= LARGE_FILE]
        among_others = len(large) > 1
        futures = [self._threads.submit(self._large, s, among_others) for s in large]
        outcomes = self._small(small)
        return outcomes + [future.result() for future in futures]

    def hash_paths(self, paths: Sequence[bytes]) -> dict[bytes, HashOutcome]:
        """Hash files by path alone (their locations may not exist yet), in this pool's
        threads, and wait: for a few small files whose hashes are wanted at once."""
        if not paths:
            return {}
        outcomes = self._now.map(
            lambda path: hash_path(path, follow_symlinks=self.follow_symlinks), paths
        )
        return dict(zip(paths, outcomes, strict=True))

    def worker_pids(self) -> list[int]:
        """The worker processes alive now (none until a batch needed them)."""
        with self._lock:
            procs = self._procs
        return procs.pids() if procs is not None else []

    def workers(self, preload: tuple[str, ...] = ()) -> Processes | None:
        """The worker processes, for other work that should keep off this GIL (None when
        this pool has none, or is closed); ``preload`` applies if they are made now."""
        with self._lock:
            if self._closed or self.processes < 1:
                return None
            if self._procs is None:
                self._procs = Processes(self.processes, preload)
            return self._procs

    def warm_for_walks(self) -> None:
        """Start the workers a restart's walk uses now, importing what it needs, so that
        they are ready when the pass hands them their span (a worker's start is not
        free); the others start if other work needs them."""
        procs = self.workers(preload=(WALK_MODULE,))
        if procs is not None:
            procs.warm(procs.helpers())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            procs, self._procs = self._procs, None
        self._batches.shutdown(wait=True, cancel_futures=True)
        if procs is not None:
            procs.close()
        self._threads.shutdown(wait=True, cancel_futures=True)
        self._now.shutdown(wait=True, cancel_futures=True)

    # -- the two ways ---------------------------------------------------------------

    def _one(self, state: CachedState, among_others: bool = False) -> HashOutcome:
        hasher = self._beside_others if among_others else self.hasher
        return hash_one(state, follow_symlinks=self.follow_symlinks, hasher=hasher)

    def _large(self, state: CachedState, among_others: bool = False) -> HashOutcome:
        # A file modified moments ago is read here, not mapped: truncated under a mapping
        # it would kill this process with SIGBUS. A worker may map it (read here, piece
        # by piece, its hashing takes the GIL back after every piece, behind this
        # process's other threads): there the worst a truncation does is end the worker,
        # and the file is then read here after all.
        recent = state.stat.mtime_ns > time.time_ns() - RACY_WINDOW_NS
        elsewhere = recent and state.stat.size >= MAP_ELSEWHERE and self._offloadable()
        procs = self.workers() if elsewhere else None
        if procs is not None:
            args = ([state.path], self.follow_symlinks, True)
            try:
                (result,) = procs.call("assetd.hashpool:hash_paths", *args, wait=False)
                return _outcome(state, result)
            except WorkersBusy:
                pass  # behind a walk it would wait longer than reading it here takes
            except (WorkerDied, TaskError) as exc:
                log.warning("a hashing worker process failed (%s); the file is read here", exc)
        return self._one(state, among_others)

    def _small(self, states: list[CachedState]) -> list[HashOutcome]:
        procs = self.workers() if self._to_processes(len(states)) else None
        if procs is None:
            return [self._one(s) for s in states]
        tasks = [states[i : i + TASK_FILES] for i in range(0, len(states), TASK_FILES)]
        futures = [
            procs.submit("assetd.hashpool:hash_paths", [s.path for s in task], self.follow_symlinks)
            for task in tasks
        ]
        outcomes: list[HashOutcome] = []
        for task, future in zip(tasks, futures, strict=True):
            try:
                results = future.result()
            except (WorkerDied, TaskError) as exc:
                log.warning("a hashing worker process failed (%s); its files are hashed here", exc)
                outcomes += [self._one(s) for s in task]
                continue
            outcomes += [_outcome(s, r) for s, r in zip(task, results, strict=True)]
        return outcomes

    def _to_processes(self, small: int) -> bool:
        return small >= self.process_min and self._offloadable()

    def _offloadable(self) -> bool:
        # An injected hasher (a test's seam) cannot cross into a process.
        return self.processes > 0 and self.hasher is hash_file and not self._closed


# -- in the worker process ----------------------------------------------------------

# What a worker returns for one path, compact to cross the pipe:
# ("ok", hash, stat fields, racy, generation) | ("gone",) | ("error", message)
_Result = tuple[object, ...]


def hash_paths(paths: list[bytes], follow_symlinks: bool, mapped: bool = False) -> list[_Result]:
    """Hash each path, as :func:`hash_one` would; runs in a worker process. ``mapped``:
    map large files even if just modified (see :meth:`HashPool._large`)."""
    hasher = functools.partial(hash_file, map_unsettled=True) if mapped else None
    out: list[_Result] = []
    for path in paths:
        outcome = hash_path(path, follow_symlinks=follow_symlinks, hasher=hasher)
        if outcome.result is not None:
            r = outcome.result
            out.append(("ok", r.hash, tuple(r.stat), r.racy, r.generation))
        elif outcome.gone:
            out.append(("gone",))
        else:
            out.append(("error", outcome.error))
    return out


def _outcome(state: CachedState, result: _Result) -> HashOutcome:
    if result[0] == "ok":
        _, digest, stat, racy, made = result
        assert isinstance(digest, str) and isinstance(stat, tuple)
        made = made if isinstance(made, str) else None
        return HashOutcome(state, HashResult(digest, FileStat(*stat), bool(racy), made))
    if result[0] == "gone":
        return HashOutcome(state, gone=True)
    return HashOutcome(state, error=str(result[1]))
