"""The catalog's named queries, schema upgrades and change log, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import peewee as pw
import pytest

from assetd.apply import Tally, apply_observations, observe
from assetd.catalog.schema import SCHEMA_VERSION, define_models, migrations
from assetd.db import INSERT_PARAMS, Catalog, insert_statements
from assetd.decide import FileStat
from assetd.exceptions import AutomaticTagError, CatalogError, NotFoundError, SchemaError


def stat(size: int = 1, mtime: int = 1) -> FileStat:
    return FileStat(size=size, mtime_ns=mtime, ctime_ns=mtime, inode=size, device=1)


def add(catalog: Catalog, *paths: bytes, root: str = "r") -> list[int]:
    """Register locations as a scan would (the files need not exist for query tests)."""
    apply_observations(catalog, [observe(p, root, stat(), None) for p in paths], Tally())
    states = catalog.get_states(list(paths))
    return [states[p].id for p in paths]


def set_hash(catalog: Catalog, path: bytes, digest: str) -> None:
    A = catalog.models.Asset
    A.update(hash=digest).where(A.id == catalog.get_state(path).asset_id).execute()


def live(catalog: Catalog) -> set[bytes]:
    return {bytes(r.file_path) for r in catalog.models.Location.select() if not r.is_missing}


def test_new_catalog_has_id_version_and_pragmas(db_url: str) -> None:
    """A new catalog gets a fixed id, the current schema, WAL and foreign keys."""
    first = Catalog(db_url)
    catalog_id = first.catalog_id
    assert first.schema_version() == SCHEMA_VERSION
    assert first.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert first.db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert first.db.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert first.db.execute_sql("PRAGMA page_size").fetchone()[0] == 16384
    assert first.db.execute_sql("PRAGMA cache_size").fetchone()[0] == -4096
    assert first.db.execute_sql("PRAGMA temp_store").fetchone()[0] == 2  # memory
    assert first.latest_seq() == 0
    first.close()
    again = Catalog(db_url)
    assert again.catalog_id == catalog_id
    again.close()


def test_a_catalog_made_with_smaller_pages_keeps_them(tmp_path: Path) -> None:
    """A catalog made before pages grew to 16 KiB opens as it is, with its 4 KiB pages,
    and its rows are all there (the page size of a file in WAL mode is fixed)."""
    db = tmp_path / "old.db"
    made = sqlite3.connect(db)
    made.execute("PRAGMA page_size = 4096")
    made.execute("PRAGMA journal_mode = wal")
    made.close()
    catalog = Catalog(f"sqlite:///{db}")
    add(catalog, b"/r/a.bin", b"/r/b.bin")
    catalog.close()
    again = Catalog(f"sqlite:///{db}")
    assert again.db.execute_sql("PRAGMA page_size").fetchone()[0] == 4096
    assert set(again.get_states([b"/r/a.bin", b"/r/b.bin"])) == {b"/r/a.bin", b"/r/b.bin"}
    again.close()


def test_mark_missing_outside_prefixes_with_empty_list_marks_nothing(catalog: Catalog) -> None:
    """An empty prefix list is not "outside everything": nothing is marked."""
    add(catalog, b"/a/x", b"/b/y")
    assert catalog.mark_cache_states_missing_outside_prefixes([]) == 0
    assert live(catalog) == {b"/a/x", b"/b/y"}


def test_mark_missing_outside_prefixes_marks_and_never_deletes(catalog: Catalog) -> None:
    """Locations outside every prefix are marked missing, counted once, and kept."""
    add(catalog, b"/keep/a", b"/keep/sub/b", b"/gone/c", b"/gone/d")
    assert catalog.mark_cache_states_missing_outside_prefixes([b"/keep/"]) == 2
    assert live(catalog) == {b"/keep/a", b"/keep/sub/b"}
    assert catalog.models.Location.select().count() == 4
    assert catalog.mark_cache_states_missing_outside_prefixes([b"/keep/"]) == 0


@pytest.mark.parametrize(
    ("kept", "marked"),
    [
        ("/d/100%_done/", ["/d/100%Xdone/f", "/d/1000_done/f", "/d/100%_done2/f"]),
        ("/d/my_folder/", ["/d/myXfolder/f", "/d/MY_FOLDER/f", "/d/my_folder_old/f"]),
        ("/d/has spaces/", ["/d/has_spaces/f", "/d/has  spaces/f"]),
        ("/d/Models/", ["/d/models/f", "/d/MODELS/f"]),
    ],
)
def test_prefix_matching_is_exact_and_case_sensitive(
    catalog: Catalog, kept: str, marked: list[str]
) -> None:
    """% and _ are ordinary characters and case matters (unlike SQLite LIKE)."""
    inside = kept.encode() + b"file"
    add(catalog, inside, *(m.encode() for m in marked))
    assert catalog.mark_cache_states_missing_outside_prefixes([kept.encode()]) == len(marked)
    assert live(catalog) == {inside}


def test_restore_by_paths(catalog: Catalog) -> None:
    """Only missing rows among the paths are restored; [] restores nothing."""
    ids = add(catalog, b"/r/a", b"/r/b", b"/r/c")
    catalog.mark_missing(ids[:2])
    assert catalog.restore_cache_states_by_paths([]) == 0
    assert catalog.restore_cache_states_by_paths([b"/r/a", b"/r/c", b"/r/nope"]) == 1
    assert live(catalog) == {b"/r/a", b"/r/c"}
    assert catalog.get_state(b"/r/a").needs_verify is True  # never hashed yet


def test_restore_with_changed_stat_asks_for_a_rehash(catalog: Catalog) -> None:
    """A location restored with a different stat takes it and needs verifying."""
    (loc,) = add(catalog, b"/r/a")
    catalog.models.Location.update(needs_verify=False).where(
        catalog.models.Location.id == loc
    ).execute()
    catalog.mark_missing([loc])
    newer = stat(size=5, mtime=9)
    assert catalog.restore_cache_states_by_paths([b"/r/a"], {b"/r/a": newer}) == 1
    state = catalog.get_state(b"/r/a")
    assert state.stat == newer and state.needs_verify and not state.is_missing


def test_unreferenced_unhashed_assets(catalog: Catalog) -> None:
    """Unhashed assets with no live location are listed; hashed or live ones are not."""
    ids = add(catalog, b"/r/unhashed-missing", b"/r/hashed-missing", b"/r/unhashed-live")
    set_hash(catalog, b"/r/hashed-missing", "blake3:" + "1" * 64)
    catalog.mark_missing(ids[:2])
    expected = [catalog.get_state(b"/r/unhashed-missing").asset_id]
    assert catalog.get_unreferenced_unhashed_asset_ids() == expected


def test_cleanup_removes_only_unreferenced_unhashed(catalog: Catalog) -> None:
    """A plain cleanup deletes unhashed, unreferenced assets; hashed missing ones survive."""
    ids = add(catalog, b"/r/unhashed-missing", b"/r/hashed-missing", b"/r/live")
    set_hash(catalog, b"/r/hashed-missing", "blake3:" + "1" * 64)
    catalog.mark_missing(ids[:2])
    assert catalog.cleanup_unreferenced_assets(dry_run=True) == 1
    assert catalog.models.Location.select().count() == 3
    assert catalog.cleanup_unreferenced_assets() == 1
    paths = {bytes(r.file_path) for r in catalog.models.Location.select()}
    assert paths == {b"/r/hashed-missing", b"/r/live"}
    assert catalog.changes_since(0)[-1]["op"] == "removed"
    assert catalog.changes_since(0)[-1]["location"]["path"] == "/r/unhashed-missing"


def test_cleanup_with_age_removes_old_tombstones(db_url: str) -> None:
    """With an age, assets missing longer than it go (hashed too); recent ones stay."""
    clock = [1_000_000.0]
    catalog = Catalog(db_url, now=lambda: clock[0])
    old, recent = add(catalog, b"/r/old", b"/r/recent")
    set_hash(catalog, b"/r/old", "blake3:" + "2" * 64)
    set_hash(catalog, b"/r/recent", "blake3:" + "3" * 64)
    catalog.change_tags(b"/r/old", add=["keep-me"])
    catalog.mark_missing([old])
    clock[0] += 10 * 86400
    catalog.mark_missing([recent])
    clock[0] += 86400
    assert catalog.cleanup_unreferenced_assets() == 0
    assert catalog.cleanup_unreferenced_assets(missing_older_than=5 * 86400) == 1
    assert {bytes(r.file_path) for r in catalog.models.Location.select()} == {b"/r/recent"}
    assert catalog.models.Tag.select().where(catalog.models.Tag.name == "keep-me").count() == 0
    catalog.close()


def test_missing_locations_are_hidden_unless_asked(catalog: Catalog) -> None:
    """Listing hides missing locations unless include_missing or missing_only."""
    ids = add(catalog, b"/r/a", b"/r/b")
    catalog.mark_missing([ids[1]])
    paths = lambda **kw: [i["path"] for i in catalog.list_locations(**kw)[0]]  # noqa: E731
    assert paths() == ["/r/a"]
    assert paths(include_missing=True) == ["/r/a", "/r/b"]
    assert paths(missing_only=True) == ["/r/b"]


def test_list_pages_filters_and_tags(catalog: Catalog) -> None:
    """list_locations pages in path order and filters by root and tag."""
    add(catalog, b"/r/a", b"/r/b", b"/r/c")
    add(catalog, b"/s/d", root="s")
    catalog.change_tags(b"/r/b", add=["fav"])
    first, cursor = catalog.list_locations(limit=2)
    assert [i["path"] for i in first] == ["/r/a", "/r/b"] and cursor == b"/r/b"
    rest, cursor = catalog.list_locations(limit=2, after=cursor)
    assert [i["path"] for i in rest] == ["/r/c", "/s/d"] and cursor is None
    assert [i["path"] for i in catalog.list_locations(root="s")[0]] == ["/s/d"]
    assert [i["path"] for i in catalog.list_locations(tag="fav")[0]] == ["/r/b"]


def test_user_tags_and_the_missing_tag(catalog: Catalog) -> None:
    """User tags come and go; automatic tags stay; 'missing' tracks live locations."""
    (loc,) = add(catalog, b"/r/a")
    assert catalog.change_tags(b"/r/a", add=["fav", "r"]) == ["fav", "r"]
    assert catalog.change_tags(b"/r/a", remove=["r"]) == ["fav", "r"]  # the automatic 'r' stays
    catalog.mark_missing([loc])
    assert catalog.change_tags(b"/r/a", add=["x"]) == ["fav", "missing", "r", "x"]
    catalog.restore_cache_states_by_paths([b"/r/a"])
    asset_id = catalog.get_state(b"/r/a").asset_id
    assert catalog.tags_of([asset_id])[asset_id] == ["fav", "x"]  # the asset's own
    ((item,), _) = catalog.list_locations()
    assert (item["tags"], item["user_tags"]) == (["fav", "r", "x"], ["fav", "x"])
    with pytest.raises(NotFoundError):
        catalog.change_tags(b"/r/nope", add=["x"])


def test_removing_an_automatic_tag_is_refused_and_changes_nothing(catalog: Catalog) -> None:
    """A tag the location has only automatically (root, folder, ``missing``) cannot be
    removed: AutomaticTagError names it, no tag changes and nothing is logged."""
    catalog.register_roots([("r", b"/r/")])
    (loc,) = add(catalog, b"/r/keep/a")
    catalog.change_tags(b"/r/keep/a", add=["fav"])
    catalog.mark_missing([loc])
    seq = catalog.latest_seq()
    for automatic in ("keep", "r", "missing"):
        with pytest.raises(AutomaticTagError, match=f"{automatic}: automatic at /r/keep/a"):
            catalog.change_tags(b"/r/keep/a", remove=["fav", automatic])
    assert catalog.latest_seq() == seq
    ((item,), _) = catalog.list_locations(include_missing=True)
    assert (item["tags"], item["user_tags"]) == (["fav", "keep", "missing", "r"], ["fav"])
    # A user tag of the same name as an automatic one goes; the automatic one stays.
    catalog.change_tags(b"/r/keep/a", add=["keep"])
    assert catalog.change_tags(b"/r/keep/a", remove=["keep"]) == ["fav", "keep", "missing", "r"]


def test_a_moved_location_takes_the_tags_of_its_new_place(catalog: Catalog) -> None:
    """A location moved to another folder and root loses the old place's automatic tags,
    gains the new one's, and keeps its asset's user tags."""
    catalog.register_roots([("r", b"/r/"), ("s", b"/s/")])
    add(catalog, b"/r/input/keep/a.png")
    catalog.change_tags(b"/r/input/keep/a.png", add=["fav"])
    assert catalog.move_locations([(b"/r/input/keep/a.png", b"/s/2026-11-01/a.png", "s")]) == 1
    ((item,), _) = catalog.list_locations()
    assert item["tags"] == ["2026-11-01", "fav", "s"]
    assert catalog.list_locations(tag="keep")[0] == []
    assert catalog.query("SELECT COUNT(*) FROM location_tag") == [(2,)]


def test_metadata(catalog: Catalog) -> None:
    """User metadata keys are set, replaced and unset; values may be any JSON."""
    add(catalog, b"/r/a")
    assert catalog.change_metadata(b"/r/a") == {}
    assert catalog.change_metadata(b"/r/a", {"k": "v", "n": [1, 2]}) == {"k": "v", "n": [1, 2]}
    assert catalog.change_metadata(b"/r/a", {"k": "w"}, ["n"]) == {"k": "w"}


def test_change_log_sequence_is_gapless_and_persistent(db_url: str) -> None:
    """Seqs start at 1, rise by one per change, survive a reopen, and publish after commit."""
    catalog = Catalog(db_url)
    seen: list[int] = []
    catalog.listeners.append(lambda changes: seen.extend(c.seq for c in changes))
    add(catalog, b"/r/a", b"/r/b")
    assert seen == [1, 2] and catalog.latest_seq() == 2
    with pytest.raises(RuntimeError), catalog.write():
        catalog.changes.log("tagged", catalog.get_state(b"/r/a").id)
        raise RuntimeError("roll back")
    assert seen == [1, 2] and catalog.latest_seq() == 2  # nothing published, no seq used
    catalog.close()
    reopened = Catalog(db_url)
    reopened.change_tags(b"/r/a", add=["t"])
    assert [c["seq"] for c in reopened.changes_since(0)] == [1, 2, 3]
    assert [c["op"] for c in reopened.changes_since(1)] == ["added", "tagged"]
    reopened.close()


def test_older_catalog_is_upgraded_in_place(tmp_path: Path) -> None:
    """A catalog at schema version 1 opens, upgrades to the current version, keeps its data."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    database = pw.SqliteDatabase(str(tmp_path / "old.db"))
    models = define_models(database)
    number, _, first = migrations()[0]
    first(database, models)
    models.Info.create(key="schema_version", value=str(number))
    models.Info.create(key="catalog_id", value="old-catalog")
    asset = models.Asset.create(hash=None, size_bytes=1, created_at=0)
    models.Location.create(
        file_path=b"/r/a", root="r", asset=asset, size=1, mtime_ns=1, ctime_ns=1, inode=1, device=1
    )
    models.Tag.create(asset=asset, name="mine", origin="user")
    database.execute_sql("CREATE INDEX tag_asset_id ON tag (asset_id)")  # as versions 1-4 made it
    database.close()
    catalog = Catalog(url)
    assert catalog.schema_version() == SCHEMA_VERSION > 1
    assert catalog.catalog_id == "old-catalog"
    assert catalog.get_state(b"/r/a") is not None
    indexes = {i.name for i in catalog.db.get_indexes("change")}
    assert "change_ts" in indexes
    tag_indexes = {i.name: i.columns for i in catalog.db.get_indexes("tag")}
    assert "tag_asset_id" not in tag_indexes  # the unique index leads with asset_id
    assert ["asset_id", "name", "origin"] in tag_indexes.values()
    assert catalog.tags_of([asset.id]) == {asset.id: ["mine"]}
    catalog.close()


def test_newer_catalog_is_refused(db_url: str) -> None:
    """A catalog from a newer assetd is refused with a clear message and left untouched."""
    Catalog(db_url).close()
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE catalog_info SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaError, match="schema version 99, newer than"):
        Catalog(db_url)
    with sqlite3.connect(path) as conn:
        assert conn.execute(
            "SELECT value FROM catalog_info WHERE key='schema_version'"
        ).fetchone() == ("99",)


def test_unreadable_database_is_a_catalog_error(tmp_path: Path) -> None:
    """A file that is not a database is reported as a CatalogError."""
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError):
        Catalog(f"sqlite:///{bogus}")


def test_inode_beyond_signed_64_bits_round_trips(catalog: Catalog) -> None:
    """Inode numbers above 2**63 (some file systems have them) are stored exactly."""
    big = FileStat(size=1, mtime_ns=1, ctime_ns=1, inode=2**64 - 5, device=2**63 + 1)
    apply_observations(catalog, [observe(b"/r/big", "r", big, None)], Tally())
    assert catalog.get_state(b"/r/big").stat == big


def test_asset_level_and_safe_prune(catalog: Catalog) -> None:
    """The asset-level prune counts assets left with no live location; the safe one refuses []."""
    add(catalog, b"/keep/a", b"/gone/b", b"/gone/c")
    set_hash(catalog, b"/gone/b", "blake3:" + "4" * 64)
    with pytest.raises(CatalogError, match="no root"):
        catalog.mark_missing_outside_prefixes_safely([])
    assert catalog.mark_assets_missing_outside_prefixes([b"/keep/"]) == 2
    assert live(catalog) == {b"/keep/a"}
    assert catalog.mark_assets_missing_outside_prefixes([b"/keep/"]) == 0
    assert catalog.mark_missing_outside_prefixes_safely([b"/keep/"]) == 0


def test_a_catalog_at_schema_3_gains_root_owners(tmp_path: Path) -> None:
    """A catalog made before roots had owners (schema 3) is upgraded; its roots are unowned
    until a node claims them."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'v3.db'}"
    catalog = Catalog(url)
    catalog.register_roots([("r", b"/r/")])
    catalog.close()
    with sqlite3.connect(tmp_path / "v3.db") as conn:
        conn.execute("ALTER TABLE root_info DROP COLUMN node")
        conn.execute("UPDATE catalog_info SET value = '3' WHERE key = 'schema_version'")
    upgraded = Catalog(url, node="n1")
    assert upgraded.schema_version() == SCHEMA_VERSION
    assert [(r.name, r.node) for r in upgraded.models.Root.select()] == [("r", None)]
    upgraded.register_roots([("r", b"/r/")])
    assert [(r.name, r.node) for r in upgraded.models.Root.select()] == [("r", "n1")]
    upgraded.close()


def test_roots_belong_to_one_node(pg_url: str) -> None:
    """On a shared catalog, a root name another node holds at another path is refused; so
    is a path overlapping another node's root; the same name at the same path passes to
    the new node."""
    from assetd.exceptions import RootOwnedError

    mine = Catalog(pg_url, node="a")
    other = Catalog(pg_url, node="b")
    try:
        mine.register_roots([("a.models", b"/srv/a/models/")])
        with pytest.raises(RootOwnedError, match="belongs to node 'a'"):
            other.register_roots([("a.models", b"/srv/b/models/")])
        with pytest.raises(RootOwnedError, match=r"overlaps root 'a\.models' of node 'a'"):
            other.register_roots([("b.models", b"/srv/a/models/sub/")])
        other.register_roots([("b.models", b"/srv/b/models/")])
        other.register_roots([("a.models", b"/srv/a/models/")])  # a host renamed
        owners = {r.name: r.node for r in other.models.Root.select()}
        assert owners == {"a.models": "b", "b.models": "b"}
    finally:
        mine.close()
        other.close()


def test_a_renamed_host_keeps_its_roots_on_a_catalog_of_one_machine(db_url: str) -> None:
    """SQLite is one machine's catalog: roots registered under the old host name are still
    this daemon's, so a root may move and a removed root's locations are pruned."""
    before = Catalog(db_url, node="old-name")
    before.register_roots([("models", b"/srv/models/"), ("outputs", b"/srv/out/")])
    add(before, b"/srv/models/a", root="models")
    add(before, b"/srv/out/b", root="outputs")
    before.close()
    after = Catalog(db_url, node="new-name")
    try:
        after.register_roots([("models", b"/mnt/models/")])  # moved, and outputs dropped
        assert {r.name: r.node for r in after.models.Root.select()}["models"] == "new-name"
        assert after.mark_cache_states_missing_outside_prefixes([b"/mnt/models/"]) == 2
        assert live(after) == set()
        assert after.cleanup_unreferenced_assets() == 2
    finally:
        after.close()


def test_passwords_stay_out_of_what_is_shown() -> None:
    """A database URL is shown without its password (logs, error messages)."""
    from assetd.db import shown_url

    assert shown_url("postgresql://u:s3cret@db:5432/cat") == "postgresql://u:***@db:5432/cat"
    assert shown_url("postgresql://u@db/cat") == "postgresql://u@db/cat"
    assert shown_url("sqlite:////var/lib/assetd/assetd.db") == "sqlite:////var/lib/assetd/assetd.db"


def test_the_change_log_is_trimmed_by_count_and_by_age(catalog: Catalog) -> None:
    """``keep`` leaves the newest changes, ``max_age_s`` drops the old ones; the sequence
    numbers go on from where they were."""
    add(catalog, b"/r/a", b"/r/b", b"/r/c", b"/r/d", b"/r/e")  # seq 1..5, all `added`
    assert catalog.trim_changes(keep=3) == 2
    assert [c["seq"] for c in catalog.changes_since(0)] == [3, 4, 5]
    with catalog.write():
        catalog.execute('UPDATE "change" SET ts = ? WHERE seq = 3', [catalog.now() - 3600])
    assert catalog.trim_changes(max_age_s=60) == 1
    assert [c["seq"] for c in catalog.changes_since(0)] == [4, 5]
    assert catalog.trim_changes(keep=10, max_age_s=60) == 0
    assert (catalog.oldest_seq(), catalog.latest_seq()) == (4, 5)
    add(catalog, b"/r/f")
    assert catalog.latest_seq() == 6


@pytest.fixture(params=["sqlite", "postgres"])
def either_url(request: pytest.FixtureRequest, db_url: str) -> str:
    """A fresh catalog URL on SQLite, and the same test again on PostgreSQL."""
    return db_url if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def test_upgrade_gives_each_location_its_own_automatic_tags(either_url: str) -> None:
    """A catalog of version 7 (automatic tags merged over the asset) upgrades: each
    location gets the tags of its own place, user tags and the missing mark stay, and the
    merged folder tags leave the asset."""
    catalog = Catalog(either_url)
    catalog.register_roots([("m", b"/m/")])
    add(catalog, b"/m/loras/a", b"/m/checkpoints/b", root="m")
    a, b = (catalog.get_state(p) for p in (b"/m/loras/a", b"/m/checkpoints/b"))
    with catalog.write():  # as version 7 left it: b's location joined a's asset
        catalog.execute("UPDATE cache_state SET asset_id = ? WHERE id = ?", [a.asset_id, b.id])
        catalog.execute("DROP TABLE location_tag")
        catalog.store.insert_many(
            "INSERT INTO tag (asset_id, name, origin) VALUES (?, ?, ?)",
            [(a.asset_id, n, "auto") for n in ("m", "loras", "checkpoints")]
            + [(a.asset_id, "mine", "user"), (b.asset_id, "missing", "auto")],
        )
        catalog.execute("UPDATE catalog_info SET value = '7' WHERE key = 'schema_version'")
    catalog.close()

    upgraded = Catalog(either_url)

    assert upgraded.schema_version() == SCHEMA_VERSION
    items = {i["path"]: i["tags"] for i in upgraded.list_locations()[0]}
    assert items == {
        "/m/checkpoints/b": ["checkpoints", "m", "mine"],
        "/m/loras/a": ["loras", "m", "mine"],
    }
    assert upgraded.tags_of([a.asset_id, b.asset_id]) == {
        a.asset_id: ["mine"],
        b.asset_id: ["missing"],
    }
    upgraded.close()


def test_upgrade_gives_each_location_its_file_name_and_age(either_url: str) -> None:
    """A catalog of version 8 upgrades: each location gets its file name (not-UTF-8 bytes
    replaced) and the age of its asset as when it was first seen; new ones get theirs."""
    catalog = Catalog(either_url, now=lambda: 1000.0)
    add(catalog, b"/r/sub/a.png", b"/r/b\xff.bin")
    with catalog.write():  # as version 8 left it
        catalog.execute("DROP INDEX cache_state_created_at")  # version 10's
        catalog.execute("DROP INDEX cache_state_file_name")
        catalog.execute("ALTER TABLE cache_state DROP COLUMN file_name")
        catalog.execute("ALTER TABLE cache_state DROP COLUMN created_at")
        catalog.execute("UPDATE catalog_info SET value = '8' WHERE key = 'schema_version'")
    catalog.close()

    upgraded = Catalog(either_url, now=lambda: 2000.0)
    add(upgraded, b"/r/c.txt")

    rows = upgraded.query("SELECT file_path, file_name, created_at FROM cache_state ORDER BY id")
    assert [(bytes(p), n, t) for p, n, t in rows] == [
        (b"/r/sub/a.png", "a.png", 1000.0),
        (b"/r/b\xff.bin", "b\ufffd.bin", 1000.0),
        (b"/r/c.txt", "c.txt", 2000.0),
    ]
    assert "cache_state_file_name" in {i.name for i in upgraded.db.get_indexes("cache_state")}
    upgraded.close()


def test_rows_inserted_many_to_a_statement_arrive_whole(catalog: Catalog) -> None:
    """insert_many cuts rows into statements within INSERT_PARAMS, and every row arrives
    as given, with the literals of the one-row SQL, on either engine."""
    tag_sql = "INSERT INTO tag (asset_id, name, origin) VALUES (?, ?, 'auto')"
    (asset_id,) = catalog.store.allocate_ids("asset", 1)
    per = INSERT_PARAMS // 2  # rows a statement: 2 parameters each
    rows = [(asset_id, f"t{i:05}") for i in range(2 * per + 205)]
    statements = list(insert_statements(tag_sql, rows))
    assert [len(params) for _, params in statements] == [2 * per, 2 * per, 410]
    assert all(text.count("?") == len(params) <= INSERT_PARAMS for text, params in statements)
    with catalog.write():
        catalog.store.insert_many(
            "INSERT INTO asset (id, hash, size_bytes, mime_type, user_metadata, created_at) "
            "VALUES (?, NULL, ?, ?, '{}', ?)",
            [(asset_id, 7, None, 1.5)],
        )
        catalog.store.insert_many(tag_sql, rows)
    T = catalog.models.Tag
    got = [(t.name, t.origin) for t in T.select().where(T.asset == asset_id).order_by(T.name)]
    assert got == [(name, "auto") for _, name in rows]
    with pytest.raises(ValueError, match="one-row INSERT"):
        list(insert_statements("UPDATE asset SET hash = ? WHERE id = ?", [("h", 1)]))


def test_content_untyped_by_its_old_name_takes_the_type_of_its_new_one(catalog: Catalog) -> None:
    """A download renamed into place (x.part → x.png) gives its content the type of the
    new name; content that had a type keeps it."""
    add(catalog, b"/r/x.part", b"/r/y.png")
    catalog.move_locations([(b"/r/x.part", b"/r/x.png", "r"), (b"/r/y.png", b"/r/y.part", "r")])
    types = {i["path"]: i["mime_type"] for i in catalog.list_locations()[0]}
    assert types == {"/r/x.png": "image/png", "/r/y.part": "image/png"}
