"""assetd's benchmarks, each run side by side with the tool a user would otherwise use.

    python -m bench [--quick] [--runs N] [--only NAME ...] [--keep]

Every workload makes its own data under a temporary folder, runs assetd and the
reference alternately ``--runs`` times, and prints medians, the ratio
assetd/reference and assetd's peak RSS. ``--quick`` shrinks every workload so the
suite finishes in seconds (CI runs it that way to keep it working; no goal is
enforced). Results for docs/performance.md come from a full run.

With ``ASSETD_BENCH_PROFILE=FOLDER`` set and py-spy installed, every daemon a workload
starts runs under ``py-spy record`` and leaves FOLDER/NAME.txt (raw collapsed stacks,
for speedscope or flamegraph.pl); with ``ASSETD_BENCH_GIL=1`` too, only the samples of the
thread holding the GIL (what one core of Python is spent on). With
``ASSETD_BENCH_SCREENSHOTS=1`` the page row
saves docs/img/browser-grid.png and docs/img/browser-preview.png.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assetd.drivers import DRIVERS
from bench.comfy import asset_list, workflow_check
from bench.page import page
from bench.rows import (
    Row,
    commit_times,
    hashed_locations,
    latest_seq,
    make_small_files,
    tag_every,
    vm_hwm_mib,
)
from tests.harness import (
    OLD_NS,
    REPO,
    ChangeFeed,
    Daemon,
    cached_bytes,
    checkout_env,
    evict,
    request_sync,
    write,
)

ASSETD = [sys.executable, "-m", "assetd"]


def run(
    cmd: list[str], *, env: dict[str, str] | None = None, shell: bool = False
) -> tuple[float, float]:
    """Run a command to completion; (seconds, peak RSS in MiB of the process itself).

    The peak is the process's VmHWM, read every 10 ms while it runs (wait4's ru_maxrss
    would count the size of this process at the fork), in a thread of its own: the time
    is taken the moment the process ends, not at the next reading.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd if not shell else " ".join(cmd),
        shell=shell,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    peaks = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):  # the sampling interval of the memory reading
            peaks.append(vm_hwm_mib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.wait()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    peak = max(peaks)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}")
    return elapsed, peak


def warm_page_cache(root: Path) -> None:
    subprocess.run(
        f"find {root} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True
    )


def scan_cmd(db: Path, root: Path, name: str = "b") -> list[str]:
    return [*ASSETD, "scan", "--db", f"sqlite:///{db}", "--root", f"{name}={root}"]


# -- workloads ------------------------------------------------------------------------


def cold_index(tmp: Path, runs: int, quick: bool) -> Row:
    """``assetd scan`` of a new tree, beside ``find | xargs b3sum`` and beside the floor
    the catalog itself sets (bench/floor.py: its SQL alone, through bare sqlite3)."""
    count = 2000 if quick else 50_000
    row = Row(f"cold index {count}", "<= 1.5x b3sum")
    data = tmp / "cold"
    make_small_files(data, count, max(1, count // 100), 512, 40 * 1024)
    b3sum = shutil.which("b3sum") is not None
    if b3sum:
        row.reference["find|xargs b3sum"] = []
    else:
        row.note = "b3sum not installed (Debian: apt-get install b3sum): no reference"
    row.reference["catalog SQL alone"] = []
    peers: dict[str, Callable[[int], float]] = {}
    if shutil.which("git"):
        peers["git add -A"] = lambda i: git_add_all(tmp / f"git{i}", data)
    if shutil.which("watchman"):
        peers["watchman sha1"] = lambda i: watchman_first_query(tmp, data, ["content.sha1hex"])
    for name in peers:
        row.reference[name] = []
    for i in range(runs):
        _cold_run(row, tmp / f"cold{i}.db", data, b3sum)
        floor = [sys.executable, "-m", "bench.floor", str(tmp / f"floor{i}.db"), str(data), "b"]
        done = subprocess.run(floor, env=checkout_env(), capture_output=True, text=True, check=True)
        row.reference["catalog SQL alone"].append(float(done.stdout))
        for name, peer in peers.items():
            warm_page_cache(data)
            row.reference[name].append(peer(i))
    notes = [_listable(tmp / "listable.db", data)]
    if b3sum:
        ratio = row.ratio("catalog SQL alone", "find|xargs b3sum")
        notes.append(f"the catalog's SQL alone takes {ratio:.2f}x b3sum")
    row.note = "; ".join(notes)
    return row


def model_folder(tmp: Path, runs: int, quick: bool) -> Row:
    """``assetd scan`` of a model folder (200 files of 1-25 MB), beside ``b3sum``."""
    count, hi = (20, 4) if quick else (200, 25)
    row = Row(f"cold models {count}", "<= 1.1x b3sum")
    data = tmp / "models"
    rnd = random.Random(7)
    chunk = os.urandom(1 << 20)
    for i in range(count):
        path = data / f"m{i // 50}" / f"model{i:03}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        mib = rnd.randint(1, hi)
        with open(path, "wb") as f:
            for j in range(mib):  # each MiB its own: no two files share content
                f.write(chunk[:8] + b"%08d%08d" % (i, j) + chunk[24:])
        os.utime(path, ns=(OLD_NS, OLD_NS))
    b3sum = shutil.which("b3sum") is not None
    if b3sum:
        row.reference["find|xargs b3sum"] = []
    start = python_start(tmp / "models-start.db", data)
    row.reference["Python + libraries"] = []
    for i in range(runs):
        _cold_run(row, tmp / f"models{i}.db", data, b3sum)
        row.reference["Python + libraries"].append(run(start, env=checkout_env())[0])
    notes = [_listable(tmp / "models-listable.db", data)]
    if b3sum:
        floor = 1 + row.ratio("Python + libraries", "find|xargs b3sum")
        notes.append(
            f"b3sum plus the start of Python and of the {len(start[-1].split(','))} modules "
            f"from outside assetd a scan imports: {floor:.2f}x b3sum"
        )
    row.note = "; ".join(notes)
    return row


def python_start(db: Path, data: Path) -> list[str]:
    """A command that starts Python and imports what ``assetd scan`` imports from
    outside assetd (the standard library's modules, peewee, blake3, ...) and nothing
    else: the part of a scan's time that no code of assetd's can remove. The modules
    are those a scan of ``data`` into a new catalog at ``db`` imported (``-X importtime``)."""
    traced = subprocess.run(
        [sys.executable, "-X", "importtime", *scan_cmd(db, data)[1:]],
        env=checkout_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    names = []
    for line in traced.stderr.splitlines():
        name = line.rpartition("|")[2].strip()
        if line.startswith("import time:") and name and not name.startswith(OURS):
            names.append(name)
    # The drivers a SQLite process keeps out (assetd.drivers) stay out here too; a
    # module that does not import here (another platform's) is skipped, as it was there.
    script = (
        "import importlib, sys\n"
        f"sys.modules.update(dict.fromkeys({DRIVERS!r}))\n"
        "for name in sys.argv[1].split(','):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        pass\n"
    )
    return [sys.executable, "-c", script, ",".join(dict.fromkeys(names))]


OURS = ("assetd", "__editable__")  # (the editable install's finder: site imports it)


def _cold_run(row: Row, db: Path, data: Path, b3sum: bool) -> None:
    """One run of ``assetd scan`` into a new catalog, then ``b3sum``, each right after the
    tree is read into the page cache (this machine pages out what sat unread a minute)."""
    warm_page_cache(data)
    seconds, rss = run(scan_cmd(db, data), env=checkout_env())
    row.assetd.append(seconds)
    row.rss_mib = max(row.rss_mib, rss)
    if b3sum:
        warm_page_cache(data)
        command = f"find {data} -type f -print0 | xargs -0 b3sum > /dev/null"
        row.reference["find|xargs b3sum"].append(run([command], shell=True)[0])


def _listable(db: Path, data: Path) -> str:
    """How soon a scan's catalog lists its first file, and all of them, beside the time
    ``find -printf`` takes to list the tree: the catalog is read every 5 ms meanwhile."""
    total = sum(len(files) for _, _, files in os.walk(data))
    warm_page_cache(data)
    started = time.perf_counter()
    proc = subprocess.Popen(
        scan_cmd(db, data), env=checkout_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first = every = None
    while every is None and proc.poll() is None:
        count = _locations(db)
        now = time.perf_counter() - started
        if count and first is None:
            first = now
        if count >= total:
            every = now
        time.sleep(0.005)  # the polling interval
    proc.wait()
    every = every if every is not None else time.perf_counter() - started
    listing, _ = run([f"find {data} -type f -printf '%s %T@\\n' > /dev/null"], shell=True)
    shown = f"{first:.2f} s" if first is not None else "never"
    return (
        f"first rows listable at {shown}, every file at {every:.2f} s "
        f"(find -printf {listing:.3f} s) after the command's start"
    )


def _locations(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)
        try:
            return int(connection.execute("SELECT COUNT(*) FROM cache_state").fetchone()[0])
        finally:
            connection.close()
    except sqlite3.Error:  # not made yet
        return 0


def warm_restart(tmp: Path, runs: int, quick: bool) -> list[Row]:
    """``assetd scan`` of a tree it has cataloged, unchanged, at two sizes."""
    sizes = [5000] if quick else [50_000, 100_000]
    return [_warm_restart(tmp / f"warm{count}", runs, count) for count in sizes]


def _warm_restart(tmp: Path, runs: int, count: int) -> Row:
    tmp.mkdir()
    row = Row(f"warm restart {count}", "<= 0.8x watchman; <= 4x find")
    data = tmp / "warm"
    make_small_files(data, count, max(1, count // 100), 0, 0)
    db = tmp / "warm.db"
    run(scan_cmd(db, data), env=checkout_env())
    row.reference["find"] = []
    have_watchman = shutil.which("watchman") is not None
    if have_watchman:
        row.reference["watchman"] = []
    for _ in range(runs):
        seconds, rss = run(scan_cmd(db, data), env=checkout_env())
        row.assetd.append(seconds)
        row.rss_mib = max(row.rss_mib, rss)
        seconds, _ = run([f"find {data} -type f -printf '%s %T@\\n' > /dev/null"], shell=True)
        row.reference["find"].append(seconds)
        if have_watchman:
            row.reference["watchman"].append(watchman_first_query(tmp, data))
    return row


def watchman_cmd(state: Path) -> list[str]:
    """The watchman command line for a private server whose files live in ``state``."""
    return ["watchman", "--sockname", str(state / "sock"), "--statefile",
            str(state / "state"), "--logfile", str(state / "log"), "--pidfile",
            str(state / "pid"), "--no-save-state"]  # fmt: skip


def git_add_all(repo: Path, data: Path) -> float:
    """``git add -A`` of ``data`` into a new repository's index (objects and index on
    disk, the tree itself as the work tree): what a user would run for a listing by
    content (SHA-1)."""
    git = ["git", f"--git-dir={repo}", f"--work-tree={data}"]
    subprocess.run([*git, "init", "-q"], check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(repo)
    return elapsed


def watchman_first_query(tmp: Path, data: Path, fields: list[str] | None = None) -> float:
    """Watchman's `watch` plus its first query (of ``fields`` besides the name, size
    and mtime: ``content.sha1hex`` has every file read), from a fresh server."""
    state = tmp / "watchman-state"
    state.mkdir(exist_ok=True)
    base = watchman_cmd(state)
    _watchman_stop(base, state)
    subprocess.run([*base, "get-sockname"], capture_output=True, check=True)  # start it
    started = time.perf_counter()
    subprocess.run([*base, "watch", str(data)], capture_output=True, check=True)
    query = json.dumps(
        [
            "query",
            str(data),
            {"expression": ["type", "f"], "fields": ["name", "size", "mtime_ms", *(fields or [])]},
        ]
    )
    subprocess.run([*base, "-j"], input=query.encode(), capture_output=True, check=True)
    elapsed = time.perf_counter() - started
    _watchman_stop(base, state)
    return elapsed


def _watchman_stop(base: list[str], state: Path) -> None:
    """Shut the server down and wait until it is gone: one started at once would find the
    old one still holding its pidfile, and refuse to start."""
    subprocess.run([*base, "shutdown-server"], capture_output=True)
    pidfile = state / "pid"
    deadline = time.monotonic() + 10
    while pidfile.exists() and time.monotonic() < deadline:
        try:
            os.kill(int(pidfile.read_text().strip() or 0), 0)
        except (ProcessLookupError, ValueError):
            break
        time.sleep(0.01)


def big_file(tmp: Path, runs: int, quick: bool) -> list[Row]:
    """One large page-cached file: through ``assetd scan`` (a process of its own, a new
    catalog), and moved into a running daemon's root (close to ``hashed`` at a client)."""
    size = (64 if quick else 1024) << 20
    data = tmp / "big"
    data.mkdir()
    target = data / "model.safetensors"
    _write_big(target, size)
    return [
        _big_file_scan(tmp, target, runs),
        _big_file_daemon(tmp, target, runs),
        _big_file_daemon(tmp, target, runs, fresh=True),
    ]


def _write_big(path: Path, size: int) -> None:
    """``size`` bytes of random content, settled."""
    with open(path, "wb") as fh:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            fh.write(chunk)
    _settle(path)


def _settle(path: Path) -> None:
    """Make a just-written file look settled (an hour old: hashed mapped at once),
    written back (read as clean cached pages, not dirty ones) and in the page cache."""
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    os.sync()
    warm_page_cache(path.parent)


def _big_file_scan(tmp: Path, target: Path, runs: int) -> Row:
    size = target.stat().st_size
    row = Row(f"one {size >> 20} MiB file, assetd scan", "<= 1.1x b3sum")
    data = target.parent
    b3sum = shutil.which("b3sum") is not None
    if b3sum:
        row.reference["b3sum"] = []
    # The least a Python command pays: the interpreter starts, imports assetd's hashing
    # and hashes the file (no catalog); it also reports the hash's own time.
    row.reference["python -c hash_file"] = []
    code = "import time;from assetd.hashing import hash_file;t=time.perf_counter();" \
        f"hash_file({str(target).encode()!r});print(time.perf_counter()-t)"  # fmt: skip
    inproc = []
    for i in range(runs):
        seconds, rss = run(scan_cmd(tmp / f"big{i}.db", data), env=checkout_env())
        row.assetd.append(seconds)
        row.rss_mib = max(row.rss_mib, rss)
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=checkout_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        row.reference["python -c hash_file"].append(time.perf_counter() - started)
        inproc.append(float(out.stdout))
        if b3sum:
            row.reference["b3sum"].append(run(["b3sum", str(target)])[0])
    row.note = f"hash_file's own time {statistics.median(inproc):.3f}s"
    if b3sum:
        ratio = row.ratio("python -c hash_file", "b3sum")
        row.note += f"; python -c hash_file takes {ratio:.2f}x b3sum"
    return row


def _big_file_daemon(tmp: Path, target: Path, runs: int, *, fresh: bool = False) -> Row:
    """A running daemon's way with a large file that arrives as downloads do, renamed
    into its root once complete: from the rename to the ``hashed`` change at a feed
    client, beside ``b3sum`` of the same file. ``fresh``: the file was written a moment
    before (a download just finished), not an hour ago."""
    from websockets.sync.client import connect

    size = target.stat().st_size
    kind = "fresh" if fresh else "settled"
    name = f"one {size >> 20} MiB file, daemon" + (", fresh mtime" if fresh else "")
    row = Row(name, "<= 1.1x b3sum")
    root = tmp / f"big-root-{kind}"
    root.mkdir()
    stage = tmp / f"big-stage-{kind}"  # on the same filesystem: the move is a rename
    stage.mkdir()
    daemon = BenchDaemon(tmp, root, f"big-{kind}")
    b3sum = shutil.which("b3sum") is not None
    if b3sum:
        row.reference["b3sum"] = []
    try:
        with connect(f"ws://{daemon.address}/ws") as ws:
            json.loads(ws.recv())
            request_sync(ws, "subscribe")
            for i in range(runs):
                staged = stage / f"model{i}.safetensors"
                shutil.copyfile(target, staged)
                with open(staged, "r+b") as fh:
                    fh.write(os.urandom(32))  # content of its own: a new asset every run
                _settle(staged)
                if fresh:
                    os.utime(staged)  # written just now, as far as its mtime tells
                arrived = root / staged.name
                started = time.perf_counter()
                os.rename(staged, arrived)
                while True:
                    message = json.loads(ws.recv(60))
                    if message.get("op") == "hashed" and message["location"]["path"] == str(
                        arrived
                    ):
                        row.assetd.append(time.perf_counter() - started)
                        break
                if b3sum:
                    row.reference["b3sum"].append(run(["b3sum", str(arrived)])[0])
                arrived.unlink()
    finally:
        row.rss_mib = daemon.stop_measured()
    row.note = "from the rename into the watched root to the hashed change at a client"
    if fresh:
        row.note += "; the file's mtime is the moment of the rename (a download just done)"
    return row


class BenchDaemon(Daemon):
    """The harness's daemon over one root (named ``r``), or over ``root``'s named roots,
    started at once and measured: on a SQLite catalog of its own, or on ``database`` as
    node ``node`` (a shared catalog). Waits for the startup pass unless told not to."""

    def __init__(
        self,
        tmp: Path,
        root: Path | dict[str, Path],
        name: str,
        *,
        database: str | None = None,
        node: str | None = None,
        wait: bool = True,
    ) -> None:
        # A node name is set in the file only; the harness writes one when it is given.
        roots = root if isinstance(root, dict) else {"r" if node is None else f"{node}.r": root}
        database = database or f"sqlite:///{tmp / f'{name}.db'}"
        super().__init__(tmp, roots, database=database, node=node, name=name)
        self.started = time.perf_counter()
        self.start(wait=False)
        assert self.proc is not None
        self.profiler: subprocess.Popen[bytes] | None = None
        if profile := os.environ.get("ASSETD_BENCH_PROFILE"):
            out = Path(profile) / f"{name}.txt"
            self.profiler = subprocess.Popen(
                ["py-spy", "record", "--format", "raw", "--output", str(out), "--threads",
                 *(["--gil"] if os.environ.get("ASSETD_BENCH_GIL") else []),
                 "--pid", str(self.proc.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        self.wait_started(timeout=600)
        self.ready_s = time.perf_counter() - self.started  # start to the startup scan's end

    def stop_measured(self) -> float:
        """Stop the daemon; its peak RSS in MiB (its CPU seconds go to ``cpu_s``)."""
        assert self.proc is not None
        if self.profiler is not None:  # py-spy writes its profile on SIGINT
            self.profiler.send_signal(signal.SIGINT)
            self.profiler.wait(60)
        peak = vm_hwm_mib(self.proc.pid)  # not ru_maxrss: see run()
        self.proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(self.proc.pid, 0)  # Popen.wait would drop the usage
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.log.close()
        self.cpu_s = usage.ru_utime + usage.ru_stime
        return peak


def moves(tmp: Path, runs: int, quick: bool) -> Row:
    """A large file already hashed, moved by its user: into folders made just before, and
    from one root to another, in turn. From the rename to the client's change that puts
    it, with its hash, at its new path (a `moved`, or else the `hashed` of it found
    anew), beside Watchman's notice of the same rename; and how much of the file the
    daemon read meanwhile (its cached pages are evicted before each move: whatever
    is back in the page cache once a file closed after the move has its hash, was read)."""
    size = (64 if quick else 1024) << 20
    hops = 4 * runs
    row = Row(f"move {size >> 20} MiB file", "p50 <= 20 ms to its `moved`, 0 bytes read")
    tree = tmp / "moves"  # Watchman watches both roots as one tree
    roots = {"models": tree / "models", "loras": tree / "loras"}
    for folder in roots.values():
        folder.mkdir(parents=True)
    here, root = roots["models"] / "big.safetensors", "models"
    _write_big(here, size)
    daemon = BenchDaemon(tmp, roots, "moves")  # its startup pass hashes the file
    watchman = WatchmanSubscriptions(tmp, tree, "moves") if shutil.which("watchman") else None
    renamed_at: dict[str, float] = {}
    kinds: dict[str, list[float]] = {"into a new folder": [], "across roots": []}
    one_moved = hashed_changes = read_bytes = 0
    visible = evict(here)  # else (tmpfs) what is read cannot be seen
    with ChangeFeed(daemon.address) as feed:
        for hop in range(hops):
            if hop % 2 == 0:
                kind, dest = "into a new folder", here.parent / f"new{hop}" / "sdxl" / here.name
                os.makedirs(dest.parent)  # just before the rename, as `mkdir -p && mv`
            else:
                root = "loras" if root == "models" else "models"
                kind, dest = "across roots", roots[root] / f"big{hop}.safetensors"
            evict(here)  # pages still being read (a re-hash under way) stay: not counted
            left = cached_bytes(here)
            seen = len(feed.changes)
            started = time.perf_counter()
            os.rename(here, dest)
            renamed_at[str(dest)] = started
            caught_up = lambda new=dest, old=here: feed.hashed_at(new) and feed.left(old)  # noqa: E731
            feed.until(caught_up, 600, f"{dest} at the client")
            arrived = next(
                t
                for c, t in zip(feed.changes[seen:], feed.arrived[seen:], strict=True)
                if c["location"]["path"] == str(dest) and c["location"]["hash"] is not None
            )
            kinds[kind].append(arrived - started)
            fence = write(roots[root] / f"fence{hop}.bin", os.urandom(64))
            feed.until(lambda marker=fence: feed.hashed_at(marker), 60, "the fence")
            ops = [c["op"] for c in feed.changes[seen:] if fence.name not in c["location"]["path"]]
            one_moved += ops == ["moved"]
            hashed_changes += ops.count("hashed")
            read_bytes += max(0, cached_bytes(dest) - left)
            here = dest
    row.rss_mib = daemon.stop_measured()
    row.assetd = kinds["into a new folder"] + kinds["across roots"]
    row.note = (
        "rename -> the client has it at its new path with its hash (median): "
        + ", ".join(f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in kinds.items())
        + f"; {one_moved} of {hops} moves came as one `moved` (else missing + added + hashed)"
        f"; {hashed_changes} `hashed` changes for it"
    )
    row.note += (
        f"; the daemon read {read_bytes / 2**20:.1f} MiB of it (page cache, mincore)"
        if visible
        else "; its pages could not be evicted here: bytes read unknown"
    )
    if watchman is not None:
        for name, seen_at in watchman.finish(2 * hops + 1).items():
            lat = [seen_at[p] - t for p, t in renamed_at.items() if p in seen_at]
            w50, _ = percentiles(lat)
            row.reference[f"watchman {name}"] = [w50]
        row.note += "; Watchman: the same renames, new names only, no content"
    return row


PIECE = 16 << 10  # a download's write size


def download(tmp: Path, runs: int, quick: bool) -> Row:
    """A download into a running daemon's root: a writer process writes a large file in
    16 KiB pieces at 100 MiB/s (2 GiB in about 20 s). How many changes the path gets in
    the log, and the daemon's CPU time during the write (its worker processes included),
    beside the same write with no daemon running. The row's assetd figure is that CPU
    time, so its ratio to the write alone is the daemon's share of the write's time."""
    size = (64 if quick else 2048) << 20
    rate = 100 << 20
    row = Row(
        f"download {size >> 20} MiB in 16 KiB pieces",
        "changes <= seconds of writing + 3; daemon CPU <= 0.05x",
    )
    root = tmp / "download"
    alone = tmp / "download-alone"  # no daemon watches it, and none runs meanwhile
    root.mkdir()
    alone.mkdir()
    row.reference["the write, no daemon"] = []
    counts: list[str] = []
    for i in range(runs):
        daemon = BenchDaemon(tmp, root, f"download{i}")
        assert daemon.proc is not None
        target = root / f"model{i}.safetensors"
        start_seq = latest_seq(daemon.db_path)
        cpu_before = _tree_cpu_s(daemon.proc.pid)
        writing_s = _paced_write(target, size, rate)
        row.assetd.append(_tree_cpu_s(daemon.proc.pid) - cpu_before)
        daemon.until(target, "hashed", lambda item: item["hash"] is not None, timeout=600)
        to_hashed = _tree_cpu_s(daemon.proc.pid) - cpu_before  # the write, catching up, the hash
        changes = [
            c["op"]
            for c in daemon.catalog.changes_since(start_seq, limit=10**7)
            if c["location"]["path"] == str(target)
        ]
        counts.append(
            f"{len(changes)} changes in {writing_s:.1f} s "
            f"({changes.count('modified')} modified, {changes.count('hashed')} hashed), "
            f"CPU {row.assetd[-1] / writing_s:.1%} of it, {to_hashed:.2f} CPU s until hashed"
        )
        row.rss_mib = max(row.rss_mib, daemon.stop_measured())
        daemon.catalog.close()
        target.unlink()
        row.reference["the write, no daemon"].append(_paced_write(alone / target.name, size, rate))
        (alone / target.name).unlink()
    row.note = "assetd = the daemon's CPU seconds during the write; " + "; ".join(counts)
    return row


def _paced_write(path: Path, size: int, rate: int) -> float:
    """Write ``size`` bytes to ``path`` in :data:`PIECE` writes at ``rate`` bytes a second,
    in a process of its own; its wall time from open to close."""
    code = f"""
import os, sys, time
piece = os.urandom({PIECE})
started = time.perf_counter()
fd = os.open({str(path)!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
for i in range({size // PIECE}):
    os.write(fd, piece)
    ahead = (i + 1) * {PIECE} / {rate} - (time.perf_counter() - started)
    if ahead > 0.001:
        time.sleep(ahead)  # the download's pace
os.close(fd)
print(time.perf_counter() - started)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def _tree_cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process and of its live descendants so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, IndexError):
            continue  # gone meanwhile
    return total


def scale(tmp: Path, runs: int, quick: bool) -> list[Row]:
    """A daemon over a large catalog: its memory, its restart, and a tag-filtered list."""
    rows = []
    for count in (2000, 10_000) if quick else (100_000, 1_000_000):
        row = Row(f"scale {count}", "RSS <= 100 MB at 100k, <= 250 MB at 1M; "
                  "restart <= 4x find; list 100 by tag, sorted, searched <= 20 ms")  # fmt: skip
        data = tmp / f"scale{count}"
        make_small_files(data, count, max(1, count // 1000), 0, 0, distinct=True)
        db = tmp / f"scale{count}.db"
        run(scan_cmd(db, data, "r"), env=checkout_env())
        tag_every(db, data, count // 1000, "pick")
        row.reference["find"] = []
        lists: list[float] = []
        browse: dict[str, list[float]] = {}
        for _ in range(runs):
            daemon = BenchDaemon(tmp, data, f"scale{count}")
            row.assetd.append(daemon.ready_s)
            lists += _time_lists(daemon.address, {"tag": "pick", "limit": 100}, 20)
            lists += _time_lists(daemon.address, {"tag": "d0000", "limit": 100}, 20)
            for name, times in _time_browsing(daemon.address, min(50, count // 200)).items():
                browse.setdefault(name, []).extend(times)
            row.rss_mib = max(row.rss_mib, daemon.stop_measured())
            seconds, _ = run([f"find {data} -type f -printf '%s %T@\\n' > /dev/null"], shell=True)
            row.reference["find"].append(seconds)
        lists.sort()
        row.note = (
            f"restart = daemon start to startup scan done; list of 100 by tag: "
            f"p50 {lists[len(lists) // 2] * 1000:.1f} ms, max {lists[-1] * 1000:.1f} ms; "
            + "; ".join(
                f"{name}: p50 {statistics.median(t) * 1000:.1f} ms, max {max(t) * 1000:.1f}"
                for name, t in browse.items()
            )
        )
        rows.append(row)
        shutil.rmtree(data)
    return rows


def _time_lists(address: str, args: dict[str, object], times: int) -> list[float]:
    """Round trips of a feed ``list`` request, each asserted to return a full page."""
    from websockets.sync.client import connect

    out = []
    with connect(f"ws://{address}/ws") as ws:
        json.loads(ws.recv())
        for _ in range(times):
            started = time.perf_counter()
            reply = request_sync(ws, "list", **args)
            out.append(time.perf_counter() - started)
            if len(reply["result"]["items"]) != args["limit"]:
                raise RuntimeError(f"list {args} returned {len(reply['result']['items'])} items")
    return out


# The page's lists over HTTP, as the browser asks for them: every order, a page deep
# in the list, a search most names match, and one that only one name matches (it reads
# every name: reported, not held to the page goal).
BROWSING = {
    "sorted": [f"sort={s}&order={o}" for s in ("name", "mtime", "size") for o in ("asc", "desc")],
    "deep": ["sort=mtime&order=desc", "sort=name"],
    "q common": ["q=.bin&sort=mtime&order=desc", "q=F0&sort=name"],
    "q one name": ["q=f0000042.bin"],
}


def _time_browsing(address: str, depth: int, times: int = 5) -> dict[str, list[float]]:
    """Round trips of /api/assets pages of 100 (each asserted to be a page); "deep"
    is the page after ``depth`` pages."""
    import urllib.request

    def page(query: str) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://{address}/api/assets?limit=100&{query}") as r:
            body = json.loads(r.read())
        return time.perf_counter() - started, body

    out: dict[str, list[float]] = {}
    for name, queries in BROWSING.items():
        for query in queries:
            for _ in range(times):
                if name == "deep":
                    cursor = None
                    for _ in range(depth):
                        _, body = page(query + (f"&after={cursor}" if cursor else ""))
                        cursor = body["next"]
                    query_deep = f"{query}&after={cursor}"
                    seconds, body = page(query_deep)
                else:
                    seconds, body = page(query)
                expected = 1 if name == "q one name" else 100
                if len(body["items"]) != expected:
                    raise RuntimeError(f"{query}: {len(body['items'])} items")
                out.setdefault(name, []).append(seconds)
    return out


def live_latency(tmp: Path, runs: int, quick: bool) -> Row:
    count = 100 if quick else 1000
    row = Row(f"live {count}@100/s", "p50 <= 5 ms, p99 <= 25 ms")
    root = tmp / "live"
    root.mkdir()
    daemon = BenchDaemon(tmp, root, "live")
    watchman = WatchmanSubscriptions(tmp, root) if shutil.which("watchman") else None
    latencies, closed_at = _close_to_hashed(root, daemon.address, count)
    row.rss_mib = daemon.stop_measured()
    p50, p99 = percentiles(latencies)
    row.assetd = [p50]
    row.note = f"close→hashed change: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"
    steady = machine_steadiness(count)
    row.note += (
        f"; the machine (bench/jitter.py, {count} units of pure Python at the same pace): "
        f"p50 {steady['p50'] * 1000:.2f} ms, p99 {steady['p99'] * 1000:.2f} ms, "
        f"max {steady['max'] * 1000:.2f} ms, {steady['slow']} units over 3x the median"
    )
    if watchman is not None:
        for name, seen in watchman.finish(count).items():
            lat = [seen[p] - closed_at[p] for p in closed_at if p in seen]
            w50, w99 = percentiles(lat)
            row.reference[f"watchman {name}"] = [w50]
            row.note += (
                f"; Watchman {name} (names only): p50 {w50 * 1000:.2f} ms, "
                f"p99 {w99 * 1000:.2f} ms, {len(lat)} of {count} files"
            )
    return row


def machine_steadiness(count: int) -> dict[str, float]:
    """bench/jitter.py's fixed units of work, in a process of their own."""
    probe = [sys.executable, "-m", "bench.jitter", str(count)]
    done = subprocess.run(probe, env=checkout_env(), capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``values``; NaN when there are none."""
    if not values:
        return float("nan"), float("nan")
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[max(0, int(len(ordered) * 0.99) - 1)]


class WatchmanSubscriptions:
    """Watchman subscriptions on ``root``: one server with the default settle (20 ms), one
    with ``settle: 1`` (its global configuration, through WATCHMAN_CONFIG_FILE). Each is
    read by a process of its own (see :func:`watchman_reader`), so that parsing Watchman's
    output never holds the GIL of the process timing assetd: when each file name was first
    reported, on the system's monotonic clock (the benchmark's ``perf_counter``)."""

    VARIANTS = (("default settle", None), ("settle 1", {"settle": 1}))

    def __init__(self, tmp: Path, root: Path, workload: str = "live") -> None:
        self.root = str(root)
        self.servers: list[tuple[list[str], dict[str, str]]] = []
        self.readers: dict[str, subprocess.Popen[bytes]] = {}
        for index, (name, config) in enumerate(self.VARIANTS):
            state = tmp / f"watchman-{workload}-{index}"
            state.mkdir(exist_ok=True)
            environ = dict(os.environ)
            if config is not None:
                (state / "config.json").write_text(json.dumps(config))
                environ["WATCHMAN_CONFIG_FILE"] = str(state / "config.json")
            base = watchman_cmd(state)
            self.servers.append((base, environ))
            subprocess.run(
                [*base, "watch", self.root], capture_output=True, check=True, env=environ
            )
            reader = subprocess.Popen(
                [sys.executable, "-m", "bench", "--watchman-reader", json.dumps([base, self.root])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**environ, "PYTHONPATH": str(REPO)},
                cwd=REPO,
            )
            assert reader.stdout is not None
            reader.stdout.readline()  # subscribed
            self.readers[name] = reader

    def finish(self, count: int) -> dict[str, dict[str, float]]:
        seen: dict[str, dict[str, float]] = {}
        for name, reader in self.readers.items():
            out, _ = reader.communicate(json.dumps(count).encode(), timeout=60)
            seen[name] = json.loads(out)
        for base, environ in self.servers:
            subprocess.run([*base, "shutdown-server"], capture_output=True, env=environ)
        return seen


def watchman_reader(base: list[str], root: str) -> None:
    """A Watchman subscription's reader, in a process of its own.

    Prints one line once subscribed; reads, from stdin, how many files to wait for (up
    to 10 s); then prints {path: first seen} as JSON.
    """
    proc = subprocess.Popen(
        [*base, "--persistent", "--json-command", "--no-pretty"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    query = {"expression": ["type", "f"], "fields": ["name"]}
    proc.stdin.write(json.dumps(["subscribe", root, "bench", query]).encode() + b"\n")
    proc.stdin.flush()  # left open: the client ends when its input does
    json.loads(proc.stdout.readline())  # subscribed
    seen: dict[str, float] = {}

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter()
            message = json.loads(line)
            if not message.get("is_fresh_instance"):
                for name in message.get("files", []):
                    seen.setdefault(os.path.join(root, name), now)

    threading.Thread(target=read, daemon=True).start()
    print("subscribed", flush=True)
    count = json.loads(sys.stdin.read())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(seen) < count:
        time.sleep(0.05)  # polling what the reader thread has seen
    proc.kill()
    proc.wait()
    print(json.dumps(dict(seen)), flush=True)


def burst(tmp: Path, runs: int, quick: bool) -> Row:
    count = 2000 if quick else 50_000
    row = Row(f"burst {count}", "converged <= 2x cold index, nothing lost")
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp
    work = Path(tempfile.mkdtemp(prefix="assetd-burst-", dir=base))
    try:
        root = work / "r"
        root.mkdir()
        daemon = BenchDaemon(tmp, root, "burst")
        started = time.perf_counter()
        make_small_files(root, count, max(1, count // 100), 512, 4096)
        # Converged: every file has its location, and none waits for a hash. Read from
        # the catalog file (cheap, indexed) rather than through the feed, which would
        # load the daemon being measured.
        while not _burst_done(daemon.db_path, count):
            time.sleep(0.01)
        row.assetd = [time.perf_counter() - started]
        hashed = hashed_locations(daemon.db_path)
        watch = daemon.status()["watch"]
        overflows = watch["overflows"] if isinstance(watch, dict) else "?"
        row.rss_mib = daemon.stop_measured()
        shutil.rmtree(root)
        root.mkdir()
        make_small_files(root, count, max(1, count // 100), 512, 4096)
        seconds, _ = run(scan_cmd(tmp / "burst-cold.db", root), env=checkout_env())
        row.reference["cold index"] = [seconds]
        row.note = f"{hashed} of {count} cataloged and hashed; {overflows} overflows rescanned"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return row


def _burst_done(db: Path, count: int) -> bool:
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (top,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM cache_state").fetchone()
        if top < count:
            return False
        (pending,) = conn.execute(
            "SELECT COUNT(*) FROM cache_state INDEXED BY cache_state_pending WHERE needs_verify"
        ).fetchone()
        return pending == 0 and hashed_locations(db) == count


def fan_out(tmp: Path, runs: int, quick: bool) -> Row:
    # Files a second: each one change (`added`, its hash in it), 1,000 changes a second.
    clients, rate, seconds = (20, 100, 2) if quick else (500, 1000, 10)
    row = Row(f"fan-out {clients}", "p99 delivery <= 100 ms, nothing lost")
    root = tmp / "fan"
    root.mkdir()
    daemon = BenchDaemon(tmp, root, "fan")
    host, port = daemon.address.rsplit(":", 1)
    start_seq = latest_seq(daemon.db_path)
    workers = 4
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_fan_clients,
            args=(host, int(port), share, start_seq, ready, results),
        )
        for share in split(clients, workers)
    ]
    for proc in procs:
        proc.start()
    ready.wait(60)
    begun = time.perf_counter()
    for i in range(rate * seconds):
        with open(root / f"f{i:06}.png", "wb") as fh:
            fh.write(os.urandom(1024))
        # Paced by the clock, not by sleeps, which would add their own overshoot.
        time.sleep(max(0.0, begun + (i + 1) / rate - time.perf_counter()))
    end_seq = 0
    deadline = time.time() + 60
    while time.time() < deadline:
        end_seq = latest_seq(daemon.db_path)
        if end_seq >= start_seq + rate * seconds and _all_settled(daemon.db_path):
            break
        time.sleep(0.2)
    received: list[dict[int, float]] = []
    client_cpu = 0.0
    for _ in range(workers):
        seen, cpu = results.get(timeout=180)
        received += seen
        client_cpu += cpu
    for proc in procs:
        proc.join(30)
    row.rss_mib = daemon.stop_measured()
    committed = commit_times(daemon.db_path, start_seq)
    latencies = [t - committed[seq] for seen in received for seq, t in seen.items()]
    wanted = set(range(start_seq + 1, end_seq + 1))
    complete = sum(1 for seen in received if wanted <= set(seen))
    p50, p99 = percentiles(latencies)
    row.assetd = [p99]
    row.note = (
        f"{len(wanted)} changes in {seconds} s to {clients} clients: commit to client "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; "
        f"{complete} of {clients} clients got every change; the clients used "
        f"{client_cpu:.1f} s of CPU, the daemon {daemon.cpu_s:.1f} s"
    )
    return row


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares that differ by at most one."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def _all_settled(db: Path) -> bool:
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return (
            conn.execute("SELECT COUNT(*) FROM cache_state WHERE needs_verify").fetchone()[0] == 0
        )


def _fan_clients(
    host: str, port: int, count: int, since: int, ready: object, results: object
) -> None:
    """Raw WebSocket clients on one selector: they find each change's seq in the bytes."""
    import re
    import selectors

    pattern = re.compile(rb'"type": ?"change", ?"seq": ?(\d+)')
    sel = selectors.DefaultSelector()
    seen: list[dict[int, float]] = []
    tails: list[bytes] = []
    for index in range(count):
        sock = socket.create_connection((host, port))
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        payload = json.dumps({"id": 1, "cmd": "subscribe", "since": since}).encode()
        mask = b"\x00\x00\x00\x00"  # a zero mask leaves the payload as it is
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + payload)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, index)
        seen.append({})
        tails.append(head.split(b"\r\n\r\n", 1)[1])
    ready.wait(60)  # type: ignore[attr-defined]
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 5:
        ready = sel.select(0.5)
        # Let a few milliseconds of frames gather: one recv then takes many, and the
        # clients leave the CPU to the daemon. A frame is timed when read, so this only
        # ever adds to the measured latency.
        time.sleep(0.004)
        for key, _ in ready:
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            try:
                chunk = conn.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(conn)
                continue
            now = time.time()  # wall clock, as the change log's commit times
            quiet_since = time.monotonic()
            index = key.data
            data = tails[index] + chunk
            for match in pattern.finditer(data):
                seq = int(match.group(1))
                seen[index].setdefault(seq, now)
            tails[index] = data[-64:]
    cpu = os.times()
    results.put((seen, cpu.user + cpu.system))  # type: ignore[attr-defined]


def scale_out(tmp: Path, runs: int, quick: bool) -> list[Row]:
    """Two nodes on one PostgreSQL catalog beside one node on SQLite: the startup pass
    over the same files, and a change's way from one node's disk to the other's feed."""
    count = 2000 if quick else 20_000  # files per node
    files = 100 if quick else 500
    cold = Row(f"scale-out 2x{count}", "two nodes on PostgreSQL vs one on SQLite (no goal)")
    live = Row(f"scale-out relay {files}@100/s", "a's disk -> b's feed (no goal)")
    from tests.postgres import PostgresServer, why_no_postgres

    reason = why_no_postgres()
    if reason is not None:
        cold.note = live.note = f"not run: {reason}"
        return [cold, live]
    server = PostgresServer()
    try:
        data = tmp / "scaleout"
        for name in ("a", "b"):  # one root per node; the single node has both as one root
            make_small_files(data / name, count, max(1, count // 100), 512, 4096, seed=ord(name))
        warm_page_cache(data)
        cold.reference = {"1 node SQLite": [], "1 node PostgreSQL": []}
        for i in range(runs):
            url = server.create_database()
            started = time.perf_counter()
            pair = [
                BenchDaemon(tmp, data / name, f"so{i}{name}", database=url, node=name, wait=False)
                for name in ("a", "b")
            ]
            for daemon in pair:
                daemon.wait_ready()
            cold.assetd.append(time.perf_counter() - started)
            cold.rss_mib = max([cold.rss_mib] + [d.stop_measured() for d in pair])
            single = BenchDaemon(tmp, data, f"so{i}sqlite")
            cold.reference["1 node SQLite"].append(single.ready_s)
            single.stop_measured()
            one = BenchDaemon(tmp, data, f"so{i}pg", database=server.create_database(), node="one")
            cold.reference["1 node PostgreSQL"].append(one.ready_s)
            one.stop_measured()
        cold.note = f"start to every startup pass done (registered and hashed), {2 * count} files"

        url = server.create_database()
        roots = {name: tmp / f"relay-{name}" for name in ("a", "b")}
        for folder in roots.values():
            folder.mkdir()
        pair = [
            BenchDaemon(tmp, roots[name], f"relay{name}", database=url, node=name)
            for name in ("a", "b")
        ]
        relayed, _ = _close_to_hashed(roots["a"], pair[1].address, files)
        for daemon in pair:
            live.rss_mib = max(live.rss_mib, daemon.stop_measured())
        (tmp / "relay-one").mkdir()
        single = BenchDaemon(tmp, tmp / "relay-one", "relay-one")
        local, _ = _close_to_hashed(tmp / "relay-one", single.address, files)
        single.stop_measured()
        p50, p99 = percentiles(relayed)
        l50, l99 = percentiles(local)
        live.assetd = [p50]
        live.reference["1 node SQLite"] = [l50]
        live.note = (
            f"file closed on node a -> its hashed change at a client of node b: p50 "
            f"{p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms; one node on SQLite, its own "
            f"client: p50 {l50 * 1000:.2f} ms, p99 {l99 * 1000:.2f} ms"
        )
    finally:
        server.close()
    return [cold, live]


def _close_to_hashed(root: Path, address: str, count: int) -> tuple[list[float], dict[str, float]]:
    """Write ``count`` files into ``root`` at 100 a second; for each, the time from its
    close to the first change carrying its hash at a feed client of ``address`` (and
    when it closed)."""
    from websockets.sync.client import connect

    latencies: list[float] = []
    closed_at: dict[str, float] = {}
    with connect(f"ws://{address}/ws") as ws:
        json.loads(ws.recv())
        request_sync(ws, "subscribe")

        def writer() -> None:
            for i in range(count):
                path = root / f"f{i:05}.png"
                with open(path, "wb") as fh:
                    fh.write(os.urandom(2048))
                closed_at[str(path)] = time.perf_counter()
                time.sleep(0.01)  # the workload's pace: 100 files a second

        thread = threading.Thread(target=writer)
        thread.start()
        while len(latencies) < count:
            message = json.loads(ws.recv(30))
            # A small file complete when seen comes with its hash in its ``added``.
            if message.get("type") == "change" and message["location"]["hash"]:
                latencies.append(time.perf_counter() - closed_at[message["location"]["path"]])
        thread.join()
    return latencies, closed_at


WORKLOADS: dict[str, Callable[[Path, int, bool], Row | list[Row]]] = {
    "cold": cold_index,
    "models": model_folder,
    "warm": warm_restart,
    "bigfile": big_file,
    "moves": moves,
    "download": download,
    "live": live_latency,
    "burst": burst,
    "fanout": fan_out,
    "scale": scale,
    "scaleout": scale_out,
    "check": workflow_check,
    "comfylist": asset_list,
    "page": page,
}


def machine() -> str:
    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu} cores, {mem:.0f} GiB, Python {sys.version.split()[0]}, {socket.gethostname()}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (CI)")
    parser.add_argument("--runs", type=int, default=None, help="alternating runs (default 3)")
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), help="some workloads")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--watchman-reader", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.watchman_reader:
        watchman_reader(*json.loads(args.watchman_reader))
        return 0
    runs = args.runs or (1 if args.quick else 3)
    # The daemon and the command line run from this checkout (PYTHONPATH); compile them as
    # `pip install` would, or every start pays for compiling every module again
    # (PYTHONDONTWRITEBYTECODE is set on some machines, this one included).
    compileall.compile_dir(REPO / "assetd", quiet=1)
    print(f"# assetd benchmarks on {machine()} ({'quick' if args.quick else 'full'})", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="assetd-bench-"))
    try:
        for name in args.only or WORKLOADS:
            result = WORKLOADS[name](tmp, runs, args.quick)
            for row in result if isinstance(result, list) else [result]:
                row.print()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
