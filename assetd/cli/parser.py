"""The command line's grammar: every command, its arguments and its help, and what the
typed arguments mean (paths, ``meta`` pairs, the configuration the flags make)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from assetd import __version__
from assetd.config import Config, load_config, parse_root_flag
from assetd.exceptions import UsageError

__all__ = [
    "COMMANDS",
    "EXIT_ABSENT",
    "EXIT_ERROR",
    "EXIT_NO_DAEMON",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "cli_path",
    "load",
    "parse_pairs",
    "parser_for",
]

# The exit statuses of the contract: done, anything else, bad usage, no daemon answering,
# and (``check``) a model a workflow needs that is not where ComfyUI looks.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_DAEMON, EXIT_ABSENT = 0, 1, 2, 3, 4


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), as the contract says."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; a parsed command line names its command as ``args.command``. With
    ``only``, that command's alone: a command line that names its command needs no
    other, and each of the others would cost its share of a short command's start."""
    common = _common_flags()
    parser = _Parser(
        prog="assetd", description="A live, durable catalog of the files under a few folders."
    )
    parser.add_argument("--version", action="version", version=f"assetd {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND", parser_class=_Parser)
    for name, help_, arguments in _GRAMMAR:
        if only is None or name == only:
            p = sub.add_parser(name, parents=[common], help=help_, description=help_)
            p.set_defaults(command=name)
            arguments(p)
    return parser


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser ``argv`` needs: the whole one unless it starts with a command's name."""
    return build_parser(argv[0] if argv and argv[0] in COMMANDS else None)


def _common_flags() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML configuration file")
    common.add_argument("--db", metavar="URL", help="catalog database URL (peewee db_url form)")
    common.add_argument(
        "--root",
        metavar="NAME=PATH",
        action="append",
        default=[],
        help="a root to own (repeatable; replaces the file's roots)",
    )
    common.add_argument("--listen", metavar="HOST:PORT", help="feed address")
    common.add_argument(
        "--comfyui",
        metavar="DIR",
        help="a ComfyUI install (the folder with main.py): its folders become roots",
    )
    return common


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detach", action="store_true", help="run in the background (python-daemon)")
    p.add_argument("--pidfile", metavar="F", help="with --detach: a locked pid file")
    p.add_argument(
        "--log-file", metavar="F", help="append logs here (default: stderr; syslog when detached)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")


def _scan(p: argparse.ArgumentParser) -> None:
    p.add_argument("roots", nargs="*", metavar="ROOT", help="root names (all by default)")
    p.add_argument("--prune-first", action="store_true", help="prune before scanning")
    p.add_argument("--no-hash", action="store_true", help="register files without hashing")


def _ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in", dest="in_root", metavar="ROOT", help="only this root")
    p.add_argument("--tag", metavar="T", help="only assets with this tag")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--missing", action="store_true", help="only missing locations")
    group.add_argument("--include-missing", action="store_true", help="missing ones too")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _tag(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["add", "rm"])
    p.add_argument("path", metavar="PATH")
    p.add_argument("tags", nargs="+", metavar="TAG")


def _meta(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH")
    p.add_argument("pairs", nargs="*", metavar="KEY=VALUE", help="KEY=string or KEY:=JSON")
    p.add_argument("--unset", nargs="+", default=[], metavar="KEY", help="keys to remove")


def _restore(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH")


def _none(p: argparse.ArgumentParser) -> None:
    pass


def _watch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=int, metavar="SEQ", help="replay every change after SEQ first")


def _check(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="workflow JSON, or a PNG/WebP")
    p.add_argument("--json", action="store_true", help="one JSON object per model")


def _doctor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object: ok and every finding")


def _backup(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the new file (must not exist)")


def _cleanup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    p.add_argument(
        "--missing-older-than",
        type=_days,
        metavar="DAYS",
        help="also delete assets whose every location has been missing this long",
    )


def _verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("roots", nargs="*", metavar="ROOT", help="root names (all by default)")
    p.add_argument("--sample", type=_positive_int, metavar="N", help="N files at random")
    p.add_argument(
        "--rate",
        type=_rate,
        default=50.0,
        metavar="MB/S",
        help="read at most this many MB per second (default 50; 0: no limit)",
    )


def _number(kind: type[int] | type[float], minimum: float, what: str) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind``, at least ``minimum``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}")
        return value

    return parse


_days = _number(float, 0, "a number of days")
_positive_int = _number(int, 1, "a whole number")
_rate = _number(float, 0, "a number of MB/s")


# Every command: its name, its help, and the function that adds its own arguments.
_GRAMMAR: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("run", "the daemon: startup scan (prune first), watchers, feed", _run),
    ("scan", "run one full seeder pass over the named roots, then exit", _scan),
    ("ls", "list file locations", _ls),
    ("tag", "add or remove user tags of the asset at PATH", _tag),
    ("meta", "read or change the user metadata of the asset at PATH", _meta),
    ("restore", "restore missing locations whose files exist again", _restore),
    ("prune", "mark missing every location outside all configured roots", _none),
    ("cleanup", "hard-delete unreferenced assets (the only hard delete)", _cleanup),
    ("verify", "re-hash files to catch changes that stat cannot see", _verify),
    ("status", "ask the running daemon for its status", _none),
    ("watch", "follow the running daemon's feed, one JSON message per line", _watch),
    ("check", "which models ComfyUI workflows need, and where they are", _check),
    ("doctor", "check what most often goes wrong, and say how to fix it", _doctor),
    ("backup", "copy the SQLite catalog consistently, while a daemon runs", _backup),
)
COMMANDS = tuple(name for name, _, _ in _GRAMMAR)


# -- what typed arguments mean ----------------------------------------------------


def load(args: argparse.Namespace) -> Config:
    """The configuration: the file, with the command line's flags over it."""
    return load_config(
        config_file=args.config,
        database=args.db,
        roots=[parse_root_flag(r) for r in args.root] if args.root else None,
        listen=args.listen,
        comfyui=args.comfyui,
    )


def cli_path(text: str) -> bytes:
    """A path as typed, made absolute with its folder resolved (as roots are)."""
    absolute = os.path.abspath(text)
    folder, name = os.path.split(absolute)
    return os.fsencode(os.path.join(os.path.realpath(folder), name))


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """``meta``'s ``KEY=string`` and ``KEY:=JSON`` arguments, as one update."""
    updates: dict[str, Any] = {}
    for pair in pairs:
        if ":=" in pair:
            key, raw = pair.split(":=", 1)
            try:
                updates[key] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{pair!r}: the value after := must be JSON ({exc.msg})") from exc
        elif "=" in pair:
            key, value = pair.split("=", 1)
            updates[key] = value
        else:
            raise UsageError(f"{pair!r}: expected KEY=VALUE or KEY:=JSON")
        if not key:
            raise UsageError(f"{pair!r}: the key is empty")
    return updates
