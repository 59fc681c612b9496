"""Shared fixtures: real folders, a real SQLite catalog, and a guard against leaked threads."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assetd.config import RootConfig
from assetd.db import Catalog

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running behind it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server for the session (skips where none can run)."""
    from tests.postgres import PostgresServer, why_no_postgres

    reason = why_no_postgres()
    if reason is not None:
        pytest.skip(f"PostgreSQL mode not tested: {reason}")
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture
def pg_url(postgres: Any) -> str:
    """The URL of a fresh, empty PostgreSQL database."""
    return str(postgres.create_database())


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'catalog.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, db_url: str) -> Iterator[Catalog]:
    """A real catalog: a SQLite file, and the same tests again on a PostgreSQL server."""
    url = db_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    cat = Catalog(url)
    yield cat
    cat.close()


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


OLD_NS = 1_600_000_000 * 10**9  # a settled mtime: far from "now", never racily clean

# Root ignores permission bits; without these two capabilities it obeys them like anyone.
WITHOUT_DAC_CAPS = (
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
)


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO)}
    full_env.pop("ASSETD_CONFIG", None)
    full_env.update(env or {})
    return subprocess.run(
        [*prefix, sys.executable, "-m", "assetd", *args],
        capture_output=True,
        text=True,
        env=full_env,
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
    ) -> None:
        self.tmp_path = tmp_path
        self.db = database or f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"
        self.roots = roots
        self.config = config
        self.feed_listen = "127.0.0.1:0"
        if feed is not None or node is not None:  # settings only the file has: write one
            feed = feed or {}
            self.config = tmp_path / f"{name}.toml"
            lines = ["[daemon]", f"database = {json.dumps(self.db)}"]
            if node is not None:
                lines.append(f"node = {json.dumps(node)}")
            for root_name, path in roots.items():
                lines += [
                    "[[roots]]",
                    f"name = {json.dumps(root_name)}",
                    f"path = {json.dumps(str(path))}",
                ]
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
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        full_env.pop("ASSETD_CONFIG", None)
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        passes = self.log_text().count("assets.seed.completed")  # a restart appends
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "assetd", "run", *self.args()],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=full_env,
        )
        if wait:
            self.wait_log("assets.seed.completed", passes + 1)
        return self

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
        items, _ = self.catalog.list_locations(include_missing=True)
        return {i["path"]: i for i in items}

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


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Any]:
    made: list[Daemon] = []

    def make(roots: dict[str, Path] | None = None, **kwargs: Any) -> Daemon:
        if roots is None:
            roots = {"r": tmp_path / "r"}
        for path in roots.values():
            path.mkdir(parents=True, exist_ok=True)
        daemon = Daemon(tmp_path, roots, **kwargs)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.close()


def hashed(item: dict[str, Any]) -> bool:
    return item["hash"] is not None and not item["is_missing"]
