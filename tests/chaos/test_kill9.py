"""kill -9 at random moments, then restart: nothing the catalog promised is lost.

Each trial is seeded (``ASSETD_CHAOS_SEED`` shifts the seeds, ``ASSETD_CHAOS_TRIALS``
sets how many: 30 by default, more on demand). A trial builds a tree, sets user tags
through the running daemon, kills it with SIGKILL during one of four moments — the
startup scan, hashing large files, a burst of creates/deletes/renames, a SIGHUP resync —
and starts it again. Then, checked independently of assetd's code (``checker``):
``PRAGMA integrity_check`` is ok, the catalog converges to a walk-and-hash of the disk,
every user tag set before the kill is still on its asset, and the change log's
sequence numbers have no gap or repeat.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import checker
from tests.conftest import run_cli

TRIALS = int(os.environ.get("ASSETD_CHAOS_TRIALS", "30"))
FIRST_SEED = int(os.environ.get("ASSETD_CHAOS_SEED", "0"))
MOMENTS = ("startup", "hashing", "burst", "sighup")


def make_tree(rnd: random.Random, root: Path, files: int, big: int = 0) -> None:
    for i in range(files):
        folder = root / f"d{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:04}.bin").write_bytes(rnd.randbytes(rnd.randint(0, 20_000)))
    for i in range(big):
        (root / f"big{i}.safetensors").write_bytes(rnd.randbytes(rnd.randint(8, 24) << 20))


def churn(rnd: random.Random, root: Path, stop: threading.Event) -> None:
    """Creates, appends, renames and deletes under ``root/churn`` until told to stop."""
    area = root / "churn"
    area.mkdir(exist_ok=True)
    n = 0
    while not stop.is_set():
        files = sorted(area.iterdir())
        op = rnd.random()
        try:
            if op < 0.4 or not files:
                (area / f"c{n:05}.png").write_bytes(rnd.randbytes(rnd.randint(1, 50_000)))
                n += 1
            elif op < 0.6:
                with open(rnd.choice(files), "ab") as fh:
                    fh.write(rnd.randbytes(1000))
            elif op < 0.8:
                rnd.choice(files).rename(area / f"m{n:05}.png")
                n += 1
            else:
                rnd.choice(files).unlink()
        except FileNotFoundError:
            pass


def tag_some(daemon: Any, rnd: random.Random, root: Path, count: int) -> dict[int, str]:
    """User tags through the daemon (committed before the command returns)."""
    tagged: dict[int, str] = {}
    candidates = sorted((root / "d0").iterdir()) + sorted((root / "d1").iterdir())
    for path in rnd.sample(candidates, min(count, len(candidates))):
        tag = f"keep-{rnd.randint(0, 999)}"
        proc = run_cli("tag", "add", str(path), tag, "--db", daemon.db, *daemon_roots(daemon))
        assert proc.returncode == 0, proc.stderr
        asset = checker.asset_at(daemon.db_path, path)
        assert asset is not None
        tagged[asset] = tag
    return tagged


def daemon_roots(daemon: Any) -> list[str]:
    return [f for name, path in daemon.roots.items() for f in ("--root", f"{name}={path}")]


@pytest.mark.chaos
@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + TRIALS))
def test_kill9_then_restart_loses_nothing(make_daemon: Any, tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    moment = MOMENTS[seed % len(MOMENTS)]
    root = tmp_path / "r"
    root.mkdir()
    daemon = make_daemon({"r": root})
    tagged: dict[int, str] = {}
    stop_churn = threading.Event()
    churner: threading.Thread | None = None

    if moment == "startup":
        make_tree(rnd, root, rnd.randint(500, 3000))
        daemon.start(wait=False)
        time.sleep(rnd.uniform(0.05, 1.5))  # the random moment itself, not a wait
    elif moment == "hashing":
        make_tree(rnd, root, 50, big=rnd.randint(2, 4))
        daemon.start(wait=False)
        time.sleep(rnd.uniform(0.2, 1.2))
    else:
        make_tree(rnd, root, rnd.randint(50, 300))
        daemon.start()
        tagged = tag_some(daemon, rnd, root, 5)
        churner = threading.Thread(target=churn, args=(rnd, root, stop_churn))
        churner.start()
        time.sleep(rnd.uniform(0.1, 0.8))
        if moment == "sighup":
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            time.sleep(rnd.uniform(0.0, 0.5))
    daemon.stop(signal.SIGKILL)
    stop_churn.set()
    if churner is not None:
        churner.join()

    daemon.start()
    db = daemon.db_path
    checker.wait_converged(
        db, root, timeout=60, what=f"the catalog to converge to the disk (seed {seed}, {moment})"
    )
    assert checker.integrity(db) == "ok"
    assert checker.sequence_problems(db) == []
    for asset, tag in tagged.items():
        assert tag in checker.user_tags(db, asset), (seed, moment, asset, tag)
    daemon.stop()
