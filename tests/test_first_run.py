"""The first hour as a user lives it: the page's address, log lines a person can read."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

from tests.harness import OLD_NS, run_cli, write

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "


def test_the_daemon_says_where_its_page_is_with_time_stamps(make_daemon: Any) -> None:
    """``assetd run`` logs ``assetd: page at http://HOST:PORT/ (feed ws://HOST:PORT/ws)``
    once the feed listens, and outside the journal every line starts with a local time."""
    d = make_daemon().start()
    lines = d.log_text().splitlines()
    page = [line for line in lines if "page at" in line]
    assert len(page) == 1
    address = d.address
    assert re.fullmatch(
        STAMP + re.escape(f"assetd: page at http://{address}/ (feed ws://{address}/ws)"), page[0]
    )
    assert lines and all(re.match(STAMP + "assetd: ", line) for line in lines), lines


def test_under_the_journal_log_lines_carry_no_time(make_daemon: Any, tmp_path: Path) -> None:
    """With ``JOURNAL_STREAM`` set (systemd), the journal stamps the lines: we do not."""
    d = make_daemon().start(env={"JOURNAL_STREAM": "8:12345"})
    lines = d.log_text().splitlines()
    assert lines and all(line.startswith("assetd: ") for line in lines), lines
    assert f"assetd: page at http://{d.address}/ (feed ws://{d.address}/ws)" in lines


def test_a_listen_address_in_use_stops_with_one_line_and_nothing_made(tmp_path: Path) -> None:
    """A second daemon whose address is taken exits 1 with one line naming the address
    and how to choose another, and makes no catalog, runtime file or state folder; the
    same in the foreground and with --detach."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    address = f"127.0.0.1:{taken.getsockname()[1]}"
    (tmp_path / "r").mkdir()
    state = tmp_path / "state"
    try:
        for extra in ([], ["--detach", "--pidfile", str(tmp_path / "pid")]):
            proc = run_cli(
                "run", "--db", f"sqlite:///{state / 'assetd.db'}", "--root",
                f"r={tmp_path / 'r'}", "--listen", address, *extra,
            )  # fmt: skip
            assert proc.returncode == 1, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1, proc.stderr
            assert address in lines[0] and "in use" in lines[0]
            assert "--listen" in lines[0] and "[feed] listen" in lines[0]
            assert "Traceback" not in proc.stderr
            assert not state.exists()
            assert not (tmp_path / "pid").exists()
    finally:
        taken.close()


def test_a_path_not_in_the_catalog_names_the_catalog_and_what_to_try(tmp_path: Path) -> None:
    """``tag`` on a path the catalog does not have says which catalog it looked in and,
    with no configuration named, how to name the daemon's."""
    (tmp_path / "r").mkdir()
    db = f"sqlite:///{tmp_path / 'c.db'}"
    proc = run_cli(
        "tag",
        "add",
        str(tmp_path / "r" / "x.png"),
        "t",
        "--db",
        db,
        "--root",
        f"r={tmp_path / 'r'}",
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert f"x.png is not in the catalog {db}" in line
    assert "--config FILE or ASSETD_CONFIG" in line


def test_a_daemon_with_other_roots_is_named_before_it_acts(
    tmp_path: Path, make_daemon: Any
) -> None:
    """``prune`` carried out by a daemon whose roots are not this configuration's warns
    that the daemon acts with its own roots (and how to reload it), then answers."""
    write(tmp_path / "r" / "a.bin", b"a", OLD_NS)
    (tmp_path / "other").mkdir()
    d = make_daemon().start()
    flags = ["--db", d.db, "--root", f"other={tmp_path / 'other'}"]
    proc = run_cli("prune", *flags)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"marked": 0}
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("assetd: warning: the daemon serving this catalog has other roots")
    assert f"r={tmp_path / 'r'}" in line and "SIGHUP" in line
    same = run_cli("prune", *d.cli_args())
    assert same.returncode == 0 and same.stderr == ""
