"""What the tests and the bench share: real files, commands, daemons and feed requests."""

from __future__ import annotations

import asyncio
import base64
import json
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


def checkout_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess that runs assetd from this checkout: no
    configuration file named from outside, ``env`` on top."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO)}
    full_env.pop("ASSETD_CONFIG", None)
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
        found = re.findall(r"feed on ws://(\S+)/ws", self.log_text())
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
