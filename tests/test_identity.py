"""Content identity: hash outcomes applied to a real catalog, files on a real disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from assetd.apply import Tally, apply_hashes, apply_observations, observe, regular_stat
from assetd.catalog import Catalog
from assetd.config import RootConfig
from assetd.decide import CachedState, Outcome
from assetd.hashing import HashOutcome, HashResult, hash_one
from tests.conftest import OLD_NS, make_root, write


@pytest.fixture
def root(tmp_path: Path, catalog: Catalog) -> RootConfig:
    made = make_root(tmp_path, "models")
    catalog.register_roots([(made.name, made.prefix)])
    return made


def register(catalog: Catalog, root: RootConfig, *files: Path) -> list[Outcome]:
    """Look at the files as a pass would and write what it saw; the outcomes it decided."""
    paths = [os.fsencode(f) for f in files]
    states = catalog.get_states(paths)
    seen = [observe(p, root.name, regular_stat(p, False), states.get(p)) for p in paths]
    apply_observations(catalog, seen, Tally())
    return [o.decision.outcome for o in seen]


def state(catalog: Catalog, file: Path) -> CachedState:
    found = catalog.get_state(os.fsencode(file))
    assert found is not None, f"{file} is not in the catalog"
    return found


def hash_files(catalog: Catalog, *files: Path) -> Tally:
    """Hash the files' locations and apply the outcomes in one batch."""
    tally = Tally()
    apply_hashes(catalog, [hash_one(state(catalog, f)) for f in files], tally)
    return tally


def digest(content: bytes) -> str:
    return "blake3:" + blake3(content).hexdigest()


def ops_since(catalog: Catalog, seq: int) -> list[str]:
    return [m["op"] for m in catalog.changes_since(seq, 1000)]


def tags(catalog: Catalog, asset_id: int, origin: str) -> set[str]:
    rows = catalog.query(
        "SELECT name FROM tag WHERE asset_id = ? AND origin = ?", [asset_id, origin]
    )
    return {name for (name,) in rows}


def asset_row(catalog: Catalog, asset_id: int) -> dict[str, Any] | None:
    rows = catalog.query("SELECT hash, user_metadata FROM asset WHERE id = ?", [asset_id])
    if not rows:
        return None
    ((hash_, metadata),) = rows
    return {"hash": hash_, "metadata": metadata}


def location(catalog: Catalog, file: Path) -> dict[str, Any]:
    items, _ = catalog.list_locations(include_missing=True)
    (found,) = [i for i in items if i["path"] == str(file)]
    return found


def test_an_unhashed_seed_asset_takes_its_hash(catalog: Catalog, root: RootConfig) -> None:
    """A new file's seed asset takes its hash: same asset, one ``hashed`` change."""
    f = write(Path(root.path) / "loras" / "a.safetensors", b"lora", OLD_NS)
    register(catalog, root, f)
    seed = state(catalog, f)
    seq = catalog.latest_seq()

    tally = hash_files(catalog, f)

    after = state(catalog, f)
    assert after.asset_id == seed.asset_id
    assert after.hash == digest(b"lora")
    assert not after.needs_verify
    assert ops_since(catalog, seq) == ["hashed"]
    (change,) = catalog.changes_since(seq, 1000)
    assert change["location"]["hash"] == digest(b"lora")
    assert change["location"]["asset_id"] == seed.asset_id
    assert location(catalog, f)["tags"] == ["loras", "models"]
    assert tags(catalog, seed.asset_id, "auto") == set()  # a place's tags are the location's
    assert (tally.hashed, tally.hashed_bytes) == (1, 4)


def test_a_copy_joins_the_asset_of_its_content(catalog: Catalog, root: RootConfig) -> None:
    """A second file with known content joins that asset; its seed goes, and the seed's
    user tags and metadata move to the joined asset, whose own metadata wins a conflict."""
    first = write(Path(root.path) / "loras" / "a.safetensors", b"same", OLD_NS)
    register(catalog, root, first)
    hash_files(catalog, first)
    asset = state(catalog, first).asset_id
    catalog.change_tags(os.fsencode(first), ["mine"])
    catalog.change_metadata(os.fsencode(first), {"shared": "joined's"})
    copy = write(Path(root.path) / "checkpoints" / "b.safetensors", b"same", OLD_NS)
    register(catalog, root, copy)
    seed = state(catalog, copy).asset_id
    catalog.change_tags(os.fsencode(copy), ["t"])
    catalog.change_metadata(os.fsencode(copy), {"k": "v", "shared": "seed's"})
    seq = catalog.latest_seq()

    tally = hash_files(catalog, copy)

    assert state(catalog, copy).asset_id == asset
    assert state(catalog, copy).hash == digest(b"same")
    assert asset_row(catalog, seed) is None
    assert tags(catalog, seed, "user") | tags(catalog, seed, "auto") == set()
    assert tags(catalog, asset, "user") == {"mine", "t"}
    assert catalog.change_metadata(os.fsencode(first)) == {"k": "v", "shared": "joined's"}
    assert ops_since(catalog, seq) == ["hashed"]
    assert (tally.hashed, tally.hashed_bytes) == (1, 4)


def test_copies_hashed_in_one_batch_share_one_asset(catalog: Catalog, root: RootConfig) -> None:
    """Two new files of equal content in one batch: the first seed takes the hash, the
    second location joins it and its seed goes."""
    a = write(Path(root.path) / "a", b"twin", OLD_NS)
    b = write(Path(root.path) / "b", b"twin", OLD_NS)
    register(catalog, root, a, b)
    seeds = {state(catalog, a).asset_id, state(catalog, b).asset_id}
    seq = catalog.latest_seq()

    tally = hash_files(catalog, a, b)

    assert state(catalog, a).asset_id == state(catalog, b).asset_id
    assert state(catalog, a).asset_id in seeds
    assert [asset_row(catalog, s) is None for s in sorted(seeds)].count(True) == 1
    assert ops_since(catalog, seq) == ["hashed", "hashed"]
    assert (tally.hashed, tally.hashed_bytes) == (2, 8)


def test_a_copy_in_another_folder_has_the_tags_of_its_own_place(
    catalog: Catalog, root: RootConfig
) -> None:
    """A copy joins the asset of its content and shares its user tags, but each location
    keeps the automatic tags of its own place: the copy under checkpoints/ is not tagged
    ``loras``, and a tag filter finds only the location it names."""
    first = write(Path(root.path) / "loras" / "a.safetensors", b"same", OLD_NS)
    register(catalog, root, first)
    hash_files(catalog, first)
    catalog.change_tags(os.fsencode(first), ["mine"])
    copy = write(Path(root.path) / "checkpoints" / "sdxl" / "b.safetensors", b"same", OLD_NS)
    register(catalog, root, copy)

    hash_files(catalog, copy)

    assert state(catalog, copy).asset_id == state(catalog, first).asset_id
    assert location(catalog, first)["tags"] == ["loras", "mine", "models"]
    assert location(catalog, copy)["tags"] == ["checkpoints", "mine", "models", "sdxl"]
    assert location(catalog, copy)["user_tags"] == ["mine"]
    by_tag = {t: [i["path"] for i in catalog.list_locations(tag=t)[0]] for t in ("loras", "sdxl")}
    assert by_tag == {"loras": [str(first)], "sdxl": [str(copy)]}
    assert [i["path"] for i in catalog.list_locations(tag="mine")[0]] == sorted(
        [str(first), str(copy)]
    )


def test_changed_content_leaves_to_a_new_asset(catalog: Catalog, root: RootConfig) -> None:
    """Other bytes at a path: the location leaves to a new asset; the old asset keeps
    its hash and user tags and, with no location left, is tagged ``missing``."""
    f = write(Path(root.path) / "loras" / "a.safetensors", b"before", OLD_NS)
    register(catalog, root, f)
    hash_files(catalog, f)
    old = state(catalog, f).asset_id
    catalog.change_tags(os.fsencode(f), ["t"])
    catalog.change_metadata(os.fsencode(f), {"k": "v"})
    write(f, b"after, longer", OLD_NS + 10**9)
    seq = catalog.latest_seq()

    assert register(catalog, root, f) == [Outcome.MODIFIED]
    tally = hash_files(catalog, f)

    new = state(catalog, f).asset_id
    assert new != old
    assert state(catalog, f).hash == digest(b"after, longer")
    assert asset_row(catalog, old) == {"hash": digest(b"before"), "metadata": '{"k": "v"}'}
    assert tags(catalog, old, "user") == {"t"}
    assert tags(catalog, old, "auto") == {"missing"}
    assert tags(catalog, new, "user") | tags(catalog, new, "auto") == set()
    assert location(catalog, f)["tags"] == ["loras", "models"]
    assert catalog.change_metadata(os.fsencode(f)) == {}
    assert ops_since(catalog, seq) == ["modified", "hashed"]
    assert (tally.hashed, tally.hashed_bytes) == (1, len(b"after, longer"))


def test_changed_content_joins_the_asset_that_has_it(catalog: Catalog, root: RootConfig) -> None:
    """Other bytes at a path that the catalog already knows: the location joins that
    asset, not a new one."""
    f = write(Path(root.path) / "a", b"one", OLD_NS)
    g = write(Path(root.path) / "b", b"two", OLD_NS)
    register(catalog, root, f, g)
    hash_files(catalog, f, g)
    old, other = state(catalog, f).asset_id, state(catalog, g).asset_id
    write(f, b"two", OLD_NS + 10**9)
    register(catalog, root, f)

    hash_files(catalog, f)

    assert state(catalog, f).asset_id == other
    assert asset_row(catalog, old) == {"hash": digest(b"one"), "metadata": "{}"}
    assert "missing" in tags(catalog, old, "auto")
    assert "missing" not in tags(catalog, other, "auto")


def test_a_location_that_leaves_an_asset_keeps_its_place_and_the_other_its_own(
    catalog: Catalog, root: RootConfig
) -> None:
    """When one of two locations leaves an asset (its content changed), each keeps the
    automatic tags of its own place, and the asset it left is not missing."""
    stays = write(Path(root.path) / "loras" / "a.safetensors", b"same", OLD_NS)
    leaves = write(Path(root.path) / "checkpoints" / "b.safetensors", b"same", OLD_NS)
    register(catalog, root, stays, leaves)
    hash_files(catalog, stays, leaves)
    asset = state(catalog, stays).asset_id
    write(leaves, b"other", OLD_NS + 10**9)
    register(catalog, root, leaves)

    hash_files(catalog, leaves)

    assert state(catalog, stays).asset_id == asset != state(catalog, leaves).asset_id
    assert location(catalog, stays)["tags"] == ["loras", "models"]
    assert location(catalog, leaves)["tags"] == ["checkpoints", "models"]
    assert tags(catalog, asset, "auto") == set()


def test_a_vanished_file_marks_its_location_missing(catalog: Catalog, root: RootConfig) -> None:
    """A hash outcome whose file is gone marks the location missing, and hashes nothing."""
    f = write(Path(root.path) / "a", b"x", OLD_NS)
    register(catalog, root, f)
    before = state(catalog, f)
    f.unlink()
    outcome = hash_one(before)
    assert (outcome.result, outcome.gone, outcome.error) == (None, True, None)
    seq = catalog.latest_seq()
    tally = Tally()

    apply_hashes(catalog, [outcome], tally)

    after = state(catalog, f)
    assert after.is_missing and after.hash is None
    assert "missing" in tags(catalog, before.asset_id, "auto")
    assert ops_since(catalog, seq) == ["missing"]
    assert (tally.marked_missing, tally.hashed, tally.hashed_bytes) == (1, 0, 0)


def test_an_error_is_counted_and_changes_nothing(catalog: Catalog, root: RootConfig) -> None:
    """A hash outcome with an error is reported in ``tally.errors``; the catalog stays."""
    f = write(Path(root.path) / "a", b"x", OLD_NS)
    register(catalog, root, f)
    before = state(catalog, f)

    def unreadable(path: bytes, **_: Any) -> HashResult:
        raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))

    outcome = hash_one(before, hasher=unreadable)
    seq = catalog.latest_seq()
    tally = Tally()

    apply_hashes(catalog, [outcome], tally)

    assert tally.errors == [{"path": os.fsencode(f), "message": "Permission denied"}]
    assert state(catalog, f) == before
    assert catalog.latest_seq() == seq
    assert (tally.hashed, tally.marked_missing) == (0, 0)


def test_an_outcome_for_a_location_missing_meanwhile_is_ignored(
    catalog: Catalog, root: RootConfig
) -> None:
    """A location that went missing after it was hashed, before the outcome was
    applied, takes no hash and logs no ``hashed`` change."""
    f = write(Path(root.path) / "a", b"x", OLD_NS)
    register(catalog, root, f)
    outcome = hash_one(state(catalog, f))
    assert outcome.result is not None
    f.unlink()
    assert register(catalog, root, f) == [Outcome.MISSING]
    seq = catalog.latest_seq()
    tally = Tally()

    apply_hashes(catalog, [outcome], tally)

    after = state(catalog, f)
    assert after.is_missing and after.hash is None and after.needs_verify
    assert asset_row(catalog, after.asset_id) == {"hash": None, "metadata": "{}"}
    assert ops_since(catalog, seq) == []
    assert (tally.hashed, tally.hashed_bytes, tally.marked_missing) == (0, 0, 0)


def test_the_tally_counts_only_what_was_applied(catalog: Catalog, root: RootConfig) -> None:
    """In one mixed batch, ``hashed`` and ``hashed_bytes`` count the applied hashes only:
    not the vanished file, the error, nor the location that went missing meanwhile."""
    applied = write(Path(root.path) / "applied", b"12345", OLD_NS)
    vanished = write(Path(root.path) / "vanished", b"123456", OLD_NS)
    failed = write(Path(root.path) / "failed", b"1234567", OLD_NS)
    late = write(Path(root.path) / "late", b"12345678", OLD_NS)
    register(catalog, root, applied, vanished, failed, late)
    late_outcome = hash_one(state(catalog, late))
    late.unlink()
    register(catalog, root, late)
    vanished.unlink()
    outcomes = [
        hash_one(state(catalog, applied)),
        hash_one(state(catalog, vanished)),
        HashOutcome(state(catalog, failed), error="kept changing while being hashed; will retry"),
        late_outcome,
    ]
    seq = catalog.latest_seq()
    tally = Tally()

    apply_hashes(catalog, outcomes, tally)

    assert (tally.hashed, tally.hashed_bytes) == (1, 5)
    assert tally.marked_missing == 1
    assert len(tally.errors) == 1
    assert ops_since(catalog, seq) == ["missing", "hashed"]


def test_a_verified_hash_keeps_its_asset_and_logs_nothing(
    catalog: Catalog, root: RootConfig
) -> None:
    """Hashing a location again to the hash it has clears nothing but the doubt: same
    asset, no change logged, and it counts as hashed."""
    f = write(Path(root.path) / "a", b"x", OLD_NS)
    register(catalog, root, f)
    hash_files(catalog, f)
    asset = state(catalog, f).asset_id
    seq = catalog.latest_seq()

    tally = hash_files(catalog, f)

    assert state(catalog, f).asset_id == asset
    assert ops_since(catalog, seq) == []
    assert (tally.hashed, tally.hashed_bytes) == (1, 1)
