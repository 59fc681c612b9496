"""Locations as ComfyUI's asset API sees them: rows with their names, deletions and times;
the list's filters, order and pages; tag counts; and the API's own writes.

An API "asset" is a location. What the API adds to one (a name, a deletion, an update
and a download time) is in ``comfyui_ref``, one row per location that has any of it.
A location the API deleted is *hidden*: gone from the API, kept by the catalog, the
feed and the command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from assetd.catalog.part import Part
from assetd.catalog.sql import chunks, marks
from assetd.catalog.tags import MISSING_TAG

__all__ = ["SORT_KEYS", "Candidate", "ComfyRefs", "RefFilter", "RefRow", "RefSort"]

# The list's sort names and the value each sorts by (ties: the location id).
SORT_KEYS = ("name", "created_at", "updated_at", "size", "last_access_time")

_ROW_SQL = (
    "SELECT l.id, l.file_path, l.root, l.asset_id, a.hash, l.size, a.mime_type, "
    "l.is_missing, l.needs_verify, l.created_at, l.file_name, r.name, r.hidden_at, "
    "r.updated_at, r.last_access, r.preview_id, a.user_metadata "
    "FROM cache_state l JOIN asset a ON a.id = l.asset_id "
    "LEFT JOIN comfyui_ref r ON r.location_id = l.id "
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_VISIBLE = "r.hidden_at IS NULL"  # no row, or a row without a deletion


@dataclass(frozen=True)
class RefRow:
    """One location with what the API says about it."""

    id: int
    path: bytes
    root: str
    asset_id: int
    hash: str | None
    size: int
    mime_type: str | None
    is_missing: bool
    needs_verify: bool
    created_at: float
    file_name: str
    name: str | None  # the API's name for it; None: its file name
    hidden: bool
    updated_at: float | None
    last_access: float | None
    preview_id: int | None
    metadata: dict[str, Any]  # its asset's user metadata
    tags: tuple[str, ...]  # sorted: user and automatic
    user_tags: tuple[str, ...]


@dataclass(frozen=True)
class RefFilter:
    """Which live, visible locations a list or a tag count takes."""

    tags_all: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    name_contains: str | None = None


@dataclass(frozen=True)
class RefSort:
    key: str  # one of SORT_KEYS
    desc: bool


class Candidate(NamedTuple):
    """A listed location before its page is cut: what filters it further in Python."""

    id: int
    asset_id: int
    path: bytes
    key: Any  # its sort value


class ComfyRefs(Part):
    """The API's view of locations, and its writes (on the writer thread)."""

    # Totals kept, each for the catalog as it was when counted: a client paging through
    # a list asks the same count for every page, and counting a million matches costs
    # what reading them does.
    TOTALS_KEPT = 64

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._writes = 0  # the API's own writes, which log no change (a hidden location)
        self._totals: dict[tuple[str, tuple[Any, ...]], tuple[tuple[int, int], int]] = {}

    def _total(self, condition: str, params: Sequence[Any]) -> int:
        """How many locations match: counted once for each state of the catalog."""
        key, stamp = (condition, tuple(params)), (self.changes.latest_seq(), self._writes)
        kept = self._totals.get(key)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        ((total,),) = self.store.query(f"SELECT COUNT(*) {self._from()} WHERE {condition}", params)
        if len(self._totals) >= self.TOTALS_KEPT:
            self._totals.clear()
        self._totals[key] = (stamp, int(total))
        return int(total)

    # -- reading --------------------------------------------------------------------

    def rows(self, ids: Iterable[int]) -> dict[int, RefRow]:
        """The rows of these locations (missing and hidden ones too), by id."""
        found: list[tuple[Any, ...]] = []
        for batch in chunks(sorted(set(ids))):
            found += self.store.query(_ROW_SQL + f"WHERE l.id IN ({marks(batch)})", batch)
        tags = self.tags.at((r[0], r[3]) for r in found)
        return {r[0]: _row(r, *tags[r[0]]) for r in found}

    def row(self, location_id: int) -> RefRow | None:
        return self.rows([location_id]).get(location_id)

    def id_at(self, path: bytes) -> int | None:
        rows = self.store.query("SELECT id FROM cache_state WHERE file_path = ?", [path])
        return int(rows[0][0]) if rows else None

    def hash_known(self, digest: str) -> bool:
        """Whether any content has this hash (its locations deleted or missing, too)."""
        return bool(self.store.query("SELECT 1 FROM asset WHERE hash = ?", [digest]))

    def of_content(self, digest: str) -> list[RefRow]:
        """Every location of the content with this hash: visible and live ones first."""
        rows = self.store.query(
            "SELECT l.id FROM cache_state l JOIN asset a ON a.id = l.asset_id "
            "LEFT JOIN comfyui_ref r ON r.location_id = l.id WHERE a.hash = ? "
            "ORDER BY l.is_missing, CASE WHEN r.hidden_at IS NULL THEN 0 ELSE 1 END, l.id",
            [digest],
        )
        ids = [r[0] for r in rows]
        found = self.rows(ids)
        return [found[i] for i in ids if i in found]

    def live_siblings(self, asset_id: int) -> list[tuple[int, bytes]]:
        """(id, path) of the live, visible locations of an asset, verified ones first."""
        rows = self.store.query(
            "SELECT l.id, l.file_path FROM cache_state l "
            "LEFT JOIN comfyui_ref r ON r.location_id = l.id "
            f"WHERE l.asset_id = ? AND NOT l.is_missing AND {_VISIBLE} "
            "ORDER BY l.needs_verify, l.id",
            [asset_id],
        )
        return [(int(i), bytes(p)) for i, p in rows]

    def metadata(self, asset_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The user metadata of assets, by id."""
        found: dict[int, dict[str, Any]] = {}
        for batch in chunks(sorted(set(asset_ids))):
            rows = self.store.query(
                f"SELECT id, user_metadata FROM asset WHERE id IN ({marks(batch)})", batch
            )
            found.update((a, dict(json.loads(text))) for a, text in rows)
        return found

    def page(
        self,
        where: RefFilter,
        sort: RefSort,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[Any, int] | None = None,
    ) -> tuple[list[int], int, bool]:
        """The ids of one page (``after``: the sort value and id to continue after, else
        ``offset``), the number of matches in all, and whether more follow."""
        condition, params = self._where(where)
        total = self._total(condition, params)
        key, order = self._key(sort.key), "DESC" if sort.desc else "ASC"
        if after is not None:
            op = "<" if sort.desc else ">"
            condition += f" AND ({key} {op} ? OR ({key} = ? AND l.id {op} ?))"
            params += [after[0], after[0], after[1]]
            offset = 0
        rows = self.store.query(
            f"SELECT l.id {self._from()} WHERE {condition} "
            f"ORDER BY {key} {order}, l.id {order} LIMIT ? OFFSET ?",
            [*params, limit + 1, offset],
        )
        ids = [int(r[0]) for r in rows]
        return ids[:limit], int(total), len(ids) > limit

    def candidates(self, where: RefFilter, sort: RefSort) -> list[Candidate]:
        """Every match in order, for a filter SQL cannot answer (user metadata)."""
        condition, params = self._where(where)
        key = self._key(sort.key)
        order = "DESC" if sort.desc else "ASC"
        rows = self.store.query(
            f"SELECT l.id, l.asset_id, l.file_path, {key} {self._from()} WHERE {condition} "
            f"ORDER BY {key} {order}, l.id {order}",
            params,
        )
        return [Candidate(int(i), int(a), bytes(p), k) for i, a, p, k in rows]

    def sort_value(self, location_id: int, key: str) -> Any:
        """The value a location sorts by under ``key`` (for a cursor)."""
        rows = self.store.query(
            f"SELECT {self._key(key)} {self._from()} WHERE l.id = ?", [location_id]
        )
        return rows[0][0] if rows else None

    def tag_counts(self, prefix: str | None, include_zero: bool) -> dict[str, int]:
        """Tag name → how many live, visible locations carry it (``missing``: how many
        visible locations whose content has no live file); with ``include_zero``, every
        tag the catalog knows, 0 for the unused. Only names that start with ``prefix``
        (literally: no wildcards)."""
        cut = "AND substr(t.name, 1, ?) = ?" if prefix else ""
        cut_params: list[Any] = [len(prefix), prefix] if prefix else []
        visible = f"LEFT JOIN comfyui_ref r ON r.location_id = l.id WHERE {_VISIBLE}"
        # UNION, not UNION ALL: a tag both given and automatic at a place counts once.
        rows = self.store.query(
            "SELECT name, COUNT(*) FROM ("
            "SELECT t.name AS name, l.id AS loc FROM cache_state l "
            f"JOIN tag t ON t.asset_id = l.asset_id AND t.origin = 'user' {visible} "
            f"AND NOT l.is_missing {cut} UNION "
            "SELECT t.name AS name, l.id AS loc FROM cache_state l "
            f"JOIN location_tag t ON t.location_id = l.id {visible} AND NOT l.is_missing {cut}"
            ") q GROUP BY name",
            [*cut_params, *cut_params],
        )
        counts = {str(name): int(n) for name, n in rows}
        if not prefix or MISSING_TAG.startswith(prefix):
            ((missing,),) = self.store.query(
                "SELECT COUNT(*) FROM cache_state l JOIN tag t ON t.asset_id = l.asset_id "
                f"AND t.origin = 'auto' AND t.name = ? {visible}",
                [MISSING_TAG],
            )
            if missing:
                counts[MISSING_TAG] = counts.get(MISSING_TAG, 0) + int(missing)
        if include_zero:
            for table in ("tag", "location_tag"):
                names = self.store.query(
                    f"SELECT DISTINCT t.name FROM {table} t WHERE 1 = 1 {cut}", cut_params
                )
                for (name,) in names:
                    counts.setdefault(str(name), 0)
        return counts

    # -- the parts of a query -------------------------------------------------------

    def _from(self) -> str:
        return "FROM cache_state l LEFT JOIN comfyui_ref r ON r.location_id = l.id"

    def _name(self) -> str:
        """The API's name of a location, compared byte by byte on either engine; the
        file name alone (its index) while no location has a name of its own."""
        named = self.store.query("SELECT 1 FROM comfyui_ref WHERE name IS NOT NULL LIMIT 1")
        expr = "COALESCE(r.name, l.file_name)" if named else "l.file_name"
        return expr if self.store.sqlite else f'{expr} COLLATE "C"'

    def _key(self, key: str) -> str:
        if key == "name":
            return self._name()
        return {
            "created_at": "l.created_at",
            "updated_at": "COALESCE(r.updated_at, l.created_at)",
            "size": "l.size",
            "last_access_time": "COALESCE(r.last_access, l.created_at)",
        }[key]

    def _fold(self, text: str) -> str:
        """``text`` in the case SQL's LOWER gives it: SQLite folds ASCII letters only."""
        return text.translate(_ASCII_LOWER) if self.store.sqlite else text.lower()

    def _where(self, where: RefFilter) -> tuple[str, list[Any]]:
        parts = ["NOT l.is_missing", _VISIBLE]
        params: list[Any] = []
        has_tag = self.locations.has_tag
        for tags, negate in [*(([t], "") for t in where.tags_all), (where.tags_any, ""),
                             (where.tags_none, "NOT ")]:  # fmt: skip
            if tags:
                condition, values = has_tag(list(tags))
                parts.append(negate + condition)
                params += values
        if where.name_contains:
            parts.append("LOWER(COALESCE(r.name, l.file_name)) LIKE ? ESCAPE '!'")
            params.append(f"%{_like_literal(self._fold(where.name_contains))}%")
        return " AND ".join(parts), params

    # -- writing (on the writer thread) ---------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write transaction; once it committed, the totals kept are stale."""
        with self.changes.write():
            yield
        self._writes += 1

    def _ref(self, location_id: int, **values: Any) -> None:
        Ref = self.store.models.ComfyRef
        self.store.upsert(Ref, Ref.location, location=location_id, **values)

    def rename(self, location_id: int, name: str) -> None:
        with self._writing():
            self._ref(location_id, name=name, updated_at=self.store.now())

    def replace_metadata(self, location_id: int, metadata: dict[str, Any]) -> None:
        """Replace the user metadata of the location's asset (PUT: no merge)."""
        with self._writing():
            rows = self.store.query("SELECT asset_id FROM cache_state WHERE id = ?", [location_id])
            if rows:
                self.store.execute(
                    "UPDATE asset SET user_metadata = ? WHERE id = ?",
                    [json.dumps(metadata, sort_keys=True), rows[0][0]],
                )
            self._ref(location_id, updated_at=self.store.now())

    def set_preview(self, location_id: int, preview_id: int) -> None:
        with self._writing():
            self._ref(location_id, preview_id=preview_id, updated_at=self.store.now())

    def hide(self, location_id: int) -> bool:
        """Delete a location from the API; False if it was not visible."""
        with self._writing():
            row = self.row(location_id)
            if row is None or row.hidden:
                return False
            self._ref(location_id, hidden_at=self.store.now())
            return True

    def unhide(self, location_id: int) -> None:
        with self._writing():
            self.store.execute(
                "UPDATE comfyui_ref SET hidden_at = NULL WHERE location_id = ?", [location_id]
            )

    def touch(self, location_id: int) -> None:
        """A download: the last access moves forward (never back)."""
        with self._writing():
            now = self.store.now()
            have = self.row(location_id)
            if have is not None and (have.last_access or 0.0) < now:
                self._ref(location_id, last_access=now)

    def adopt(
        self,
        location_id: int,
        name: str | None,
        tags: Sequence[str],
        metadata: dict[str, Any] | None,
        preview_id: int | None,
    ) -> None:
        """A location an upload answers with: visible, with the tags given (as user tags,
        but for those automatic there), and a name, metadata keys and a preview if given."""
        with self._writing():
            row = self.row(location_id)
            if row is None:
                return
            if row.hidden:
                self.unhide(location_id)
            if name is not None and name != row.file_name:
                self._ref(location_id, name=name)
            if preview_id is not None:
                self._ref(location_id, preview_id=preview_id)
            have = set(row.tags)
            wanted = [t for t in dict.fromkeys(tags) if t not in have]
            if wanted:
                self.tags.change(row.path, wanted, ())
            if metadata:
                self.tags.change_metadata(row.path, metadata, ())

    def add_tags(self, location_id: int, tags: Sequence[str]) -> tuple[list[str], list[str]]:
        """Give the location's asset these user tags, where the location lacks them;
        (added, already present)."""
        with self._writing():
            row = self.row(location_id)
            if row is None:
                return [], []
            have = set(row.tags)
            added = sorted({t for t in tags if t not in have})
            if added:
                self.tags.change(row.path, added, ())
            return added, sorted(have & set(tags))

    def remove_tags(
        self, location_id: int, tags: Sequence[str]
    ) -> tuple[list[str], list[str], list[str]]:
        """Remove these user tags from the location's asset; (removed, not present,
        protected: the location has them automatically, so they stay)."""
        with self._writing():
            row = self.row(location_id)
            if row is None:
                return [], [], []
            user, have = set(row.user_tags), set(row.tags)
            given = set(tags) & user
            kept = set(self.tags.change(row.path, (), sorted(given))) if given else have
            # A tag also automatic here stays (given and automatic: the user's goes).
            return sorted(given - kept), sorted(set(tags) - have), sorted(set(tags) & kept)


def _row(r: Sequence[Any], tags: list[str], user_tags: list[str]) -> RefRow:
    return RefRow(
        id=int(r[0]),
        path=bytes(r[1]),
        root=r[2],
        asset_id=int(r[3]),
        hash=r[4],
        size=int(r[5]),
        mime_type=r[6],
        is_missing=bool(r[7]),
        needs_verify=bool(r[8]),
        created_at=float(r[9] or 0.0),
        file_name=r[10] or "",
        name=r[11],
        hidden=r[12] is not None,
        updated_at=r[13],
        last_access=r[14],
        preview_id=r[15],
        metadata=dict(json.loads(r[16] or "{}")),
        tags=tuple(tags),
        user_tags=tuple(user_tags),
    )


def _like_literal(text: str) -> str:
    """``text`` inside a LIKE pattern with ESCAPE '!': every character as itself."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
