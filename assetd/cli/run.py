"""``assetd run``: the daemon, in the foreground or detached with a locked pid file."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

from assetd.config import Config, runtime_file
from assetd.exceptions import AssetdError, UsageError
from assetd.listen import bind_feed

__all__ = ["cmd_run"]


def cmd_run(args: argparse.Namespace, config: Config, reload: Callable[[], Config]) -> int:
    """Serve until stopped; ``reload`` builds the configuration afresh on SIGHUP."""
    from assetd.daemon import Daemon
    from assetd.locks import RuntimeLock

    if args.pidfile and not args.detach:
        raise UsageError("--pidfile goes with --detach")
    if args.detach and not args.pidfile:
        raise UsageError("--detach needs --pidfile F")
    lock_path = runtime_file(config.database)
    if lock_path:  # refuse here, on the terminal, rather than after detaching
        RuntimeLock(lock_path).check_free()
    if args.detach:
        # The daemon binds its address before it makes anything; try it here too, where
        # the one line reaches the terminal.
        bind_feed(config.feed.listen).close()
        _detach(args.pidfile, args.log_file)
    else:
        _log_to(args.log_file)
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # one line per connection and HTTP request is noise in a journal
        logging.getLogger("websockets").setLevel(logging.WARNING)
    return Daemon(config, reload=reload).run()


def _log_to(log_file: str | None) -> None:
    if log_file:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(
            logging.Formatter("%(asctime)s assetd[%(process)d]: %(levelname)s: %(message)s")
        )
        logging.getLogger().handlers[:] = [handler]


def _detach(pidfile: str, log_file: str | None) -> None:
    """Become a background process with python-daemon, holding a locked pid file."""
    import logging.handlers

    import daemon
    import daemon.pidfile
    import lockfile

    lock = daemon.pidfile.TimeoutPIDLockFile(os.path.abspath(pidfile), acquire_timeout=0)
    if lock.is_locked() and lock.read_pid() and _alive(lock.read_pid()):
        raise AssetdError(f"pid file {pidfile} is held by running pid {lock.read_pid()}")
    if lock.is_locked():
        lock.break_lock()  # stale: its process is gone
    context = daemon.DaemonContext(pidfile=lock, working_directory="/", umask=0o022)
    try:
        context.open()
    except lockfile.Error as exc:
        raise AssetdError(f"cannot lock pid file {pidfile}: {exc}") from exc
    if log_file:
        _log_to(log_file)
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter("assetd[%(process)d]: %(levelname)s: %(message)s"))
        logging.getLogger().handlers[:] = [handler]
    else:
        logging.getLogger().handlers[:] = [logging.NullHandler()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
