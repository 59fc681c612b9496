"""Reading file locations: cache states for the passes, Location JSON for the clients."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeAlias

from assetd.catalog.order import SORT_COLUMNS, Cursor, after_cursor, like_literal, sort_value
from assetd.catalog.schema import to_i64
from assetd.catalog.sql import (
    BARE_STATE_SQL,
    CHUNK,
    LOCATION_SQL,
    STATE_SQL,
    StateRow,
    Store,
    chunks,
    location_json,
    marks,
    prefix_ranges,
    stat_params,
    state_of_row,
)
from assetd.decide import CachedState, FileStat
from assetd.paths import prefix_upper_bound

__all__ = ["Locations"]

_Where: TypeAlias = list[str]  # a query's conditions
_Params: TypeAlias = list[Any]  # and their parameters

# Locations of one content a detail lists (a file copied thousands of times lists some).
DETAIL_LOCATIONS = 100

# Rows a filter may leave below which a list fetches them first and sorts them, rather
# than reading the order's index until it has found a page.
FEW_ROWS_TO_SORT = 5000

# Assets carrying a tag below which a tag filter starts from the tag's index.
RARE_TAG_ASSETS = 5000


class Locations:
    """The cache states and Location objects of one catalog."""

    def __init__(
        self,
        store: Store,
        tags_at: Callable[[Iterable[tuple[int, int]]], dict[int, tuple[list[str], list[str]]]],
        describe: Callable[[bytes], dict[str, Any]] | None = None,
    ) -> None:
        self.store = store
        self._tags_at = tags_at
        self._describe = describe

    def describe_with(self, describe: Callable[[bytes], dict[str, Any]] | None) -> None:
        """What a layer adds to each Location object from now on."""
        self._describe = describe

    # -- cache states ----------------------------------------------------------------

    def _pending_index(self) -> str:
        """SQLite's planner, without statistics, prefers the path index for a root's range
        over the small partial index of pending rows; tell it. (PostgreSQL has stats.)"""
        return " INDEXED BY cache_state_pending" if self.store.sqlite else ""

    def _states(
        self, where: str, params: Sequence[Any], index: str = "", *, sql: str = STATE_SQL
    ) -> list[CachedState]:
        rows = self.store.query(sql.format(index=index) + where, params)
        return [state_of_row(r) for r in rows]

    def get_states(
        self, paths: Sequence[bytes], *, with_hash: bool = True
    ) -> dict[bytes, CachedState]:
        """The cache states at these paths (``hash`` None unless ``with_hash``)."""
        sql = STATE_SQL if with_hash else BARE_STATE_SQL
        found: dict[bytes, CachedState] = {}
        for batch in chunks(list(paths)):
            where = f"WHERE l.file_path IN ({marks(batch)})"
            found.update((s.path, s) for s in self._states(where, batch, sql=sql))
        return found

    def get_state(self, path: bytes) -> CachedState | None:
        return self.get_states([path]).get(path)

    def states_by_id(self, ids: Sequence[int]) -> list[CachedState]:
        found: list[CachedState] = []
        for batch in chunks(list(ids)):
            found += self._states(f"WHERE l.id IN ({marks(batch)}) ORDER BY l.id", batch)
        return found

    def by_inodes(self, inodes: Sequence[int]) -> list[CachedState]:
        """The locations, live or missing, whose stored inode is among ``inodes``, on this
        node's roots (another host's inode numbers say nothing about this one's files)."""
        mine = ""
        params: list[Any] = []
        if self.store.shared:
            mine = (
                "AND l.root NOT IN "
                "(SELECT name FROM root_info WHERE node IS NOT NULL AND node != ?) "
            )
            params = [self.store.node]
        found: list[CachedState] = []
        for batch in chunks(sorted({to_i64(i) for i in inodes})):
            where = f"WHERE l.inode IN ({marks(batch)}) {mine}"
            found += self._states(where, [*batch, *params])
        return found

    def named(self, name: str) -> list[CachedState]:
        """The locations, live first, whose file is called ``name`` (in any folder)."""
        return self._states("WHERE l.file_name = ? ORDER BY l.is_missing, l.file_path", [name])

    def of_content(self, digest: str) -> list[CachedState]:
        """The locations, live first, whose content has hash ``digest``."""
        return self._states("WHERE a.hash = ? ORDER BY l.is_missing, l.file_path", [digest])

    def iter_rows(
        self,
        prefix: bytes,
        *,
        page: int = 2000,
        span: tuple[bytes | None, bytes | None] = (None, None),
    ) -> Iterator[StateRow]:
        """Every location under ``prefix`` (missing ones too), in path order, streamed, as
        raw rows (:data:`StateRow`: :func:`state_of_row` makes a state of one); only
        those in ``span`` (``[low, high)``, None: unbounded) when given. A restart's merge
        reads one of these per file and needs a whole state only for the few that
        changed."""
        low, high, op = prefix, prefix_upper_bound(prefix), ">="
        if span[0] is not None and span[0] > low:
            low = span[0]
        if span[1] is not None and span[1] < high:
            high = span[1]
        sql = BARE_STATE_SQL.format(index="")
        while True:
            rows = self.store.query(
                sql + f"WHERE l.file_path {op} ? AND l.file_path < ? ORDER BY l.file_path LIMIT ?",
                [low, high, page],
            )
            if not self.store.sqlite:  # SQLite hands BLOBs over as bytes already
                rows = [(r[0], bytes(r[1]), *r[2:]) for r in rows]
            yield from rows
            if len(rows) < page:
                return
            low, op = rows[-1][1], ">"

    def max_location_id(self) -> int:
        """The highest location id: at least the number of locations, and instant."""
        (high,) = self.store.query("SELECT MAX(id) FROM cache_state", [])[0]
        return int(high or 0)

    def quantiles(self, prefix: bytes, parts: int, least: int) -> list[bytes]:
        """Paths that cut the locations under ``prefix`` into ``parts`` runs of about
        the same length; none when there are fewer than ``least`` of them."""
        where = "WHERE file_path >= ? AND file_path < ?"
        bounds = [prefix, prefix_upper_bound(prefix)]
        (count,) = self.store.query(f"SELECT COUNT(*) FROM cache_state {where}", bounds)[0]
        if count < max(least, parts):
            return []
        cuts: list[bytes] = []
        step = count // parts
        for _ in range(1, parts):  # each from the last cut: one pass over the index in all
            rows = self.store.query(
                f"SELECT file_path FROM cache_state {where} ORDER BY file_path LIMIT 1 OFFSET ?",
                [*bounds, step],
            )
            bounds[0] = bytes(rows[0][0])
            cuts.append(bounds[0])
        return sorted(set(cuts))

    def pending_states(
        self, prefixes: Sequence[bytes], *, after: int = 0, limit: int = CHUNK
    ) -> list[CachedState]:
        """Live locations under ``prefixes`` with no or a stale hash, by id after ``after``."""
        return self._live_states_under(
            prefixes, "l.needs_verify", after, limit, self._pending_index()
        )

    def verify_states(
        self, prefixes: Sequence[bytes], *, after: int = 0, limit: int = CHUNK
    ) -> list[CachedState]:
        """Live, hashed locations under ``prefixes`` (what ``verify`` re-hashes), by id."""
        return self._live_states_under(
            prefixes, "a.hash IS NOT NULL AND NOT l.needs_verify", after, limit
        )

    def _live_states_under(
        self, prefixes: Sequence[bytes], condition: str, after: int, limit: int, index: str = ""
    ) -> list[CachedState]:
        if not prefixes:
            return []
        ranges, bounds = prefix_ranges(prefixes)
        return self._states(
            f"WHERE {condition} AND NOT l.is_missing AND l.id > ? AND ({ranges}) "
            "ORDER BY l.id LIMIT ?",
            [after, *bounds, limit],
            index,
        )

    def sample_ids(self, prefixes: Sequence[bytes], count: int) -> list[int]:
        """The ids of ``count`` live, hashed locations under ``prefixes``, at random, sorted."""
        if not prefixes or count <= 0:
            return []
        ranges, bounds = prefix_ranges(prefixes)
        rows = self.store.query(
            "SELECT l.id FROM cache_state l JOIN asset a ON a.id = l.asset_id "
            f"WHERE a.hash IS NOT NULL AND NOT l.needs_verify AND NOT l.is_missing AND ({ranges}) "
            "ORDER BY random() LIMIT ?",
            [*bounds, count],
        )
        return sorted(r[0] for r in rows)

    def count_pending_hash(self, prefixes: Sequence[bytes]) -> tuple[int, int]:
        """How many live locations under ``prefixes`` wait for a hash, and their bytes."""
        if not prefixes:
            return 0, 0
        ranges, bounds = prefix_ranges(prefixes)
        ((count, size),) = self.store.query(
            f"SELECT COUNT(l.id), COALESCE(SUM(l.size), 0) FROM cache_state l"
            f"{self._pending_index()} WHERE l.needs_verify AND NOT l.is_missing AND ({ranges})",
            bounds,
        )
        return int(count), int(size)

    def live_locations(self, ids: Sequence[int]) -> dict[int, tuple[int, str, bytes]]:
        """Location id → (asset id, root, path), for the live ones among ``ids``."""
        found: dict[int, tuple[int, str, bytes]] = {}
        for batch in chunks(list(ids)):
            rows = self.store.query(
                "SELECT id, asset_id, root, file_path FROM cache_state "
                f"WHERE id IN ({marks(batch)}) AND NOT is_missing",
                batch,
            )
            found.update((loc, (asset, root, bytes(path))) for loc, asset, root, path in rows)
        return found

    def any_under(self, prefix: bytes) -> bool:
        """Whether any location (missing ones too) is under ``prefix``."""
        rows = self.store.query(
            "SELECT 1 FROM cache_state WHERE file_path >= ? AND file_path < ? LIMIT 1",
            [prefix, prefix_upper_bound(prefix)],
        )
        return bool(rows)

    def live_paths_under(self, prefix: bytes) -> list[bytes]:
        """The paths of live locations under ``prefix``, in order."""
        rows = self.store.query(
            "SELECT file_path FROM cache_state WHERE NOT is_missing AND file_path >= ? "
            "AND file_path < ? ORDER BY file_path",
            [prefix, prefix_upper_bound(prefix)],
        )
        return [bytes(r[0]) for r in rows]

    def set_stats(self, rows: Sequence[tuple[int, FileStat, bool, int | None]]) -> None:
        """(location id, stat, needs_verify, asset id or None to keep it), in bulk."""
        columns = "size = ?, mtime_ns = ?, ctime_ns = ?, inode = ?, device = ?, needs_verify = ?"
        self.store.execute_many(
            f"UPDATE cache_state SET {columns} WHERE id = ?",
            [(*stat_params(st), verify, loc) for loc, st, verify, asset in rows if asset is None],
        )
        self.store.execute_many(
            f"UPDATE cache_state SET {columns}, asset_id = ? WHERE id = ?",
            [
                (*stat_params(st), verify, asset, loc)
                for loc, st, verify, asset in rows
                if asset is not None
            ],
        )

    # -- Location objects -----------------------------------------------------------

    def render(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Location JSON objects (CONTRACT.md *Location*) by location id."""
        rows: list[tuple[Any, ...]] = []
        for batch in chunks(sorted(set(ids))):
            rows += self.store.query(LOCATION_SQL + f"WHERE l.id IN ({marks(batch)})", batch)
        return dict(zip((r[0] for r in rows), self._rendered(rows), strict=True))

    def _rendered(self, rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """Rows of :data:`LOCATION_SQL` as Location JSON objects, in order."""
        tags = self._tags_at((r[0], r[3]) for r in rows)
        return [self.json(r[1:], *tags[r[0]]) for r in rows]

    def json(self, values: Sequence[Any], tags: list[str], user_tags: list[str]) -> dict[str, Any]:
        """A Location object (:func:`location_json`) with what the layer adds (its
        ComfyUI category)."""
        item = location_json(values, tags, user_tags)
        if self._describe is not None:
            item.update(self._describe(bytes(values[0])))
        return item

    def list(
        self,
        *,
        root: str | None = None,
        tag: str | None = None,
        include_missing: bool = False,
        missing_only: bool = False,
        q: str | None = None,
        sort: str = "path",
        order: str = "asc",
        limit: int | None = None,
        after: Cursor | None = None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """A page of locations in the order asked, and the cursor to continue after
        (or None): the last row's sort value and id, or its path in path order.

        Every order is an index (paths, file names, mtimes, sizes; ties by id), read
        from the cursor on, so a page costs the same at the millionth row as at the
        first. Plain SQL, not peewee's models: a page is read per request, and building
        a model object for each row would cost more than the query.
        """
        column = SORT_COLUMNS[sort]
        descending = order == "desc"
        where, params = self._filters(root, tag, include_missing, missing_only, q)
        if where is None:
            return [], None
        if after is not None:
            condition, values = after_cursor(column, descending, after)
            where.append(condition)
            params += values
        sql = LOCATION_SQL + (f"WHERE {' AND '.join(where)} " if where else "")
        direction = " DESC" if descending else ""
        sql += f"ORDER BY {column}{direction}"
        if sort != "path":
            sql += f", l.id{direction}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit + 1)
        rows = self.store.query(sql, params)
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        items = self._rendered(rows)
        if not more:
            return items, None
        last = rows[-1]
        return items, bytes(last[1]) if sort == "path" else (sort_value(sort, last), last[0])

    def _filters(
        self,
        root: str | None,
        tag: str | None,
        include_missing: bool,
        missing_only: bool,
        q: str | None,
    ) -> tuple[_Where | None, _Params]:
        """A list's conditions and parameters (None: nothing can match), shaped for the
        planner.

        A page is read along the order's index, and a filter that most rows pass costs
        little there. A filter that few rows pass would have the index read far, so
        those few rows are fetched first and sorted (a small root from its own index,
        the few files a name search finds from the names' index).
        """
        where: list[str] = []
        params: list[Any] = []
        if missing_only:
            missing = "SELECT id FROM cache_state{index} WHERE is_missing"
            if self.store.sqlite and self._fewer(
                missing.format(index=" INDEXED BY cache_state_missing"), [], FEW_ROWS_TO_SORT
            ):
                where.append(f"l.id IN ({missing.format(index='')})")
            else:
                where.append("l.is_missing")
        elif not include_missing:
            where.append("NOT l.is_missing")
        if root is not None:
            small = self._fewer(
                "SELECT 1 FROM cache_state WHERE root = ?", [root], FEW_ROWS_TO_SORT
            )
            # SQLite without statistics would take the root's index for any root, and
            # sort a million rows for a page; a unary plus keeps it off that index.
            where.append("l.root = ?" if small or not self.store.sqlite else "+l.root = ?")
            params.append(root)
        if tag is not None:
            condition, values = self.has_tag([tag])
            where.append(condition)
            params += values
        if q:
            ids = self._named(q)
            if ids is not None and not ids:
                return None, []
            if ids is not None:
                where.append(f"l.id IN ({marks(ids)})")
                params += ids
            else:
                condition, values = self.name_contains(q)
                where.append(condition)
                params += values
        return where, params

    def _named(self, text: str) -> _Params | None:
        """The ids of every location whose file name contains ``text``, when there are
        few (None: many), read from the names' index alone."""
        condition, values = self.name_contains(text)
        index = " INDEXED BY cache_state_file_name" if self.store.sqlite else ""
        rows = self.store.query(
            f"SELECT l.id FROM cache_state l{index} WHERE {condition} LIMIT ?",
            [*values, FEW_ROWS_TO_SORT + 1],
        )
        return [r[0] for r in rows] if len(rows) <= FEW_ROWS_TO_SORT else None

    def _fewer(self, select: str, params: Sequence[Any], bound: int) -> bool:
        """Whether ``select`` yields fewer than ``bound`` rows (counted up to it)."""
        ((count,),) = self.store.query(
            f"SELECT COUNT(*) FROM ({select} LIMIT {int(bound)}) t", list(params)
        )
        return bool(count < bound)

    def detail(self, path: bytes) -> dict[str, Any]:
        """The location at ``path`` with its asset's user metadata, what made it (a
        ComfyUI output's models and prompt) and every location of that content, live
        and missing."""
        found = self.store.query(
            "SELECT l.id, l.asset_id, a.user_metadata, a.generation FROM cache_state l "
            "JOIN asset a ON a.id = l.asset_id WHERE l.file_path = ?",
            [path],
        )
        if not found:
            raise self.store.not_found(path)
        ((location_id, asset_id, metadata, generation),) = found
        rows = self.store.query(
            LOCATION_SQL + "WHERE l.asset_id = ? ORDER BY l.file_path LIMIT ?",
            [asset_id, DETAIL_LOCATIONS],
        )
        others = dict(zip((r[0] for r in rows), self._rendered(rows), strict=True))
        location = others.get(location_id) or self.render([location_id])[location_id]
        return {
            "location": location,
            "metadata": json.loads(metadata),
            "generation": json.loads(generation) if generation else None,
            "locations": list(others.values()),
        }

    def name_contains(self, text: str) -> tuple[str, Sequence[str]]:
        """The condition "the file name contains ``text``", case-insensitive, with ``%``
        and ``_`` taken as themselves, and its parameter."""
        pattern = "%" + like_literal(text) + "%"
        like = "LIKE" if self.store.sqlite else "ILIKE"  # SQLite's LIKE ignores case
        return f"l.file_name {like} ? ESCAPE '\\'", [pattern]

    def has_tag(self, tags: Sequence[str]) -> tuple[str, Sequence[str]]:
        """The condition "the location has one of ``tags``" (its asset's, or its own
        automatic one) and its parameters, shaped for the planner.

        A page is read in some index order. Tags on many rows are met soon along it, so
        each location is checked (EXISTS). Rare ones may be met only far along, so their
        few rows are fetched from the tag's index first (IN): either way a page costs
        milliseconds, at a million locations too.
        """
        names = marks(tags)
        by_asset = (
            f"l.asset_id IN (SELECT asset_id FROM tag WHERE name IN ({names}))"
            if self._rare("tag", tags)
            else f"EXISTS (SELECT 1 FROM tag t WHERE t.asset_id = l.asset_id "
            f"AND t.name IN ({names}))"
        )
        own = (
            f"l.id IN (SELECT location_id FROM location_tag WHERE name IN ({names}))"
            if self._rare("location_tag", tags)
            else f"EXISTS (SELECT 1 FROM location_tag t WHERE t.location_id = l.id "
            f"AND t.name IN ({names}))"
        )
        return f"({by_asset} OR {own})", (*tags, *tags)

    def _rare(self, table: str, tags: Sequence[str]) -> bool:
        some = f"SELECT 1 FROM {table} WHERE name IN ({marks(tags)})"
        return self._fewer(some, tags, RARE_TAG_ASSETS)

    def root_counts(self) -> dict[str, tuple[int, int]]:
        """Root name → (live locations, missing locations)."""
        counts: dict[str, list[int]] = {}
        rows = self.store.query(
            "SELECT root, is_missing, COUNT(id) FROM cache_state GROUP BY root, is_missing"
        )
        for root, is_missing, n in rows:
            counts.setdefault(root, [0, 0])[1 if is_missing else 0] = n
        return {root: (live, missing) for root, (live, missing) in counts.items()}
