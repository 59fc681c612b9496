"""Shared fixtures: real folders, a real SQLite catalog, and a guard against leaked threads."""

from __future__ import annotations

import os
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


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'catalog.db'}"


@pytest.fixture
def catalog(db_url: str) -> Iterator[Catalog]:
    cat = Catalog(db_url)
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
