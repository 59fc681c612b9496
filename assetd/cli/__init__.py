"""The ``assetd`` command line: parse, build the configuration once, run one command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from assetd import drivers, gcpace
from assetd.cli import output
from assetd.cli.commands import run_command
from assetd.cli.local import close_opened
from assetd.cli.parser import (
    COMMANDS,
    EXIT_ERROR,
    EXIT_NO_DAEMON,
    EXIT_USAGE,
    build_parser,
    load,
    parser_for,
)
from assetd.exceptions import (
    AssetdError,
    ConfigError,
    InvalidRequestError,
    NoDaemonError,
    NotFoundError,
)

__all__ = ["COMMANDS", "EXIT_CODES", "build_parser", "entry", "exit_code", "main"]

# Only the command line maps errors to exit statuses, here: the first row whose class
# the error is an instance of (ConfigError covers UsageError). Heavy imports wait until
# a command needs them, so that ``assetd --help`` stays quick.
EXIT_CODES: tuple[tuple[type[AssetdError], int], ...] = (
    (ConfigError, EXIT_USAGE),
    (InvalidRequestError, EXIT_USAGE),
    (NoDaemonError, EXIT_NO_DAEMON),
    (AssetdError, EXIT_ERROR),
)


# Commands whose process lives on after its work: they leave through the interpreter's
# own exit, which waits for their threads.
LONG_LIVED = frozenset({"run", "watch"})


def exit_code(exc: AssetdError) -> int:
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


def log_to_stderr(env: Mapping[str, str]) -> None:
    """Log lines on stderr; outside systemd's journal (which stamps its own) they start
    with the local time, to the millisecond."""
    stamped = "JOURNAL_STREAM" not in env
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        LineFormatter(
            ("%(asctime)s.%(msecs)03d " if stamped else "") + "assetd: %(level)s%(message)s",
            datefmt="%Y-%m-%d %H:%M:%S",
        )
    )
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


class LineFormatter(logging.Formatter):
    """Names the level of warnings and errors only: an informational line reads as
    what it says (``assetd: page at ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        record.level = f"{record.levelname}: " if record.levelno >= logging.WARNING else ""
        return super().format(record)


def hint(exc: AssetdError, args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """What to try after an error, where the error alone cannot know it."""
    if isinstance(exc, NotFoundError) and not args.config and "ASSETD_CONFIG" not in env:
        return (
            "if a daemon runs with its own configuration, its catalog may be another: "
            "name that configuration with --config FILE or ASSETD_CONFIG"
        )
    return None


def entry() -> NoReturn:
    """The ``assetd`` console script and ``python -m assetd``: the command, then, for one
    that has done its work (everything but the daemon and ``watch``), an exit that skips
    the interpreter's teardown. Freeing every object and module one by one is a good
    part of a short command's time, and nothing of it is needed once the catalog is
    closed (:func:`run_parsed` does that), the log handlers shut and the output flushed."""
    args = parse()
    code = run_parsed(args)
    if getattr(args, "command", None) in LONG_LIVED:
        raise SystemExit(code)
    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or EXIT_ERROR
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    return run_parsed(parse(argv))


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    gcpace.pace()  # see assetd/gcpace.py
    argv = sys.argv[1:] if argv is None else list(argv)
    return parser_for(argv).parse_args(argv)


def run_parsed(args: argparse.Namespace) -> int:
    """Run the command ``args`` name; every catalog it opened is closed when it returns."""
    try:
        return _run(args)
    finally:
        close_opened()


def _run(args: argparse.Namespace) -> int:
    log_to_stderr(os.environ)
    if not getattr(args, "command", None):
        print(
            f"assetd: a command is required: {', '.join(COMMANDS)} (see assetd --help)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        config = load(args)
        drivers.sqlite_only(config.database)  # before the catalog: see assetd/drivers.py
        return int(run_command(args, config))
    except AssetdError as exc:
        output.error(exc, hint(exc, args, os.environ))
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Someone piped us into `head`: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
