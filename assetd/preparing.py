"""The live path's new files while worker processes make them ready.

A burst of new files (a folder copied in, an unpacked archive) would cost the writer
two writes a file, each with its change, and the Python that builds them: register,
then hash. Instead, once the writer has seen that they are new and complete, it hands
them out as a pass does (:func:`assetd.prepare.prepare`, ``closed``): a worker hashes
each and builds its rows and its ``added`` change with the hash, and the writer only
inserts them, many to a transaction.

While a file is out, its path is not looked at: a look would find no row and take it
for new a second time. A hint for it waits here, and is looked at once the file's row is
written. A folder to survey or move that holds files out waits for them instead
(:meth:`Preparing.holding`), so that what it finds, or moves, includes their rows.
No SQL here: the reconciler writes what comes back.
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
from assetd.decide import FileStat
from assetd.exceptions import TaskError, WorkerDied
from assetd.hashing import HashResult
from assetd.hints import Hint, HintKind
from assetd.prepare import ELSEWHERE, READY_FILES, Prepared, prepare
from assetd.procs import Processes

__all__ = ["Preparing", "Task"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Task:
    """One root's new files out in one worker task."""

    root: str
    files: list[tuple[bytes, FileStat]]
    future: Future[Prepared] = field(default_factory=Future)
    written: bool = False


class Preparing:
    """The tasks out, the paths they hold, and the hints that wait for those paths."""

    def __init__(self, catalog: Catalog, follow_symlinks: bool) -> None:
        self.catalog = catalog
        self.follow_symlinks = follow_symlinks
        self._tasks: dict[Task, None] = {}  # in the order they went out
        self._out: dict[bytes, Task] = {}
        self._folders: collections.Counter[bytes] = collections.Counter()
        self._waiting: dict[bytes, bool] = {}  # path -> complete, to look at once written

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def send(
        self,
        procs: Processes,
        observations: Sequence[Observation],
        on_done: Callable[[Task], None],
    ) -> None:
        """Hand out new, complete, small files, a task per root and :data:`READY_FILES`."""
        by_root: dict[str, list[tuple[bytes, FileStat]]] = {}
        for obs in observations:
            assert obs.stat is not None
            by_root.setdefault(obs.root, []).append((obs.path, obs.stat))
        catalog = self.catalog
        for root, files in by_root.items():
            for i in range(0, len(files), READY_FILES):
                part = files[i : i + READY_FILES]
                future = procs.submit(
                    ELSEWHERE, catalog.url, catalog.layer, root, part, self.follow_symlinks,
                    True, True,
                )  # fmt: skip
                task = Task(root, part, future)
                self._tasks[task] = None
                for path, _ in part:
                    self._out[path] = task
                    self._folders[os.path.dirname(path)] += 1
                future.add_done_callback(_calling(on_done, task))

    def hold_back(
        self, observations: list[Observation], complete: Callable[[bytes], bool]
    ) -> list[Observation]:
        """The observations of paths not out; a look at each path out waits for its row."""
        if not self._out:
            return observations
        keep: list[Observation] = []
        for obs in observations:
            if obs.path in self._out:
                self._waiting[obs.path] = self._waiting.get(obs.path, False) or complete(obs.path)
            else:
                keep.append(obs)
        return keep

    def holding(self, folders: Iterable[bytes]) -> bool:
        """Whether files are out in any of ``folders``, or below them."""
        if not self._out:
            return False
        for folder in folders:
            inside = folder + b"/"
            if any(d == folder or d.startswith(inside) for d in self._folders):
                return True
        return False

    def everything(self) -> list[Task]:
        """Every task out, once each is back (this waits)."""
        tasks = list(self._tasks)
        futures.wait([task.future for task in tasks])
        return tasks

    def results(self, tasks: Iterable[Task], hasher: Callable[..., HashResult]) -> list[Prepared]:
        """What each task not yet written made; a task whose worker failed is made ready
        here (on this thread: it is rare, and its files must not wait for a retry)."""
        out: list[Prepared] = []
        for task in tasks:
            if task.written or task not in self._tasks:
                continue
            try:
                out.append(task.future.result())
            except (WorkerDied, TaskError) as exc:
                log.warning("a worker process failed (%s); its new files are read here", exc)
                out.append(
                    prepare(
                        self.catalog,
                        task.root,
                        task.files,
                        follow_symlinks=self.follow_symlinks,
                        closed=True,
                        hasher=hasher,
                    )
                )
        return out

    def release(self, tasks: Iterable[Task]) -> list[Hint]:
        """These tasks are written (or given up): their paths are free again. The hints
        that waited for them, to look at now."""
        hints: list[Hint] = []
        for task in tasks:
            if task.written or task not in self._tasks:
                continue
            del self._tasks[task]
            task.written = True
            for path, _ in task.files:
                del self._out[path]
                folder = os.path.dirname(path)
                self._folders[folder] -= 1
                if not self._folders[folder]:
                    del self._folders[folder]
                if (complete := self._waiting.pop(path, None)) is not None:
                    hints.append(Hint(HintKind.CLOSED if complete else HintKind.CHANGED, path))
        return hints

    def given_up(self, tasks: Iterable[Task]) -> list[Hint]:
        """These tasks could not be written: their paths are free again, and a look at
        each is due (complete, as when it was handed out; that covers any that waited)."""
        tasks = [t for t in tasks if not t.written and t in self._tasks]
        self.release(tasks)
        return [Hint(HintKind.CLOSED, path) for task in tasks for path, _ in task.files]


def _calling(on_done: Callable[[Task], None], task: Task) -> Callable[[Future[Prepared]], None]:
    def done(_: Future[Prepared]) -> None:
        on_done(task)

    return done
