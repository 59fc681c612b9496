"""Operation sequences over hostile names, checked against a model of the disk.

Hypothesis makes sequences of creates, appends, renames (within and across roots) and
deletes, with names of any bytes a Linux file system allows (newlines, invalid UTF-8,
255-byte names, deep paths). After each sequence the catalog must equal the model —
through a scan (in-process, many examples) and through a live daemon's watchers (fewer,
slower examples). User tags set on a file follow it through renames.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from assetd.apply import look_again
from assetd.catalog import Catalog
from assetd.config import RootConfig
from assetd.hashing import hash_one
from assetd.seeder import AssetSeeder
from tests.chaos import checker
from tests.conftest import Daemon, wait_for
from tests.harness import item_path

pytestmark = pytest.mark.chaos

ROOTS = ("a", "b")

name_bytes = st.binary(min_size=1, max_size=255).filter(
    lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")
)
short_names = st.sampled_from([b"x", b"y.png", b"new\nline", b"\xff\xfe", b"caf\xc3\xa9", b"-"])
names = short_names | name_bytes
folders = st.lists(
    short_names
    | st.binary(min_size=1, max_size=40).filter(
        lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")
    ),
    max_size=6,
) | st.just([b"d" * 60] * 60)  # fmt: skip (the last: near PATH_MAX)
contents = st.binary(max_size=3000)

create = st.tuples(st.just("create"), st.sampled_from(ROOTS), folders, names, contents)
append = st.tuples(st.just("append"), st.integers(0, 10**6), contents)
rename = st.tuples(st.just("rename"), st.integers(0, 10**6), st.sampled_from(ROOTS), folders, names)
delete = st.tuples(st.just("delete"), st.integers(0, 10**6))
tag = st.tuples(st.just("tag"), st.integers(0, 10**6))
operations = st.lists(create | append | rename | delete | tag, min_size=1, max_size=25)


def hash_each(states: list) -> list:  # type: ignore[type-arg]
    """Hash in this thread, as a command without a daemon does."""
    return [hash_one(s) for s in states]


@dataclass
class Model:
    """What the disk should hold: full path -> content; and the tags given, by path."""

    base: bytes
    files: dict[bytes, bytes] = field(default_factory=dict)
    tags: dict[bytes, str] = field(default_factory=dict)

    def root(self, name: str) -> bytes:
        return os.path.join(self.base, name.encode())

    def pick(self, index: int) -> bytes | None:
        return sorted(self.files)[index % len(self.files)] if self.files else None

    def apply(self, op: tuple[Any, ...], tagger: Any = None) -> None:
        kind = op[0]
        if kind == "create":
            _, root, parts, name, content = op
            path = os.path.join(self.root(root), *parts, name)
            if not self._room_for(path):
                return
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(content)
            self.files[path] = content
            self.tags.pop(path, None)  # new content at the path: another asset
        elif kind == "append" and (path := self.pick(op[1])) is not None:
            with open(path, "ab") as fh:
                fh.write(op[2])
            self.files[path] += op[2]
            self.tags.pop(path, None)
        elif kind == "rename" and (path := self.pick(op[1])) is not None:
            _, _, root, parts, name = op
            dest = os.path.join(self.root(root), *parts, name)
            if dest == path or not self._room_for(dest):
                return
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.rename(path, dest)
            self.files[dest] = self.files.pop(path)
            if path in self.tags:
                self.tags[dest] = self.tags.pop(path)
            else:
                self.tags.pop(dest, None)
        elif kind == "delete" and (path := self.pick(op[1])) is not None:
            os.unlink(path)
            del self.files[path]
            self.tags.pop(path, None)
        elif kind == "tag" and tagger is not None and (path := self.pick(op[1])) is not None:
            self._tag(path, tagger)

    def _tag(self, path: bytes, tagger: Any) -> None:
        if tagger(path):
            self.tags[path] = "t"

    def _room_for(self, path: bytes) -> bool:
        """No file or folder in the way (a name taken by a folder, a folder by a file)."""
        if os.path.lexists(path) and (os.path.isdir(path) or path not in self.files):
            return False
        if len(path) >= 4000:
            return False
        parent = os.path.dirname(path)
        while parent != self.base:
            if parent in self.files:
                return False
            parent = os.path.dirname(parent)
        return True

    def expected(self) -> dict[bytes, str]:
        return {p: "blake3:" + blake3.blake3(c).hexdigest() for p, c in self.files.items()}


def roots_of(base: bytes) -> list[RootConfig]:
    out = []
    for name in ROOTS:
        os.makedirs(os.path.join(base, name.encode()), exist_ok=True)
        out.append(RootConfig(name, os.fsdecode(os.path.join(base, name.encode()))))
    return out


@settings(max_examples=120, deadline=None)
@given(ops=operations, middle=st.integers(0, 25))
@example(ops=[("create", "a", [], b"\x80", b"x"), ("tag", 0)], middle=1)  # a non-UTF-8 name
def test_scans_follow_any_sequence(ops: list[tuple[Any, ...]], middle: int) -> None:
    """A scan in the middle of the sequence and one at the end: the catalog is the model."""
    folder = tempfile.mkdtemp(prefix="assetd-model-")
    try:
        model = Model(os.fsencode(folder))
        roots = roots_of(model.base)
        catalog = Catalog(f"sqlite:///{folder}/catalog.db")
        try:

            def scan() -> None:
                seeder = AssetSeeder(catalog, roots)
                assert seeder.start(None) and seeder.wait(60)

            def tagger(path: bytes) -> bool:
                try:  # as `assetd tag add` does: look at the file, then tag what is there
                    look_again(catalog, roots, path, hash_states=hash_each)
                    catalog.change_tags(path, ["t"])
                    return True
                except Exception:  # not a file there (a folder took its name)
                    return False

            for index, op in enumerate(ops):
                if index == middle:
                    scan()
                model.apply(op, tagger)
            scan()
            assert checker.catalog_hashes(Path(folder) / "catalog.db") == model.expected()
            items, _ = catalog.list_locations(tag="t", limit=1000)
            tagged = {item_path(i) for i in items}
            for path in model.tags:
                assert path in tagged, path
        finally:
            catalog.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, bytes]]:
    tmp = tmp_path_factory.mktemp("live-model")
    base = os.fsencode(tmp / "data")
    roots = {r.name: Path(r.path) for r in roots_of(base)}
    daemon = Daemon(tmp, roots)
    daemon.start()
    yield daemon, base
    daemon.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_the_live_daemon_follows_any_sequence(live: tuple[Daemon, bytes], ops: list[Any]) -> None:
    """The watchers see every step; the catalog converges to the model without a scan."""
    daemon, base = live
    for name in ROOTS:  # a clean start for each example
        root = os.path.join(base, name.encode())
        for entry in os.listdir(root):
            full = os.path.join(root, entry)
            shutil.rmtree(full) if os.path.isdir(full) else os.unlink(full)
    db = Path(daemon.db.removeprefix("sqlite:///"))
    wait_for(lambda: checker.catalog_hashes(db) == {}, 30, "an empty catalog")
    model = Model(base)
    for op in ops:
        model.apply(op)
    expected = model.expected()
    wait_for(lambda: checker.catalog_hashes(db) == expected, 30, "the catalog to equal the model")
    assert checker.sequence_problems(db) == []
