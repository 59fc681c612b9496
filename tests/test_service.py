"""The Service with fakes at its seams: the status object, the roots check, the writer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from assetd.config import Config, RootConfig
from assetd.db import Change
from assetd.exceptions import InvalidRequestError
from assetd.service import Service

ROOTS = (RootConfig("models", "/srv/models"), RootConfig("out", "/srv/out"))


class FakeCatalog:
    catalog_id = "cat-1"

    def __init__(self) -> None:
        self.cleanups: list[tuple[Any, ...]] = []

    def latest_seq(self) -> int:
        return 12

    def root_counts(self) -> dict[str, tuple[int, int]]:
        return {"models": (5, 1)}

    def change_rows_since(self, seq: int, limit: int) -> list[Change]:
        return [Change(s, "models", b'{"op":"added"}') for s in range(seq + 1, 13)][:limit]

    def change_tags(self, path: bytes, add: Any, remove: Any) -> list[str]:
        raise AssertionError("written outside the writer")

    change_metadata = change_tags

    def cleanup_unreferenced_assets(self, older: float | None, *, dry_run: bool) -> int:
        self.cleanups.append((older, dry_run))
        return 3


class FakeSeeder:
    def __init__(self, errors: list[dict[str, Any]] | None = None) -> None:
        self.errors = errors or []

    def get_status(self) -> dict[str, Any]:
        return {"state": "IDLE", "progress": {"scanned": 4}, "errors": list(self.errors)}

    def prune_orphans(self) -> int:
        return 2


class FakeReconciler:
    """Records what is handed to the writer; runs it only when ``run`` is set, else
    answers with the next of ``answers`` (or ``answer``). Hashing is recorded too."""

    def __init__(
        self, run: bool = False, answer: Any = None, answers: list[Any] | None = None
    ) -> None:
        self.run, self.answer, self.answers = run, answer, list(answers or [])
        self.calls: list[Callable[..., Any]] = []
        self.hashed: list[list[Any]] = []

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls.append(fn)
        if self.run:
            return fn(*args)
        return self.answers.pop(0) if self.answers else self.answer

    def hash_now(self, states: Any) -> list[Any]:
        self.hashed.append(list(states))
        return [("outcome of", state) for state in states]


WATCH = {"overflows": 0, "hints": 9, "passes": 1}


def catalog_part(error: str | None = None) -> dict[str, Any]:
    return {"writable": error is None, "error": error, "node": "n", "shared": False}


def service(
    catalog: Any = None, seeder: Any = None, reconciler: Any = None, **parts: Any
) -> Service:
    config = Config(database="sqlite:////tmp/x.db", roots=ROOTS)
    catalog = catalog or FakeCatalog()
    seeder = seeder or FakeSeeder()
    reconciler = reconciler or FakeReconciler()
    return Service(
        catalog,
        config=lambda: config,
        seeder=lambda: seeder,
        reconciler=lambda: reconciler,
        start_pass=lambda roots, prune, hashes: True,
        **parts,
    )


def full(**overrides: Any) -> Service:
    parts = {
        "watch_states": lambda: {"models": "online", "out": "polling"},
        "watch": lambda: dict(WATCH),
        "catalog_status": lambda: catalog_part(),
        "feed": lambda: {"clients": 2, "dropped_clients": 0},
    }
    return service(**{**parts, **overrides})


def test_the_status_object_has_its_documented_shape() -> None:
    """Seeder state first, then seq, roots, and the watch, catalog and feed parts."""
    status = full().status()
    assert list(status) == [
        "state", "progress", "errors", "seq", "roots", "watch", "catalog", "feed",
    ]  # fmt: skip
    assert status["seq"] == 12
    assert status["roots"] == [
        {"name": "models", "path": "/srv/models", "online": True, "watch": "online",
         "files": 5, "missing": 1},
        {"name": "out", "path": "/srv/out", "online": True, "watch": "polling",
         "files": 0, "missing": 0},
    ]  # fmt: skip
    assert status["watch"] == WATCH
    assert status["feed"] == {"clients": 2, "dropped_clients": 0}


def test_a_root_without_a_watch_state_is_offline() -> None:
    """A root the watchers do not report is offline, not online."""
    roots = full(watch_states=dict).status()["roots"]
    assert [(r["online"], r["watch"]) for r in roots] == [(False, "offline"), (False, "offline")]


def test_a_catalog_that_cannot_be_written_is_the_first_error() -> None:
    """The live writer's catalog error goes before the pass's own errors."""
    seeder = FakeSeeder([{"root": "models", "message": "unreadable"}])
    status = full(seeder=seeder, catalog_status=lambda: catalog_part("disk full")).status()
    assert status["errors"] == [
        {"root": None, "message": "disk full; changes wait and are retried"},
        {"root": "models", "message": "unreadable"},
    ]


def test_without_parts_the_status_is_the_seeders_and_the_roots() -> None:
    """A Service given no parts still answers a status, with every root offline."""
    assert list(service().status()) == ["state", "progress", "errors", "seq", "roots"]


@pytest.mark.parametrize(
    "write",
    [
        lambda s, p: s.tag(p, ["a"], []),
        lambda s, p: s.meta(p, {"k": "v"}, []),
        lambda s, p: s.restore([b"/srv/models/ok", p]),
    ],
)
def test_paths_outside_every_root_are_refused(write: Callable[[Service, bytes], Any]) -> None:
    """A write naming a path outside the roots fails before reaching the writer."""
    reconciler = FakeReconciler()
    with pytest.raises(InvalidRequestError, match="outside every root"):
        write(service(reconciler=reconciler), b"/srv/modelsX/a")
    assert reconciler.calls == []


def test_writes_go_through_the_reconcilers_call() -> None:
    """Tags, metadata and restores are handed to the writer thread, not run here: a look
    at the disk and the change in one call when nothing is to hash."""
    reconciler = FakeReconciler(answers=[([], ["a", "b"]), ([], {"k": "v"}), (1, [])])
    s = service(reconciler=reconciler)
    assert s.tag(b"/srv/models/x", ["a"], []) == ["a", "b"]
    assert s.meta(b"/srv/out/y", {"k": "v"}, []) == {"k": "v"}
    assert s.restore([b"/srv/out/y"]) == 1
    assert len(reconciler.calls) == 3
    assert reconciler.hashed == []


def test_a_file_to_hash_is_hashed_between_two_writer_calls() -> None:
    """What the writer's look leaves waiting for a hash is hashed by the pool from the
    caller's thread, and its outcome handed to the writer's next call."""
    reconciler = FakeReconciler(answers=[(["state"], None), ["t"], (1, ["restored"]), None])
    s = service(reconciler=reconciler)
    assert s.tag(b"/srv/models/x", ["t"], []) == ["t"]
    assert s.restore([b"/srv/out/y"]) == 1
    assert reconciler.hashed == [["state"], ["restored"]]
    assert len(reconciler.calls) == 4


def test_cleanup_runs_on_the_writer() -> None:
    """``cleanup`` is the catalog's, called by the writer with the age and dry run."""
    catalog, reconciler = FakeCatalog(), FakeReconciler(run=True)
    assert service(catalog, reconciler=reconciler).cleanup(True, 60.0) == 3
    assert catalog.cleanups == [(60.0, True)] and len(reconciler.calls) == 1


def test_reads_go_to_the_catalog_and_the_seeder() -> None:
    """Sequence numbers, the log's rows and the state need no writer."""
    s = service()
    assert (s.latest_seq(), s.catalog_id, s.state(), s.prune()) == (12, "cat-1", "IDLE", 2)
    assert [c.seq for c in s.change_rows_since(10, 5)] == [11, 12]
