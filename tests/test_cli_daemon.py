"""The command line with a daemon: status, watch, and writes carried out by the daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from tests.conftest import OLD_NS, REPO, hashed, run_cli, write
from tests.harness import request_sync


def flags(d: Any) -> list[str]:
    return d.args()


def test_status_and_watch_without_a_daemon_exit_3(tmp_path: Path) -> None:
    """No daemon serves the catalog: status and watch exit 3 with one line."""
    db = f"sqlite:///{tmp_path / 'c.db'}"
    for command in (["status"], ["watch"]):
        proc = run_cli(*command, "--db", db, "--root", f"r={tmp_path}")
        assert proc.returncode == 3, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "no daemon" in proc.stderr


def test_status_asks_the_daemon(tmp_path: Path, make_daemon: Any) -> None:
    """status prints the daemon's status object."""
    write(tmp_path / "r" / "a", "a", OLD_NS)
    d = make_daemon().start()
    proc = run_cli("status", *flags(d))
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["state"] == "IDLE" and status["seq"] == 1  # one "added", its hash in it
    assert status["roots"][0]["name"] == "r" and status["roots"][0]["files"] == 1


def test_watch_replays_then_follows(tmp_path: Path, make_daemon: Any) -> None:
    """watch --since 0 prints hello, the logged changes in order, then live ones."""
    write(tmp_path / "r" / "a", "a", OLD_NS)
    d = make_daemon().start()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "assetd", "watch", "--since", "0", *flags(d)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        # Ctrl-C ends watch; a suite started in the background (`cmd &` in a script) has
        # SIGINT ignored, children inherit that, and then Python installs no handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        hello = json.loads(proc.stdout.readline())
        assert hello["type"] == "hello"
        first = json.loads(proc.stdout.readline())
        # Complete when the startup pass saw it: one "added" that carries the hash.
        assert (first["seq"], first["op"]) == (1, "added") and first["location"]["hash"]
        write(tmp_path / "r" / "b", "b")
        live: list[dict[str, Any]] = []
        while not live or not live[-1]["location"]["hash"]:
            message = json.loads(proc.stdout.readline())
            if message["type"] == "change":
                live.append(message)
        # Caught mid-write, the file may also show a "modified" between the two.
        assert [m["seq"] for m in live] == list(range(2, 2 + len(live)))
        assert live[0]["op"] == "added" and live[-1]["location"]["path"] == str(
            tmp_path / "r" / "b"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_writes_go_through_the_daemon_and_reach_its_feed(tmp_path: Path, make_daemon: Any) -> None:
    """tag, meta, restore, prune, cleanup and scan run in the daemon; its feed reports them."""
    f = write(tmp_path / "r" / "a.png", "a", OLD_NS)
    d = make_daemon().start()
    with connect(f"ws://{d.address}/ws") as ws:
        json.loads(ws.recv(10))
        assert request_sync(ws, "subscribe")["ok"]
        proc = run_cli("tag", "add", str(f), "fav", *flags(d))
        assert proc.returncode == 0 and json.loads(proc.stdout) == ["fav", "r"]
        message = json.loads(ws.recv(10))
        assert message["type"] == "change" and message["op"] == "tagged"
        assert message["location"]["tags"] == ["fav", "r"]
        assert message["location"]["user_tags"] == ["fav"]
        refused = request_sync(ws, "tag", path=str(f), remove=["r"])
        assert refused["error"]["code"] == "automatic_tag", refused
    proc = run_cli("meta", str(f), "k=v", *flags(d))
    assert json.loads(proc.stdout) == {"k": "v"}
    proc = run_cli("restore", str(f), *flags(d))
    assert json.loads(proc.stdout) == {"restored": 0}
    assert json.loads(run_cli("prune", *flags(d)).stdout) == {"marked": 0}
    assert json.loads(run_cli("cleanup", "--dry-run", *flags(d)).stdout) == {"deleted": 0}
    proc = run_cli("scan", *flags(d))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["skipped"] == 1 and summary["total"] == 1
    assert d.log_text().count("assets.seed.started") == 2
    bad = run_cli("tag", "add", "/etc/hostname", "x", *flags(d))
    assert bad.returncode == 2 and "outside every root" in bad.stderr
    missing = run_cli("tag", "add", str(tmp_path / "r" / "nope"), "x", *flags(d))
    assert missing.returncode == 1 and "not in the catalog" in missing.stderr
    automatic = run_cli("tag", "rm", str(f), "r", *flags(d))
    assert automatic.returncode == 2 and "r: automatic at" in automatic.stderr
    assert hashed(d.item(f))
