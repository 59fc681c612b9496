"""The reconciler with scripted hints (a seam for the watcher) over real files and SQLite."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assetd.catalog import Catalog
from assetd.config import RootConfig
from assetd.hashing import hash_file
from assetd.hints import Hint, HintKind
from assetd.reconciler import Reconciler
from tests.conftest import OLD_NS, wait_for, write
from tests.harness import locations_by_path


@pytest.fixture
def reconciler(tmp_path: Path, catalog: Catalog) -> Iterator[Reconciler]:
    root = RootConfig("r", str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    catalog.register_roots([(root.name, root.prefix)])
    rec = Reconciler(catalog, [root], settle_s=0.2)
    rec.start()
    yield rec
    rec.stop()


def settle(rec: Reconciler) -> None:
    wait_for(rec.idle, 20, "reconciler idle")


def live(catalog: Catalog) -> dict[str, Any]:
    return locations_by_path(catalog, include_missing=False)


def test_hints_are_only_hints(tmp_path: Path, catalog: Catalog, reconciler: Reconciler) -> None:
    """A hint says where to look: a CHANGED hint for a deleted file marks it missing."""
    f = write(tmp_path / "r" / "a", "a", OLD_NS)
    reconciler.put(Hint(HintKind.CHANGED, os.fsencode(f)))
    settle(reconciler)
    assert live(catalog)[str(f)]["hash"] == hash_file(os.fsencode(f)).hash
    f.unlink()
    reconciler.put(Hint(HintKind.CLOSED, os.fsencode(f)))  # the wrong kind: still only a hint
    settle(reconciler)
    assert str(f) not in live(catalog)


def test_file_being_written_is_hashed_once_closed(tmp_path: Path, catalog: Catalog) -> None:
    """Writes without a close register the file; its hash waits for the close (or settling)."""
    root = RootConfig("r", str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    rec = Reconciler(catalog, [root], settle_s=3600)  # never settles by itself here
    rec.start()
    try:
        path = tmp_path / "r" / "big.bin"
        with open(path, "wb") as fh:
            for size in (10, 20, 30):
                fh.write(b"x" * 10)
                fh.flush()
                rec.put(Hint(HintKind.CHANGED, os.fsencode(path)))
                wait_for(
                    lambda s=size: live(catalog).get(str(path), {}).get("size") == s, 10, "size"
                )
                assert live(catalog)[str(path)]["hash"] is None
        rec.put(Hint(HintKind.CLOSED, os.fsencode(path)))
        wait_for(lambda: live(catalog)[str(path)]["hash"] is not None, 10, "hash after close")
        ops = [c["op"] for c in catalog.changes_since(0)]
        assert ops.count("hashed") == 1 and ops[0] == "added"
    finally:
        rec.stop()


def test_file_written_without_close_events_is_hashed_once_still(
    tmp_path: Path, catalog: Catalog, reconciler: Reconciler
) -> None:
    """Without a close event (polling), a file is hashed once its stat stops changing."""
    path = write(tmp_path / "r" / "polled.bin", "content")
    reconciler.put(Hint(HintKind.CHANGED, os.fsencode(path)))
    wait_for(lambda: (live(catalog).get(str(path)) or {}).get("hash"), 10, "hash once settled")


OPS = st.lists(
    st.tuples(
        st.sampled_from(["write", "append", "rename", "delete", "mkdir-move"]), st.integers(0, 5)
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None)
@given(ops=OPS, seed=st.integers(0, 2**16))
def test_shuffled_and_repeated_hints_converge_to_the_disk(
    ops: list[tuple[str, int]], seed: int
) -> None:
    """Whatever order and repetition the hints come in, the catalog ends equal to the disk."""
    base = Path(tempfile.mkdtemp(prefix="assetd-rec-"))
    catalog = Catalog(f"sqlite:///{base / 'c.db'}")
    root = RootConfig("r", str(base / "r"))
    (base / "r").mkdir()
    catalog.register_roots([(root.name, root.prefix)])
    rec = Reconciler(catalog, [root], settle_s=0)
    rec.start()
    try:
        touched: list[Hint] = []
        for op, n in ops:
            f = base / "r" / f"f{n}"
            if op == "write":
                write(f, f"content {n} {op}")
            elif op == "append" and f.exists():
                with open(f, "ab") as fh:
                    fh.write(b"+")
            elif op == "rename" and f.exists():
                dest = base / "r" / f"f{(n + 1) % 6}"
                os.rename(f, dest)
                touched.append(Hint(HintKind.MOVED, os.fsencode(f), os.fsencode(dest)))
            elif op == "delete" and f.exists():
                f.unlink()
            elif op == "mkdir-move" and f.exists():
                (base / "r" / "d").mkdir(exist_ok=True)
                os.rename(f, base / "r" / "d" / f.name)
                touched.append(Hint(HintKind.DIR_CHANGED, os.fsencode(base / "r" / "d")))
            touched.append(Hint(HintKind.CHANGED, os.fsencode(f)))
            touched.append(Hint(HintKind.CLOSED, os.fsencode(f)))
        rng = random.Random(seed)
        hints = touched * 2
        rng.shuffle(hints)
        for hint in hints:
            assert rec.put(hint)
        wait_for(rec.idle, 30, "reconciler idle")
        on_disk = {
            os.path.join(dirpath, name): hash_file(os.fsencode(os.path.join(dirpath, name))).hash
            for dirpath, _, names in os.walk(base / "r")
            for name in names
        }
        assert {p: i["hash"] for p, i in live(catalog).items()} == on_disk
        seqs = [c["seq"] for c in catalog.changes_since(0, limit=10**6)]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        rec.stop()
        catalog.close()
        shutil.rmtree(base)
