"""The full pass over some roots, and the AssetSeeder state machine that runs it.

A pass has two phases. First it walks each root and merges the walk with the catalog's
rows in path order, registering every file from its stat alone (the catalog is
complete and browsable before any hash exists) and marking missing what is gone. Then
it hashes what is new or changed, in a small pool, writing results in batches.
"""

from __future__ import annotations

import collections
import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any

from assetd.apply import (
    Observation,
    Tally,
    apply_hashes,
    apply_observations,
    apply_ready,
    write_current,
)
from assetd.arrivals import GROUP_WAIT, READY_GROUP, Arrivals, NewFiles
from assetd.catalog import Catalog
from assetd.catalog.sql import CHUNK
from assetd.config import RootConfig
from assetd.decide import Outcome
from assetd.exceptions import (
    CatalogUnavailableError,
    InvalidRequestError,
    SeederBusyError,
    TaskError,
    WorkerDied,
)
from assetd.hashing import HashOutcome, HashResult, hash_file
from assetd.hashpool import HashPool
from assetd.paths import get_all_known_prefixes, path_json
from assetd.prepare import Prepared
from assetd.procs import Processes, run_here
from assetd.survey import Found, survey
from assetd.walk import Span, first_cuts

__all__ = ["AssetSeeder", "SeederState"]

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]
MAX_ERRORS = 200  # kept in the status; the log has them all
# Locations a root must have in the catalog before its walk is shared among processes:
# a restart over many files. (A first scan has nothing to cut by, and its observations
# would all have to travel back from the workers.)
PARALLEL_MIN = 20_000
INDEX_SPAN = "assetd.survey:index_span"
CUT_LEAST = 1000  # entries in a new tree's first levels before its walk is shared out
SPANS_PER_CORE = 3  # a restart's walk is shared out in spans this fine


class SeederState(enum.Enum):
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"


class _Cancelled(Exception):
    pass


class AssetSeeder:
    """Runs one pass at a time in its own thread; every method is thread-safe."""

    def __init__(
        self,
        catalog: Catalog,
        roots: Sequence[RootConfig],
        *,
        follow_symlinks: bool = False,
        on_event: EventSink | None = None,
        progress_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        hasher: Callable[..., HashResult] = hash_file,
        submit: Callable[..., Future[Any]] | None = None,
        hash_pool: HashPool | None = None,
        parallel_min: int = PARALLEL_MIN,
    ) -> None:
        self.catalog = catalog
        self.roots = tuple(roots)
        self.follow_symlinks = follow_symlinks
        self.on_event = on_event or (lambda _type, _data: None)
        self.progress_interval = progress_interval
        self.clock = clock
        self.hasher = hasher
        # Every catalog write goes through ``submit(fn, *args)``: to the daemon's writer
        # thread, or run right here. The pass waits for each write before it walks on:
        # two threads busy in Python at once only trade the GIL back and forth (every
        # SQLite step gives it up and must win it back) and both run slower.
        self.submit: Callable[..., Future[Any]] = submit or run_here
        self.hash_pool = hash_pool  # shared with the daemon's reconciler; else one per pass
        self.parallel_min = parallel_min
        self._lock = threading.Lock()
        self._state = SeederState.IDLE
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._cancel = threading.Event()
        self._tally: Tally | None = None
        self._last_progress: dict[str, Any] | None = None
        self._phase = ""
        self._errors: list[dict[str, Any]] = []
        self._last_emit = 0.0
        self._reported = 0  # tally errors already copied into the status

    # -- control --------------------------------------------------------------------

    def start(
        self,
        roots: Sequence[str] | None = None,
        prune_first: bool = False,
        compute_hashes: bool = True,
    ) -> bool:
        """Start a pass over the named roots (all by default); False unless IDLE."""
        selected = self._select(roots)
        with self._lock:
            if self._state is not SeederState.IDLE:
                return False
            self._state = SeederState.RUNNING
            # Each pass has its own: the pass before sets its own only, so it cannot let
            # go of a wait on this one (it is IDLE a moment before it tells its waiters).
            self._idle = idle = threading.Event()
            self._cancel.clear()
            self._tally = Tally()
            self._errors = []
            self._reported = 0
            self._phase = "registering"
            self._thread = threading.Thread(
                target=self._run,
                args=(selected, prune_first, compute_hashes, idle),
                name="assetd-seeder",
                daemon=True,
            )
            self._thread.start()
        return True

    def cancel(self) -> bool:
        """Ask the running pass to stop after its current batch; False when IDLE."""
        with self._lock:
            if self._state is SeederState.IDLE:
                return False
            self._state = SeederState.CANCELLING
            self._cancel.set()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the pass running now (if any) has ended; True if it has."""
        with self._lock:
            idle = self._idle
        return idle.wait(timeout)

    def shutdown(self, timeout: float | None = 10.0) -> None:
        """Cancel any pass and wait for its thread to end."""
        self.cancel()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def get_status(self) -> dict[str, Any]:
        with self._lock:
            state = self._state
            errors = list(self._errors)
        progress = self._progress() if state is not SeederState.IDLE else self._last_progress
        return {"state": state.value, "progress": progress, "errors": errors}

    def prune_orphans(self) -> int:
        """Mark missing every location outside the configured roots; refuses unless IDLE."""
        with self._lock:
            if self._state is not SeederState.IDLE:
                raise SeederBusyError("a scan is running; prune when it has finished")
            self._state = SeederState.RUNNING
            self._idle = idle = threading.Event()
        try:
            return int(
                self._write_and_wait(
                    self.catalog.mark_missing_outside_prefixes_safely,
                    get_all_known_prefixes(self.roots),
                )
            )
        finally:
            with self._lock:
                self._state = SeederState.IDLE
            idle.set()

    # -- the pass -------------------------------------------------------------------

    def _write_and_wait(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a write on the writer thread and wait for it."""
        return self.submit(fn, *args).result()

    def _select(self, names: Sequence[str] | None) -> list[RootConfig]:
        if names is None:
            return list(self.roots)
        by_name = {root.name: root for root in self.roots}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise InvalidRequestError(f"unknown root {unknown[0]!r}")
        return [by_name[name] for name in dict.fromkeys(names)]

    def _run(
        self,
        roots: list[RootConfig],
        prune_first: bool,
        compute_hashes: bool,
        idle: threading.Event,
    ) -> None:
        tally = self._tally
        assert tally is not None
        outcome, unavailable = "assets.seed.completed", False
        self.on_event("assets.seed.started", {"roots": [r.name for r in roots]})
        pool = self.hash_pool or HashPool(follow_symlinks=self.follow_symlinks, hasher=self.hasher)
        try:
            if prune_first:
                tally.marked_missing += self._write_and_wait(
                    self.catalog.mark_missing_outside_prefixes_safely,
                    get_all_known_prefixes(self.roots),
                )
            self._write_and_wait(
                self.catalog.register_roots, [(r.name, r.prefix) for r in self.roots]
            )
            online = [root for root in roots if self._online(root)]
            vanished: list[Observation] = []
            for root in online:
                self._register(root, tally, pool, vanished, compute_hashes)
            # Written once every root is walked: a file that left one folder may turn up
            # in another root walked later, and is then moved, not missing.
            self._write_all(tally, iter(vanished))
            if compute_hashes:
                self._phase = "hashing"
                self._hash([root.prefix for root in online], tally, pool)
        except _Cancelled:
            outcome = "assets.seed.cancelled"
        except CatalogUnavailableError as exc:  # the daemon tries again later
            log.warning("scan stopped: %s", exc)
            self._error(None, f"scan failed: {exc}")
            outcome, unavailable = "assets.seed.error", True
        except Exception as exc:  # a pass must end in IDLE whatever happens
            log.exception("scan failed")
            self._error(None, f"scan failed: {exc}")
            outcome = "assets.seed.error"
        finally:
            if pool is not self.hash_pool:
                pool.close()
            self.catalog.close_thread()
            self._phase = "done"
            progress = self._progress()
            with self._lock:
                self._last_progress = progress
                self._state = SeederState.IDLE
            data = dict(progress)
            if outcome == "assets.seed.error":
                data["errors"] = self.get_status()["errors"]
                data["catalog_unavailable"] = unavailable
            self.on_event(outcome, data)
            idle.set()

    def _online(self, root: RootConfig) -> bool:
        if os.path.isdir(root.path):
            return True
        self._error(root.name, f"root {root.name!r} is offline: {root.path} is not a folder")
        return False

    def _register(
        self,
        root: RootConfig,
        tally: Tally,
        pool: HashPool,
        vanished: list[Observation],
        hash_small: bool = True,
    ) -> None:
        """Phase one for one root: merge the walk with the catalog, in batches.

        With worker processes, the root is cut into a few spans per core: by the
        catalog's rows when it knows the root well (a restart), else by the names of the
        tree's first levels (a first scan). Each worker walks spans from the back, makes
        its new files ready (:func:`assetd.survey.index_span`) and sends them as it
        goes; this thread writes what they send, many to a transaction. On a restart,
        when there is little to write, it also walks spans from the front, beside one
        worker per other core (:meth:`Processes.helpers`). A worker that
        started late (Python and the imports take a while) simply walks fewer; a span
        whose worker failed is walked here afterwards (what it sent is in already, and
        is unchanged then). Files gone from their paths are kept in ``vanished``, not
        written. New files go in ready, their hash in (``hash_small``) unless they are
        large.
        """
        new_files = NewFiles(self, root, tally, pool, hash_small)
        cuts, known = self._spans(root, pool)
        spans = collections.deque(cuts)
        procs = pool.workers() if len(spans) > 1 else None
        helpers = 0 if procs is None else procs.helpers() if known else procs.count
        found = Arrivals(helpers)
        carriers = [
            threading.Thread(
                target=self._walk_elsewhere,
                args=(procs, root, spans, found, hash_small),
                name="assetd-seeder-span",
                daemon=True,
            )
            for _ in range(helpers)
        ]
        for carrier in carriers:
            carrier.start()
        failed: list[Span] = []
        try:
            while known or procs is None:
                try:
                    span = spans.popleft()
                except IndexError:  # the workers took the last one
                    break
                self._write_all(tally, self._scan(root, tally, span), vanished, new_files)
                self._write_found(tally, found, vanished, new_files, failed, wait=False)
            while any(c.is_alive() for c in carriers):
                self._write_found(tally, found, vanished, new_files, failed, wait=True)
            while found:
                self._write_found(tally, found, vanished, new_files, failed, wait=False)
        finally:
            spans.clear()  # after a cancel or an error, the workers take no more
            for carrier in carriers:
                carrier.join()
        for span in failed:
            self._write_all(tally, self._scan(root, tally, span), vanished, new_files)
        new_files.finish()

    def _walk_elsewhere(
        self,
        procs: Processes,
        root: RootConfig,
        spans: collections.deque[Span],
        found: Arrivals,
        hash_small: bool,
    ) -> None:
        """A carrier thread: have one worker walk spans from the back, passing on what
        it sends; a failure is passed on as the span's last word."""
        catalog = self.catalog
        try:
            while spans:
                try:
                    span = spans.pop()
                except IndexError:
                    return
                try:
                    for item in procs.stream(
                        INDEX_SPAN,
                        catalog.url,
                        catalog.layer,
                        root,
                        self.follow_symlinks,
                        span,
                        hash_small,
                    ):
                        found.put(span, item)
                except (WorkerDied, TaskError) as exc:
                    found.put(span, exc)
        finally:
            found.finished()

    def _write_found(
        self,
        tally: Tally,
        found: Arrivals,
        vanished: list[Observation],
        new_files: NewFiles,
        failed: list[Span],
        *,
        wait: bool,
    ) -> None:
        """Write what the workers sent since the last time, one transaction for all
        their ready files. With ``wait``, wait for enough: a commit costs a flush to
        disk, so after the first (the first rows, at once) ready files wait for company,
        up to :data:`READY_GROUP` of them or :data:`GROUP_WAIT` seconds, while the
        workers go on."""
        least = READY_GROUP if found.groups else 1
        items = found.take(least, GROUP_WAIT if wait else 0.0, READY_GROUP)
        done: list[Found] = []
        for span, value in items:
            if isinstance(value, (WorkerDied, TaskError)):
                log.warning("a walking worker failed (%s); walking its part here", value)
                failed.append(span)
                continue
            done.append(value)
            for name, count in value.counts.items():
                setattr(tally, name, getattr(tally, name) + count)
            for problem in value.problems:
                self._walk_problem(*problem)
        if not done:
            return
        group = Prepared([f for v in done for f in v.prepared.ready], [])
        group.moved.extend(o for v in done for o in v.prepared.moved)
        self.write_prepared(tally, group)
        self._write_all(tally, iter([o for v in done for o in v.seen]), vanished, new_files)

    def _scan(self, root: RootConfig, tally: Tally, span: Span) -> Iterator[Observation]:
        return survey(
            self.catalog, root, self.follow_symlinks, self._walk_problem, tally, span=span
        )

    def _spans(self, root: RootConfig, pool: HashPool) -> tuple[list[Span], bool]:
        """The spans to walk the root in, and whether the catalog's rows cut them."""
        procs = pool.workers()
        if procs is None or ":memory:" in self.catalog.url or self.hasher is not hash_file:
            # (a catalog in memory cannot be read from elsewhere; a test's hasher cannot
            # cross into a process)
            return [(None, None)], False
        parts = (procs.helpers() + 1) * SPANS_PER_CORE
        cuts = self.catalog.locations.quantiles(root.prefix, parts, self.parallel_min)
        known = bool(cuts)
        if not cuts:
            top = os.fsencode(root.path)
            parts = procs.count * SPANS_PER_CORE
            cuts = first_cuts(top, parts, self.follow_symlinks, least=CUT_LEAST)
        if not cuts:
            return [(None, None)], False
        bounds: list[bytes | None] = [None, *cuts, None]
        return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)], known

    def _write_all(
        self,
        tally: Tally,
        observations: Iterator[Observation],
        vanished: list[Observation] | None = None,
        new_files: NewFiles | None = None,
    ) -> None:
        """Write in batches; with ``vanished``, the files gone from their paths go there,
        with ``new_files`` the new files."""
        batch: list[Observation] = []
        for obs in observations:
            if vanished is not None and obs.decision.outcome is Outcome.MISSING:
                vanished.append(obs)
                continue
            if new_files is not None and obs.decision.outcome is Outcome.NEW:
                new_files.add(obs)
                continue
            batch.append(obs)
            if len(batch) >= CHUNK:
                self._write_observations(tally, batch)
                batch = []
        if batch:
            self._write_observations(tally, batch)

    def _write_observations(self, tally: Tally, batch: list[Observation]) -> None:
        """Write a batch; the paths the live path wrote since this pass read them are
        looked at again."""
        write_current(
            self.catalog,
            batch,
            self.follow_symlinks,
            lambda observations: self._write(tally, apply_observations, observations),
        )

    def write_prepared(self, tally: Tally, prepared: Prepared) -> None:
        """Write a task's ready files, and the moves it found among them."""
        if prepared.ready:
            self._write(tally, self._apply_ready, prepared.ready)
        if prepared.moved:
            self._write_observations(tally, prepared.moved)

    def _apply_ready(self, catalog: Catalog, ready: Sequence[Any], tally: Tally) -> None:
        apply_ready(catalog, ready, tally, follow_symlinks=self.follow_symlinks)

    def _hash(self, prefixes: list[bytes], tally: Tally, pool: HashPool) -> None:
        """Phase two: hash every live location under ``prefixes`` whose hash is stale.

        While one batch is written, the next is hashed (in worker processes when it is
        many small files, so the two really run side by side).
        """
        pending, pending_bytes = self.catalog.locations.count_pending_hash(prefixes)
        # Small new files were hashed as they went in: they count among what was hashed.
        tally.to_hash = tally.hashed + pending
        tally.to_hash_bytes = tally.hashed_bytes + pending_bytes
        if not pending:
            return
        after = 0
        hashing: Future[list[HashOutcome]] | None = None
        while states := self.catalog.locations.pending_states(prefixes, after=after, limit=CHUNK):
            after = states[-1].id
            offload = pool.offloads(states)
            following = pool.submit(states) if offload else run_here(pool.run, states)
            if hashing is not None:
                self._write(tally, apply_hashes, hashing.result())
            hashing = following
        if hashing is not None:
            self._write(tally, apply_hashes, hashing.result())

    def _write(self, tally: Tally, fn: Callable[..., Any], batch: Sequence[Any]) -> Any:
        """Write ``fn(catalog, batch, tally)`` and wait; report, and honour a cancel."""
        result = self.submit(fn, self.catalog, batch, tally).result()
        for entry in tally.errors[self._reported :]:
            self._error(None, entry["message"], entry["path"])
        self._reported = len(tally.errors)
        self._tick()
        return result

    def _tick(self) -> None:
        """Between batches: honour a cancel, and report progress a few times a second."""
        if self._cancel.is_set():
            raise _Cancelled
        now = self.clock()
        if now - self._last_emit >= self.progress_interval:
            self._last_emit = now
            self.on_event("assets.seed.progress", self._progress())

    def _progress(self) -> dict[str, Any]:
        tally = self._tally or Tally()
        data = asdict(tally)
        data.pop("errors")
        data["phase"] = self._phase
        return data

    def _walk_problem(self, root: str, path: bytes, message: str) -> None:
        self._error(root, message, path)

    def _error(self, root: str | None, message: str, path: bytes | None = None) -> None:
        entry: dict[str, Any] = {"root": root, "message": message}
        if path is not None:
            entry.update(path_json(path))
        log.warning("%s%s", f"{entry.get('path')}: " if path is not None else "", message)
        with self._lock:
            if len(self._errors) < MAX_ERRORS:
                self._errors.append(entry)
