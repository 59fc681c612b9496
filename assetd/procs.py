"""Worker processes that run assetd's own functions by name, for work that would fight
the writer for the GIL: hashing many small files, walking half of a large root.

A task is one pickle down a worker's stdin, ``(function, args)`` with ``function`` as
``"module:name"`` inside assetd, and one pickle back up its stdout. Only this process
writes to a worker, so pickles are trusted. A worker ends when its stdin closes, so it
never outlives this process, however that ends (a SIGKILL included). Workers start on
first use; one that died is replaced by the next task.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import inspect
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NoReturn

from assetd import drivers, gcpace
from assetd.exceptions import TaskError, WorkerDied, WorkersBusy

__all__ = ["Processes", "at_exit", "default_count", "run_here"]


def default_count() -> int:
    """One worker per core. They run at a lower priority (:data:`NICENESS`): the writer
    and the event loop take a core whenever they want one, and the workers the rest;
    with one worker fewer, a core would idle whenever the writer waits for the disk."""
    return max(1, os.cpu_count() or 2)


NICENESS = 10  # how much a worker defers to the daemon's own threads


class _Idle(queue.Queue["subprocess.Popen[bytes] | None"]):
    """The idle workers, a started one taken before a slot whose process has not
    started (or has died): that one's start would cost Python and the imports."""

    def _init(self, maxsize: int) -> None:
        self.queue: collections.deque[subprocess.Popen[bytes] | None] = collections.deque()

    def _put(self, item: subprocess.Popen[bytes] | None) -> None:
        if item is None:
            self.queue.appendleft(item)
        else:
            self.queue.append(item)

    def _get(self) -> subprocess.Popen[bytes] | None:
        return self.queue.pop()


class Processes:
    """``count`` worker processes; thread-safe, each busy with one task at a time."""

    def __init__(self, count: int | None = None, preload: tuple[str, ...] = ()) -> None:
        self.count = default_count() if count is None else count
        self.preload = preload  # modules a worker imports as it starts, before any task
        self._idle: _Idle = _Idle()
        self._all: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(self.count):
            self._idle.put(None)  # a slot; its process starts when first taken
        # Threads that carry tasks to the workers and wait: the work is elsewhere.
        self._carriers = ThreadPoolExecutor(max(1, self.count), thread_name_prefix="assetd-proc")

    def warm(self, count: int | None = None) -> None:
        """Start ``count`` workers (all by default) now rather than at their first task:
        their start (Python, the ``preload`` imports) then overlaps with whatever this
        process does meanwhile."""
        want = self.count if count is None else min(count, self.count)
        slots: list[subprocess.Popen[bytes] | None] = []
        with contextlib.suppress(queue.Empty):
            while len(slots) < self.count:
                slots.append(self._idle.get_nowait())
        started = 0
        for proc in slots:
            if proc is not None and proc.poll() is not None:
                self._discard(proc)  # died since its last task
                proc = None
            if proc is None and started < want and not self._closed:
                proc = self._start()
            started += proc is not None
            self._idle.put(proc)

    def helpers(self) -> int:
        """How many workers to use for work this process does its share of too (a
        restart's walk): one per core but this process's own, at least one. A worker
        more would only add its start, Python and imports, to cores busy already."""
        return min(self.count, max(1, default_count() - 1))

    def call(self, function: str, *args: Any, wait: bool = True) -> Any:
        """Run ``function(*args)`` in a worker and return its result; without ``wait``,
        only in a worker free this moment (else :class:`WorkersBusy`)."""
        items = _Items(self, function, args, wait)
        for _ in items:
            items.close()
            raise TaskError(f"{function} yields: call it with stream()")
        return items.value

    def stream(self, function: str, *args: Any) -> _Items:
        """Run ``function(*args)``, a generator, in a worker; iterate over what it yields
        as the worker sends it (a plain function's result is the iterator's ``value``
        once it is exhausted)."""
        return _Items(self, function, args)

    def _exchange(
        self, function: str, args: tuple[Any, ...], wait: bool = True
    ) -> Generator[Any, None, Any]:
        proc = self._idle.get() if wait else self._take_started(function)
        try:
            if proc is not None and proc.poll() is not None:
                self._discard(proc)
                proc = None
            if proc is None:
                proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                pickle.dump((function, args), proc.stdin, pickle.HIGHEST_PROTOCOL)
                proc.stdin.flush()
                while True:
                    kind, value = pickle.load(proc.stdout)
                    if kind != _MORE:
                        break
                    yield value
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                status = proc.poll()
                self._discard(proc)
                proc = None
                raise WorkerDied(f"exit status {status}") from exc
            except GeneratorExit:  # the caller stopped listening: the worker's answer is
                self._discard(proc)  # still on its way, so this worker cannot serve again
                proc = None
                raise
        finally:
            self._idle.put(proc)
        if kind is not True:
            raise TaskError(value)
        return value

    def _take_started(self, function: str) -> subprocess.Popen[bytes]:
        # A task that would not wait will not wait for a worker's start either; if none
        # has started yet, they start now, in the background, for the next such task.
        slots: list[subprocess.Popen[bytes] | None] = []
        found = None
        with contextlib.suppress(queue.Empty):
            while found is None:
                slot = self._idle.get_nowait()
                if slot is not None and slot.poll() is None:
                    found = slot
                else:
                    slots.append(slot)
        for slot in slots:
            self._idle.put(slot)
        if found is None:
            if len(slots) == self.count and not self._closed:
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    self._carriers.submit(self.warm)
            raise WorkersBusy(f"{function}: no worker is free")
        return found

    def submit(self, function: str, *args: Any) -> Future[Any]:
        return self._carriers.submit(self.call, function, *args)

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._all if p.poll() is None]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            procs, self._all = self._all, []
        self._carriers.shutdown(wait=True, cancel_futures=True)
        for proc in procs:  # every worker told at once, then each waited for
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for proc in procs:
            self._discard(proc, wait=5.0)

    def _start(self) -> subprocess.Popen[bytes]:
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, path]))}
        flags = ["--sqlite-only"] if drivers.kept_out() else []
        flags += [f"--preload={module}" for module in self.preload]
        proc = subprocess.Popen(
            [sys.executable, "-m", "assetd.procs", *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        with self._lock:
            self._all = [p for p in self._all if p.poll() is None] + [proc]
        return proc

    def _discard(self, proc: subprocess.Popen[bytes], wait: float = 0.0) -> None:
        """End a worker (asking first when ``wait``), reap it, and close its pipes."""
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the worker's cue to exit
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        with self._lock:
            if proc in self._all:
                self._all.remove(proc)


class _Items:
    """What a task in a worker yields, as it arrives; ``value``: what it returned."""

    def __init__(
        self, procs: Processes, function: str, args: tuple[Any, ...], wait: bool = True
    ) -> None:
        self._exchange = procs._exchange(function, args, wait)
        self.value: Any = None

    def __iter__(self) -> _Items:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._exchange)
        except StopIteration as stop:
            self.value = stop.value
            raise StopIteration from None

    def close(self) -> None:
        self._exchange.close()


def run_here(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run ``fn`` now, in this thread; its result or error in a finished future."""
    future: Future[Any] = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:
        future.set_exception(exc)
    return future


# -- in the worker process ----------------------------------------------------------

_MORE = "more"  # a message that is one item a generator yielded; the answer follows
_AT_EXIT: list[Callable[[], object]] = []


def at_exit(close: Callable[[], object]) -> None:
    """In a worker: call ``close`` (a connection's, say) as the worker exits, which it
    does without the interpreter's teardown."""
    _AT_EXIT.append(close)


def _resolve(function: str, cache: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    if function not in cache:
        module, _, name = function.partition(":")
        if not module.startswith("assetd."):
            raise ValueError(f"not an assetd function: {function!r}")
        cache[function] = getattr(importlib.import_module(module), name)
    return cache[function]


def _serve() -> None:
    """A worker's life: tasks from stdin, results to stdout, until stdin closes."""
    # Ctrl-C reaches the whole process group: the parent decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tasks, results = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the results pipe
    functions: dict[str, Callable[..., Any]] = {}
    while True:
        try:
            function, args = pickle.load(tasks)
        except EOFError:
            return
        try:
            value = _resolve(function, functions)(*args)
            if inspect.isgenerator(value):
                for item in value:
                    pickle.dump((_MORE, item), results, pickle.HIGHEST_PROTOCOL)
                    results.flush()
                value = None
            answer: tuple[bool | str, Any] = (True, value)
        except Exception as exc:  # reported to the parent, which logs it
            answer = (False, f"{function}: {type(exc).__name__}: {exc}")
        pickle.dump(answer, results, pickle.HIGHEST_PROTOCOL)
        results.flush()


def main(flags: list[str]) -> NoReturn:
    """A worker process: ``python -m assetd.procs [--sqlite-only] [--preload=MODULE]...``."""
    gcpace.pace()  # as the process that started it
    os.nice(NICENESS)
    if "--sqlite-only" in flags:
        drivers.sqlite_only()
    for flag in flags:
        if flag.startswith("--preload=assetd."):
            importlib.import_module(flag.removeprefix("--preload="))
    _serve()
    # Every answer is flushed and the tasks' connections closed: the interpreter's
    # teardown, freeing every object a walk left, would only keep the parent waiting
    # at its close.
    for close in reversed(_AT_EXIT):
        with contextlib.suppress(Exception):  # nothing is left to report it to
            close()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    # Run as assetd.procs, the module the tasks import (at_exit among them), rather
    # than as __main__, a copy of it with lists of its own.
    from assetd import procs

    procs.main(sys.argv[1:])
