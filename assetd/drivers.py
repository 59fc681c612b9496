"""Keep the PostgreSQL drivers out of a process whose catalog is SQLite.

peewee imports every PostgreSQL driver it finds when it is itself imported; psycopg
alone adds ~0.18 s to that here, which every command, the daemon's start and each of
its worker processes would pay for nothing on the embedded SQLite default. A process
that knows its only catalog is SQLite calls :func:`sqlite_only` before ``assetd.db`` is
first imported; the drivers then stay unimported in this process (its catalog cannot
change: the daemon opens one at start, and every command works on one).
"""

from __future__ import annotations

import sys

__all__ = ["POSTGRES_SCHEMES", "kept_out", "sqlite_only"]

POSTGRES_SCHEMES = ("postgres:", "postgresql:")
_DRIVERS = ("psycopg", "psycopg2", "psycopg2cffi")


def sqlite_only(url: str | None = None) -> None:
    """Hide the PostgreSQL drivers from this process, unless ``url`` is PostgreSQL or
    peewee (or a driver) is already imported (then this changes nothing)."""
    if url is not None and url.startswith(POSTGRES_SCHEMES):
        return
    if "peewee" in sys.modules or any(sys.modules.get(name) for name in _DRIVERS):
        return
    for name in _DRIVERS:
        sys.modules[name] = None  # type: ignore[assignment]  # "import psycopg" now fails


def kept_out() -> bool:
    """True when :func:`sqlite_only` hid the drivers (worker processes follow suit)."""
    return all(name in sys.modules and sys.modules[name] is None for name in _DRIVERS)
