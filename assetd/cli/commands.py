"""The commands; each one a daemon carries out is one ``Carried`` entry, run by ``carry``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from assetd.cli import output
from assetd.cli.local import LocalOperations, open_catalog
from assetd.cli.maintenance import cmd_backup, cmd_doctor
from assetd.cli.parser import (
    EXIT_ABSENT,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    cli_path,
    load,
    parse_pairs,
)
from assetd.cli.run import cmd_run
from assetd.client import DaemonClient, find_daemon, path_argument, path_value
from assetd.config import Config
from assetd.exceptions import (
    AssetdError,
    AutomaticTagError,
    ConfigError,
    InvalidRequestError,
    NoDaemonError,
    RemoteError,
)

if TYPE_CHECKING:
    from assetd.catalog.order import Cursor

__all__ = ["CARRIED", "HANDLERS", "Carried", "Operation", "carry", "run_command"]

DAY_S = 86400.0

Result = dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """One operation, as a feed request and as the same call on ``LocalOperations``.

    Both answer with the feed's result object, so one printer serves either; a pass run
    here adds the errors it met, which the daemon keeps in its status instead.
    """

    cmd: str
    arguments: dict[str, Any]
    local: Callable[[LocalOperations], Result]


def _done(result: Result) -> int:
    return EXIT_OK


@dataclass(frozen=True)
class Carried:
    """A command that a daemon serving the catalog carries out, so that its feed tells."""

    prepare: Callable[[argparse.Namespace, Config], Operation]  # checks arguments first
    show: Callable[[Result], Any]  # what of the result to print, as JSON
    exit_code: Callable[[Result], int] = _done


def carry(command: Carried, args: argparse.Namespace, config: Config) -> int:
    """Send the request to the daemon serving this catalog, or else run it here."""
    operation = command.prepare(args, config)
    client = connect(config)
    if client is None:
        result = operation.local(LocalOperations(config))
    else:
        warn_if_other_roots(client, config)
        result = ask(client, operation.cmd, **operation.arguments)
    output.print_json(command.show(result))
    return command.exit_code(result)


def warn_if_other_roots(client: DaemonClient, config: Config) -> None:
    """Say so when the daemon that will carry the command out has other roots than this
    configuration: it acts with its own (a prune marks by them)."""
    try:
        status = client.request("status", timeout=None)
    except RemoteError:  # the command itself will say what is wrong
        return
    theirs = {(r["name"], r["path"]) for r in status.get("roots", [])}
    ours = {(r.name, r.path) for r in config.roots}
    if theirs != ours:
        shown = ", ".join(f"{name}={path}" for name, path in sorted(theirs)) or "none"
        output.warn(
            f"the daemon serving this catalog has other roots ({shown}) than this "
            "configuration, and acts with its own; send it SIGHUP (systemctl reload "
            "assetd) to take an edited configuration"
        )


def connect(config: Config) -> DaemonClient | None:
    """A client of the daemon serving this catalog, or None when none does."""
    address = find_daemon(config)
    if address is None:
        return None
    try:
        return DaemonClient(address, config.feed.token())
    except OSError:
        return None


def ask(client: DaemonClient, cmd: str, **arguments: Any) -> Any:
    """One request to the daemon; a request it calls bad is bad usage here too."""
    try:
        return client.request(cmd, timeout=None, **arguments)
    except RemoteError as exc:
        if exc.code == "automatic_tag":
            raise AutomaticTagError(str(exc)) from None
        if exc.code == "bad_request":
            raise InvalidRequestError(str(exc)) from None
        raise
    finally:
        client.close()


# -- the commands a daemon carries out ----------------------------------------------


def _named_roots(args: argparse.Namespace, config: Config) -> list[str] | None:
    """The roots named on the command line (None: all), each checked before anything is
    written: an unknown one is a configuration error."""
    need_roots(config)
    names = args.roots or None
    for name in names or ():
        config.root(name)
    return names


def _scan(args: argparse.Namespace, config: Config) -> Operation:
    names = _named_roots(args, config)
    prune_first, hashes = args.prune_first, not args.no_hash
    return Operation(
        "seed",
        {"roots": names, "prune_first": prune_first, "hash": hashes, "wait": True},
        lambda ops: ops.seed(names, prune_first, hashes),
    )


def _scan_summary(result: Result) -> Any:
    errors = result.get("errors")
    return output.scan_summary(result["progress"] or {}, None if errors is None else len(errors))


def _scan_exit(result: Result) -> int:
    failed = any(e["message"].startswith("scan failed") for e in result.get("errors", ()))
    return EXIT_ERROR if failed else EXIT_OK


def _tag(args: argparse.Namespace, config: Config) -> Operation:
    path = cli_path(args.path)
    add, remove = (args.tags, []) if args.action == "add" else ([], args.tags)
    return Operation(
        "tag",
        {**path_argument(path), "add": add, "remove": remove},
        lambda ops: {"tags": ops.tag(path, add, remove)},
    )


def _meta(args: argparse.Namespace, config: Config) -> Operation:
    updates = parse_pairs(args.pairs)
    path, unset = cli_path(args.path), args.unset
    return Operation(
        "meta",
        {**path_argument(path), "set": updates, "unset": unset},
        lambda ops: {"metadata": ops.meta(path, updates, unset)},
    )


def _restore(args: argparse.Namespace, config: Config) -> Operation:
    paths = [cli_path(p) for p in args.paths]
    return Operation(
        "restore",
        {"paths": [path_value(p) for p in paths]},
        lambda ops: {"restored": ops.restore(paths)},
    )


def _prune(args: argparse.Namespace, config: Config) -> Operation:
    need_roots(config)
    return Operation("prune", {}, lambda ops: {"marked": ops.prune()})


def _cleanup(args: argparse.Namespace, config: Config) -> Operation:
    dry_run, days = args.dry_run, args.missing_older_than
    age = days * DAY_S if days is not None else None
    return Operation(
        "cleanup",
        {"dry_run": dry_run, "missing_older_than_days": days},
        lambda ops: {"deleted": ops.cleanup(dry_run, age)},
    )


def _verify(args: argparse.Namespace, config: Config) -> Operation:
    names = _named_roots(args, config)
    sample, rate = args.sample, args.rate
    return Operation(
        "verify",
        {"roots": names, "sample": sample, "rate_mb_s": rate},
        lambda ops: ops.verify(names, sample, rate * 1_000_000 or None),
    )


def _field(key: str) -> Callable[[Result], Any]:
    return lambda result: result[key]


def _only(key: str) -> Callable[[Result], Any]:
    return lambda result: {key: result[key]}


def _whole(result: Result) -> Any:
    return result


CARRIED: dict[str, Carried] = {
    "scan": Carried(_scan, _scan_summary, _scan_exit),
    "tag": Carried(_tag, _field("tags")),
    "meta": Carried(_meta, _field("metadata")),
    "restore": Carried(_restore, _only("restored")),
    "prune": Carried(_prune, _only("marked")),
    "cleanup": Carried(_cleanup, _only("deleted")),
    "verify": Carried(_verify, _whole),
}


# -- the others ---------------------------------------------------------------------


def _run(args: argparse.Namespace, config: Config) -> int:
    need_roots(config)
    return cmd_run(args, config, reload=partial(load, args))


def cmd_ls(args: argparse.Namespace, config: Config) -> int:
    catalog = open_catalog(config)
    after: Cursor | None = None
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
            output.write_location(out, item, as_json=args.json)
        if after is None:
            break
    out.flush()
    return EXIT_OK


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    """Each workflow's models against the catalog (read directly: a daemon serving it
    changes nothing), as JSON lines or a table; 2 when a file is not a workflow, 4 when
    a model is not present, else 0."""
    from assetd.comfyui.check import check_workflow
    from assetd.comfyui.embedded import read_workflow_file

    catalog = open_catalog(config)
    bad = absent = False
    try:
        for name in args.files:
            try:
                models = check_workflow(catalog, config.install, read_workflow_file(name))
            except InvalidRequestError as exc:
                output.error(exc)
                bad = True
                continue
            items = [m.to_json(name) for m in models]
            absent |= any(item["status"] != "present" for item in items)
            if args.json:
                for item in items:
                    output.print_json(item)
            else:
                output.print_check(name, items)
    finally:
        catalog.close()
    return EXIT_USAGE if bad else EXIT_ABSENT if absent else EXIT_OK


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    output.print_json(ask(_need_daemon(config), "status"))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, config: Config) -> int:
    client = _need_daemon(config)
    try:
        output.print_json(client.hello)
        subscribe: dict[str, Any] = {} if args.since is None else {"since": args.since}
        own = client.send("subscribe", **subscribe)
        for message in client.messages():
            if message.get("type") == "result" and message.get("id") == own:
                if not message.get("ok"):
                    raise AssetdError(message["error"]["message"])
                continue
            output.print_json(message)
    finally:
        client.close()
    return EXIT_OK


def _need_daemon(config: Config) -> DaemonClient:
    client = connect(config)
    if client is None:
        raise NoDaemonError(f"no daemon answers for catalog {config.database}")
    return client


def need_roots(config: Config) -> None:
    if not config.roots:
        raise ConfigError("no roots configured: pass --root NAME=PATH or a configuration file")


HANDLERS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "run": _run,
    "ls": cmd_ls,
    "check": cmd_check,
    "status": cmd_status,
    "watch": cmd_watch,
    "doctor": cmd_doctor,
    "backup": cmd_backup,
    **{name: partial(carry, command) for name, command in CARRIED.items()},
}


def run_command(args: argparse.Namespace, config: Config) -> int:
    return HANDLERS[args.command](args, config)
