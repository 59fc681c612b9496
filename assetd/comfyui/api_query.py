"""The query strings of ComfyUI's list routes, checked by its rules; the list's cursor;
and ``metadata_filter``'s matching. Pure: a query's values in, a query or an error out.

Queries arrive as every value of each key (``{key: [values]}``): a key ComfyUI reads
as a list takes them all, a key it reads once must come once.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from assetd.catalog.comfyrefs import SORT_KEYS, RefFilter, RefSort
from assetd.comfyui.api_errors import ApiError

__all__ = [
    "LIST_MAX",
    "TAGS_MAX",
    "ListQuery",
    "TagsQuery",
    "decode_cursor",
    "encode_cursor",
    "metadata_matches",
    "normalise_tags",
    "parse_list",
    "parse_tags_query",
]

Query = Mapping[str, Sequence[str]]

LIST_DEFAULT, LIST_MAX = 20, 500
TAGS_DEFAULT, TAGS_MAX = 100, 1000
TAG_FILTER_MAX = 100  # distinct tags in one of the five tag lists
CURSOR_SORTS = ("created_at", "updated_at", "name", "size")  # last_access_time has none
_INTEGER = re.compile(r"[+-]?\d+")
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


@dataclass(frozen=True)
class ListQuery:
    where: RefFilter
    sort: RefSort
    limit: int
    offset: int
    after: tuple[Any, int] | None  # the cursor's (sort value, location id)
    metadata_filter: dict[str, Any] | None


@dataclass(frozen=True)
class TagsQuery:
    prefix: str | None
    limit: int
    offset: int
    by_count: bool
    include_zero: bool


def invalid_query(param: str, message: str, kind: str = "value_error") -> ApiError:
    """ComfyUI's validation answer; clients read only its code."""
    error = {"type": kind, "loc": [param], "msg": message}
    return ApiError(400, "INVALID_QUERY", "Validation failed.", {"errors": [error]})


def _once(query: Query, name: str) -> str | None:
    values = query.get(name) or []
    if len(values) > 1:
        raise invalid_query(name, "Input should be a valid string", "string_type")
    return values[0] if values else None


def _integer(query: Query, name: str, default: int, low: int, high: int) -> int:
    text = _once(query, name)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text.strip()):
        raise invalid_query(name, "Input should be a valid integer", "int_parsing")
    value = int(text.strip())
    if not low <= value <= high:
        raise invalid_query(name, f"Input should be between {low} and {high}")
    return value


def _choice(query: Query, name: str, choices: Sequence[str], default: str) -> str:
    value = _once(query, name)
    if value is None:
        return default
    if value not in choices:
        raise invalid_query(name, f"Input should be {' or '.join(map(repr, choices))}")
    return value


def normalise_tags(values: Sequence[str]) -> list[str]:
    """Stripped, without empties and repeats, first-seen order kept; case kept."""
    return list(dict.fromkeys(t.strip() for t in values if t.strip()))


def _tag_list(query: Query, name: str) -> list[str]:
    return normalise_tags([part for value in query.get(name) or [] for part in value.split(",")])


def _tag_filter(query: Query) -> RefFilter:
    """The five tag lists resolved into one filter, by ComfyUI's rules (INVALID_TAG_FILTER
    otherwise). The legacy lists alone are never a conflict: ``include_tags=a&
    exclude_tags=a`` matches nothing."""
    lists = {
        name: _tag_list(query, name)
        for name in ("include_tags", "exclude_tags", "tags_all", "tags_any", "tags_none")
    }
    for name, tags in lists.items():
        if len(tags) > TAG_FILTER_MAX:
            raise ApiError(
                400,
                "INVALID_TAG_FILTER",
                f"'{name}' lists {len(tags)} tags; the maximum is {TAG_FILTER_MAX}.",
                {"parameter": name, "count": len(tags), "max": TAG_FILTER_MAX},
            )
    include, exclude = lists["include_tags"], lists["exclude_tags"]
    every, some, none = lists["tags_all"], lists["tags_any"], lists["tags_none"]
    if not (every or some or none):
        return RefFilter(tags_all=tuple(include), tags_none=tuple(exclude))
    for old, new, given_old, given_new in (
        ("include_tags", "tags_all", include, every),
        ("exclude_tags", "tags_none", exclude, none),
    ):
        if given_old and given_new:
            raise ApiError(
                400,
                "INVALID_TAG_FILTER",
                f"Cannot combine '{old}' with '{new}'; use '{new}'.",
                {"parameters": [old, new]},
            )
    all_name, all_tags = ("tags_all", every) if every else ("include_tags", include)
    none_name, none_tags = ("tags_none", none) if none else ("exclude_tags", exclude)
    clash = sorted(set(all_tags) & set(none_tags))
    if clash:
        raise ApiError(
            400,
            "INVALID_TAG_FILTER",
            f"Query can never match: '{clash[0]}' required by '{all_name}' but rejected "
            f"by '{none_name}'.",
            {"conflicting_tags": clash, "parameters": [all_name, none_name]},
        )
    return RefFilter(tags_all=tuple(all_tags), tags_any=tuple(some), tags_none=tuple(none_tags))


def _metadata_filter(query: Query) -> dict[str, Any] | None:
    text = _once(query, "metadata_filter")
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise invalid_query("metadata_filter", "metadata_filter must be JSON") from None
    if not isinstance(value, dict):
        raise invalid_query("metadata_filter", "metadata_filter must be a JSON object")
    return value


def parse_list(query: Query) -> ListQuery:
    """``GET /api/assets``'s query (unknown keys ignored)."""
    where = _tag_filter(query)
    name = _once(query, "name_contains")
    where = RefFilter(where.tags_all, where.tags_any, where.tags_none, name or None)
    sort = RefSort(
        _choice(query, "sort", SORT_KEYS, "created_at"),
        _choice(query, "order", ("asc", "desc"), "desc") == "desc",
    )
    limit = _integer(query, "limit", LIST_DEFAULT, 1, LIST_MAX)
    offset = _integer(query, "offset", 0, 0, 1 << 62)
    metadata = _metadata_filter(query)
    cursor = _once(query, "after")
    after = decode_cursor(cursor, sort) if cursor is not None else None
    return ListQuery(where, sort, limit, offset, after, metadata)


def parse_tags_query(query: Query) -> TagsQuery:
    """``GET /api/tags``'s query: the first value of each key, unknown keys ignored."""
    first = {key: [values[0]] for key, values in query.items() if values}
    prefix = _once(first, "prefix")
    if prefix is not None:
        prefix = prefix.strip()
        if not 1 <= len(prefix) <= 256:
            raise invalid_query("prefix", "String should have 1 to 256 characters")
    include_zero = (_once(first, "include_zero") or "true").strip().lower()
    if include_zero not in _TRUE | _FALSE:
        raise invalid_query("include_zero", "Input should be a valid boolean", "bool_parsing")
    return TagsQuery(
        prefix=prefix,
        limit=_integer(first, "limit", TAGS_DEFAULT, 1, TAGS_MAX),
        offset=_integer(first, "offset", 0, 0, 10_000_000),
        by_count=_choice(first, "order", ("count_desc", "name_asc"), "count_desc") == "count_desc",
        include_zero=include_zero in _TRUE,
    )


# -- the cursor ---------------------------------------------------------------------


def encode_cursor(sort: RefSort, value: Any, location_id: int) -> str:
    """An opaque cursor: the sort it was made for, and the last item's place in it."""
    body = {"s": sort.key, "o": "desc" if sort.desc else "asc", "v": value, "id": location_id}
    text = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, sort: RefSort) -> tuple[Any, int]:
    """(sort value, location id) of a cursor made for this very sort and order."""
    bad = ApiError(400, "INVALID_CURSOR", "Invalid or mismatched cursor.")
    if sort.key not in CURSOR_SORTS:
        raise bad
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        raise bad from None
    if not isinstance(body, dict) or body.get("s") != sort.key:
        raise bad
    if body.get("o") != ("desc" if sort.desc else "asc"):
        raise bad
    value, location_id = body.get("v"), body.get("id")
    if not isinstance(location_id, int) or isinstance(location_id, bool) or location_id < 0:
        raise bad
    if not _sort_value_ok(sort.key, value):
        raise bad
    return value, location_id


def _sort_value_ok(key: str, value: Any) -> bool:
    if key == "name":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and abs(value) < 1e18  # a time or a size, not a huge number


# -- metadata_filter ----------------------------------------------------------------

_ABSENT = object()


def metadata_matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """ComfyUI's rules: every key must match (AND). A filter value that is a list matches
    when any of its elements does; ``null`` matches an absent key (a stored null is an
    absent key); other values match a stored value equal to them, or any element of a
    stored list, with types kept apart (``1`` is not ``"1"``, ``true`` is not ``1``)."""
    for key, want in wanted.items():
        stored = metadata.get(key, _ABSENT)
        if stored is None:
            stored = _ABSENT
        options = want if isinstance(want, list) else [want]
        if not any(_matches_one(stored, option) for option in options):
            return False
    return True


def _matches_one(stored: Any, want: Any) -> bool:
    if want is None:
        return stored is _ABSENT
    if stored is _ABSENT:
        return False
    elements = stored if isinstance(stored, list) else [stored]
    return any(_same(element, want) for element in elements)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, but a bool only equals a bool."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
