"""Which engine a database URL names, and keeping PostgreSQL's drivers out of a SQLite process.

peewee imports every PostgreSQL driver it finds when it is itself imported; psycopg
alone adds a noticeable part of a command's start, which every command, the daemon's
start and each of its worker processes would pay for nothing on the embedded SQLite
default. A process
that knows its only catalog is SQLite calls :func:`sqlite_only` before ``assetd.catalog`` is
first imported; the drivers then stay unimported in this process (its catalog cannot
change: the daemon opens one at start, and every command works on one).
"""

from __future__ import annotations

import os
import sys

__all__ = ["DRIVERS", "POSTGRES_SCHEMES", "kept_out", "sqlite_file", "sqlite_only"]

POSTGRES_SCHEMES = ("postgres:", "postgresql:")
DRIVERS = ("psycopg", "psycopg2", "psycopg2cffi")  # what a SQLite process keeps out


def sqlite_only(url: str | None = None) -> None:
    """Hide the PostgreSQL drivers from this process, unless ``url`` is PostgreSQL or
    peewee (or a driver) is already imported (then this changes nothing)."""
    if url is not None and url.startswith(POSTGRES_SCHEMES):
        return
    if "peewee" in sys.modules or any(sys.modules.get(name) for name in DRIVERS):
        return
    for name in DRIVERS:
        sys.modules[name] = None  # type: ignore[assignment]  # "import psycopg" now fails


def kept_out() -> bool:
    """True when :func:`sqlite_only` hid the drivers (worker processes follow suit)."""
    return all(name in sys.modules and sys.modules[name] is None for name in DRIVERS)


def sqlite_file(database_url: str) -> str | None:
    """The file of a SQLite catalog, absolute; None for a catalog in memory or elsewhere."""
    if not database_url.startswith("sqlite:"):
        return None
    path = database_url.split(":///", 1)[-1]
    return os.path.abspath(path) if path and path != ":memory:" else None
