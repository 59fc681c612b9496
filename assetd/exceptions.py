"""The exceptions assetd raises.

::

    AssetdError
     ├── ConfigError          the configuration or the command line is invalid (exit 2)
     │    └── RootOwnedError  a root is another node's on a shared catalog
     ├── CatalogError         the catalog cannot be opened, read or written
     │    ├── CatalogUnavailableError  a write failed for now (disk full, locked, gone)
     │    └── SchemaError     the catalog's schema is newer than this assetd, or broken
     ├── ScanError            a seeder pass could not run (never raised for one bad file)
     ├── InvalidRequestError  a malformed argument (a bad tag, a path outside every root)
     └── NotFoundError        a path or asset the caller named is not in the catalog

Errors from the operating system and the database driver are translated at the
boundary with ``raise ... from exc``; only the command line maps them to exit codes.
"""

from __future__ import annotations

__all__ = [
    "AssetdError",
    "CatalogError",
    "CatalogUnavailableError",
    "ConfigError",
    "InvalidRequestError",
    "NotFoundError",
    "RootOwnedError",
    "ScanError",
    "SchemaError",
]


class AssetdError(Exception):
    """Base class of every error assetd raises on purpose."""


class ConfigError(AssetdError):
    """The configuration file or the command line is invalid."""


class RootOwnedError(ConfigError):
    """A configured root belongs to another node of a shared catalog, or overlaps one."""


class CatalogError(AssetdError):
    """The catalog cannot be opened, read or written."""


class CatalogUnavailableError(CatalogError):
    """A write failed for a reason that may pass: disk full, locked too long, I/O error,
    a lost connection. Nothing of it was committed; the same write can be tried again."""


class SchemaError(CatalogError):
    """The catalog's schema version is not one this assetd can use."""


class ScanError(AssetdError):
    """A seeder pass could not run at all."""


class NotFoundError(AssetdError):
    """A path or asset named by the caller is not in the catalog."""


class InvalidRequestError(AssetdError):
    """An argument from a caller is malformed."""
