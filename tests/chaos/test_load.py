"""Sustained load: a mixed workload over 10,000 files with 50 feed clients subscribed.

``ASSETD_LOAD_SECONDS`` sets how long the workload runs (30 s by default, minutes on
demand). At the end the catalog equals the disk (checked independently), every client
received every change in order with no gap or repeat, and the daemon's peak memory is
printed and stays under a bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.chaos import checker
from tests.conftest import OLD_NS, wait_for

pytestmark = pytest.mark.chaos

SECONDS = float(os.environ.get("ASSETD_LOAD_SECONDS", "30"))
FILES = 10_000
CLIENTS = 50
RSS_BOUND_MIB = 200


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


class Clients:
    """50 subscribed clients on one event loop in a thread, each keeping the seqs it got."""

    def __init__(self, address: str, since: int) -> None:
        self.address, self.since = address, since
        self.seqs: list[list[int]] = [[] for _ in range(CLIENTS)]
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()))
        self.thread.start()

    async def _main(self) -> None:
        subscribed = 0

        async def one(index: int) -> None:
            nonlocal subscribed
            try:
                async with connect(f"ws://{self.address}/ws", max_size=None) as ws:
                    await ws.recv()
                    await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "since": self.since}))
                    subscribed += 1
                    if subscribed == CLIENTS:
                        self.ready.set()
                    while not self.stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.5)
                        except TimeoutError:
                            continue
                        message = json.loads(raw)
                        if message.get("type") == "change":
                            self.seqs[index].append(message["seq"])
                        elif message.get("type") == "resync-required":
                            self.errors.append(f"client {index} told to resync")
            except Exception as exc:  # reported by the test, not swallowed
                self.errors.append(f"client {index}: {exc!r}")
                self.ready.set()

        await asyncio.gather(*(one(i) for i in range(CLIENTS)))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def workload(root: Path, seconds: float, rnd: random.Random) -> int:
    """Creates, appends, renames and deletes at a steady pace; returns how many ops."""
    files = sorted(root.rglob("*.bin"))
    ops, n = 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        op = rnd.random()
        try:
            if op < 0.3 or not files:
                path = root / f"d{rnd.randrange(100):02}" / f"new{n}.bin"
                path.write_bytes(rnd.randbytes(rnd.randint(1, 8000)))
                files.append(path)
                n += 1
            elif op < 0.55:
                with open(rnd.choice(files), "ab") as fh:
                    fh.write(rnd.randbytes(500))
            elif op < 0.8:
                index = rnd.randrange(len(files))
                dest = root / f"d{rnd.randrange(100):02}" / f"moved{n}.bin"
                files[index].rename(dest)
                files[index] = dest
                n += 1
            else:
                files.pop(rnd.randrange(len(files))).unlink()
        except FileNotFoundError:
            pass
        ops += 1
        time.sleep(0.004)  # the workload's pace: about 200 operations a second
    return ops


@pytest.mark.timeout(600)
def test_sustained_mixed_load_with_50_clients(tmp_path: Path, make_daemon: Any) -> None:
    root = tmp_path / "r"
    rnd = random.Random(7)
    for i in range(FILES):
        folder = root / f"d{i % 100:02}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{i}.bin"
        path.write_bytes(rnd.randbytes(rnd.randint(100, 4000)))
        os.utime(path, ns=(OLD_NS, OLD_NS))
    daemon = make_daemon().start()
    db = Path(daemon.db.removeprefix("sqlite:///"))
    since = daemon.catalog.latest_seq()
    clients = Clients(daemon.address, since)
    try:
        assert clients.ready.wait(60) and not clients.errors, clients.errors
        ops = workload(root, SECONDS, rnd)
        checker.wait_converged(db, root, timeout=120, what="the catalog to equal the disk")
        latest = daemon.catalog.latest_seq()
        wanted = list(range(since + 1, latest + 1))
        wait_for(
            lambda: all(len(s) >= len(wanted) for s in clients.seqs), 60, "every client caught up"
        )
    finally:
        clients.close()
    assert not clients.errors, clients.errors[:5]
    for seqs in clients.seqs:
        assert seqs == wanted
    assert checker.integrity(db) == "ok"
    assert daemon.proc is not None
    peak = vm_hwm_mib(daemon.proc.pid)
    print(
        f"\nload: {ops} operations in {SECONDS:.0f} s over {FILES} files, "
        f"{len(wanted)} changes to each of {CLIENTS} clients, daemon peak RSS {peak:.1f} MiB"
    )
    assert peak < RSS_BOUND_MIB
    daemon.stop()
