"""The live path's new files while worker processes make them ready.

A burst of new files (a folder copied in, an unpacked archive) would cost the writer
two writes a file, each with its change, and the Python that builds them: register,
then hash. Instead the writer hands them out as a pass does: a worker hashes each and
builds its rows and its ``added`` change with the hash, and the writer only inserts
them, many to a transaction. Two kinds of task go out: new complete files the writer has
looked at (:func:`assetd.prepare.prepare`, ``closed``), and new folders to survey
(:func:`assetd.survey.survey_new`), so that the walk and its stats leave the writer too.

While a file is out, its path is not looked at: a look would find no row and take it
for new a second time. A hint for it waits here, and is looked at once the task's rows
are written. A folder out does not hold its paths back (a folder being written into
would hold a burst up for as long as its survey takes): the writer goes on looking at
what hints name in it, and those paths, which it has seen later than the survey did,
are left out of what the survey brings back (:meth:`Preparing.note`). A folder to
survey or move that holds something out, or lies in a folder out, waits for those
tasks instead (:meth:`Preparing.holding`). No SQL here: the reconciler writes what
comes back.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field

from assetd.apply import Observation
from assetd.catalog import Catalog
from assetd.catalog.assets import ReadyFile
from assetd.config import RootConfig
from assetd.decide import FileStat, Outcome
from assetd.exceptions import TaskError, WorkerDied
from assetd.hashing import LARGE_FILE, HashResult
from assetd.hashpool import HASH_HERE_MAX
from assetd.hints import Hint, HintKind, look
from assetd.prepare import ELSEWHERE, READY_FILES, Prepared, prepare
from assetd.procs import Processes
from assetd.survey import Surveyed, survey_new

__all__ = ["Made", "Preparing", "Task"]

log = logging.getLogger(__name__)

SURVEY_NEW = "assetd.survey:survey_new_elsewhere"
# New complete files in one batch from which they go out: fewer are hashed on the
# writer's side, in one transaction with their rows (a round trip would add latency).
SEND_MIN = HASH_HERE_MAX


@dataclass(eq=False)
class Task:
    """One task out: a root's new files, or a new folder (``tree``) to survey."""

    root: RootConfig
    files: list[tuple[bytes, FileStat]]
    future: Future[Prepared | Surveyed]
    tree: bytes | None = None
    complete: frozenset[bytes] = frozenset()  # in the folder: known complete (closed)
    settle_ns: int = 0  # in the folder: unmodified this long, complete


@dataclass
class Made:
    """What tasks made: files ready to insert, paths to look at again (each with
    whether it is known complete), and what the walks could not read."""

    ready: list[ReadyFile] = field(default_factory=list)
    again: list[Hint] = field(default_factory=list)
    problems: list[tuple[str, bytes, str]] = field(default_factory=list)


class Preparing:
    """The tasks out, the paths and folders they hold, and the hints waiting for them."""

    def __init__(self, catalog: Catalog, follow_symlinks: bool) -> None:
        self.catalog = catalog
        self.follow_symlinks = follow_symlinks
        self._tasks: dict[Task, None] = {}  # in the order they went out
        self._out: dict[bytes, Task] = {}  # files out
        self._folders: collections.Counter[bytes] = collections.Counter()  # ... their folders
        self._trees: dict[bytes, Task] = {}  # folders out
        self._looked: dict[bytes, set[bytes]] = {}  # folder out -> paths looked at since
        # Paths to look at once written, by folder: path -> known complete.
        self._waiting: dict[bytes, dict[bytes, bool]] = {}

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def send(
        self,
        procs: Processes,
        roots: Callable[[str], RootConfig],
        observations: Sequence[Observation],
        complete: Sequence[bytes],
        on_done: Callable[[Task], None],
    ) -> set[bytes]:
        """Hand out the new, small files among ``observations`` that are ``complete``,
        when there are :data:`SEND_MIN` of them or more, a task per root and
        :data:`READY_FILES`; the paths handed out."""
        ready = set(complete)
        new = [
            o
            for o in observations
            if o.decision.outcome is Outcome.NEW
            and o.path in ready
            and o.stat is not None
            and o.stat.size < LARGE_FILE
        ]
        if len(new) < SEND_MIN:
            return set()
        by_root: dict[str, list[tuple[bytes, FileStat]]] = {}
        for obs in new:
            assert obs.stat is not None
            by_root.setdefault(obs.root, []).append((obs.path, obs.stat))
        catalog = self.catalog
        for name, files in by_root.items():
            for i in range(0, len(files), READY_FILES):
                part = files[i : i + READY_FILES]
                future = procs.submit(
                    ELSEWHERE, catalog.url, catalog.layer, name, part, self.follow_symlinks,
                    True, True,
                )  # fmt: skip
                task = Task(roots(name), part, future)
                self._tasks[task] = None
                for path, _ in part:
                    self._out[path] = task
                    self._folders[os.path.dirname(path)] += 1
                future.add_done_callback(_calling(on_done, task))
        return {o.path for o in new}

    def survey(
        self,
        procs: Processes,
        root: RootConfig,
        tree: bytes,
        complete: frozenset[bytes],
        settle_ns: int,
        on_done: Callable[[Task], None],
    ) -> None:
        """Hand out a new folder to survey (see :func:`assetd.survey.survey_new`)."""
        catalog = self.catalog
        future = procs.submit(
            SURVEY_NEW, catalog.url, catalog.layer, root, tree, self.follow_symlinks,
            complete, settle_ns,
        )  # fmt: skip
        task = Task(root, [], future, tree, complete, settle_ns)
        self._tasks[task] = None
        self._trees[tree] = task
        self._looked[tree] = set()
        future.add_done_callback(_calling(on_done, task))

    def hold_back(
        self, observations: list[Observation], complete: Callable[[bytes], bool]
    ) -> list[Observation]:
        """The observations of paths not out; a look at each path out waits for its row.
        (Those in a folder out are kept, and noted: :meth:`note`.)"""
        if not self._tasks:
            return observations
        self.note(obs.path for obs in observations)
        if not self._out:
            return observations
        keep: list[Observation] = []
        for obs in observations:
            if obs.path in self._out:
                waiting = self._waiting.setdefault(os.path.dirname(obs.path), {})
                waiting[obs.path] = waiting.get(obs.path, False) or complete(obs.path)
            else:
                keep.append(obs)
        return keep

    def note(self, paths: Iterable[bytes]) -> None:
        """The writer looked at these paths: any in a folder out is its to write, not the
        survey's, which saw it earlier."""
        if not self._trees:
            return
        trees: dict[bytes, bytes | None] = {}  # by folder: the folder out it lies in
        for path in paths:
            folder = os.path.dirname(path)
            if folder not in trees:
                trees[folder] = self._tree_of(folder)
            tree = trees[folder]
            if tree is not None:
                self._looked[tree].add(path)

    def holding(self, folders: Iterable[bytes]) -> bool:
        """Whether anything is out in any of ``folders`` or below them, or ``folders``
        lie in a folder out."""
        if not self._tasks:
            return False
        for folder in folders:
            inside = folder + b"/"
            if self._tree_of(folder) is not None:
                return True
            if any(d == folder or d.startswith(inside) for d in (*self._folders, *self._trees)):
                return True
        return False

    def everything(self) -> list[Task]:
        """Every task out, once each is back (this waits)."""
        tasks = list(self._tasks)
        futures.wait([task.future for task in tasks])
        return tasks

    def results(self, tasks: Iterable[Task], hasher: Callable[..., HashResult]) -> Made:
        """What the tasks not yet written made. A task whose worker failed is done here
        (on this thread: it is rare, and its files must not wait for a retry)."""
        made = Made()
        for task in tasks:
            if task not in self._tasks:  # written already (or given up)
                continue
            try:
                result = task.future.result()
            except (WorkerDied, TaskError) as exc:
                log.warning("a worker process failed (%s); its new files are read here", exc)
                result = self._here(task, hasher)
            if isinstance(result, Surveyed):
                prepared, again = result.prepared, result.again
                made.problems += result.problems
                looked = self._looked[task.tree] if task.tree is not None else set()
                if looked:
                    prepared = Prepared(
                        [f for f in prepared.ready if f.path not in looked],
                        [o for o in prepared.moved if o.path not in looked],
                    )
                    again = [p for p in again if p not in looked]
            else:
                prepared, again = result, []
            made.ready += prepared.ready
            # Moves found among them, and what a survey saw that is not ready: looked at
            # again by the writer, where moves are paired and files being written wait.
            for path in [*(o.path for o in prepared.moved), *again]:
                complete = path in task.complete or task.tree is None
                made.again.append(look(path, complete))
        return made

    def _here(self, task: Task, hasher: Callable[..., HashResult]) -> Prepared | Surveyed:
        if task.tree is not None:
            return survey_new(
                self.catalog, task.root, task.tree, self.follow_symlinks, task.complete,
                task.settle_ns, hasher,
            )  # fmt: skip
        return prepare(
            self.catalog,
            task.root.name,
            task.files,
            follow_symlinks=self.follow_symlinks,
            closed=True,
            hasher=hasher,
        )

    def release(self, tasks: Iterable[Task]) -> list[Hint]:
        """These tasks are written (or given up): their paths are free again. The hints
        that waited for them, to look at now."""
        hints: list[Hint] = []
        for task in tasks:
            if task not in self._tasks:  # written already (or given up)
                continue
            del self._tasks[task]
            if task.tree is not None:
                del self._trees[task.tree]
                del self._looked[task.tree]
                continue
            for path, _ in task.files:
                del self._out[path]
                folder = os.path.dirname(path)
                self._folders[folder] -= 1
                if not self._folders[folder]:
                    del self._folders[folder]
                waiting = self._waiting.get(folder)
                if waiting and path in waiting:
                    hints.append(look(path, waiting.pop(path)))
                    if not waiting:
                        del self._waiting[folder]
        return hints

    def given_up(self, tasks: Iterable[Task]) -> list[Hint]:
        """These tasks could not be written: their paths are free again, and a look at
        each is due (as complete as when it went out; that covers any that waited)."""
        tasks = [t for t in tasks if t in self._tasks]
        waited = self.release(tasks)
        hints = [Hint(HintKind.CLOSED, path) for task in tasks for path, _ in task.files]
        hints += [Hint(HintKind.DIR_CHANGED, task.tree) for task in tasks if task.tree]
        return hints + waited

    def _tree_of(self, folder: bytes) -> bytes | None:
        """The folder out that ``folder`` is, or lies in."""
        trees = self._trees
        while trees and folder:
            if folder in trees:
                return folder
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            folder = parent
        return None


def _calling(on_done: Callable[[Task], None], task: Task) -> Callable[[Future[object]], None]:
    def done(_: Future[object]) -> None:
        on_done(task)

    return done
