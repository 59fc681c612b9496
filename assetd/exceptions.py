"""The exceptions assetd raises.

::

    AssetdError
     ├── ConfigError               the configuration or the command line is invalid (exit 2)
     │    ├── UsageError           a command-line argument is malformed
     │    └── RootOwnedError       a root is another node's on a shared catalog
     ├── CatalogError              the catalog cannot be opened, read or written
     │    ├── CatalogUnavailableError  a write failed for now (disk full, locked, gone)
     │    └── SchemaError          the catalog's schema is newer than this assetd, or broken
     ├── ScanError                 a seeder pass could not run (never raised for one bad file)
     │    └── SeederBusyError      a pass is running; the request needs the seeder idle
     ├── AlreadyRunningError       the pass or verify run asked for is running already
     │    └── VerifyBusyError      a verify run is going on already
     ├── DaemonRunningError        another daemon serves this catalog
     ├── InvalidRequestError       a malformed argument (a bad tag, a path outside every root)
     │    ├── UnknownCommandError  a feed request names no command
     │    ├── AutomaticTagError    a tag to remove is automatic where it was asked
     │    ├── UnknownRootError     a list names a root the catalog does not have
     │    └── RangeNotSatisfiableError  an HTTP Range starts past the file's end (416)
     ├── NotFoundError             a path or asset the caller named is not in the catalog
     ├── DaemonError               talking to a running daemon failed
     │    ├── NoDaemonError        no daemon answers for this catalog (exit 3)
     │    └── RemoteError          the daemon answered a request with an error code
     ├── WorkerError               a worker process failed a task
     │    ├── WorkerDied           the worker ended before it answered
     │    ├── WorkersBusy          no worker was free for a task that would not wait
     │    └── TaskError            the task raised in the worker (a bug)
     └── FileReadError (also OSError)  a file could not be hashed as it was
          ├── NotRegularFileError  not a regular file (a FIFO, a device, a symlink)
          └── FileChangedError     the file kept changing while it was read

Errors from the operating system and the database driver are translated at the
boundary with ``raise ... from exc``; only the command line maps them to exit codes,
and only the feed's command table maps them to error codes.
"""

from __future__ import annotations

__all__ = [
    "AlreadyRunningError",
    "AssetdError",
    "AutomaticTagError",
    "CatalogError",
    "CatalogUnavailableError",
    "ConfigError",
    "DaemonError",
    "DaemonRunningError",
    "FileChangedError",
    "FileReadError",
    "InvalidRequestError",
    "NoDaemonError",
    "NotFoundError",
    "NotRegularFileError",
    "RangeNotSatisfiableError",
    "RemoteError",
    "RootOwnedError",
    "ScanError",
    "SchemaError",
    "SeederBusyError",
    "TaskError",
    "UnknownCommandError",
    "UnknownRootError",
    "UsageError",
    "VerifyBusyError",
    "WorkerDied",
    "WorkerError",
    "WorkersBusy",
]


class AssetdError(Exception):
    """Base class of every error assetd raises on purpose."""


class ConfigError(AssetdError):
    """The configuration file or the command line is invalid."""


class UsageError(ConfigError):
    """A command-line argument is malformed."""


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


class SeederBusyError(ScanError):
    """The seeder is running a pass; the request needs it idle."""


class AlreadyRunningError(AssetdError):
    """The pass or verify run asked for is running already; try again when it ends."""


class VerifyBusyError(AlreadyRunningError):
    """A verify run is going on already."""


class DaemonRunningError(AssetdError):
    """Another daemon serves this catalog (or this node of a shared one)."""


class InvalidRequestError(AssetdError):
    """An argument from a caller is malformed."""


class RangeNotSatisfiableError(InvalidRequestError):
    """An HTTP ``Range`` no byte of the file satisfies."""


class UnknownCommandError(InvalidRequestError):
    """A feed request names a command there is not."""


class AutomaticTagError(InvalidRequestError):
    """A tag to remove is automatic at that location: its place gives it, no user did."""


class UnknownRootError(InvalidRequestError):
    """A list names a root that is neither configured nor in the catalog."""


class NotFoundError(AssetdError):
    """A path or asset named by the caller is not in the catalog."""


class DaemonError(AssetdError):
    """Talking to a running daemon failed."""


class NoDaemonError(DaemonError):
    """No daemon answers for this catalog."""


class RemoteError(DaemonError):
    """The daemon answered a request with ``ok: false``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class WorkerError(AssetdError):
    """A worker process failed a task."""


class WorkerDied(WorkerError):
    """The worker running a task ended before it answered."""


class WorkersBusy(WorkerError):
    """Every worker was busy, and the task was not to wait for one."""


class TaskError(WorkerError):
    """The task raised in the worker (a bug: tasks report bad files as results)."""


class FileReadError(AssetdError, OSError):
    """A file could not be hashed as it was; an ``OSError`` too, so that callers that
    skip unreadable files skip these alike."""


class NotRegularFileError(FileReadError):
    """The path is not a regular file (a FIFO, a device, a symlink not followed)."""


class FileChangedError(FileReadError):
    """The file changed during every attempt to read it."""
