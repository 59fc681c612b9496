"""The orders a list can be read in, and where a page of one continues: pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from assetd.paths import file_name

__all__ = ["SORT_COLUMNS", "Cursor", "after_cursor", "like_literal", "sort_value"]

# The orders a list can be read in: the column each reads, from its index.
SORT_COLUMNS = {
    "path": "l.file_path",
    "name": "l.file_name",
    "mtime": "l.mtime_ns",
    "size": "l.size",
}

# Where a page continues: after this path (path order), or this (sort value, id).
Cursor = bytes | tuple[Any, int]


def like_literal(text: str) -> str:
    """``text`` for a ``LIKE ... ESCAPE '\\'`` pattern, every character as itself."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def after_cursor(column: str, descending: bool, after: Cursor) -> tuple[str, list[Any]]:
    """The condition "beyond the cursor" in the list's order, and its parameters.

    The plain bound on the column comes first so that either engine starts the index
    range there; the (value, id) pair then drops the rows of equal value already sent.
    """
    beyond = "<" if descending else ">"
    if isinstance(after, bytes):
        return f"{column} {beyond} ?", [after]
    value, last_id = after
    return f"{column} {beyond}= ? AND ({column}, l.id) {beyond} (?, ?)", [value, value, last_id]


def sort_value(sort: str, row: Sequence[Any]) -> Any:
    """A row of :data:`LOCATION_SQL`'s sort value for ``sort``."""
    if sort == "name":
        return file_name(bytes(row[1]))
    return row[6] if sort == "mtime" else row[5]
