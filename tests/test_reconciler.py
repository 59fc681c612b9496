"""The reconciler with scripted hints (a seam for the watcher) over real files and SQLite."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
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


def two_roots(tmp_path: Path, catalog: Catalog, **kwargs: Any) -> Reconciler:
    roots = [RootConfig(n, str(tmp_path / n)) for n in ("r", "s")]
    for root in roots:
        Path(root.path).mkdir(exist_ok=True)
    catalog.register_roots([(r.name, r.prefix) for r in roots])
    rec = Reconciler(catalog, roots, settle_s=0.2, **kwargs)
    rec.start()
    return rec


def hashed_file(rec: Reconciler, catalog: Catalog, path: Path, content: str) -> Any:
    write(path, content, OLD_NS)
    rec.put(Hint(HintKind.CLOSED, os.fsencode(path)))
    settle(rec)
    state = catalog.get_state(os.fsencode(path))
    assert state is not None and state.hash is not None
    return state


def changes_since(catalog: Catalog, seq: int) -> list[tuple[str, str, str | None]]:
    return [(c["op"], c["location"]["path"], c.get("old_path")) for c in catalog.changes_since(seq)]


@pytest.mark.parametrize("new_first", [True, False], ids=["new path first", "old path first"])
def test_an_unpaired_move_across_roots_is_one_move(
    tmp_path: Path, catalog: Catalog, new_first: bool
) -> None:
    """Two looks that watchdog could not pair (another root's watcher), in either order
    within the move window, are one ``moved``: same location, asset and hash."""
    rec = two_roots(tmp_path, catalog, move_window_s=5.0)
    try:
        old, new = tmp_path / "r" / "a.bin", tmp_path / "s" / "sub" / "a.bin"
        before = hashed_file(rec, catalog, old, "one file")
        seq = catalog.latest_seq()
        new.parent.mkdir()
        old.rename(new)
        looks = [Hint(HintKind.CHANGED, os.fsencode(old)), Hint(HintKind.CHANGED, os.fsencode(new))]
        for hint in reversed(looks) if new_first else looks:
            rec.put(hint)
            rec.call(lambda: None)  # the writer has taken the hint
        settle(rec)
        after = catalog.get_state(os.fsencode(new))
        assert after is not None
        assert (after.id, after.asset_id, after.hash) == (before.id, before.asset_id, before.hash)
        assert after.root == "s" and not after.is_missing and not after.needs_verify
        assert catalog.get_state(os.fsencode(old)) is None
        assert changes_since(catalog, seq) == [("moved", str(new), str(old))]
    finally:
        rec.stop()


def test_a_file_back_after_the_window_is_moved_out_of_missing(
    tmp_path: Path, catalog: Catalog
) -> None:
    """A file seen at its new path only after its old one was marked missing takes its
    location back: ``missing``, then ``moved``, one asset throughout, nothing re-read."""
    rec = two_roots(tmp_path, catalog, move_window_s=0.05)
    try:
        old, new = tmp_path / "r" / "a.bin", tmp_path / "s" / "a.bin"
        before = hashed_file(rec, catalog, old, "late")
        seq = catalog.latest_seq()
        old.rename(new)
        rec.put(Hint(HintKind.CHANGED, os.fsencode(old)))
        settle(rec)
        rec.put(Hint(HintKind.CHANGED, os.fsencode(new)))
        settle(rec)
        after = catalog.get_state(os.fsencode(new))
        assert after is not None and (after.id, after.asset_id) == (before.id, before.asset_id)
        assert not after.is_missing and not after.needs_verify
        assert [op for op, _, _ in changes_since(catalog, seq)] == ["missing", "moved"]
        assert "missing" not in live(catalog)[str(new)]["tags"]
    finally:
        rec.stop()


def test_a_hard_link_is_a_second_location_not_a_move(
    tmp_path: Path, catalog: Catalog, reconciler: Reconciler
) -> None:
    """A new name for an inode whose first name still holds it is added, not moved."""
    first = tmp_path / "r" / "a.bin"
    before = hashed_file(reconciler, catalog, first, "linked")
    link = tmp_path / "r" / "b.bin"
    os.link(first, link)
    reconciler.put(Hint(HintKind.CLOSED, os.fsencode(link)))
    settle(reconciler)
    assert catalog.get_state(os.fsencode(first)) == before
    state = catalog.get_state(os.fsencode(link))
    assert state is not None and state.id != before.id and state.asset_id == before.asset_id


def added_alone(rec: Reconciler, catalog: Catalog, path: Path, content: str) -> dict[str, Any]:
    """Write a complete file, hint it closed; its one change (asserted ``added``)."""
    seq = catalog.latest_seq()
    write(path, content, OLD_NS)
    rec.put(Hint(HintKind.CLOSED, os.fsencode(path)))
    settle(rec)
    changes = catalog.changes_since(seq)
    assert [c["op"] for c in changes] == ["added"]
    return dict(changes[0]["location"])


def test_a_small_complete_file_is_added_with_its_hash(
    tmp_path: Path, catalog: Catalog, reconciler: Reconciler
) -> None:
    """A small file complete when first seen is one ``added`` change carrying its hash."""
    path = tmp_path / "r" / "small.txt"
    location = added_alone(reconciler, catalog, path, "complete")
    assert location["hash"] == hash_file(os.fsencode(path)).hash
    assert location["needs_verify"] is False


def test_a_second_copy_complete_when_seen_joins_its_content_in_its_added(
    tmp_path: Path, catalog: Catalog, reconciler: Reconciler
) -> None:
    """A copy of known content, complete when seen, is added straight into that asset."""
    first = hashed_file(reconciler, catalog, tmp_path / "r" / "a.txt", "same")
    location = added_alone(reconciler, catalog, tmp_path / "r" / "b.txt", "same")
    assert location["asset_id"] == first.asset_id
    assert catalog.models.Asset.select().count() == 1


def test_a_file_being_written_is_reported_at_most_once_a_second(
    tmp_path: Path, catalog: Catalog
) -> None:
    """A file written piece by piece, a hint per piece, gets one change a second at most
    while it grows, and once closed one ``hashed`` with the hash of what it holds."""
    root = RootConfig("r", str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    catalog.register_roots([(root.name, root.prefix)])
    rec = Reconciler(catalog, [root], settle_s=3600, report_every_s=0.5)
    rec.start()
    try:
        seq = catalog.latest_seq()
        path = tmp_path / "r" / "download.bin"
        started = time.monotonic()
        with open(path, "wb") as fh:
            while time.monotonic() - started < 1.6:  # the workload: a slow writer for 1.6 s
                fh.write(b"x" * 16384)
                fh.flush()
                rec.put(Hint(HintKind.CHANGED, os.fsencode(path)))
                time.sleep(0.005)  # the writer's pace (a download), not a wait for the daemon
        written = time.monotonic() - started
        rec.put(Hint(HintKind.CLOSED, os.fsencode(path)))
        settle(rec)
        changes = catalog.changes_since(seq)
        ops = [c["op"] for c in changes]
        assert ops[0] == "added" and ops[-1] == "hashed"
        assert set(ops[1:-1]) <= {"modified"}
        assert len(ops) - 1 <= written / 0.5 + 2
        assert changes[-1]["location"]["hash"] == hash_file(os.fsencode(path)).hash
        assert changes[-1]["location"]["size"] == path.stat().st_size
    finally:
        rec.stop()


def test_a_moved_file_that_waited_for_its_hash_is_still_hashed(
    tmp_path: Path, catalog: Catalog
) -> None:
    """A file still settling when it is renamed keeps waiting for its hash at its new path."""
    rec = two_roots(tmp_path, catalog)
    try:
        old = tmp_path / "r" / "fresh.bin"
        old.write_bytes(b"still being written")
        rec.put(Hint(HintKind.CHANGED, os.fsencode(old)))
        wait_for(lambda: catalog.get_state(os.fsencode(old)) is not None, 10, "registered")
        new = tmp_path / "s" / "fresh.bin"
        old.rename(new)
        rec.put(Hint(HintKind.CHANGED, os.fsencode(new)))
        settle(rec)
        state = catalog.get_state(os.fsencode(new))
        assert state is not None and state.hash == hash_file(os.fsencode(new)).hash
        assert catalog.get_state(os.fsencode(old)) is None
    finally:
        rec.stop()


def test_a_file_renamed_over_another_takes_its_place(
    tmp_path: Path, catalog: Catalog, reconciler: Reconciler
) -> None:
    """``mv a b`` over a cataloged ``b``: a's location moves to b (asset, tags and all);
    b's location, whose content is gone, is removed; its asset keeps its user tags."""
    a, b = tmp_path / "r" / "a.bin", tmp_path / "r" / "b.bin"
    moving = hashed_file(reconciler, catalog, a, "the one that moves")
    replaced = hashed_file(reconciler, catalog, b, "the one overwritten")
    catalog.change_tags(os.fsencode(a), add=["keep"])
    catalog.change_tags(os.fsencode(b), add=["old"])
    seq = catalog.latest_seq()
    a.rename(b)
    reconciler.put(Hint(HintKind.MOVED, os.fsencode(a), os.fsencode(b)))
    settle(reconciler)
    assert changes_since(catalog, seq) == [("removed", str(b), None), ("moved", str(b), str(a))]
    state = catalog.get_state(os.fsencode(b))
    assert state is not None and (state.id, state.asset_id) == (moving.id, moving.asset_id)
    assert catalog.get_state(os.fsencode(a)) is None
    assert "keep" in live(catalog)[str(b)]["tags"]
    assert catalog.tags_of([replaced.asset_id])[replaced.asset_id] == ["missing", "old"]
