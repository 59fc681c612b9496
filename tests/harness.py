"""What the tests and the bench share: real files, commands, daemons and feed requests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import mmap
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assetd.catalog import Catalog
from assetd.config import RootConfig

REPO = Path(__file__).resolve().parent.parent

OLD_NS = 1_600_000_000 * 10**9  # a settled mtime: far from "now", never racily clean

# Root ignores permission bits; without these two capabilities it obeys them like anyone.
WITHOUT_DAC_CAPS = (
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
)

REPLY_TIMEOUT_S = 20  # for each frame while a feed request waits for its reply


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def make_root(base: Path, name: str, exclude: tuple[str, ...] = ()) -> RootConfig:
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    return RootConfig(name=name, path=os.path.realpath(folder), exclude=exclude)


def write(path: Path, content: bytes | str = b"x", mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def evict(path: Path) -> bool:
    """Drop a file's pages from the page cache (written back first); whether it worked:
    on tmpfs, say, the cache is where the file lives and nothing can be dropped."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages stay cached
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return cached_bytes(path) == 0


def cached_bytes(path: Path) -> int:
    """How many bytes of a file the page cache holds: after :func:`evict`, what has been
    read of it since (``mincore`` over a mapping of it; mapping it reads nothing)."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]  # fmt: skip
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    page = os.sysconf("SC_PAGE_SIZE")
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            resident = (ctypes.c_ubyte * pages)()
            if libc.mincore(address, size, resident) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    return min(size, sum(flag & 1 for flag in resident) * page)


def checkout_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess that runs assetd from this checkout: no
    configuration file named from outside, not under a journal, ``env`` on top."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO)}
    full_env.pop("ASSETD_CONFIG", None)
    full_env.pop("JOURNAL_STREAM", None)
    full_env.update(env or {})
    return full_env


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess, as a user would."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "assetd", *args],
        capture_output=True,
        text=True,
        env=checkout_env(env),
        timeout=120,
        **kwargs,
    )


def python(code: str) -> str:
    """Run ``code`` in a fresh interpreter from the checkout; its stdout, stripped."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def hashed(item: dict[str, Any]) -> bool:
    return item["hash"] is not None and not item["is_missing"]


def item_path(item: dict[str, Any]) -> bytes:
    """A listed location's exact path: its bytes when the name is not UTF-8."""
    if "path_bytes_b64" in item:
        return base64.b64decode(item["path_bytes_b64"])
    return os.fsencode(item["path"])


def locations_by_path(
    catalog: Catalog,
    *,
    include_missing: bool = True,
    key: Callable[[dict[str, Any]], Any] = lambda item: item["path"],
) -> dict[Any, dict[str, Any]]:
    """The catalog's locations, keyed by their listed path (or by ``key``, such as
    :func:`item_path` where names that are not UTF-8 must stay apart)."""
    items, _ = catalog.list_locations(include_missing=include_missing)
    return {key(item): item for item in items}


def listed_by_path(json_lines: str) -> dict[str, dict[str, Any]]:
    """``assetd ls --json`` output, keyed by path."""
    return {item["path"]: item for item in map(json.loads, json_lines.splitlines())}


def _request_frame(cmd: str, args: dict[str, Any]) -> tuple[str, str]:
    request_id = f"{cmd}-{os.urandom(4).hex()}"
    return request_id, json.dumps({"id": request_id, "cmd": cmd, **args})


def _is_reply(message: dict[str, Any], request_id: str) -> bool:
    return message.get("type") == "result" and message.get("id") == request_id


async def request(ws: Any, cmd: str, **args: Any) -> dict[str, Any]:
    """Send a feed request on an asyncio websocket and return its reply, setting aside
    anything pushed meanwhile."""
    request_id, frame = _request_frame(cmd, args)
    await ws.send(frame)
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
        if _is_reply(message, request_id):
            return dict(message)


def request_sync(ws: Any, cmd: str, **args: Any) -> dict[str, Any]:
    """:func:`request` on a websocket of ``websockets.sync``."""
    request_id, frame = _request_frame(cmd, args)
    ws.send(frame)
    while True:
        message = json.loads(ws.recv(REPLY_TIMEOUT_S))
        if _is_reply(message, request_id):
            return dict(message)


class Daemon:
    """An ``assetd run`` subprocess, its log, and a reader of its catalog."""

    def __init__(
        self,
        tmp_path: Path,
        roots: dict[str, Path],
        config: Path | None = None,
        feed: dict[str, Any] | None = None,
        database: str | None = None,
        node: str | None = None,
        name: str = "daemon",
        settings: dict[str, Any] | None = None,
        watch: str | None = None,
    ) -> None:
        """``settings``: more of ``[daemon]`` (``follow_symlinks``); ``watch``: every
        root's ``watch``."""
        self.tmp_path = tmp_path
        self.db = database or f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"
        self.roots = roots
        self.config = config
        self.feed_listen = "127.0.0.1:0"
        if feed is not None or node is not None or settings or watch:
            # Settings only the file has: write one.
            feed = feed or {}
            self.config = tmp_path / f"{name}.toml"
            lines = ["[daemon]", f"database = {json.dumps(self.db)}"]
            if node is not None:
                lines.append(f"node = {json.dumps(node)}")
            lines += [f"{key} = {json.dumps(value)}" for key, value in (settings or {}).items()]
            for root_name, path in roots.items():
                lines += [
                    "[[roots]]",
                    f"name = {json.dumps(root_name)}",
                    f"path = {json.dumps(str(path))}",
                ]
                if watch is not None:
                    lines.append(f"watch = {json.dumps(watch)}")
            lines += ["[feed]", 'listen = "127.0.0.1:0"']
            lines += [f"{key} = {json.dumps(value)}" for key, value in feed.items()]
            self.config.write_text("\n".join(lines) + "\n")
        self.log_path = tmp_path / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._catalog: Catalog | None = None

    def args(self) -> list[str]:
        if self.config is not None:
            return ["--config", str(self.config)]
        flags = ["--db", self.db, "--listen", self.feed_listen]
        for name, path in self.roots.items():
            flags += ["--root", f"{name}={path}"]
        return flags

    def start(
        self, env: dict[str, str] | None = None, wait: bool = True, prefix: tuple[str, ...] = ()
    ) -> Daemon:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.passes_before = self.log_text().count("assets.seed.completed")  # a restart appends
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "assetd", "run", *self.args()],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=checkout_env(env),
        )
        if wait:
            self.wait_started()
        return self

    def wait_started(self, timeout: float = 60) -> None:
        """Wait for the startup pass of the daemon last started."""
        self.wait_log("assets.seed.completed", self.passes_before + 1, timeout)

    @property
    def db_path(self) -> Path:
        """The SQLite catalog's file."""
        assert self.db.startswith("sqlite:///"), self.db
        return Path(self.db.removeprefix("sqlite:///"))

    @property
    def address(self) -> str:
        """The feed's HOST:PORT: from the runtime file beside a SQLite catalog, else from
        the daemon's log (a shared catalog has no runtime file)."""
        if self.db.startswith("sqlite:"):
            runtime = Path(self.db.removeprefix("sqlite:///") + ".daemon")
            return str(json.loads(runtime.read_text())["listen"])
        found = re.findall(r"\(feed ws://(\S+)/ws\)", self.log_text())
        assert found, "the daemon has not said where its feed listens"
        return str(found[-1])

    def cli_args(self) -> list[str]:
        """Flags for the command line to reach this daemon: a shared catalog's daemon is
        found at the listen address in effect, so name the one it listens on."""
        if self.db.startswith("sqlite:"):
            return self.args()
        return [*self.args(), "--listen", self.address]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1, timeout: float = 60) -> None:
        def seen() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log_text()}")
            return self.log_text().count(text) >= count

        wait_for(seen, timeout, f"{text!r} x{count} in the daemon log")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self.log.close()
        return code

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.db)
        return self._catalog

    def items(self) -> dict[str, dict[str, Any]]:
        return locations_by_path(self.catalog)

    def item(self, path: Path) -> dict[str, Any] | None:
        return self.items().get(str(path))

    def until(self, path: Path, what: str, check: Any, timeout: float = 20) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            item = self.item(path)
            return item if item is not None and check(item) else None

        return wait_for(ready, timeout, f"{path} {what}")

    def status(self) -> dict[str, Any]:
        """The running daemon's status, asked through the command line."""
        proc = run_cli("status", *self.cli_args())
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    def ops(self, since: int = 0) -> list[str]:
        return [c["op"] for c in self.catalog.changes_since(since, limit=10**6)]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop(signal.SIGKILL)
        if self.proc is not None and not self.log.closed:
            self.proc.wait()
            self.log.close()
        if self._catalog is not None:
            self._catalog.close()


class ChangeFeed:
    """A feed client subscribed to the changes after ``since`` (all live ones when None),
    keeping every change it reads, each with the moment it was read, indexed by the
    paths it names.

    A context manager: its websocket has a thread of its own, closed on leaving. Frames
    are read only inside :meth:`until` (or :meth:`read`), so :attr:`arrived` is when this
    client read a change, not when it reached the socket; time arrivals from a loop that
    reads as they come, as :meth:`until` does.
    """

    def __init__(self, address: str, since: int | None = None) -> None:
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        # Unbounded: a test that lets thousands of changes pile up must not throttle the
        # daemon through TCP and be told to resync.
        self.ws = self._stack.enter_context(
            connect(f"ws://{address}/ws", max_size=None, max_queue=None)
        )
        try:
            self.hello = json.loads(self.ws.recv(REPLY_TIMEOUT_S))
            args = {} if since is None else {"since": since}
            self.seq = int(request_sync(self.ws, "subscribe", **args)["result"]["seq"])
        except BaseException:
            self._stack.close()
            raise
        self.changes: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.perf_counter() when each change was read
        self._naming: dict[str, list[dict[str, Any]]] = {}  # path -> changes that name it
        self._at: dict[str, dict[str, Any]] = {}  # path -> the last change located there
        self._moved_from: dict[str, int] = {}  # path -> seq of the last move away from it

    def __enter__(self) -> ChangeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def read(self, timeout: float) -> dict[str, Any] | None:
        """Read one message (kept if it is a change); None when none came in ``timeout``."""
        try:
            message = dict(json.loads(self.ws.recv(timeout)))
        except TimeoutError:
            return None
        if message.get("type") == "resync-required":
            raise AssertionError(f"the feed asked this client to resync: {message}")
        if message.get("type") == "change":
            self.changes.append(message)
            self.arrived.append(time.perf_counter())
            path, old = message["location"]["path"], message.get("old_path")
            self._naming.setdefault(path, []).append(message)
            self._at[path] = message
            if old is not None and old != path:
                self._naming.setdefault(old, []).append(message)
                self._moved_from[old] = message["seq"]
        return message

    def until(self, condition: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
        """Read changes until ``condition()`` is truthy (checked after each), or fail."""
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            left = deadline - time.monotonic()
            if left <= 0:
                last = [(c["op"], c["location"]["path"]) for c in self.changes[-10:]]
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what or 'the feed'}; "
                    f"last changes: {last}"
                )
            self.read(min(left, 0.5))
        return value

    def about(self, path: Path | str) -> list[dict[str, Any]]:
        """The changes read so far that name ``path``, as the location or as ``old_path``."""
        return list(self._naming.get(str(path), []))

    def latest(self, path: Path | str) -> dict[str, Any] | None:
        """The Location of the last change read whose location is at ``path``."""
        change = self._at.get(str(path))
        return None if change is None else dict(change["location"])

    def left(self, path: Path | str) -> bool:
        """Whether the feed has said that nothing is live at ``path`` any more: moved away
        from it, or missing there, whichever it said last."""
        change = self._at.get(str(path))
        moved_from = self._moved_from.get(str(path), -1)
        if change is None or change["seq"] < moved_from:
            return moved_from >= 0
        return bool(change["location"]["is_missing"])

    def hashed_at(self, path: Path | str) -> dict[str, Any] | None:
        """The last Location read at ``path`` when it is live and carries a hash."""
        item = self.latest(path)
        return item if item is not None and hashed(item) else None
