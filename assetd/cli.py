"""The ``assetd`` command line: parse, build the configuration once, run one command.

Only this module maps errors to exit codes: 0 done, 2 bad usage or configuration,
3 no daemon answering, 1 anything else. Heavy imports wait until a command needs them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from assetd import __version__, drivers, gcpace
from assetd.config import Config, load_config, parse_root_flag, sqlite_file
from assetd.exceptions import (
    AssetdError,
    CatalogError,
    ConfigError,
    DaemonRunningError,
    InvalidRequestError,
    NoDaemonError,
    NotFoundError,
    RemoteError,
    UsageError,
)

if TYPE_CHECKING:
    from assetd.db import Catalog
    from assetd.hashpool import HashPool

__all__ = ["COMMANDS", "build_parser", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_DAEMON = 0, 1, 2, 3
DAY_S = 86400.0

log = logging.getLogger("assetd")


def main(argv: Sequence[str] | None = None) -> int:
    gcpace.pace()  # see assetd/gcpace.py
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="assetd: %(levelname)s: %(message)s", stream=sys.stderr
    )
    if not getattr(args, "handler", None):
        print(
            f"assetd: a command is required: {', '.join(COMMANDS)} (see assetd --help)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        config = load_config(
            config_file=args.config,
            database=args.db,
            roots=[parse_root_flag(r) for r in args.root] if args.root else None,
            listen=args.listen,
        )
        drivers.sqlite_only(config.database)  # before assetd.db: see assetd/drivers.py
        return int(args.handler(args, config))
    except (ConfigError, UsageError, InvalidRequestError) as exc:
        return _fail(EXIT_USAGE, exc)
    except NoDaemonError as exc:
        return _fail(EXIT_NO_DAEMON, exc)
    except (NotFoundError, CatalogError, AssetdError) as exc:
        return _fail(EXIT_ERROR, exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Someone piped us into `head`: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


def _fail(code: int, exc: BaseException) -> int:
    print(f"assetd: {exc}", file=sys.stderr)
    return code


# -- the parser ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), as the contract says."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
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

    parser = _Parser(
        prog="assetd", description="A live, durable catalog of the files under a few folders."
    )
    parser.add_argument("--version", action="version", version=f"assetd {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND", parser_class=_Parser)

    def command(name: str, handler: Callable[..., int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = command("run", cmd_run, "the daemon: startup scan (prune first), watchers, feed")
    p.add_argument("--detach", action="store_true", help="run in the background (python-daemon)")
    p.add_argument("--pidfile", metavar="F", help="with --detach: a locked pid file")
    p.add_argument(
        "--log-file", metavar="F", help="append logs here (default: stderr; syslog when detached)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")

    p = command("scan", cmd_scan, "run one full seeder pass over the named roots, then exit")
    p.add_argument("roots", nargs="*", metavar="ROOT", help="root names (all by default)")
    p.add_argument("--prune-first", action="store_true", help="prune before scanning")
    p.add_argument("--no-hash", action="store_true", help="register files without hashing")

    p = command("ls", cmd_ls, "list file locations")
    p.add_argument("--in", dest="in_root", metavar="ROOT", help="only this root")
    p.add_argument("--tag", metavar="T", help="only assets with this tag")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--missing", action="store_true", help="only missing locations")
    group.add_argument("--include-missing", action="store_true", help="missing ones too")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = command("tag", cmd_tag, "add or remove user tags of the asset at PATH")
    p.add_argument("action", choices=["add", "rm"])
    p.add_argument("path", metavar="PATH")
    p.add_argument("tags", nargs="+", metavar="TAG")

    p = command("meta", cmd_meta, "read or change the user metadata of the asset at PATH")
    p.add_argument("path", metavar="PATH")
    p.add_argument("pairs", nargs="*", metavar="KEY=VALUE", help="KEY=string or KEY:=JSON")
    p.add_argument("--unset", nargs="+", default=[], metavar="KEY", help="keys to remove")

    p = command("restore", cmd_restore, "restore missing locations whose files exist again")
    p.add_argument("paths", nargs="+", metavar="PATH")

    command("prune", cmd_prune, "mark missing every location outside all configured roots")

    command("status", cmd_status, "ask the running daemon for its status")

    p = command("watch", cmd_watch, "follow the running daemon's feed, one JSON message per line")
    p.add_argument("--since", type=int, metavar="SEQ", help="replay every change after SEQ first")

    p = command("cleanup", cmd_cleanup, "hard-delete unreferenced assets (the only hard delete)")
    p.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    p.add_argument(
        "--missing-older-than",
        type=_days,
        metavar="DAYS",
        help="also delete assets whose every location has been missing this long",
    )

    p = command("verify", cmd_verify, "re-hash files to catch changes that stat cannot see")
    p.add_argument("roots", nargs="*", metavar="ROOT", help="root names (all by default)")
    p.add_argument("--sample", type=_positive_int, metavar="N", help="N files at random")
    p.add_argument(
        "--rate",
        type=_rate,
        default=50.0,
        metavar="MB/S",
        help="read at most this many MB per second (default 50; 0: no limit)",
    )
    return parser


COMMANDS = (
    "run",
    "scan",
    "ls",
    "tag",
    "meta",
    "restore",
    "prune",
    "cleanup",
    "verify",
    "status",
    "watch",
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


# -- helpers ------------------------------------------------------------------------


def _open(config: Config) -> Catalog:
    from assetd.db import Catalog

    return Catalog(config.database, node=config.node)


def _cli_path(text: str) -> bytes:
    """A path as typed, made absolute with its folder resolved (as roots are)."""
    absolute = os.path.abspath(text)
    folder, name = os.path.split(absolute)
    return os.fsencode(os.path.join(os.path.realpath(folder), name))


def _daemon(config: Config) -> Any:
    """A client of the daemon serving this catalog, or None when none does."""
    from assetd.client import DaemonClient, find_daemon

    address = find_daemon(config)
    if address is None:
        return None
    try:
        return DaemonClient(address, config.feed.token())
    except OSError:
        return None


def _remote(client: Any, cmd: str, **args: Any) -> Any:
    """One request to the daemon; its errors become the command line's."""
    try:
        return client.request(cmd, timeout=None, **args)
    except RemoteError as exc:
        if exc.code == "bad_request":
            raise InvalidRequestError(str(exc)) from None
        raise AssetdError(str(exc)) from None
    finally:
        client.close()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _need_roots(config: Config) -> None:
    if not config.roots:
        raise ConfigError("no roots configured: pass --root NAME=PATH or a configuration file")


# -- the commands -------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from assetd.config import runtime_file
    from assetd.daemon import Daemon, RuntimeLock

    _need_roots(config)
    if args.pidfile and not args.detach:
        raise UsageError("--pidfile goes with --detach")
    if args.detach and not args.pidfile:
        raise UsageError("--detach needs --pidfile F")
    lock_path = runtime_file(config.database)
    if lock_path:  # refuse here, on the terminal, rather than after detaching
        probe = RuntimeLock(lock_path)
        probe.acquire({"pid": os.getpid(), "probe": True})
        probe.release()

    def reload() -> Config:
        return load_config(
            config_file=args.config,
            database=args.db,
            roots=[parse_root_flag(r) for r in args.root] if args.root else None,
            listen=args.listen,
        )

    if args.detach:
        _detach(args.pidfile, args.log_file)
    else:
        _log_to(args.log_file)
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # one line per connection and HTTP request is noise in a journal
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        return Daemon(config, reload=reload).run()
    except DaemonRunningError as exc:
        return _fail(EXIT_ERROR, exc)


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


def cmd_scan(args: argparse.Namespace, config: Config) -> int:
    _need_roots(config)
    names = args.roots or None
    for name in names or ():
        config.root(name)  # ConfigError for an unknown root, before anything is written
    client = _daemon(config)
    if client is not None:
        result = _remote(
            client,
            "seed",
            roots=names,
            prune_first=args.prune_first,
            hash=not args.no_hash,
            wait=True,
        )
        _print_json(_summary(result["progress"], errors=None))
        return EXIT_OK
    from assetd.hashpool import HashPool

    pool = HashPool(follow_symlinks=config.follow_symlinks)
    try:
        if _catalog_bytes(config.database) >= WALKS_IN_PARALLEL_BYTES:
            pool.warm_for_walks()  # the worker starts while this process imports and opens
        return _scan_here(args, config, pool, names)
    finally:
        pool.close()


# A SQLite catalog this large knows a root big enough for a restart to walk it in
# parallel (20,000 locations take ~23 MB): start the worker at once. Reading the size
# is free; counting rows would first import the catalog's code (~0.2 s).
WALKS_IN_PARALLEL_BYTES = 16 << 20


def _catalog_bytes(url: str) -> int:
    path = sqlite_file(url)
    try:
        return os.path.getsize(path) if path is not None else 0
    except OSError:
        return 0


def _scan_here(
    args: argparse.Namespace, config: Config, pool: HashPool, names: list[str] | None
) -> int:
    from assetd.progress import ProgressBar
    from assetd.seeder import AssetSeeder

    catalog = _open(config)
    catalog.register_roots([(r.name, r.prefix) for r in config.roots])  # refused: exit 2
    bar = ProgressBar.for_stream(sys.stderr)
    seeder = AssetSeeder(
        catalog,
        config.roots,
        follow_symlinks=config.follow_symlinks,
        on_event=bar.on_event,
        hash_pool=pool,
    )
    try:
        seeder.start(names, prune_first=args.prune_first, compute_hashes=not args.no_hash)
        seeder.wait()
    except KeyboardInterrupt:
        seeder.cancel()
        seeder.wait()
        raise
    finally:
        bar.close()
    status = seeder.get_status()
    _print_json(_summary(status["progress"] or {}, errors=len(status["errors"])))
    failed = any(e["message"].startswith("scan failed") for e in status["errors"])
    return EXIT_ERROR if failed else EXIT_OK


def _summary(progress: dict[str, Any], errors: int | None) -> dict[str, Any]:
    keys = ("scanned", "total", "created", "skipped", "hashed", "marked_missing", "restored")
    summary = {key: progress.get(key, 0) for key in keys}
    summary["modified"] = progress.get("modified", 0)
    if errors is not None:
        summary["errors"] = errors
    return summary


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    client = _daemon(config)
    if client is None:
        raise NoDaemonError(f"no daemon answers for catalog {config.database}")
    _print_json(_remote(client, "status"))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, config: Config) -> int:
    client = _daemon(config)
    if client is None:
        raise NoDaemonError(f"no daemon answers for catalog {config.database}")
    try:
        _print_json(client.hello)
        subscribe: dict[str, Any] = {} if args.since is None else {"since": args.since}
        own = client.send("subscribe", **subscribe)
        for message in client.messages():
            if message.get("type") == "result" and message.get("id") == own:
                if not message.get("ok"):
                    raise AssetdError(message["error"]["message"])
                continue
            _print_json(message)
    finally:
        client.close()
    return EXIT_OK


def cmd_ls(args: argparse.Namespace, config: Config) -> int:
    catalog = _open(config)
    after: bytes | None = None
    out = sys.stdout.buffer
    while True:
        items, after = catalog.list_locations(
            root=args.in_root,
            tag=args.tag,
            include_missing=args.include_missing,
            missing_only=args.missing,
            limit=1000,
            after=after,
        )
        for item in items:
            if args.json:
                out.write(json.dumps(item, ensure_ascii=False).encode() + b"\n")
            else:
                out.write(_ls_line(item) + b"\n")
        if after is None:
            break
    out.flush()
    return EXIT_OK


def _ls_line(item: dict[str, Any]) -> bytes:
    import base64

    path = (
        base64.b64decode(item["path_bytes_b64"])
        if "path_bytes_b64" in item
        else item["path"].encode()
    )
    digest = (item["hash"] or "unhashed").removeprefix("blake3:")[:12]
    flag = "MISSING " if item["is_missing"] else ""
    meta = f"{flag}{item['root']} {item['size']} {digest} [{','.join(item['tags'])}]"
    return path + b"\t" + meta.encode()


def cmd_tag(args: argparse.Namespace, config: Config) -> int:
    path = _cli_path(args.path)
    client = _daemon(config)
    if client is not None:
        from assetd.client import path_argument

        add, remove = (args.tags, []) if args.action == "add" else ([], args.tags)
        result = _remote(client, "tag", **path_argument(path), add=add, remove=remove)
        _print_json(result["tags"])
        return EXIT_OK
    catalog = _open(config)
    _look_again(catalog, config, path)
    if args.action == "add":
        tags = catalog.change_tags(path, add=args.tags)
    else:
        tags = catalog.change_tags(path, remove=args.tags)
    _print_json(tags)
    return EXIT_OK


def cmd_meta(args: argparse.Namespace, config: Config) -> int:
    updates: dict[str, Any] = {}
    for pair in args.pairs:
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
    path = _cli_path(args.path)
    client = _daemon(config)
    if client is not None:
        from assetd.client import path_argument

        argument = path_argument(path)
        _print_json(_remote(client, "meta", **argument, set=updates, unset=args.unset)["metadata"])
        return EXIT_OK
    catalog = _open(config)
    _look_again(catalog, config, path)
    _print_json(catalog.change_metadata(path, updates, args.unset))
    return EXIT_OK


def _look_again(catalog: Catalog, config: Config, path: bytes) -> None:
    """Catch the catalog up with the file at ``path`` before saying something about it."""
    from assetd.apply import look_again

    follow = config.follow_symlinks
    look_again(catalog, config.roots, path, hash_states=_hasher(follow), follow_symlinks=follow)


def _hasher(follow_symlinks: bool) -> Callable[[Sequence[Any]], list[Any]]:
    """Hash cache states in this process, one after another (a command's few files)."""
    from assetd.hashing import hash_one

    return lambda states: [hash_one(s, follow_symlinks=follow_symlinks) for s in states]


def cmd_restore(args: argparse.Namespace, config: Config) -> int:
    from assetd.apply import restore_paths

    client = _daemon(config)
    if client is not None:
        from assetd.client import path_value

        paths = [path_value(_cli_path(p)) for p in args.paths]
        _print_json({"restored": _remote(client, "restore", paths=paths)["restored"]})
        return EXIT_OK
    catalog = _open(config)
    follow = config.follow_symlinks
    local = [_cli_path(p) for p in args.paths]
    restored = restore_paths(catalog, local, hash_states=_hasher(follow), follow_symlinks=follow)
    _print_json({"restored": restored})
    return EXIT_OK


def cmd_prune(args: argparse.Namespace, config: Config) -> int:
    from assetd.paths import get_all_known_prefixes

    _need_roots(config)
    client = _daemon(config)
    if client is not None:
        _print_json({"marked": _remote(client, "prune")["marked"]})
        return EXIT_OK
    catalog = _open(config)
    marked = catalog.mark_missing_outside_prefixes_safely(get_all_known_prefixes(config.roots))
    _print_json({"marked": marked})
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, config: Config) -> int:
    _need_roots(config)
    names = args.roots or None
    chosen = [config.root(name) for name in names] if names else list(config.roots)
    client = _daemon(config)
    if client is not None:
        result = _remote(client, "verify", roots=names, sample=args.sample, rate_mb_s=args.rate)
        _print_json(result)
        return EXIT_OK
    from assetd.verify import verify

    catalog = _open(config)
    summary = verify(
        catalog,
        [r.prefix for r in chosen],
        write=lambda fn, *a: fn(*a),
        sample=args.sample,
        rate_bytes_s=args.rate * 1_000_000 or None,
        follow_symlinks=config.follow_symlinks,
    )
    _print_json(summary.as_json())
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace, config: Config) -> int:
    client = _daemon(config)
    if client is not None:
        result = _remote(
            client,
            "cleanup",
            dry_run=args.dry_run,
            missing_older_than_days=args.missing_older_than,
        )
        _print_json({"deleted": result["deleted"]})
        return EXIT_OK
    catalog = _open(config)
    age = args.missing_older_than * DAY_S if args.missing_older_than is not None else None
    deleted = catalog.cleanup_unreferenced_assets(age, dry_run=args.dry_run)
    _print_json({"deleted": deleted})
    return EXIT_OK
