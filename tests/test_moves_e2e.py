"""Moves keep identity, files being written are throttled, complete files come with
their hash: a real daemon over real roots, watched through a real feed client.

Written against the contract's additions ("A file keeps its identity through every
move", "Files being written") and DESIGN.md ("Identity is (device, inode) before it is a
hash"). The status object has no live count of the bytes the daemon hashed (only a
pass's ``progress.hashed_bytes``), so "a moved file is not read again" is shown two
ways: by the change log (no ``hashed`` change, the asset id unchanged, no pass hashing
anything meanwhile), and by the page cache: each file's pages are evicted before the
move, and none may be back after it (a re-hash that finds the same content sends no
change at all, so only this shows it).
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.harness import (
    OLD_NS,
    ChangeFeed,
    Daemon,
    cached_bytes,
    evict,
    hashed,
    listed_by_path,
    run_cli,
    write,
)

# A real file of random bytes, not a sparse one: what was read of it is seen in the page
# cache as well as in the status's count of bytes hashed, and 64 MiB keeps its writing
# (and a re-hash, if there is one) well under a second.
BIG = 64 << 20
PIECE = 16 << 10  # a download's write size
WRITING_S = 3.0  # how long the slow download writes


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """The test's folder, symlinks resolved: the daemon names files by their real path."""
    return tmp_path.resolve()


def two_roots(base: Path) -> dict[str, Path]:
    return {"models": base / "models", "loras": base / "loras"}


def roots_of(roots: dict[str, Path], moves: dict[Path, Path]) -> dict[Path, str]:
    """The name of the root each file moved into."""
    return {
        new: next(name for name, folder in roots.items() if new.is_relative_to(folder))
        for new in moves.values()
    }


def blake3_of(path: Path) -> str:
    digest = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return f"blake3:{digest.hexdigest()}"


def fence(feed: ChangeFeed, folder: Path) -> None:
    """Wait until a file closed after what the test did has its hash at the client: the
    daemon's changes queued before it (a late `missing`, a small file's re-hash) have
    reached the feed, and a large file's re-hash, if any, has begun reading."""
    marker = write(folder / f"fence-{os.urandom(4).hex()}.bin", os.urandom(FENCE_BYTES))
    feed.until(lambda: feed.hashed_at(marker), 20, f"the fence {marker.name}")


def evict_all(base: Path, paths: list[Path]) -> bool:
    """Evict the files' pages before they move; False on a filesystem that cannot evict
    anything (tmpfs), where what the daemon reads of them cannot be seen, nor checked."""
    if all([evict(path) for path in paths]):
        return True
    probe = write(base / f"probe-{os.urandom(4).hex()}", os.urandom(4096))  # outside the roots
    assert not evict(probe), "pages of the files stayed cached: something holds them mapped"
    return False


def bytes_read(paths: list[Path]) -> int:
    """What has been read of the files since they were evicted (by the daemon: the test
    reads none of them)."""
    return sum(cached_bytes(path) for path in paths)


def assert_each_moved_once(
    changes: list[dict[str, Any]],
    moves: dict[Path, Path],
    assets: dict[Path, int],
    root: dict[Path, str],
) -> None:
    """Each file: exactly one change among ``changes`` about its old or new path, a
    `moved` from old to new that keeps its asset, in the root it went to."""
    by_path: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for change in changes:
        for path in {change["location"]["path"], change.get("old_path")} - {None}:
            by_path[path].append(change)
    per_file = {
        old: sorted({c["seq"]: c for c in by_path[str(old)] + by_path[str(new)]}.items())
        for old, new in moves.items()
    }
    sequences = collections.Counter(tuple(c["op"] for _, c in seen) for seen in per_file.values())
    assert sequences == {("moved",): len(moves)}, f"ops per moved file: {dict(sequences)}"
    for old, new in moves.items():
        ((_, change),) = per_file[old]
        assert change["old_path"] == str(old)
        assert change["location"]["path"] == str(new)
        assert change["location"]["root"] == root[new]
        assert change["location"]["asset_id"] == assets[old], f"{new} changed asset"
        assert hashed(change["location"])


def catalogued(daemon: Daemon, files: list[Path]) -> dict[Path, int]:
    """The asset id of each file, which the startup pass has hashed."""
    items = daemon.items()
    assert all(hashed(items[str(f)]) for f in files), "the startup pass left files unhashed"
    return {f: items[str(f)]["asset_id"] for f in files}


def listed(daemon: Daemon) -> dict[str, dict[str, Any]]:
    """``assetd ls --include-missing --json``, keyed by path."""
    proc = run_cli("ls", "--include-missing", "--json", *daemon.args())
    assert proc.returncode == 0, proc.stderr
    return listed_by_path(proc.stdout)


FENCE_BYTES = 64  # what fence() writes, and the daemon then hashes


def live_hashed_bytes_since(before: dict[str, Any], daemon: Daemon, fences: int = 1) -> int:
    """Bytes the live path hashed since the status ``before``, the fences' left out."""
    after = daemon.status()["watch"]["hashed_bytes"]
    return int(after - before["watch"]["hashed_bytes"]) - fences * FENCE_BYTES


def pass_hashed_bytes_since(before: dict[str, Any], daemon: Daemon) -> int:
    """Bytes hashed by a pass that ran since the status ``before`` (0 when none ran: the
    status still shows the earlier pass's progress)."""
    after = daemon.status()
    if after["progress"] == before["progress"]:
        return 0
    return int(after["progress"]["hashed_bytes"])


def converged(feed: ChangeFeed, moves: dict[Path, Path]) -> bool:
    """Every file live with its hash at its new path, and nothing live at its old one."""
    return all(feed.hashed_at(new) and feed.left(old) for old, new in moves.items())


def test_big_file_into_a_new_folder_is_one_moved(base: Path, make_daemon: Any) -> None:
    """A hashed 64 MiB file moved into a folder made just before: one `moved`, same asset."""
    roots = two_roots(base)
    big = write(roots["models"] / "big.safetensors", os.urandom(BIG), OLD_NS)
    d = make_daemon(roots).start()
    asset_id = d.until(big, "hashed", hashed)["asset_id"]
    status = d.status()
    here = big
    with ChangeFeed(d.address) as feed:
        # Three times, each into folders new then: whether the watch on a new folder is
        # armed before the rename depends on how the two processes are scheduled, and a
        # watch armed in time lets watchdog pair the rename itself.
        for hop in range(3):
            dest = roots["models"] / f"checkpoints{hop}" / "sdxl" / big.name
            seen = len(feed.changes)
            watched = evict_all(base, [here])
            os.makedirs(dest.parent)  # mkdir -p && mv, no pause between
            os.rename(here, dest)
            move = {here: dest}
            feed.until(functools.partial(converged, feed, move), 30, "the move to reach the feed")
            fence(feed, roots["models"])
            assert_each_moved_once(feed.changes[seen:], move, {here: asset_id}, {dest: "models"})
            assert not watched or bytes_read([dest]) == 0, "the moved file was read again"
            here = dest
    rows = listed(d)
    assert [p for p in rows if p.endswith(big.name)] == [str(here)], "old paths left as rows"
    assert pass_hashed_bytes_since(status, d) == 0
    assert live_hashed_bytes_since(status, d, fences=3) == 0, "the moved file was hashed"


def test_move_across_roots_keeps_asset_tags_and_metadata(base: Path, make_daemon: Any) -> None:
    """A file moved from root models to root loras: one `moved`, asset, tags, metadata kept."""
    roots = two_roots(base)
    src = write(roots["models"] / "style.safetensors", os.urandom(BIG), OLD_NS)
    d = make_daemon(roots).start()
    before = d.until(src, "hashed", hashed)
    for command in (["tag", "add", str(src), "favourite"], ["meta", str(src), "note=kept"]):
        proc = run_cli(*command, *d.args())
        assert proc.returncode == 0, proc.stderr
    status = d.status()
    dest = roots["loras"] / "style.safetensors"
    watched = evict_all(base, [src])
    with ChangeFeed(d.address) as feed:
        os.rename(src, dest)
        feed.until(lambda: converged(feed, {src: dest}), 30, "the move to reach the feed")
        fence(feed, roots["loras"])
        move = {src: dest}
        assert_each_moved_once(feed.changes, move, {src: before["asset_id"]}, {dest: "loras"})
        assert not watched or bytes_read([dest]) == 0, "the moved file was read again"
        tags = feed.hashed_at(dest)["tags"]
    assert "favourite" in tags and "loras" in tags and "models" not in tags, tags
    proc = run_cli("meta", str(dest), *d.args())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"note": "kept"}
    assert str(src) not in listed(d)
    assert pass_hashed_bytes_since(status, d) == 0
    assert live_hashed_bytes_since(status, d) == 0, "the moved file was hashed"


def assert_renames_are_moves(
    base: Path, d: Daemon, moves: dict[Path, Path], fence_in: Path, rename: Any
) -> None:
    """``rename()`` the cataloged files of ``moves`` (old -> new) with a feed open: each is
    one `moved` with its asset, none read again, no row left at an old path, and no pass
    hashed anything."""
    files = list(moves)
    assets = catalogued(d, files)
    status = d.status()
    where = roots_of(d.roots, moves)
    watched = evict_all(base, files)
    with ChangeFeed(d.address) as feed:
        rename()
        feed.until(lambda: converged(feed, moves), 40, f"{len(moves)} moves to reach the feed")
        fence(feed, fence_in)
        read = bytes_read(list(moves.values()))
        assert_each_moved_once(feed.changes, moves, assets, where)
        assert not watched or read == 0, f"{read} bytes of the moved files read again"
    rows = listed(d)
    assert not [f for f in files if str(f) in rows], "old paths left behind as rows"
    assert pass_hashed_bytes_since(status, d) == 0
    assert live_hashed_bytes_since(status, d) == 0, "the daemon hashed the moved files"


def test_folder_of_500_moved_across_roots_in_one_rename(base: Path, make_daemon: Any) -> None:
    """A folder of 500 files renamed from one root into another: 500 `moved`, nothing else."""
    roots = two_roots(base)
    folder = roots["models"] / "pack"
    files = [write(folder / f"f{i:03}.bin", os.urandom(64) + b"%d" % i, OLD_NS) for i in range(500)]
    d = make_daemon(roots).start()
    moves = {f: roots["loras"] / "pack" / f.name for f in files}
    assert_renames_are_moves(
        base, d, moves, roots["loras"], lambda: os.rename(folder, roots["loras"] / "pack")
    )


def test_burst_of_500_renames_each_ends_as_moved(base: Path, make_daemon: Any) -> None:
    """500 files renamed one by one in a tight loop, in a folder and across roots: 500 `moved`."""
    roots = two_roots(base)
    (roots["loras"] / "burst").mkdir(parents=True)
    folder = roots["models"] / "burst"
    files = [write(folder / f"f{i:03}.bin", os.urandom(64) + b"%d" % i, OLD_NS) for i in range(500)]
    d = make_daemon(roots).start()
    moves = {
        f: folder / f"renamed-{f.name}" if i % 2 == 0 else roots["loras"] / "burst" / f.name
        for i, f in enumerate(files)
    }

    def rename() -> None:
        for old, new in moves.items():
            os.rename(old, new)

    assert_renames_are_moves(base, d, moves, roots["loras"], rename)


def test_offline_reorganisation_is_moves_and_one_copy(base: Path, make_daemon: Any) -> None:
    """Files moved while no daemon ran: one `moved` each, none re-hashed; a copy joins by hash."""
    roots = two_roots(base)
    a = write(roots["models"] / "a.safetensors", os.urandom(1 << 20), OLD_NS)
    b = write(roots["models"] / "b.safetensors", os.urandom(1 << 20), OLD_NS)
    c = write(roots["models"] / "c.safetensors", os.urandom(256 << 10), OLD_NS)
    stays = write(roots["models"] / "stays.bin", os.urandom(100), OLD_NS)
    d = make_daemon(roots).start()
    assets = catalogued(d, [a, b, c, stays])
    assert d.stop() == 0
    seq = d.catalog.latest_seq()

    moves = {
        a: roots["models"] / "sdxl" / "new" / "a.safetensors",  # new subfolders
        b: roots["loras"] / "b.safetensors",  # another root
        c: roots["loras"] / "styles" / "c.safetensors",  # another root, a new folder
    }
    for old, new in moves.items():
        new.parent.mkdir(parents=True, exist_ok=True)
        os.rename(old, new)
    copy = roots["models"] / "copies" / "c.safetensors"
    copy.parent.mkdir()
    shutil.copy2(moves[c], copy)  # same size and mtime, another inode
    assert os.stat(copy).st_ino != os.stat(moves[c]).st_ino
    watched = evict_all(base, list(moves.values()))  # the copy read c: evicted after it

    d.start()  # returns once the startup pass has registered and hashed what it found
    latest = d.catalog.latest_seq()
    with ChangeFeed(d.address, since=seq) as feed:
        feed.until(lambda: feed.changes and feed.changes[-1]["seq"] >= latest, 20, "the replay")
        assert_each_moved_once(feed.changes, moves, assets, roots_of(roots, moves))
        copy_ops = [ch["op"] for ch in feed.about(copy)]
        assert copy_ops and copy_ops[0] == "added" and set(copy_ops) <= {"added", "hashed"}
        joined = feed.hashed_at(copy)
        assert joined is not None and joined["asset_id"] == assets[c], "the copy did not join"
        assert feed.about(stays) == []
        assert "missing" not in {ch["op"] for ch in feed.changes}
    rows = listed(d)
    assert [p for p, item in rows.items() if item["is_missing"]] == []
    assert not {str(old) for old in moves} & set(rows)
    progress = d.status()["progress"]
    assert progress["hashed_bytes"] <= copy.stat().st_size, f"the pass re-read files: {progress}"
    read = bytes_read(list(moves.values()))
    assert not watched or read == 0, f"{read} bytes of the moved files read again"


def test_slow_download_is_throttled_then_hashed_once(base: Path, make_daemon: Any) -> None:
    """A file written in 16 KB pieces for 3 s: `added`, `modified`s once a second, one `hashed`."""
    roots = two_roots(base)
    target = roots["models"] / "downloads" / "model.safetensors"
    target.parent.mkdir(parents=True)
    d = make_daemon(roots).start()
    with ChangeFeed(d.address) as feed:
        started = time.monotonic()
        with open(target, "wb") as fh:
            while time.monotonic() - started < WRITING_S:
                fh.write(os.urandom(PIECE))
                fh.flush()
                time.sleep(0.015)  # the writer's pace: this is the workload, not a wait
        writing_s = time.monotonic() - started
        feed.until(lambda: feed.hashed_at(target), 20, "the download's hash")
        fence(feed, roots["models"])
        changes = feed.about(target)
    ops = [c["op"] for c in changes]
    summary = f"{len(ops)} changes: {collections.Counter(ops)}"
    assert len(changes) <= writing_s + 3, f"{writing_s:.1f} s of writing gave {summary}"
    assert ops[0] == "added" and set(ops[1:-1]) <= {"modified"}, summary
    assert ops[-1] == "hashed", summary
    assert [c["location"]["hash"] is not None for c in changes] == [False] * (len(ops) - 1) + [True]
    assert changes[-1]["location"]["hash"] == blake3_of(target)
    # Commit times from the log: at most once a second, with half a second of room for a
    # commit that lands late (no throttle at all puts them a piece's pause apart).
    ts = [d.catalog.models.Change.get_by_id(c["seq"]).ts for c in changes[:-1]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(ts)]
    assert all(gap >= 0.5 for gap in gaps), f"gaps between reports: {gaps}"


def test_complete_file_renamed_in_is_hashed_at_once(base: Path, make_daemon: Any) -> None:
    """A complete file renamed into a root from outside is hashed at once, not once it settles."""
    roots = two_roots(base)
    outside = base / "outside"  # on the roots' filesystem, outside every root
    outside.mkdir()
    # A long settle delay (ASSETD_SETTLE_S; see the report) only widens the margin: the
    # test holds by order. A file written in place and still open must wait for the
    # settle delay; a file renamed in complete must not, so its hash comes first.
    d = make_daemon(roots).start(env={"ASSETD_SETTLE_S": "30"})
    still_open = roots["models"] / "still-open.bin"
    arrived = roots["loras"] / "download.safetensors"
    with ChangeFeed(d.address) as feed, open(still_open, "wb") as fh:
        fh.write(os.urandom(4096))
        fh.flush()
        feed.until(lambda: feed.latest(still_open), 20, "the open file's first report")
        staged = write(outside / arrived.name, os.urandom(8 << 20))  # a fresh mtime
        os.rename(staged, arrived)
        done = feed.until(lambda: feed.hashed_at(arrived), 20, "the renamed file's hash")
        early = [c["op"] for c in feed.about(still_open) if c["location"]["hash"] is not None]
        assert early == [], "the open file was hashed first: the rename waited to settle"
    assert done["hash"] == blake3_of(arrived)


def assert_one_added_with_hash(feed: ChangeFeed, path: Path) -> None:
    changes = feed.about(path)
    ops = [(c["op"], c["location"]["hash"] is not None) for c in changes]
    assert ops == [("added", True)], f"{path.name}: (op, carries a hash): {ops}"
    assert changes[0]["location"]["hash"] == blake3_of(path)


def test_small_file_renamed_in_complete_is_one_added_with_its_hash(
    base: Path, make_daemon: Any
) -> None:
    """A small file written outside the roots, then renamed in: one `added` carrying its hash."""
    roots = two_roots(base)
    outside = base / "outside"
    outside.mkdir()
    d = make_daemon(roots).start()
    renamed = roots["loras"] / "renamed.png"
    with ChangeFeed(d.address) as feed:
        os.rename(write(outside / renamed.name, os.urandom(4096)), renamed)
        feed.until(lambda: feed.hashed_at(renamed), 20, "the renamed file's hash")
        fence(feed, roots["loras"])
        assert_one_added_with_hash(feed, renamed)


def test_small_file_written_and_closed_is_one_added_with_its_hash(
    base: Path, make_daemon: Any
) -> None:
    """A small file written and closed in a root at once: one `added` carrying its hash."""
    roots = two_roots(base)
    d = make_daemon(roots).start()
    written = roots["models"] / "written.png"
    with ChangeFeed(d.address) as feed:
        write(written, os.urandom(4096))  # created, written and closed within microseconds
        feed.until(lambda: feed.hashed_at(written), 20, "the written file's hash")
        fence(feed, roots["models"])
        assert_one_added_with_hash(feed, written)
