"""The single writer: takes hints, looks again at the disk, and writes what it finds.

Hints never say what changed, only where to look. The reconciler coalesces them by
path, re-stats, decides with :func:`assetd.decide.decide`, pairs files seen at new
paths with the locations they left (:func:`assetd.apply.find_moves`), writes a batch in
one short transaction, and hands hashing to a small pool whose results come back
through the same queue. A burst's new files are made ready in worker processes
instead, and come back to be inserted with their hash (:mod:`assetd.preparing`). Files
still being written are reported at most once every
``report_every_s`` and hashed once complete: closed after writing, renamed into place,
or with size and mtime still for ``settle_s``. A file that vanished is marked missing
only after ``move_window_s``, in case it turns up at another path meanwhile.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from assetd.apply import (
    Observation,
    Tally,
    apply_hashes,
    apply_observations,
    apply_ready,
    awaiting_hash,
    find_moves,
    observe,
    regular_stat,
)
from assetd.backoff import Backoff
from assetd.catalog import Catalog
from assetd.catalog.sql import CHUNK, chunks
from assetd.config import RootConfig
from assetd.decide import CachedState, FileStat, Outcome
from assetd.exceptions import CatalogUnavailableError
from assetd.hashing import LARGE_FILE, HashOutcome
from assetd.hashpool import HASH_HERE_MAX, HashPool
from assetd.hints import Hint, HintKind
from assetd.holds import MOVE_WINDOW_S, REPORT_EVERY_S, Holds
from assetd.plan import Plan, RootIndex, plan
from assetd.prepare import elsewhere
from assetd.preparing import Preparing, Task
from assetd.procs import Processes
from assetd.survey import survey

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)

MAX_BATCH = 2000  # hints taken from the queue per transaction
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 5.0  # waiting for a catalog that cannot be written


@dataclass(frozen=True, slots=True)
class _Work:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any]


@dataclass(frozen=True, slots=True)
class _Hashed:
    outcomes: list[HashOutcome]


@dataclass(frozen=True, slots=True)
class _Made:
    task: Task  # new files made ready elsewhere, back to be inserted


_STOP = object()


class Reconciler:
    """Owns the writer thread. ``put`` never blocks; ``call`` runs work on the writer."""

    def __init__(
        self,
        catalog: Catalog,
        roots: Sequence[RootConfig],
        *,
        follow_symlinks: bool = False,
        hash_pool: HashPool | None = None,
        settle_s: float = 1.0,
        move_window_s: float = MOVE_WINDOW_S,
        report_every_s: float = REPORT_EVERY_S,
        queue_size: int = 100_000,
        on_overflow: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.follow_symlinks = follow_symlinks
        self.settle_s = settle_s
        self.on_overflow = on_overflow or (lambda: None)
        self.clock = clock
        self.tally = Tally()
        self.hints_seen = 0
        self.overflows = 0
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._own_pool = hash_pool is None
        self._pool = hash_pool or HashPool(follow_symlinks=follow_symlinks)
        self._settling: dict[bytes, tuple[FileStat, float]] = {}
        self._holds = Holds(move_window_s=move_window_s, report_every_s=report_every_s)
        self._hashing = 0  # batches handed to the pool whose results are not written yet
        self._preparing = Preparing(catalog, follow_symlinks)
        self._own: list[Any] = []  # results the writer thread queued for itself
        self._thread = threading.Thread(target=self._run, name="assetd-reconciler", daemon=True)
        self._overflowed = threading.Event()
        self._stopping = threading.Event()
        self.catalog_error: str | None = None  # while writes fail: why (for the status)
        self.set_roots(roots)

    def set_roots(self, roots: Sequence[RootConfig]) -> None:
        """Replace the roots (on a configuration reload); takes effect with the next batch."""
        self._roots = RootIndex(roots)

    # -- the outside ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, commit, and end the thread."""
        if self._thread.is_alive():
            self._stopping.set()
            self._queue.put(_STOP)
            self._thread.join(timeout)
        if self._own_pool:
            self._pool.close()

    def put(self, hint: Hint) -> bool:
        """Queue a hint without blocking; a full queue means events were lost: rescan."""
        try:
            self._queue.put_nowait(hint)
            return True
        except queue.Full:
            if not self._overflowed.is_set():
                self._overflowed.set()
                self.overflows += 1
                log.warning("reconciler queue full (%d hints): rescanning", self._queue.maxsize)
                self.on_overflow()
            return False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue ``fn(*args)`` for the writer thread; the future has its result."""
        future: Future[Any] = Future()
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            Reconciler._do_work(_Work(fn, args, future))
        else:
            self._queue.put(_Work(fn, args, future))
        return future

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the writer thread and return its result (or raise its error)."""
        return self.submit(fn, *args).result()

    def idle(self) -> bool:
        """Nothing queued, settling or being hashed (for tests and shutdown)."""
        return (
            self._queue.unfinished_tasks == 0
            and not self._settling
            and self._holds.empty()
            and not self._hashing
            and not self._preparing
            and not self._own
        )

    # -- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            items, self._own = self._own, []
            item = self._next(wait=not items)
            queued = [item] if item is not None else []
            while len(queued) < MAX_BATCH:
                try:
                    queued.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if len(queued) < MAX_BATCH:
                self._overflowed.clear()
            try:
                stop = self._process_until_written(items + queued)
            finally:
                for _ in queued:
                    self._queue.task_done()
            if stop:
                return

    def _post(self, item: Any) -> None:
        """Queue a result for the writer thread. From that thread itself (a future that
        was done before its callback was added), never wait on the bounded queue that
        only it empties."""
        if threading.current_thread() is self._thread:
            self._own.append(item)
        else:
            self._queue.put(item)

    def _process_until_written(self, items: list[Any]) -> bool:
        """Process a batch; while the catalog cannot be written, wait and try again.

        Hints only say where to look, so a failed batch is retried as the hints for the
        same paths (a hash that could not be written becomes a look-and-hash again).
        Commands already answered with their error are not run again. A stop request
        ends the waiting: what is left is caught up by the startup scan.
        """
        backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
        while True:
            try:
                stop = self._process(items)
            except CatalogUnavailableError as exc:
                if _STOP in items or self._stopping.is_set():
                    log.error("stopping with a batch unwritten (%s); the next start rescans", exc)
                    return True
                items = self._retry_items(items)
                self.catalog_error = str(exc)
                delay = backoff.delay()
                log.warning("%s; retrying in %.1f s", exc, delay)
                self._stopping.wait(delay)
                continue
            except Exception:
                log.exception("reconciler batch failed; its paths are looked at again on rescan")
                self._hashing -= sum(isinstance(item, _Hashed) for item in items)
                self._preparing.release(i.task for i in items if isinstance(i, _Made))
                return False
            self._hashing -= sum(isinstance(item, _Hashed) for item in items)
            if self.catalog_error is not None:
                log.warning("the catalog is writable again")
                self.catalog_error = None
            return stop

    def _retry_items(self, items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if isinstance(item, Hint):
                out.append(item)
            elif isinstance(item, _Hashed):
                self._hashing -= 1
                out += [Hint(HintKind.CLOSED, o.state.path) for o in item.outcomes]
            elif isinstance(item, _Made):
                out += self._preparing.given_up([item.task])
            elif isinstance(item, _Work) and not item.future.done():
                out.append(item)
        return out

    def _next(self, wait: bool = True) -> Any:
        """The next queue item, waking up in time for the earliest settling file."""
        dues = [due for _, due in self._settling.values()]
        held = self._holds.next_due()
        dues += [held] if held is not None else []
        timeout = max(0.0, min(dues) - self.clock()) if dues else None
        try:
            return self._queue.get(timeout=timeout) if wait else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _process(self, items: list[Any]) -> bool:
        hints: list[Hint] = []
        hashed: list[HashOutcome] = []  # results of many pool batches
        made: list[Task] = []
        stop = False
        for item in items:
            if isinstance(item, Hint):
                hints.append(item)
            elif isinstance(item, _Hashed):
                hashed.extend(item.outcomes)
            elif isinstance(item, _Made):
                made.append(item.task)
            else:
                # A command runs in a transaction of its own: its caller is told the
                # result, which must not be rolled back with somebody else's batch.
                self._write(hints, hashed, made)
                hints, hashed, made = [], [], []
                if item is _STOP:
                    self._write_made(self._preparing.everything())
                    self._look_again(self._holds.take_due())  # no one will wait for them
                    stop = True
                elif isinstance(item, _Work):
                    self._do_work(item)
        self._write(hints, hashed, made)
        if not stop:
            self._check_settled()
            self._look_again(self._holds.take_due(self.clock()))
        return stop

    def _write(
        self, hints: list[Hint], hashed: list[HashOutcome], made: Sequence[Task] = ()
    ) -> None:
        """Reconcile hints, and write what hashing found and new files made ready.

        Folder renames are written first (the looks that follow must see them). Then,
        outside any transaction, the walks and stats, and the hashes of a few small
        files that are complete now; their observations and those hashes commit
        together, so a file just closed costs one transaction and one change. Many new
        complete files, and new folders, are handed out to be made ready instead
        (:mod:`assetd.preparing`). Every transaction holds at most a batch of files: a
        burst's thousands of results would otherwise sit in memory, rendered, until one
        huge commit.
        """
        self._write_made(made)
        if not hints and not hashed:
            return
        self.hints_seen += len(hints)
        todo = plan(hints, self._roots)
        touched = [*todo.trees, *(src for src, _, _ in todo.tree_moves)]
        if self._preparing.holding(touched):
            self._write_made(self._preparing.everything())
        if todo.tree_moves:
            self._move(todo)
        # Many hints at once: the writer is behind, and hands out the new folders too.
        procs = self._workers()
        behind = procs if len(hints) >= self._pool.process_min else None
        looked = self._preparing.hold_back(self._observe(todo, behind), todo.complete)
        seen = find_moves(self.catalog, looked, self.follow_symlinks)
        fresh = time.time_ns() - int(self.settle_s * 1e9)
        observations = self._holds.sort(seen, todo.complete, self.clock(), fresh)
        ready = self._ready(seen, todo.complete)  # (after: it drops the looks it makes moot)
        if procs is not None and (
            sent := self._preparing.send(procs, self._roots.named, observations, ready, self._made)
        ):
            observations = [o for o in observations if o.path not in sent]
            ready = [p for p in ready if p not in sent]
        now = ready if len(ready) < HASH_HERE_MAX and _all_small(seen, ready) else []
        # A few small files complete now: the pool hashes them while this thread waits,
        # so that each goes in with its hash, in one transaction with the others.
        found = self._pool.hash_paths(now)
        batches = list(chunks(observations, CHUNK))
        # Observed on this thread, which every write goes through: they are current.
        for batch in batches[:-1]:
            apply_observations(self.catalog, batch, self.tally, check=False)
        if batches or found:
            with self.catalog.write():
                if batches:
                    apply_observations(
                        self.catalog, batches[-1], self.tally, check=False, hashes=found
                    )
                if found:
                    # The new ones went in with their hash (a racy one still waits for a
                    # verify, by the next look): the others' rows take it now.
                    last = batches[-1] if batches else []
                    new = {o.path for o in last if o.decision.outcome is Outcome.NEW}
                    stale = awaiting_hash(self.catalog, [p for p in found if p not in new])
                    outcomes = [found[s.path].for_state(s) for s in stale]
                    apply_hashes(self.catalog, outcomes, self.tally)
        for batch in chunks(hashed, CHUNK):
            apply_hashes(self.catalog, batch, self.tally)
        self._submit([path for path in ready if path not in found])

    def _workers(self) -> Processes | None:
        return elsewhere(self._pool, self.catalog, self._pool.hasher)

    def _made(self, task: Task) -> None:
        self._post(_Made(task))

    def _write_made(self, tasks: Sequence[Task]) -> None:
        """Insert the new files these tasks made ready, many to a transaction; then look
        at the paths that waited for them, and hash those that went in without a hash."""
        if not tasks:
            return
        made = self._preparing.results(tasks, self._pool.hasher)
        for root, path, message in made.problems:
            _warn(root, path, message)
        for batch in chunks(made.ready, CHUNK):
            apply_ready(self.catalog, batch, self.tally, follow_symlinks=self.follow_symlinks)
        self._holds.reported([f.path for f in made.ready], self.clock())
        again = self._preparing.release(tasks) + made.again
        self._submit([f.path for f in made.ready if f.hash is None])
        if again:
            self._write(again, [])

    @staticmethod
    def _do_work(work: _Work) -> None:
        if not work.future.set_running_or_notify_cancel():
            return
        try:
            work.future.set_result(work.fn(*work.args))
        except BaseException as exc:
            work.future.set_exception(exc)

    # -- reconciling a batch --------------------------------------------------------

    def _move(self, todo: Plan) -> None:
        with self.catalog.write():
            for src, dst, dst_root in todo.tree_moves:
                # A renamed folder moves all its locations in one transaction, tags and all.
                src_prefix, dst_prefix = src + b"/", dst + b"/"
                paths = self.catalog.locations.live_paths_under(src_prefix)
                self.catalog.move_locations(
                    [(p, dst_prefix + p[len(src_prefix) :], dst_root) for p in paths]
                )

    def _look_again(self, paths: list[bytes]) -> None:
        """Look at held paths again, now that their time is due, and write what is found."""
        if not paths:
            return
        try:
            self._write([Hint(HintKind.CHANGED, p) for p in paths], [])
        except BaseException:
            self._holds.put_back(self.clock())
            raise
        self._holds.done()

    def _observe(self, todo: Plan, procs: Processes | None = None) -> list[Observation]:
        """Survey the folders and stat the paths the plan names, against the catalog.
        With ``procs``, a folder the catalog has nothing under (new, not renamed in) is
        surveyed there instead, and its files come back ready (:mod:`assetd.preparing`)."""
        observations: list[Observation] = []
        for tree in todo.surveys():
            root = self._roots.of(tree, is_dir=True)
            if root is None:
                continue
            inside = tree + b"/"
            if (
                procs is not None
                and not todo.complete(inside)  # (renamed in: surveyed here, all complete)
                and not self.catalog.locations.any_under(inside)
            ):
                closed = frozenset(p for p, c in todo.look.items() if c and p.startswith(inside))
                settle_ns = int(self.settle_s * 1e9)
                self._preparing.survey(procs, root, tree, closed, settle_ns, self._made)
                continue
            observations.extend(
                survey(self.catalog, root, self.follow_symlinks, _warn, Tally(), top=tree)
            )
        # A path inside a folder being surveyed is looked at by that survey: once is enough.
        observations.extend(self._look(todo.singles()))
        return observations

    def _look(self, paths: dict[bytes, bool]) -> list[Observation]:
        """Stat each path and decide against its cache state."""
        states = self.catalog.get_states(list(paths))
        out = []
        for path in paths:
            root = self._roots.of(path)
            if root is None:
                continue
            stat = regular_stat(path, self.follow_symlinks)
            out.append(observe(path, root.name, stat, states.get(path)))
        return out

    # -- hashing, now or once settled -----------------------------------------------

    def _ready(
        self, observations: list[Observation], complete: Callable[[bytes], bool]
    ) -> list[bytes]:
        """The paths to hash now (complete, or still long enough); the others wait among
        the settling files."""
        now_wall = time.time_ns()
        ready: list[bytes] = []
        for obs in observations:
            if obs.stat is None:
                self._settling.pop(obs.path, None)
                continue
            if not obs.decision.rehash and obs.path not in self._settling:
                continue
            still = now_wall - obs.stat.mtime_ns > self.settle_s * 1e9
            if complete(obs.path) or still:
                self._settling.pop(obs.path, None)
                self._holds.complete(obs.path)
                ready.append(obs.path)
            else:
                self._settling[obs.path] = (obs.stat, self.clock() + self.settle_s)
        return ready

    def _check_settled(self) -> None:
        now = self.clock()
        due = [p for p, (_, when) in self._settling.items() if when <= now]
        ready: list[bytes] = []
        done: list[bytes] = []  # ready, or vanished (its own look says what became of it)
        changed: list[Hint] = []
        for path in due:
            before, _ = self._settling[path]
            current = regular_stat(path, self.follow_symlinks)
            if current is None or current == before:
                done.append(path)
                if current is not None:
                    ready.append(path)
            else:
                self._settling[path] = (current, now + self.settle_s)
                changed.append(Hint(HintKind.CHANGED, path))
        self._write(changed, [])
        self._submit(ready)
        for path in done:  # only now: until handed to the pool, not idle
            self._settling.pop(path, None)

    def hash_now(self, states: Sequence[CachedState]) -> list[HashOutcome]:
        """Hash these in the shared pool, in the calling thread (never the writer's)."""
        return self._pool.run(states)

    def _submit(self, paths: list[bytes]) -> None:
        states = awaiting_hash(self.catalog, paths)
        if not states:
            return
        for batch in chunks(states, CHUNK):
            self._hashing += 1
            future = self._pool.submit(batch)
            future.add_done_callback(self._hashed)

    def _hashed(self, future: Future[list[HashOutcome]]) -> None:
        outcomes: list[HashOutcome] = []
        if not future.cancelled():
            try:
                outcomes = future.result()
            except Exception:
                log.exception("hashing failed")
        self._post(_Hashed(outcomes))  # always, so the in-flight count comes back down


def _warn(root: str, path: bytes, message: str) -> None:
    log.warning("%s: %s", os.fsdecode(path), message)


def _all_small(observations: list[Observation], paths: list[bytes]) -> bool:
    sizes = {o.path: o.stat.size for o in observations if o.stat is not None}
    return all(sizes.get(p, LARGE_FILE) < LARGE_FILE for p in paths)
