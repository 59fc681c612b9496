"""The live daemon, as a real process over real folders: events in, catalog follows."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OLD_NS, hashed, run_cli, wait_for, write


def test_create_modify_delete_recreate(tmp_path: Path, make_daemon: Any) -> None:
    """Create: added with its hash; change: its new hash; delete: missing; back: restored
    with its tags."""
    d = make_daemon().start()
    f = tmp_path / "r" / "pic.png"
    write(f, "version one")
    first = d.until(f, "hashed", hashed)
    start = d.catalog.latest_seq()
    d.catalog.change_tags(os.fsencode(f), add=["fav"])
    write(f, "version two, longer")
    second = d.until(f, "re-hashed", lambda i: i["hash"] not in (None, first["hash"]))
    assert second["size"] == len("version two, longer")
    f.unlink()
    d.until(f, "missing", lambda i: i["is_missing"])
    write(f, "version one")
    back = d.until(f, "restored", lambda i: hashed(i) and i["hash"] == first["hash"])
    assert back["asset_id"] == first["asset_id"] and "fav" in back["tags"]
    ops = d.ops(start)
    # The rewrite comes within a second of the file's first change: it may be reported
    # only by the "hashed" of its new content (at most one change a second while written).
    assert ops[0] == "tagged" and "missing" in ops and "restored" in ops
    assert set(ops) <= {"tagged", "modified", "hashed", "missing", "restored"}
    created = d.catalog.changes_since(0)[:start]  # complete when seen: one "added"
    assert created[0]["op"] == "added" and created[-1]["location"]["hash"] == first["hash"]
    assert {c["op"] for c in created} <= {"added", "modified", "hashed"}
    assert d.stop() == 0


def test_rename_keeps_asset_and_tags(tmp_path: Path, make_daemon: Any) -> None:
    """A rename inside the roots moves the location in place: same asset, same tags."""
    (tmp_path / "r" / "a").mkdir(parents=True)
    (tmp_path / "r" / "b").mkdir(parents=True)
    f = write(tmp_path / "r" / "a" / "one.bin", "content", OLD_NS)
    d = make_daemon().start()
    before = d.until(f, "hashed", hashed)
    d.catalog.change_tags(os.fsencode(f), add=["keep"])
    start = d.catalog.latest_seq()
    dest = tmp_path / "r" / "b" / "two.bin"
    os.rename(f, dest)
    after = d.until(dest, "moved", hashed)
    assert after["asset_id"] == before["asset_id"]
    assert after["tags"] == ["b", "keep", "r"]
    assert d.item(f) is None  # the same row, renamed: nothing left behind
    assert d.ops(start) == ["moved"]


def test_move_into_a_brand_new_folder_keeps_asset_and_tags(
    tmp_path: Path, make_daemon: Any
) -> None:
    """A file moved into a folder created a moment before (unwatched yet) keeps its asset."""
    f = write(tmp_path / "r" / "one.bin", "content", OLD_NS)
    d = make_daemon().start()
    before = d.until(f, "hashed", hashed)
    d.catalog.change_tags(os.fsencode(f), add=["keep"])
    dest = tmp_path / "r" / "new" / "two.bin"
    dest.parent.mkdir()
    os.rename(f, dest)
    after = d.until(dest, "found by hash", lambda i: hashed(i) and "keep" in i["tags"])
    assert after["asset_id"] == before["asset_id"]
    old = f"{f} gone from the live catalog"
    wait_for(lambda: d.item(f) is None or d.item(f)["is_missing"], 20, old)


def test_folder_rename_moves_every_location_in_one_transaction(
    tmp_path: Path, make_daemon: Any
) -> None:
    """A folder of 10,000 files renamed: 10,000 `moved` in one transaction, nothing else."""
    folder = tmp_path / "r" / "batch"
    folder.mkdir(parents=True)
    for i in range(10_000):
        (folder / f"f{i:05}").write_bytes(b"")
    d = make_daemon().start()
    assert len(d.items()) == 10_000
    start = d.catalog.latest_seq()
    os.rename(folder, tmp_path / "r" / "renamed")
    wait_for(
        lambda: sum(p.startswith(str(tmp_path / "r" / "renamed")) for p in d.items()) == 10_000,
        60,
        "all locations under the new name",
    )
    changes = d.catalog.changes_since(start, limit=100_000)
    assert {c["op"] for c in changes} == {"moved"} and len(changes) == 10_000
    assert len({d.catalog.models.Change.get_by_id(c["seq"]).ts for c in changes}) == 1
    assert not any(i["is_missing"] for i in d.items().values())


def test_moved_out_of_and_into_the_roots(tmp_path: Path, make_daemon: Any) -> None:
    """Moved out of every root → missing; moved in from outside → added."""
    outside = tmp_path / "outside"
    outside.mkdir()
    f = write(tmp_path / "r" / "leaving.bin", "bye", OLD_NS)
    incoming = write(outside / "arriving.bin", "hello", OLD_NS)
    d = make_daemon().start()
    d.until(f, "hashed", hashed)
    os.rename(f, outside / "leaving.bin")
    d.until(f, "missing", lambda i: i["is_missing"])
    os.rename(incoming, tmp_path / "r" / "arriving.bin")
    d.until(tmp_path / "r" / "arriving.bin", "added", hashed)


def test_second_daemon_is_refused(tmp_path: Path, make_daemon: Any) -> None:
    """A second `assetd run` on the same catalog exits 1 with one line; the first runs on."""
    first = make_daemon().start()
    proc = run_cli("run", *first.args())
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "already serves" in proc.stderr
    assert str(first.proc.pid) in proc.stderr
    f = write(tmp_path / "r" / "still-watched", "x")
    first.until(f, "hashed", hashed)


def test_sigterm_exits_zero_promptly_with_a_complete_log(tmp_path: Path, make_daemon: Any) -> None:
    """SIGTERM during activity ends the daemon with 0 within seconds; the log has no gap."""
    d = make_daemon().start()
    for i in range(200):
        write(tmp_path / "r" / f"f{i}", f"{i}")
    started = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - started < 10
    seqs = [c["seq"] for c in d.catalog.changes_since(0, limit=10**6)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert not (tmp_path / "state" / "assetd.db.daemon").read_text()


def test_sighup_reloads_roots_and_keeps_a_bad_config(tmp_path: Path, make_daemon: Any) -> None:
    """SIGHUP: an added root is scanned, a removed one marked missing; a broken file is ignored."""
    conf = tmp_path / "assetd.toml"
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        root.mkdir()
    write(a / "in-a", "a", OLD_NS)
    write(b / "in-b", "b", OLD_NS)
    db = f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"
    feed = '[feed]\nlisten = "127.0.0.1:0"\n'
    conf.write_text(f'[daemon]\ndatabase = "{db}"\n{feed}[[roots]]\nname = "a"\npath = "{a}"\n')
    d = make_daemon({}, config=conf).start()
    d.until(a / "in-a", "hashed", hashed)
    conf.write_text(f'[daemon]\ndatabase = "{db}"\n{feed}[[roots]]\nname = "b"\npath = "{b}"\n')
    d.proc.send_signal(signal.SIGHUP)
    d.until(b / "in-b", "scanned", hashed)
    d.until(a / "in-a", "missing", lambda i: i["is_missing"])
    write(b / "live-in-b", "new", None)
    d.until(b / "live-in-b", "watched", hashed)
    conf.write_text("[daemon\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("keeping the old one")
    write(b / "still-watched", "x")
    d.until(b / "still-watched", "watched", hashed)


def test_root_vanishing_and_returning(tmp_path: Path, make_daemon: Any) -> None:
    """A root folder renamed away: all its locations missing at once; back: restored with tags."""
    root = tmp_path / "r"
    files = [write(root / f"d{i % 3}" / f"f{i}", f"c{i}", OLD_NS) for i in range(30)]
    d = make_daemon().start()
    d.catalog.change_tags(os.fsencode(files[0]), add=["fav"])
    start = d.catalog.latest_seq()
    os.rename(root, tmp_path / "away")
    wait_for(lambda: all(i["is_missing"] for i in d.items().values()), 20, "all missing")
    changes = d.catalog.changes_since(start)
    assert [c["op"] for c in changes] == ["missing"] * 30
    assert len({d.catalog.models.Change.get_by_id(c["seq"]).ts for c in changes}) == 1
    os.rename(tmp_path / "away", root)
    wait_for(lambda: not any(i["is_missing"] for i in d.items().values()), 20, "all restored")
    assert "fav" in d.item(files[0])["tags"]
    write(root / "after-return", "x")
    d.until(root / "after-return", "watched again", hashed)


def test_systemd_notifications(tmp_path: Path, make_daemon: Any) -> None:
    """Under systemd the daemon sends READY=1, STATUS lines, WATCHDOG pings and STOPPING=1."""
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(30)
        d = make_daemon().start(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
        received: list[str] = []

        def got(text: str) -> bool:
            while not any(text in m for m in received):
                received.append(sock.recv(4096).decode())
            return True

        got("READY=1")
        got("WATCHDOG=1")
        d.proc.send_signal(signal.SIGTERM)
        got("STOPPING=1")
        assert d.stop() == 0
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in received)


def test_detach_with_pidfile(tmp_path: Path) -> None:
    """--detach returns at once; the daemon runs in the background with a locked pid file."""
    root = tmp_path / "r"
    root.mkdir()
    pidfile, logfile = tmp_path / "assetd.pid", tmp_path / "assetd.log"
    db = f"sqlite:///{tmp_path / 'state' / 'assetd.db'}"
    args = ["run", "--detach", "--pidfile", str(pidfile), "--log-file", str(logfile)]
    args += ["--listen", "127.0.0.1:0"]
    proc = run_cli(*args, "--db", db, "--root", f"r={root}")
    assert proc.returncode == 0, proc.stderr
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid file"))
    try:
        wait_for(
            lambda: logfile.exists() and "assets.seed.completed" in logfile.read_text(), 30, "scan"
        )
        again = run_cli(*args, "--db", db, "--root", f"r={root}")
        assert again.returncode == 1
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), 15, "pid file removed on exit")
    assert "stopping" in logfile.read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="lowering fs.inotify.max_user_watches needs root")
def test_watch_limit_falls_back_to_polling(tmp_path: Path, make_daemon: Any) -> None:
    """Past the inotify watch limit: one actionable line, the root polled, nothing missed."""
    for i in range(200):
        (tmp_path / "r" / f"d{i:03}").mkdir(parents=True)
    knob = Path("/proc/sys/fs/inotify/max_user_watches")
    old = knob.read_text()
    try:
        knob.write_text("50")
        d = make_daemon().start()
    finally:
        knob.write_text(old)
    assert "inotify watch limit reached: root 'r' needs 201 watches" in d.log_text()
    assert "max_user_watches" in d.log_text() and "polling this root instead" in d.log_text()
    late = write(tmp_path / "r" / "d199" / "late.bin", "written after startup")
    d.until(late, "found by polling", hashed)
    assert "root r: online" not in d.log_text()
    d.proc.send_signal(signal.SIGHUP)  # the limit is back up: SIGHUP re-arms with inotify
    d.wait_log("root r: online")
    again = write(tmp_path / "r" / "d000" / "again.bin", "watched by inotify again")
    d.until(again, "found", hashed)


def test_sighup_during_a_pass_queues_exactly_one_more(tmp_path: Path, make_daemon: Any) -> None:
    """Three SIGHUPs while the startup pass runs lead to one more pass, not three."""
    for i in range(6000):
        (tmp_path / "r" / f"f{i:05}").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "r" / f"f{i:05}").write_bytes(b"%d" % i)
    d = make_daemon().start(wait=False)
    d.wait_log("assetd: page at http://")
    for n in (1, 2, 3):  # one at a time: the kernel merges a signal that is already pending
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("SIGHUP: configuration reloaded", count=n)
    d.wait_log("assets.seed.completed", count=2, timeout=120)
    assert d.stop() == 0
    log = d.log_text()
    third_hup = log.rindex("SIGHUP: configuration reloaded")
    assert third_hup < log.index("assets.seed.completed"), "the SIGHUPs came after the first pass"
    assert log.count("assets.seed.started") == 2


def test_folder_deleted_marks_everything_under_it_missing(tmp_path: Path, make_daemon: Any) -> None:
    """rm -r of a folder: every location under it turns missing, the rest stays live."""
    files = [
        write(tmp_path / "r" / "gone" / f"s{i % 4}" / f"f{i}", f"{i}", OLD_NS) for i in range(40)
    ]
    keep = write(tmp_path / "r" / "kept.bin", "kept", OLD_NS)
    d = make_daemon().start()
    shutil.rmtree(tmp_path / "r" / "gone")
    wait_for(lambda: all(d.item(f)["is_missing"] for f in files), 20, "all 40 missing")
    assert d.item(keep)["is_missing"] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="lowering fs.inotify.max_user_watches needs root")
def test_watch_limit_reached_by_a_new_folder(tmp_path: Path, make_daemon: Any) -> None:
    """A folder created once the limit is reached is noticed: one line, polling, nothing lost."""
    d = make_daemon().start()
    knob = Path("/proc/sys/fs/inotify/max_user_watches")
    old = knob.read_text()
    try:
        knob.write_text("1")  # below what is in use: no watch can be added now
        late = write(tmp_path / "r" / "new-folder" / "late.bin", "after the limit")
        d.wait_log("inotify watch limit reached: root 'r'")
    finally:
        knob.write_text(old)
    d.until(late, "found", hashed)
    more = write(tmp_path / "r" / "new-folder" / "later.bin", "polled")
    d.until(more, "found by polling", hashed)


def test_sigterm_again_while_stopping_still_exits_zero(tmp_path: Path, make_daemon: Any) -> None:
    """SIGTERM sent again and again while the daemon stops (an impatient supervisor)
    never kills it: it finishes its exit with 0."""
    d = make_daemon().start()
    assert d.proc is not None
    while d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(0.001)
        except subprocess.TimeoutExpired:
            continue
    assert d.stop() == 0
