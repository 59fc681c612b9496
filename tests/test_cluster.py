"""Several daemons, each with roots of its own, sharing one PostgreSQL catalog.

Real daemons on a real PostgreSQL server (started by the tests from the system's
binaries), real folders, real WebSocket clients. Each node's feed relays every node's
changes in one gap-free order; a node that restarts misses nothing; a database that
goes away for seconds loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.conftest import OLD_NS, Daemon, hashed, run_cli, wait_for, write
from tests.harness import request

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def nodes(tmp_path: Path, pg_url: str) -> Any:
    """Node ``a`` and node ``b`` on one catalog, each with a root of its own (not started)."""
    made: list[Daemon] = []

    def make(node: str, root: str | None = None) -> Daemon:
        home = tmp_path / node  # the node's configuration and log
        home.mkdir(exist_ok=True)
        folder = tmp_path / f"{node}-models"
        folder.mkdir(exist_ok=True)
        roots = {root or f"{node}.models": folder}
        daemon = Daemon(home, roots, database=pg_url, node=node, name=node)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.close()


async def _subscribe(address: str, since: int | None = None) -> Any:
    ws = await connect(f"ws://{address}/ws")
    hello = json.loads(await ws.recv())
    reply = await request(ws, "subscribe", **({} if since is None else {"since": since}))
    assert reply["ok"], reply
    return ws, hello


async def _changes_until(ws: Any, done: Any, timeout: float = 60) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {[(m['seq'], m['op']) for m in got]}"
        message = json.loads(await asyncio.wait_for(ws.recv(), left))
        if message["type"] == "change":
            got.append(message)
    return got


def _hashed_path(path: Path) -> Any:
    def done(got: list[dict[str, Any]]) -> bool:
        return any(m["location"]["hash"] and m["location"]["path"] == str(path) for m in got)

    return done


def test_a_change_on_one_node_reaches_the_feed_of_another(nodes: Any) -> None:
    """A file created under node a's root reaches node b's feed client, in seq order."""
    a, b = nodes("a").start(), nodes("b").start()

    async def go() -> list[dict[str, Any]]:
        ws, hello = await _subscribe(b.address)
        async with ws:
            path = write(next(iter(a.roots.values())) / "x.safetensors", "weights", OLD_NS)
            got = await _changes_until(ws, _hashed_path(path))
            assert hello["catalog"] == a.catalog.catalog_id  # one catalog
            return got

    got = asyncio.run(go())
    seqs = [m["seq"] for m in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert got[-1]["location"]["root"] == "a.models"
    assert got[-1]["location"]["hash"] is not None


def test_same_content_on_two_nodes_is_one_asset_and_tags_follow(nodes: Any) -> None:
    """The same file on two hosts is one asset with two locations; a tag shows on both."""
    a, b = nodes("a").start(), nodes("b").start()
    on_a = write(next(iter(a.roots.values())) / "sd.safetensors", "same weights", OLD_NS)
    on_b = write(next(iter(b.roots.values())) / "copy.safetensors", "same weights", OLD_NS)
    item_a = a.until(on_a, "hashed on a", hashed)
    item_b = b.until(on_b, "hashed on b", hashed)
    assert item_a["asset_id"] == item_b["asset_id"]
    tagged = run_cli("tag", "add", str(on_a), "favourite", *a.cli_args())
    assert tagged.returncode == 0, tagged.stderr
    assert "favourite" in b.until(on_b, "tagged", lambda i: "favourite" in i["tags"])["tags"]


def test_a_restarted_node_gets_what_it_missed_with_since(nodes: Any) -> None:
    """Node b goes down; node a keeps changing things; b's client resumes with since and
    gets exactly the missed changes, in order, no gap and no repeat."""
    a, b = nodes("a").start(), nodes("b").start()
    root_a = next(iter(a.roots.values()))

    async def first() -> int:
        ws, _ = await _subscribe(b.address)
        async with ws:
            path = write(root_a / "before.png", "before", OLD_NS)
            got = await _changes_until(ws, _hashed_path(path))
            return int(got[-1]["seq"])

    last = asyncio.run(first())
    b.stop()
    during = [write(root_a / f"during{i}.png", f"during {i}", OLD_NS) for i in range(5)]
    for path in during:
        a.until(path, "hashed while b is down", hashed)
    latest = a.catalog.latest_seq()
    b.start()

    async def resumed() -> list[dict[str, Any]]:
        ws, _ = await _subscribe(b.address, since=last)
        async with ws:
            return await _changes_until(ws, lambda got: got and got[-1]["seq"] >= latest)

    got = asyncio.run(resumed())
    assert [m["seq"] for m in got] == list(range(last + 1, latest + 1))
    hashed_paths = {m["location"]["path"] for m in got if m["location"]["hash"]}
    assert {str(p) for p in during} <= hashed_paths


def test_the_database_going_away_for_seconds_loses_nothing(nodes: Any, postgres: Any) -> None:
    """PostgreSQL stops abruptly; files appear on both nodes meanwhile; once it is back,
    every file is cataloged and hashed, the log has no gap, and a feed client of node b
    got every change in order."""
    a, b = nodes("a").start(), nodes("b").start()
    roots = [next(iter(n.roots.values())) for n in (a, b)]
    start = a.catalog.latest_seq()
    a.catalog.close()
    b.catalog.close()

    async def go() -> list[dict[str, Any]]:
        ws, _ = await _subscribe(b.address, since=start)
        async with ws:
            postgres.stop("immediate")
            made = [
                write(root / f"outage{i}.png", f"{root} {i}") for root in roots for i in range(10)
            ]
            await asyncio.to_thread(wait_for, lambda: _said(a, b), 30, "the outage noticed")
            await asyncio.to_thread(postgres.start)
            await asyncio.to_thread(postgres.wait_up)
            await asyncio.to_thread(
                wait_for, lambda: _all_hashed(a, made), 90, "every file cataloged after the outage"
            )
            latest = a.catalog.latest_seq()
            return await _changes_until(ws, lambda got: got and got[-1]["seq"] >= latest, 60)

    got = asyncio.run(go())
    seqs = [m["seq"] for m in got]
    assert seqs == list(range(start + 1, seqs[-1] + 1))
    assert _sequence_gapless(a)
    assert "reconnecting" in b.log_text() or "cannot be reached" in b.log_text()


def _said(*daemons: Daemon) -> bool:
    text = "".join(d.log_text() for d in daemons)
    return (
        "cannot write the catalog" in text
        or "cannot be reached" in text
        or ("reconnecting" in text)
    )


def _all_hashed(daemon: Daemon, paths: list[Path]) -> bool:
    try:
        items = daemon.items()
    except Exception:  # the database is still coming back
        return False
    return all((item := items.get(str(p))) is not None and hashed(item) for p in paths)


def _sequence_gapless(daemon: Daemon) -> bool:
    seqs = [c["seq"] for c in daemon.catalog.changes_since(0, limit=10**6)]
    return seqs == list(range(1, len(seqs) + 1)) and seqs[-1] == daemon.catalog.latest_seq()


def test_a_root_another_node_owns_elsewhere_is_refused(nodes: Any, tmp_path: Path) -> None:
    """Node b configured with node a's root name at another path refuses to start: exit 2,
    one line naming the owner; node a carries on."""
    a = nodes("a").start()
    b = nodes("b", root="a.models")  # the same name, at b's own folder
    b.start(wait=False)
    assert b.proc is not None
    assert b.proc.wait(60) == 2
    lines = [line for line in b.log_text().splitlines() if line.strip()]
    assert len(lines) == 1 and "belongs to node 'a'" in lines[0], lines
    assert a.status()["state"] in ("IDLE", "RUNNING")


def test_prune_and_cleanup_on_one_node_leave_the_other_alone(nodes: Any) -> None:
    """A prune or a cleanup run by node b never marks or deletes node a's locations."""
    a, b = nodes("a").start(), nodes("b").start()
    kept = write(next(iter(a.roots.values())) / "kept.png", "kept", OLD_NS)
    a.until(kept, "hashed on a", hashed)
    a.stop()  # a's daemon is down: b must still not touch a's rows
    pruned = run_cli("prune", *b.cli_args())
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {"marked": 0}
    cleaned = run_cli("cleanup", "--missing-older-than", "0", *b.cli_args())
    assert cleaned.returncode == 0, cleaned.stderr
    item = b.item(kept)
    assert item is not None and not item["is_missing"]


def test_two_nodes_write_at_once_and_the_log_stays_one_order(nodes: Any) -> None:
    """Bursts on both nodes at the same moment: every file cataloged once, the shared log
    gap-free, the same content hashed on both nodes at once one asset."""
    a, b = nodes("a").start(), nodes("b").start()
    roots = [next(iter(n.roots.values())) for n in (a, b)]
    made = []
    for i in range(150):
        for root in roots:
            made.append(write(root / f"f{i:03}.png", f"shared content {i % 50}"))
    wait_for(lambda: _all_hashed(a, made), 120, "both bursts cataloged")
    assert _sequence_gapless(a)
    items = a.items()
    by_content: dict[str, set[int]] = {}
    for path in made:
        by_content.setdefault(path.read_text(), set()).add(items[str(path)]["asset_id"])
    assert all(len(ids) == 1 for ids in by_content.values())


def test_a_second_daemon_under_the_same_node_name_is_refused(nodes: Any, tmp_path: Path) -> None:
    """Two daemons under one node name (cloned hosts keep their name) would take each
    other's roots for their own: the second exits 1 with one line; the first carries on."""
    a = nodes("a").start()
    (tmp_path / "twin").mkdir()
    (tmp_path / "twin-models").mkdir()
    twin = Daemon(
        tmp_path / "twin", {"twin.models": tmp_path / "twin-models"}, database=a.db, node="a",
        name="twin",
    )  # fmt: skip
    twin.start(wait=False)
    try:
        assert twin.proc is not None and twin.proc.wait(60) == 1
        lines = [line for line in twin.log_text().splitlines() if line.strip()]
        assert len(lines) == 1 and "another daemon serves node 'a'" in lines[0], lines
    finally:
        twin.close()
    assert a.status()["catalog"]["node"] == "a"
