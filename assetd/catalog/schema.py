"""The catalog's tables (peewee models) and the migrations that build and upgrade them.

Models are defined per database by :func:`define_models`, so that no model is bound to
a global database at import time and two catalogs can be open in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee as pw

__all__ = [
    "SCHEMA_VERSION",
    "Models",
    "U64Field",
    "define_models",
    "migrations",
    "to_i64",
]

_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def to_i64(value: int) -> int:
    """An unsigned 64-bit number as the signed BIGINT that stores it."""
    return value - _U64 if value > _I64_MAX else value


class U64Field(pw.BigIntegerField):
    """An unsigned 64-bit number (inode, device) in a signed BIGINT column."""

    def db_value(self, value: int | None) -> int | None:
        return to_i64(value) if value is not None else None

    def python_value(self, value: int | None) -> int | None:
        return value + _U64 if value is not None and value < 0 else value


@dataclass(frozen=True)
class Models:
    """The model classes bound to one database."""

    Info: Any
    Root: Any
    Sequence: Any
    Asset: Any
    Location: Any
    Tag: Any
    LocationTag: Any
    Change: Any
    ComfyRef: Any

    def all(self) -> list[Any]:
        return [
            self.Info,
            self.Root,
            self.Sequence,
            self.Asset,
            self.Location,
            self.Tag,
            self.LocationTag,
            self.Change,
            self.ComfyRef,
        ]


def define_models(database: pw.Database) -> Models:
    """The current schema's models, bound to ``database``."""

    class Base(pw.Model):
        class Meta:
            legacy_table_names = False

    Base._meta.set_database(database)

    class Info(Base):
        """Catalog-wide facts: schema version, catalog id."""

        key = pw.TextField(primary_key=True)
        value = pw.TextField()

        class Meta:
            table_name = "catalog_info"

    class Root(Base):
        """A root as last scanned: its prefix turns location paths into folder tags; on a
        shared catalog, ``node`` names the daemon that owns it (NULL: not yet claimed)."""

        name = pw.TextField(primary_key=True)
        prefix = pw.BlobField()
        node = pw.TextField(null=True)

        class Meta:
            table_name = "root_info"

    class Sequence(Base):
        """The change log's counter; updating the row serialises writers on every engine."""

        name = pw.TextField(primary_key=True)
        value = pw.BigIntegerField()

        class Meta:
            table_name = "sequence_counter"

    class Asset(Base):
        """Content identity; tags and user metadata hang here and follow the content."""

        hash = pw.TextField(null=True, unique=True)
        size_bytes = pw.BigIntegerField()
        mime_type = pw.TextField(null=True)
        user_metadata = pw.TextField(default="{}")
        created_at = pw.DoubleField()
        # Set while the asset has no live location: the age of its tombstone.
        missing_since = pw.DoubleField(null=True)
        # What made it, when it is a ComfyUI output (JSON: models, prompt); read when hashed.
        generation = pw.TextField(null=True)

    class Location(Base):
        """One file location (a "cache state"): where the content was last seen."""

        file_path = pw.BlobField(unique=True)
        # The file name (the path's last part, as text): searched, sorted and looked up
        # by name (a workflow names a model by its file name) from its own index.
        file_name = pw.TextField(default="", index=True)
        root = pw.TextField(index=True)
        asset = pw.ForeignKeyField(Asset, backref="locations", index=True)
        size = pw.BigIntegerField()
        mtime_ns = pw.BigIntegerField()
        ctime_ns = pw.BigIntegerField()
        inode = U64Field()
        device = U64Field()
        needs_verify = pw.BooleanField(default=True)
        is_missing = pw.BooleanField(default=False)
        missing_since = pw.DoubleField(null=True)
        created_at = pw.DoubleField(default=0.0)  # when the catalog first saw this location

        class Meta:
            table_name = "cache_state"

    class Tag(Base):
        """A tag on an asset: given by a user, or ``missing`` (``auto``: the asset has no
        live location). The automatic tags of a place are the location's own."""

        # No index of its own: the unique (asset, name, origin) index below starts with it.
        asset = pw.ForeignKeyField(Asset, backref="tag_rows", on_delete="CASCADE", index=False)
        name = pw.TextField(index=True)
        origin = pw.TextField()  # "user" | "auto"

        class Meta:
            indexes = ((("asset", "name", "origin"), True),)

    class LocationTag(Base):
        """An automatic tag of one location: its root, its folders, its category."""

        # No index of its own: the unique (location, name) index below starts with it.
        location = pw.ForeignKeyField(
            Location, backref="auto_tags", on_delete="CASCADE", index=False
        )
        name = pw.TextField(index=True)

        class Meta:
            table_name = "location_tag"
            indexes = ((("location", "name"), True),)

    class Change(Base):
        """The change log: one row per committed change, the feed's replay source."""

        seq = pw.BigIntegerField(primary_key=True)
        ts = pw.DoubleField()
        op = pw.TextField()
        root = pw.TextField(null=True)
        body = pw.TextField()  # the change message as JSON, without "type" and "seq"

    class ComfyRef(Base):
        """What ComfyUI's asset API says about one location beyond the catalog: its name,
        whether the API deleted it (hidden from the API only; the file stays), and when
        it was last changed and downloaded there. No row: none of these."""

        location = pw.ForeignKeyField(
            Location, primary_key=True, on_delete="CASCADE", column_name="location_id"
        )
        name = pw.TextField(null=True)
        hidden_at = pw.DoubleField(null=True)
        updated_at = pw.DoubleField(null=True)
        last_access = pw.DoubleField(null=True)
        # The location whose file previews this one (ComfyUI's preview_id); checked on read.
        preview_id = pw.BigIntegerField(null=True)

        class Meta:
            table_name = "comfyui_ref"

    return Models(Info, Root, Sequence, Asset, Location, Tag, LocationTag, Change, ComfyRef)


Migration = Callable[[pw.Database, Models], None]


def _v1_initial(db: pw.Database, models: Models) -> None:
    # Creates the current shape; the migrations after it that add columns therefore
    # add each only where it is missing (a catalog made by an older assetd).
    db.create_tables(models.all())
    models.Sequence.create(name="change", value=0)


def _v2_change_ts_index(db: pw.Database, models: Models) -> None:
    # Retention by age scans the change log by time. The statement playhouse.migrate
    # would make (its name for the index too): that module, and the drivers' modules it
    # imports, cost every new catalog's first command a few milliseconds.
    db.execute_sql('CREATE INDEX IF NOT EXISTS "change_ts" ON "change" ("ts")')


def _v3_pending_index(db: pw.Database, models: Models) -> None:
    # Passes look for the locations waiting for a hash; a partial index holds only those,
    # so the look costs what is pending, not the size of the catalog.
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS cache_state_pending ON cache_state (id) WHERE needs_verify"
    )


def _v4_root_node(db: pw.Database, models: Models) -> None:
    # Several daemons may share one catalog: each root is owned by one of them.
    if "node" not in {c.name for c in db.get_columns("root_info")}:
        from playhouse.migrate import SchemaMigrator, migrate

        migrate(SchemaMigrator.from_database(db).add_column("root_info", "node", models.Root.node))


def _v5_one_tag_index_less(db: pw.Database, models: Models) -> None:
    # Catalogs made before version 5 index tag.asset_id twice: alone and as the first
    # column of the unique (asset_id, name, origin) index. The second serves every
    # lookup the first did; the first cost a B-tree insert per tag.
    db.execute_sql("DROP INDEX IF EXISTS tag_asset_id")


def _v7_inode_index(db: pw.Database, models: Models) -> None:
    # A file that appears at a new path is looked up by its inode: the location it moved
    # from, if the catalog has one (moves across roots, into new folders, while stopped).
    db.execute_sql("CREATE INDEX IF NOT EXISTS cache_state_inode ON cache_state (inode)")


def _v8_location_tags(db: pw.Database, models: Models) -> None:
    # Automatic tags were merged over every location of an asset: a copy under loras/
    # placed in checkpoints/ carried both. Each location now has its own; the asset
    # keeps its user tags and the ``missing`` mark.
    from assetd.paths import folder_tags  # upgrades only: not every command

    db.create_tables([models.LocationTag], safe=True)
    roots = {
        name: bytes(prefix) for name, prefix in db.execute_sql("SELECT name, prefix FROM root_info")
    }
    after = 0
    while True:
        rows = db.execute_sql(
            f"SELECT id, root, file_path FROM cache_state WHERE id > {int(after)} "
            "ORDER BY id LIMIT 2000"
        ).fetchall()
        if not rows:
            break
        pairs = sorted(
            {
                (loc, name)
                for loc, root, path in rows
                for name in folder_tags(roots, root, bytes(path))
            }
        )
        if pairs:
            LT = models.LocationTag
            LT.insert_many(pairs, fields=[LT.location, LT.name]).execute()
        after = rows[-1][0]
    db.execute_sql("DELETE FROM tag WHERE origin = 'auto' AND name != 'missing'")


def _v9_location_name_and_age(db: pw.Database, models: Models) -> None:
    # Browsing sorts and searches by file name and age, and the workflow check finds a
    # model by its file name: each from an index, not from a scan of every path.
    from assetd.paths import file_name

    have = {c.name for c in db.get_columns("cache_state")}
    L = models.Location
    if "file_name" not in have or "created_at" not in have:
        from playhouse.migrate import SchemaMigrator, migrate

        migrator = SchemaMigrator.from_database(db)
    if "file_name" not in have:
        migrate(migrator.add_column("cache_state", "file_name", L.file_name))
    if "created_at" not in have:
        migrate(migrator.add_column("cache_state", "created_at", L.created_at))
        db.execute_sql(
            "UPDATE cache_state SET created_at = "
            "(SELECT a.created_at FROM asset a WHERE a.id = cache_state.asset_id)"
        )
    after = 0
    while True:
        rows = db.execute_sql(
            f"SELECT id, file_path FROM cache_state WHERE id > {int(after)} "
            "AND file_name = '' ORDER BY id LIMIT 2000"
        ).fetchall()
        if not rows:
            break
        for loc, path in rows:
            L.update(file_name=file_name(bytes(path))).where(L.id == loc).execute()
        after = rows[-1][0]
    db.execute_sql("CREATE INDEX IF NOT EXISTS cache_state_file_name ON cache_state (file_name)")


def _v10_comfyui_refs(db: pw.Database, models: Models) -> None:
    # ComfyUI's asset API keeps a name, a deletion and two times per location; its list
    # is newest first by default, served from an index on the first sighting.
    db.create_tables([models.ComfyRef], safe=True)
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS cache_state_created_at ON cache_state (created_at, id)"
    )


def _v11_sort_indexes(db: pw.Database, models: Models) -> None:
    # A list sorted by date or size reads a page from the cursor on in one of these
    # (file names have an index already); the row id breaks ties.
    db.execute_sql("CREATE INDEX IF NOT EXISTS cache_state_mtime ON cache_state (mtime_ns)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS cache_state_size ON cache_state (size)")
    # The missing are few, and a list of them only is asked for: a partial index of
    # them costs a pass nothing (a live row is not in it).
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS cache_state_missing ON cache_state (id) WHERE is_missing"
    )


def _v12_asset_generation(db: pw.Database, models: Models) -> None:
    # A ComfyUI output shows the models and the prompt that made it: read once, when its
    # content is hashed, and kept with the content. Content hashed before stays without.
    if "generation" not in {c.name for c in db.get_columns("asset")}:
        from playhouse.migrate import SchemaMigrator, migrate

        field = models.Asset.generation
        migrate(SchemaMigrator.from_database(db).add_column("asset", "generation", field))


def migrations() -> list[tuple[int, str, Migration]]:
    """Every schema version in order: (version, what it does, how)."""
    return [
        (1, "initial tables", _v1_initial),
        (2, "index the change log by time", _v2_change_ts_index),
        (3, "index the locations waiting for a hash", _v3_pending_index),
        (4, "the node that owns each root", _v4_root_node),
        (5, "drop the tag index the unique tag index covers", _v5_one_tag_index_less),
        (7, "index the locations by inode, to find where a file moved from", _v7_inode_index),
        (8, "automatic tags per location, not merged over the asset", _v8_location_tags),
        (9, "each location's file name and first sighting, indexed", _v9_location_name_and_age),
        (10, "ComfyUI's asset API: names and deletions per location", _v10_comfyui_refs),
        (11, "index the locations by mtime and size, and the missing ones", _v11_sort_indexes),
        (12, "what made each ComfyUI output: models and prompt", _v12_asset_generation),
    ]


SCHEMA_VERSION = migrations()[-1][0]
