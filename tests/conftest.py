"""Shared fixtures: real folders, a real SQLite catalog, and a guard against leaked threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assetd.catalog import Catalog
from tests.harness import (
    OLD_NS,
    REPO,
    WITHOUT_DAC_CAPS,
    Daemon,
    hashed,
    make_root,
    python,
    run_cli,
    wait_for,
    write,
)

# The helpers live in tests/harness.py; tests that import them from here still may.
__all__ = [
    "OLD_NS",
    "REPO",
    "WITHOUT_DAC_CAPS",
    "Daemon",
    "hashed",
    "make_root",
    "python",
    "run_cli",
    "wait_for",
    "write",
]


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
