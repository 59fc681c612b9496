"""A pass's files on their way to its writer: what the walking workers send
(:class:`Arrivals`), and a root's new files handed out to be made ready
(:class:`NewFiles`); both give the writer groups of ready files, many to a transaction.
"""

from __future__ import annotations

import collections
import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from assetd.apply import Observation, Tally
from assetd.catalog.sql import CHUNK
from assetd.config import RootConfig
from assetd.exceptions import TaskError, WorkerDied
from assetd.hashing import LARGE_FILE
from assetd.hashpool import HASH_HERE_MAX, HashPool
from assetd.prepare import ELSEWHERE, READY_FILES, Prepared, elsewhere, prepare
from assetd.procs import run_here
from assetd.survey import Found
from assetd.walk import Span

if TYPE_CHECKING:
    from assetd.seeder import AssetSeeder

__all__ = ["GROUP_WAIT", "READY_GROUP", "Arrivals", "NewFiles"]

log = logging.getLogger(__name__)

IN_FLIGHT = 12  # such tasks handed out and not yet written: the workers never wait for one
GROUP_WAIT = 0.25  # seconds ready files may wait for more to share their transaction
READY_GROUP = CHUNK  # new files at most in one transaction


class Arrivals:
    """What the walking workers send, for the writer, in order of arrival."""

    def __init__(self, senders: int) -> None:
        self._items: collections.deque[tuple[Span, Any]] = collections.deque()
        self._ready = 0  # ready files among the items
        self._arrived = threading.Condition()
        self._senders = senders  # still sending
        self.groups = 0  # taken so far

    def finished(self) -> None:
        """One sender has sent all it will."""
        with self._arrived:
            self._senders -= 1
            self._arrived.notify()

    def __bool__(self) -> bool:
        return bool(self._items)

    def put(self, span: Span, item: Any) -> None:
        with self._arrived:
            self._items.append((span, item))
            self._ready += _ready_in(item)
            self._arrived.notify()

    def take(self, least: int, timeout: float, most: int) -> list[tuple[Span, Any]]:
        """The items that arrived, once they hold ``least`` ready files or ``timeout``
        has passed (then maybe none), up to about ``most`` ready files."""

        def enough() -> bool:
            # Items without ready files (a restart's changes) need no company, and
            # nothing more comes once every sender is done.
            return (
                self._ready >= least
                or self._senders <= 0
                or (bool(self._items) and self._ready == 0)
            )

        with self._arrived:
            self._arrived.wait_for(enough, timeout)
            taken: list[tuple[Span, Any]] = []
            count = 0
            while self._items and (not taken or count < most):
                span, item = self._items.popleft()
                count += _ready_in(item)
                taken.append((span, item))
            self._ready -= count
            if taken:
                self.groups += 1
            return taken


def _ready_in(item: Any) -> int:
    return len(item.prepared.ready) if isinstance(item, Found) else 0


class NewFiles:
    """A root's new files on their way in: handed out in tasks to be made ready
    (:func:`assetd.prepare.prepare`), in worker processes when there are enough of them
    to pay for one, and written in the order they were walked as the tasks come back."""

    def __init__(
        self, seeder: AssetSeeder, root: RootConfig, tally: Tally, pool: HashPool, hash_small: bool
    ) -> None:
        self.seeder, self.root, self.tally, self.hash_small = seeder, root, tally, hash_small
        self.procs = elsewhere(pool, seeder.catalog, seeder.hasher)
        self.files: list[tuple[bytes, Any]] = []
        self.tasks: collections.deque[tuple[list[tuple[bytes, Any]], Future[Prepared]]] = (
            collections.deque()
        )
        self.sent_away = False
        self.written = 0.0  # when the last group was written (0: none yet)

    def add(self, obs: Observation) -> None:
        self.files.append((obs.path, obs.stat))
        if len(self.files) >= READY_FILES:
            self._send()
        self._write()

    def finish(self) -> None:
        """Hand out what is left and write every task."""
        if self.files:
            self._send()
        self._write(everything=True)

    def _send(self) -> None:
        files, self.files = self.files, []
        seeder = self.seeder
        # Few small files (large ones are hashed after, not here), or a few left over with
        # no worker busy yet, are not worth a worker's time, nor its start.
        small = sum(1 for _, stat in files if stat.size < LARGE_FILE) if self.hash_small else 0
        if (
            self.procs is not None
            and small >= HASH_HERE_MAX
            and (self.sent_away or len(files) >= READY_FILES)
        ):
            future = self.procs.submit(
                ELSEWHERE,
                seeder.catalog.url,
                seeder.catalog.layer,
                self.root.name,
                files,
                seeder.follow_symlinks,
                self.hash_small,
            )
            self.sent_away = True
        else:
            future = run_here(self._here, files)
        self.tasks.append((files, future))

    def _here(self, files: list[tuple[bytes, Any]]) -> Prepared:
        seeder = self.seeder
        return prepare(
            seeder.catalog,
            self.root.name,
            files,
            follow_symlinks=seeder.follow_symlinks,
            hash_small=self.hash_small,
            hasher=seeder.hasher,
        )

    def _write(self, *, everything: bool = False) -> None:
        """Write the tasks that are back, in order, many to a transaction: a commit costs
        a flush to disk. The first comes back alone and goes in at once, so the first
        rows are there soon; after it, tasks wait for company (:data:`CHUNK` files, or
        :data:`GROUP_WAIT` seconds). Too many out, or ``everything``: wait for them."""
        while self.tasks:
            done = 0
            for files, future in self.tasks:
                if not future.done():
                    break
                done += len(files)
            if not (
                everything
                or len(self.tasks) > IN_FLIGHT
                or done >= READY_GROUP
                or (done and (not self.written or self.seeder.clock() - self.written >= GROUP_WAIT))
            ):
                return
            group = Prepared([], [])
            while self.tasks and len(group.ready) < READY_GROUP:
                files, future = self.tasks[0]
                if group.ready and not future.done():
                    break
                self.tasks.popleft()
                try:
                    prepared = future.result()
                except (WorkerDied, TaskError) as exc:
                    log.warning("a worker process failed (%s); its new files are read here", exc)
                    prepared = self._here(files)
                group.ready.extend(prepared.ready)
                group.moved.extend(prepared.moved)
            self.seeder.write_prepared(self.tally, group)
            self.written = self.seeder.clock()
