"""The command line's pure parts: the table of daemon-carried commands, exits, output."""

from __future__ import annotations

import argparse
import base64
import inspect
import json
import os
from pathlib import Path
from typing import Any

import pytest

from assetd.cli import COMMANDS, EXIT_CODES, build_parser, exit_code
from assetd.cli.commands import CARRIED, HANDLERS, ask, carry
from assetd.cli.output import escape, ls_line, print_json, scan_summary
from assetd.cli.parser import load, parse_pairs, parser_for
from assetd.config import Config
from assetd.exceptions import (
    AssetdError,
    CatalogError,
    ConfigError,
    InvalidRequestError,
    NoDaemonError,
    NotFoundError,
    RemoteError,
    UnknownCommandError,
    UsageError,
)
from tests.feedserver import FeedServer, answer, failure, runtime_file_held
from tests.test_docs import subparsers

CARRIED_BY_A_DAEMON = {"scan", "tag", "meta", "restore", "prune", "cleanup", "verify"}


class Recorder:
    """Stands in for LocalOperations: records each call and answers ``value``."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            return self.value

        return call


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "r"
    folder.mkdir()
    return folder.resolve()


def parse(
    root: Path, *argv: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[argparse.Namespace, Config]:
    monkeypatch.delenv("ASSETD_CONFIG", raising=False)
    flags = ["--db", f"sqlite:///{root.parent / 'c.db'}", "--root", f"r={root}"]
    args = build_parser().parse_args([*argv, *flags])
    return args, load(args)


def test_every_command_has_one_handler() -> None:
    """The handlers are the parser's commands, and the daemon carries the contract's seven."""
    assert set(HANDLERS) == set(COMMANDS)
    assert set(CARRIED) == CARRIED_BY_A_DAEMON
    assert {argv[0] for argv, *_ in TABLE} == CARRIED_BY_A_DAEMON  # each is tried below


# One command line of each command, with its own arguments and the flags every one takes.
EVERY_COMMAND = [
    ["run", "--detach", "--pidfile", "p", "-v"],
    ["scan", "a", "b", "--prune-first", "--no-hash"],
    ["ls", "--in", "r", "--tag", "t", "--include-missing", "--json"],
    ["tag", "rm", "/p", "x", "y"],
    ["meta", "/p", "k=v", "n:=1", "--unset", "old"],
    ["restore", "/p", "/q"],
    ["prune"],
    ["cleanup", "--dry-run", "--missing-older-than", "2.5"],
    ["verify", "r", "--sample", "3", "--rate", "0"],
    ["status"],
    ["watch", "--since", "7"],
    ["check", "w.json", "--json"],
    ["doctor", "--json"],
    ["backup", "copy.db"],
]


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=lambda argv: argv[0])
def test_a_command_line_parses_alike_with_its_command_alone(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The parser built for a command line that names its command (that command's
    alone) reads it exactly as the whole parser does, flags and errors included."""
    argv = [*argv, "--db", "sqlite:///c.db", "--root", "r=/r", "--listen", "127.0.0.1:1"]
    alone = parser_for(argv)
    assert list(subparsers(alone)) == [argv[0]]
    assert alone.parse_args(argv) == build_parser().parse_args(argv)
    said = []
    for parser in (alone, build_parser()):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([*argv, "--frobnicate"])
        said.append((exited.value.code, capsys.readouterr().err))
    assert said[0] == said[1]
    assert said[0][0] == 2 and "--frobnicate" in said[0][1]


def test_a_command_line_without_a_command_gets_the_whole_parser() -> None:
    assert {argv[0] for argv in EVERY_COMMAND} == set(COMMANDS)
    for argv in ([], ["--version"], ["frob"], ["--help"]):
        assert list(subparsers(parser_for(argv))) == list(COMMANDS)


# argv with {P} for a file in the root; the feed request; the LocalOperations call.
TABLE = [
    (["scan"], "seed", {"roots": None, "prune_first": False, "hash": True, "wait": True},
     ("seed", (None, False, True))),
    (["scan", "r", "--prune-first", "--no-hash"], "seed",
     {"roots": ["r"], "prune_first": True, "hash": False, "wait": True},
     ("seed", (["r"], True, False))),
    (["tag", "add", "{P}", "fav", "x"], "tag", {"path": "{P}", "add": ["fav", "x"], "remove": []},
     ("tag", ("{P}", ["fav", "x"], []))),
    (["tag", "rm", "{P}", "fav"], "tag", {"path": "{P}", "add": [], "remove": ["fav"]},
     ("tag", ("{P}", [], ["fav"]))),
    (["meta", "{P}", "a=b", "n:=1", "--unset", "k"], "meta",
     {"path": "{P}", "set": {"a": "b", "n": 1}, "unset": ["k"]},
     ("meta", ("{P}", {"a": "b", "n": 1}, ["k"]))),
    (["restore", "{P}"], "restore", {"paths": ["{P}"]}, ("restore", (["{P}"],))),
    (["prune"], "prune", {}, ("prune", ())),
    (["cleanup"], "cleanup", {"dry_run": False, "missing_older_than_days": None},
     ("cleanup", (False, None))),
    (["cleanup", "--dry-run", "--missing-older-than", "2"], "cleanup",
     {"dry_run": True, "missing_older_than_days": 2.0}, ("cleanup", (True, 2 * 86400.0))),
    (["verify"], "verify", {"roots": None, "sample": None, "rate_mb_s": 50.0},
     ("verify", (None, None, 50_000_000.0))),
    (["verify", "r", "--sample", "3", "--rate", "0"], "verify",
     {"roots": ["r"], "sample": 3, "rate_mb_s": 0.0}, ("verify", (["r"], 3, None))),
]  # fmt: skip


def fill(value: Any, path: str | bytes) -> Any:
    """``value`` with each "{P}" replaced by ``path``."""
    if isinstance(value, list):
        return [fill(v, path) for v in value]
    if isinstance(value, tuple):
        return tuple(fill(v, path) for v in value)
    if isinstance(value, dict):
        return {k: fill(v, path) for k, v in value.items()}
    return path if value == "{P}" else value


@pytest.mark.parametrize(("argv", "cmd", "request_", "call"), TABLE)
def test_each_command_builds_its_request_and_its_local_call(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    cmd: str,
    request_: dict[str, Any],
    call: tuple[str, tuple[Any, ...]],
) -> None:
    """The parsed arguments become the feed request and the same LocalOperations call."""
    path = str(root / "a.png")
    args, config = parse(root, *fill(argv, path), monkeypatch=monkeypatch)
    operation = CARRIED[args.command].prepare(args, config)
    assert (operation.cmd, operation.arguments) == (cmd, fill(request_, path))
    ops = Recorder(7)
    operation.local(ops)
    assert ops.calls == [fill(call, os.fsencode(path))]  # paths reach the catalog as bytes


def test_a_path_that_is_not_utf8_is_sent_as_its_bytes(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tag and restore send a non-UTF-8 path as ``path_bytes_b64``, and use its bytes here."""
    raw = os.fsencode(root) + b"/caf\xe9.png"
    encoded = {"path_bytes_b64": base64.b64encode(raw).decode()}
    args, config = parse(root, "tag", "add", os.fsdecode(raw), "x", monkeypatch=monkeypatch)
    assert CARRIED["tag"].prepare(args, config).arguments == {**encoded, "add": ["x"], "remove": []}
    args, config = parse(root, "restore", os.fsdecode(raw), monkeypatch=monkeypatch)
    operation = CARRIED["restore"].prepare(args, config)
    assert operation.arguments == {"paths": [encoded]}
    ops = Recorder(0)
    operation.local(ops)
    assert ops.calls == [("restore", ([raw],))]


VERIFIED = {"checked": 5, "changed": 0}


@pytest.mark.parametrize(
    ("name", "feed", "local", "printed"),
    [
        ("tag", {"tags": ["a", "b"]}, {"tags": ["a", "b"]}, ["a", "b"]),
        ("meta", {"metadata": {"k": 1}}, {"metadata": {"k": 1}}, {"k": 1}),
        ("restore", {"restored": 2}, {"restored": 2}, {"restored": 2}),
        ("prune", {"status": "completed", "marked": 3}, {"marked": 3}, {"marked": 3}),
        ("cleanup", {"deleted": 4}, {"deleted": 4}, {"deleted": 4}),
        ("verify", VERIFIED, VERIFIED, VERIFIED),
    ],
)
def test_a_result_prints_alike_from_the_daemon_and_from_here(
    name: str, feed: dict[str, Any], local: dict[str, Any], printed: Any
) -> None:
    """The feed's result and the same operation's result here print the same line."""
    assert CARRIED[name].show(feed) == CARRIED[name].show(local) == printed
    assert CARRIED[name].exit_code(feed) == CARRIED[name].exit_code(local) == 0


def test_a_scan_run_here_counts_errors_and_fails_on_a_failed_root() -> None:
    """Only a pass run here reports its errors; one that could not scan a root exits 1."""
    scan = CARRIED["scan"]
    progress = {"scanned": 2, "total": 2, "created": 1, "modified": 1}
    remote = {"status": "completed", "progress": progress}
    assert "errors" not in scan.show(remote) and scan.exit_code(remote) == 0
    bad_file = {"progress": progress, "errors": [{"message": "/r/a: permission denied"}]}
    assert scan.show(bad_file)["errors"] == 1 and scan.exit_code(bad_file) == 0
    failed = {"progress": None, "errors": [{"message": "scan failed: root r is gone"}]}
    assert scan.show(failed)["scanned"] == 0 and scan.exit_code(failed) == 1


def test_arguments_are_checked_before_anything_is_asked(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown root, no roots at all or a bad meta pair fail in prepare, with exit 2."""
    args, config = parse(root, "scan", "nope", monkeypatch=monkeypatch)
    with pytest.raises(ConfigError):
        CARRIED["scan"].prepare(args, config)
    args, config = parse(root, "verify", "nope", monkeypatch=monkeypatch)
    with pytest.raises(ConfigError):
        CARRIED["verify"].prepare(args, config)
    for name in ("scan", "prune", "verify"):
        args = build_parser().parse_args([name])
        with pytest.raises(ConfigError, match="no roots configured"):
            CARRIED[name].prepare(args, Config(database="sqlite:///x.db"))
    args, config = parse(root, "meta", str(root / "a"), "k:=[", monkeypatch=monkeypatch)
    with pytest.raises(UsageError):
        CARRIED["meta"].prepare(args, config)


def test_carry_sends_the_request_to_the_daemon_that_serves_the_catalog(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a daemon found, its roots are compared with ours (a status), the request
    goes to it and what it answers is printed."""
    args, config = parse(root, "prune", monkeypatch=monkeypatch)
    roots = [{"name": r.name, "path": r.path} for r in config.roots]
    with (
        FeedServer(answer({"status": "completed", "marked": 2, "roots": roots})) as server,
        runtime_file_held(str(root.parent / "c.db.daemon"), {"listen": server.address}),
    ):
        assert carry(CARRIED["prune"], args, config) == 0
    assert server.requests == [{"id": 1, "cmd": "status"}, {"id": 2, "cmd": "prune"}]
    printed = capsys.readouterr()
    assert json.loads(printed.out) == {"marked": 2}
    assert printed.err == ""  # the same roots: no warning


def test_carry_maps_the_daemons_error_codes(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad_request answer is bad usage (exit 2); any other code is a failure (exit 1)."""
    args, config = parse(root, "prune", monkeypatch=monkeypatch)
    for code, expected in [("bad_request", InvalidRequestError), ("busy", RemoteError)]:
        script = lambda request, code=code: [failure(request, code, "no")]  # noqa: E731
        with (
            FeedServer(script) as server,
            runtime_file_held(str(root.parent / "c.db.daemon"), {"listen": server.address}),
            pytest.raises(expected) as caught,
        ):
            carry(CARRIED["prune"], args, config)
        assert exit_code(caught.value) == (2 if code == "bad_request" else 1)


def test_ask_closes_the_client_whatever_happens() -> None:
    """The connection is closed after an answer and after an error alike."""

    class Client:
        closed = 0

        def request(self, cmd: str, timeout: float | None, **arguments: Any) -> Any:
            raise RemoteError("not_found", "gone")

        def close(self) -> None:
            self.closed += 1

    client = Client()
    with pytest.raises(RemoteError):
        ask(client, "tag")
    assert client.closed == 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), 2),
        (UsageError("x"), 2),
        (InvalidRequestError("x"), 2),
        (UnknownCommandError("x"), 2),
        (NoDaemonError("x"), 3),
        (RemoteError("busy", "x"), 1),
        (NotFoundError("x"), 1),
        (CatalogError("x"), 1),
        (AssetdError("x"), 1),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_exit_codes_follow_the_exception_tree(error: AssetdError, code: int) -> None:
    """One table maps every AssetdError to the contract's exit status."""
    assert exit_code(error) == code
    assert EXIT_CODES[-1] == (AssetdError, 1)  # the last row catches the rest


def test_parse_pairs_reads_strings_and_json() -> None:
    """``KEY=VALUE`` is a string, ``KEY:=JSON`` a JSON value; the split is at the first sign."""
    assert parse_pairs(["a=b=c", "n:=1", "l:=[1, 2]", 's:="x"', "e="]) == {
        "a": "b=c",
        "n": 1,
        "l": [1, 2],
        "s": "x",
        "e": "",
    }


@pytest.mark.parametrize("pair", ["novalue", "=v", ":=1", "k:=[1"])
def test_parse_pairs_refuses_what_it_cannot_read(pair: str) -> None:
    """No sign, an empty key or JSON that does not parse is a usage error."""
    with pytest.raises(UsageError):
        parse_pairs([pair])


def location(**overrides: Any) -> dict[str, Any]:
    item = {
        "path": "/r/a.png",
        "root": "r",
        "size": 4,
        "hash": "blake3:0123456789abcdef",
        "is_missing": False,
        "tags": ["fav", "r"],
    }
    return {**item, **overrides}


def test_ls_line() -> None:
    """Path, tab, then root, size, a short digest and the tags."""
    assert ls_line(location()) == b"/r/a.png\tr 4 0123456789ab [fav,r]"
    missing = ls_line(location(hash=None, is_missing=True, tags=[]))
    assert missing == b"/r/a.png\tMISSING r 4 unhashed []"


def test_ls_line_writes_a_non_utf8_path_with_its_bytes_escaped() -> None:
    """A path carried as ``path_bytes_b64`` is written with its bytes, those that are not
    UTF-8 as ``\\xHH``."""
    raw = b"/r/caf\xe9 \xc3\xa9.png"
    item = location(path=os.fsdecode(raw), path_bytes_b64=base64.b64encode(raw).decode())
    assert ls_line(item).split(b"\t")[0] == "/r/caf\\xe9 \u00e9.png".encode()


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("plain é ü 中", "plain é ü 中"),
        ("new\nline", "new\\nline"),
        ("tab\tcr\r", "tab\\tcr\\r"),
        ("\x00\x1b[31m\x1f", "\\x00\\x1b[31m\\x1f"),
        ("del\x7f", "del\\x7f"),
        ("c1\x85\x9f", "c1\\xc2\\x85\\xc2\\x9f"),  # the character's two bytes
        ("sep\u2028\u2029", "sep\\xe2\\x80\\xa8\\xe2\\x80\\xa9"),
        ("back\\slash", "back\\\\slash"),
        (os.fsdecode(b"\xff\xfe.bin"), "\\xff\\xfe.bin"),
    ],
)
def test_escape(name: str, escaped: str) -> None:
    """Controls and bytes that are not UTF-8 become escapes; a backslash is doubled."""
    assert escape(name) == escaped


def test_ls_line_escapes_the_tags_too() -> None:
    """A folder's name with a newline, as an automatic tag, stays on the line."""
    line = ls_line(location(path="/r/a\nb/c.png", tags=["a\nb", "r"]))
    assert line == b"/r/a\\nb/c.png\tr 4 0123456789ab [a\\nb,r]"


def test_scan_summary_has_every_key_and_errors_only_when_counted() -> None:
    """Missing counters are 0; ``errors`` appears only when the pass counted them."""
    summary = scan_summary({"scanned": 3, "hashed": 1}, errors=None)
    assert summary == {
        "scanned": 3,
        "total": 0,
        "created": 0,
        "skipped": 0,
        "hashed": 1,
        "marked_missing": 0,
        "restored": 0,
        "modified": 0,
    }
    assert scan_summary({}, errors=2)["errors"] == 2


def test_print_json_is_one_line_keeping_non_ascii(capsys: pytest.CaptureFixture[str]) -> None:
    """One value, one line, characters as they are."""
    print_json({"tags": ["été"]})
    assert capsys.readouterr().out == '{"tags": ["été"]}\n'


@pytest.mark.parametrize("name", ["tag", "meta", "restore", "prune", "cleanup", "verify", "seed"])
def test_local_operations_take_the_daemons_arguments(name: str) -> None:
    """Each operation run here has the name and parameters of the daemon's own."""
    from assetd.cli.local import LocalOperations
    from assetd.service import Service

    def parameters(fn: Any) -> list[str]:
        return list(inspect.signature(fn).parameters)

    assert parameters(getattr(LocalOperations, name)) == parameters(getattr(Service, name))
