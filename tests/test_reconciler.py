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


def ops_since(catalog: Catalog, seq: int) -> list[str]:
    return [c["op"] for c in catalog.changes_since(seq, limit=10**6)]


def test_a_rename_inside_a_root_moves_the_location(
    tmp_path: Path, catalog: Catalog, reconciler: Reconciler
) -> None:
    """A MOVED hint keeps the location's id and asset and logs one ``moved``, nothing else."""
    old = write(tmp_path / "r" / "a.bin", "content", OLD_NS)
    reconciler.put(Hint(HintKind.CLOSED, os.fsencode(old)))
    settle(reconciler)
    before = catalog.get_state(os.fsencode(old))
    assert before is not None
    seq = catalog.latest_seq()
    new = tmp_path / "r" / "b.bin"
    old.rename(new)
    reconciler.put(Hint(HintKind.MOVED, os.fsencode(old), os.fsencode(new)))
    settle(reconciler)
    after = catalog.get_state(os.fsencode(new))
    assert after is not None and (after.id, after.asset_id) == (before.id, before.asset_id)
    assert catalog.get_state(os.fsencode(old)) is None
    assert ops_since(catalog, seq) == ["moved"]


def test_a_folder_renamed_moves_every_location_in_one_commit(
    tmp_path: Path, catalog: Catalog, reconciler: Reconciler
) -> None:
    """A DIR_MOVED hint moves all the folder's locations in one transaction."""
    files = [write(tmp_path / "r" / "d" / f"f{i}", f"{i}", OLD_NS) for i in range(5)]
    reconciler.put(Hint(HintKind.DIR_CHANGED, os.fsencode(tmp_path / "r" / "d")))
    wait_for(lambda: all(i["hash"] for i in live(catalog).values()) and len(live(catalog)) == 5)
    settle(reconciler)
    commits: list[list[str]] = []
    catalog.listeners.append(lambda changes: commits.append([c.json().decode() for c in changes]))
    (tmp_path / "r" / "d").rename(tmp_path / "r" / "e")
    reconciler.put(
        Hint(
            HintKind.DIR_MOVED, os.fsencode(tmp_path / "r" / "d"), os.fsencode(tmp_path / "r" / "e")
        )
    )
    settle(reconciler)
    assert sorted(live(catalog)) == sorted(str(tmp_path / "r" / "e" / f.name) for f in files)
    moved = [c for c in commits if '"op":"moved"' in c[0]]
    assert len(moved) == 1 and len(moved[0]) == 5


def test_work_runs_on_the_writer_and_answers_its_caller(
    catalog: Catalog, reconciler: Reconciler
) -> None:
    """``call`` returns what the work returned on the writer thread, or raises its error;
    work the writer itself submits runs at once instead of waiting behind itself."""
    import threading

    assert reconciler.call(lambda: threading.current_thread().name) == "assetd-reconciler"
    with pytest.raises(ZeroDivisionError):
        reconciler.call(lambda: 1 // 0)
    nested = reconciler.call(lambda: reconciler.submit(lambda: "inside").result(timeout=5))
    assert nested == "inside"


def test_a_full_queue_asks_for_one_rescan_until_it_drains(tmp_path: Path, catalog: Catalog) -> None:
    """Hints that do not fit are lost: ``put`` says so, and the overflow callback runs once."""
    root = RootConfig("r", str(tmp_path / "r"))
    rescans: list[int] = []
    rec = Reconciler(catalog, [root], queue_size=3, on_overflow=lambda: rescans.append(1))
    accepted = [rec.put(Hint(HintKind.CHANGED, b"%s/f%d" % (root.prefix, i))) for i in range(6)]
    assert accepted == [True, True, True, False, False, False]
    assert rescans == [1] and rec.overflows == 1
    rec.start()
    try:
        wait_for(rec.idle, 10, "the queue drained")
        assert rec.put(Hint(HintKind.CHANGED, root.prefix + b"g"))
    finally:
        rec.stop()


def test_a_batch_the_catalog_cannot_take_is_retried_until_it_can(
    tmp_path: Path, catalog: Catalog, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While writes fail for now, the reconciler says why and tries the same paths again."""
    import assetd.reconciler as module
    from assetd.exceptions import CatalogUnavailableError

    real, failures = module.apply_observations, [2]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise CatalogUnavailableError("cannot write the catalog: disk I/O error")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "apply_observations", flaky)
    path = write(tmp_path / "r" / "later.bin", "content", OLD_NS)
    reconciler.put(Hint(HintKind.CLOSED, os.fsencode(path)))
    wait_for(lambda: reconciler.catalog_error is not None, 10, "the error reported")
    wait_for(lambda: (live(catalog).get(str(path)) or {}).get("hash"), 20, "written at last")
    assert failures == [0] and reconciler.catalog_error is None
