"""``assetd doctor``: each check finds what goes wrong, says how to fix it, and writes nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from assetd.catalog.schema import SCHEMA_VERSION
from assetd.cli.maintenance import doctor_lines
from assetd.config import RootConfig, load_config
from assetd.doctor import (
    Finding,
    GiB,
    MiB,
    Probes,
    check_inotify,
    check_network,
    check_roots,
    check_state_dir,
    check_unit,
    exposure_verdict,
    run_checks,
    schema_verdict,
    space_verdict,
    watch_verdict,
)
from assetd.hardening import Gap, gaps, service_settings
from tests.harness import REPO, run_cli, write

PACKAGED_UNIT = REPO / "systemd" / "assetd.service"


def listing(folder: Path) -> set[str]:
    """Every path under ``folder``, to prove a command made nothing there."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def doctor(*args: str) -> tuple[int, dict[str, Any]]:
    proc = run_cli("doctor", "--json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def findings(report: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["check"] == check]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A root of real files and the catalog ``assetd scan`` made of it."""
    base = tmp_path_factory.mktemp("scanned")
    for i in range(120):
        write(base / "root" / f"d{i % 6}" / f"f{i}.txt", f"content {i}\n" * 50)
    db = base / "state" / "assetd.db"
    proc = run_cli("scan", "--db", f"sqlite:///{db}", "--root", f"r={base / 'root'}")
    assert proc.returncode == 0, proc.stderr
    return base / "root", db


def flags(root: Path, db: Path, *more: str) -> list[str]:
    return ["--db", f"sqlite:///{db}", "--root", f"r={root}", "--listen", "127.0.0.1:0", *more]


# -- through the command line ---------------------------------------------------------


def test_a_healthy_setup_passes(scanned: tuple[Path, Path]) -> None:
    """A scanned catalog over a real root: exit 0, every check ok or warn, JSON that
    parses, and the plain output ends in a summary; nothing is written."""
    root, db = scanned
    before = listing(db.parent)
    code, report = doctor(*flags(root, db))
    assert code == 0 and report["ok"] is True
    assert {c["status"] for c in report["checks"]} <= {"ok", "warn"}
    assert {c["check"] for c in report["checks"]} >= {
        "roots", "inotify", "network", "catalog", "disk", "state-dir", "feed", "systemd",
    }  # fmt: skip
    assert any("passes quick_check (120 locations)" in c["message"] for c in report["checks"])
    plain = run_cli("doctor", *flags(root, db))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[-1].startswith("doctor: all is well")
    assert listing(db.parent) == before


def test_a_missing_root_is_offline_not_a_failure(
    scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    """A root folder that does not exist warns that it is offline; doctor still exits 0."""
    root, db = scanned
    code, report = doctor(*flags(root, db, "--root", f"gone={tmp_path / 'gone'}"))
    assert code == 0
    (warned,) = [c for c in findings(report, "roots") if c["status"] == "warn"]
    assert (
        warned["message"]
        == f"root gone: {tmp_path / 'gone'} does not exist; it is offline until it appears"
    )


def _truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _garbage_page(path: Path) -> None:
    page = 4096
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // page // 2 * page)
        fh.write(bytes(range(256)) * (page // 256))


@pytest.mark.parametrize("damage", [_truncated, _garbage_page], ids=["cut-in-half", "garbage-page"])
def test_a_damaged_catalog_fails_with_the_recovery(
    scanned: tuple[Path, Path], tmp_path: Path, damage: Any
) -> None:
    """A catalog cut in half, or with a page overwritten, fails the catalog check with how
    to recover (rebuild from disk; tags and metadata from a backup); exit 1, and doctor
    makes nothing beside it."""
    root, db = scanned
    copy = tmp_path / "state" / "assetd.db"
    copy.parent.mkdir()
    shutil.copy(db, copy)
    damage(copy)
    before = listing(tmp_path)
    code, report = doctor(*flags(root, copy))
    assert code == 1 and report["ok"] is False
    (failed,) = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed["check"] == "catalog" and "is damaged" in failed["message"]
    assert "assetd scan" in failed["fix"] and "assetd backup FILE" in failed["fix"]
    assert "stop assetd" in failed["fix"].lower()
    assert listing(tmp_path) == before


def test_a_catalog_of_a_newer_schema_fails(scanned: tuple[Path, Path], tmp_path: Path) -> None:
    """A catalog whose schema version is past this assetd's was made by a newer one: fail."""
    root, db = scanned
    copy = tmp_path / "newer.db"
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute(
            "UPDATE catalog_info SET value = ? WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )
    conn.close()
    code, report = doctor(*flags(root, copy))
    assert code == 1
    (failed,) = [c for c in report["checks"] if c["status"] == "fail"]
    assert "made by a newer assetd" in failed["message"]
    assert "upgrade assetd" in failed["fix"]


def test_a_catalog_not_made_yet_is_ok_and_stays_unmade(tmp_path: Path) -> None:
    """No catalog yet: ok, it is made on first run; doctor makes neither it nor its folder."""
    (tmp_path / "r").mkdir()
    db = tmp_path / "state" / "assetd.db"
    code, report = doctor(*flags(tmp_path / "r", db))
    assert code == 0
    assert (
        findings(report, "catalog")[0]["message"]
        == f"{db} not made yet; assetd run or scan makes it"
    )
    assert "assetd makes it on first start" in findings(report, "state-dir")[0]["message"]
    assert listing(tmp_path) == {"r"}


def test_an_address_in_use_fails_with_the_fix(scanned: tuple[Path, Path]) -> None:
    """The feed address held by another socket fails, saying how to choose another."""
    root, db = scanned
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        code, report = doctor(*flags(root, db, "--listen", address))
    assert code == 1
    (failed,) = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed["check"] == "feed" and address in failed["message"]
    assert "--listen HOST:PORT" in failed["fix"] and "[feed] listen" in failed["fix"]


def test_a_running_daemon_is_reported_with_its_page(make_daemon: Any, tmp_path: Path) -> None:
    """With a daemon serving the catalog, the feed check names its pid and its page."""
    d = make_daemon().start()
    code, report = doctor(*d.args())
    assert code == 0, report
    feed = findings(report, "feed")
    assert feed[0] == {
        "check": "feed",
        "status": "ok",
        "message": f"a daemon (pid {d.proc.pid}) serves this catalog; its page is at "
        f"http://{d.address}/",
        "fix": None,
    }


def test_an_unreachable_postgresql_catalog_fails(tmp_path: Path) -> None:
    """A PostgreSQL URL nothing answers at fails the catalog check with the driver's reason."""
    (tmp_path / "r").mkdir()
    code, report = doctor(
        "--db", "postgresql://assetd:secret@127.0.0.1:1/assetd", "--root", f"r={tmp_path / 'r'}",
        "--listen", "127.0.0.1:0",
    )  # fmt: skip
    assert code == 1
    (failed,) = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed["check"] == "catalog" and "cannot reach" in failed["message"]
    assert "secret" not in failed["message"]


# -- the checks, at their seams -------------------------------------------------------


def root_with_folders(base: Path, count: int) -> RootConfig:
    for i in range(count):
        (base / "root" / f"d{i}").mkdir(parents=True)
    return RootConfig("r", str(base / "root"))


def limits(base: Path, watches: int, instances: int = 128) -> str:
    folder = base / "limits"
    folder.mkdir()
    (folder / "max_user_watches").write_text(f"{watches}\n")
    (folder / "max_user_instances").write_text(f"{instances}\n")
    return str(folder)


def test_roots_past_the_watch_limit_fail_with_the_sysctl_fix(tmp_path: Path) -> None:
    """A root of 20 folders (21 watches) against a limit of 10 fails, saying how to raise it."""
    root = root_with_folders(tmp_path, 20)
    (finding,) = check_inotify([root], limits(tmp_path, 10))
    assert finding.status == "fail"
    assert "past fs.inotify.max_user_watches = 10" in finding.message
    assert finding.fix is not None
    assert "sysctl fs.inotify.max_user_watches=524288" in finding.fix
    assert "90-assetd-inotify.conf" in finding.fix and "sysctl --system" in finding.fix


def test_counting_folders_stops_well_past_the_limit(tmp_path: Path) -> None:
    """Past twice the limit, the count stops: the finding says "more than"."""
    root = root_with_folders(tmp_path, 60)
    (finding,) = check_inotify([root], limits(tmp_path, 10))
    assert "need more than 20 watches" in finding.message


def test_too_few_inotify_instances_for_the_roots(tmp_path: Path) -> None:
    """Each inotify-watched root takes an instance: more roots than instances fail."""
    roots = [RootConfig(f"r{i}", str(tmp_path / f"r{i}")) for i in range(3)]
    for root in roots:
        os.mkdir(root.path)
    _, instances = check_inotify(roots, limits(tmp_path, 1000, instances=2))
    assert instances.status == "fail" and "max_user_instances = 2" in instances.message


def mountinfo(base: Path, mount_point: Path, kind: str) -> str:
    table = base / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"40 22 0:50 / {mount_point} rw,relatime shared:20 - {kind} server:/export rw,vers=4.2\n"
    )
    return str(table)


@pytest.mark.parametrize(
    ("watch", "status"), [("auto", "warn"), ("inotify", "ok")], ids=["auto", "inotify"]
)
def test_a_root_on_nfs(tmp_path: Path, watch: str, status: str) -> None:
    """A root on NFS is polled under ``watch = "auto"`` (warn: what it costs, when to
    choose inotify); with inotify chosen it is ok; either way it takes no watches when polled."""
    root = RootConfig("nas", str(tmp_path / "nas"), watch=watch)
    os.mkdir(root.path)
    table = mountinfo(tmp_path, tmp_path / "nas", "nfs4")
    (finding,) = check_network([root], table)
    assert finding.status == status
    assert "is on nfs4" in finding.message
    if watch == "auto":
        assert finding.fix is not None and 'watch = "inotify"' in finding.fix
        assert "polled" in finding.message
        assert check_inotify([root], limits(tmp_path, 1), table)[0].message == (
            "no root is watched with inotify"
        )


def install_unit(folder: Path, text: str, drop_in: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "assetd.service").write_text(text)
    if drop_in is not None:
        (folder / "assetd.service.d").mkdir()
        (folder / "assetd.service.d" / "override.conf").write_text(drop_in)
    return folder


def test_the_shipped_unit_installed_as_is_is_ok(tmp_path: Path) -> None:
    """The packaged unit, copied in place, keeps all of its own hardening."""
    folder = install_unit(tmp_path / "system", PACKAGED_UNIT.read_text())
    (finding,) = check_unit([str(folder)], str(PACKAGED_UNIT))
    assert finding.status == "ok" and "keeps every hardening directive" in finding.message


def test_the_exposure_figure_of_systemd_analyze(tmp_path: Path) -> None:
    """With systemd-analyze at hand, its offline exposure figure of the installed unit is
    reported beside the shipped unit's."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = PACKAGED_UNIT.read_text().replace("PrivateDevices=yes\n", "")
    folder = install_unit(tmp_path / "system", text)
    found = check_unit([str(folder)], str(PACKAGED_UNIT), analyze)
    assert [f.status for f in found] == ["warn", "ok"]
    assert re.fullmatch(
        rf"systemd-analyze security rates {folder}/assetd.service (\d\.\d) \(lower is safer; "
        r"the shipped unit: (\d\.\d)\)",
        found[1].message,
    )


def test_an_installed_unit_missing_hardening_warns(tmp_path: Path) -> None:
    """A unit without NoNewPrivileges, and a drop-in that loosens ProtectSystem, warn once each."""
    text = PACKAGED_UNIT.read_text().replace("NoNewPrivileges=yes\n", "")
    folder = install_unit(tmp_path / "system", text, "[Service]\nProtectSystem=full\n")
    found = check_unit([str(tmp_path / "none"), str(folder)], str(PACKAGED_UNIT))
    unit = f"{folder}/assetd.service"
    assert [(f.status, f.message) for f in found] == [
        ("warn", f"{unit}: no NoNewPrivileges= (the shipped unit has NoNewPrivileges=yes)"),
        (
            "warn",
            f"{unit}: ProtectSystem=full is weaker (the shipped unit has ProtectSystem=strict)",
        ),
    ]
    assert all(f.fix and "systemctl daemon-reload" in f.fix for f in found)


def test_no_unit_installed_is_ok(tmp_path: Path) -> None:
    """No assetd.service in any unit folder: ok, with where to read about installing it."""
    (finding,) = check_unit([str(tmp_path)], str(PACKAGED_UNIT))
    assert finding == Finding(
        "systemd", "ok", "assetd.service is not installed (see docs/operations.md)"
    )


class _Listing:
    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __iter__(self) -> Any:
        return iter(())


def _refused(path: str) -> Any:
    raise PermissionError(13, "Permission denied", path)


@pytest.mark.parametrize(
    ("scandir", "access", "message"),
    [
        (_refused, lambda p, m: True, "cannot be listed (permission denied)"),
        (lambda p: _Listing(), lambda p, m: False, "can be listed but not entered"),
    ],
    ids=["unreadable", "not-enterable"],
)
def test_a_root_this_user_cannot_read_fails(
    tmp_path: Path, scandir: Any, access: Any, message: str
) -> None:
    """A root that cannot be listed or entered fails, naming the permissions to give and
    the unit's ReadOnlyPaths/ReadWritePaths."""
    root = RootConfig("r", str(tmp_path))
    (finding,) = check_roots([root], scandir=scandir, access=access)
    assert finding.status == "fail" and message in finding.message
    assert finding.fix is not None
    assert f"ReadOnlyPaths={tmp_path}" in finding.fix and "ReadWritePaths=" in finding.fix


def test_a_root_that_is_a_file_fails(tmp_path: Path) -> None:
    """A root path naming a file is not a folder: fail."""
    write(tmp_path / "file")
    (finding,) = check_roots([RootConfig("r", str(tmp_path / "file"))])
    assert finding.status == "fail" and "is not a folder" in finding.message


def test_a_state_directory_this_user_cannot_write_fails(tmp_path: Path) -> None:
    """The catalog's folder not writable (as the access seam says) fails with chown."""
    url = f"sqlite:///{tmp_path / 'assetd.db'}"
    (finding,) = check_state_dir(url, access=lambda path, mode: False)
    assert finding.status == "fail" and finding.fix is not None and "chown assetd:" in finding.fix
    (finding,) = check_state_dir(
        f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}", access=lambda p, m: False
    )
    assert finding.status == "fail" and f"{tmp_path} cannot be written" in finding.message


def test_a_check_that_breaks_is_that_check_s_failure(tmp_path: Path) -> None:
    """An unforeseen OSError in one check is its ``fail`` finding; the others still run."""
    (tmp_path / "r").mkdir()
    config = load_config(
        database=f"sqlite:///{tmp_path / 'x.db'}", roots=[("r", str(tmp_path / "r"))],
        listen="127.0.0.1:0", env={},
    )  # fmt: skip

    def broken(path: str) -> os.statvfs_result:
        raise OSError(5, "Input/output error")

    found = run_checks(config, Probes(statvfs=broken, unit_folders=[str(tmp_path)]))
    disk = [f for f in found if f.check == "disk"]
    assert disk == [
        Finding("disk", "fail", "the check could not run: [Errno 5] Input/output error")
    ]
    assert {f.check for f in found} >= {"roots", "catalog", "feed", "systemd"}


# -- the verdicts, as tables ----------------------------------------------------------


@pytest.mark.parametrize(
    ("needed", "limit", "counted_all", "status", "said"),
    [
        (100, 8192, True, "ok", "need 100 of the 8192 watches"),
        (7000, 8192, True, "warn", "need 7000 of the 8192"),
        (9000, 8192, True, "fail", "need 9000 watches"),
        (16385, 8192, False, "fail", "need more than 16384 watches"),
    ],
)
def test_watch_verdicts(needed: int, limit: int, counted_all: bool, status: str, said: str) -> None:
    """Under 80% of the limit ok, above it warn, past it fail."""
    finding = watch_verdict(needed, limit, counted_all, "90-assetd-inotify.conf")
    assert finding.status == status and said in finding.message


def test_a_watch_need_past_the_shipped_sysctl_says_to_raise_it() -> None:
    """When even the shipped 524288 is too few, the fix names a value that fits."""
    finding = watch_verdict(600_000, 524288, True, "90-assetd-inotify.conf")
    assert finding.fix is not None and "max_user_watches=1200000" in finding.fix
    assert "with the value raised to 1200000" in finding.fix


@pytest.mark.parametrize(
    ("version", "status", "said"),
    [
        (0, "ok", "no tables yet"),
        (SCHEMA_VERSION - 1, "ok", f"upgraded to {SCHEMA_VERSION} on next start"),
        (SCHEMA_VERSION, "ok", "this assetd's"),
        (SCHEMA_VERSION + 1, "fail", "made by a newer assetd"),
    ],
)
def test_schema_verdicts(version: int, status: str, said: str) -> None:
    """Older schemas are upgraded on start; a newer one cannot be opened."""
    finding = schema_verdict(version, SCHEMA_VERSION)
    assert finding.status == status and said in finding.message


@pytest.mark.parametrize(
    ("free", "catalog", "status"),
    [
        (50 * MiB, 1 * MiB, "fail"),
        (500 * MiB, 1 * MiB, "warn"),
        (5 * GiB, 3 * GiB, "warn"),
        (5 * GiB, 1 * GiB, "ok"),
    ],
)
def test_space_verdicts(free: int, catalog: int, status: str) -> None:
    """Under 100 MiB free fails; under 1 GiB, or under twice the catalog, warns."""
    assert space_verdict("/var/lib/assetd", free, catalog).status == status


@pytest.mark.parametrize(
    ("listen", "token", "said"),
    [
        ("127.0.0.1:8765", False, None),
        ("[::1]:8765", True, None),
        ("localhost:8765", False, None),
        ("0.0.0.0:8765", False, "with no token"),
        ("192.0.2.7:8765", True, "clear text"),
    ],
)
def test_exposure_verdicts(listen: str, token: bool, said: str | None) -> None:
    """Off loopback: a warning without a token (anyone may use it) and with one (sent in
    clear text); on loopback nothing to say."""
    finding = exposure_verdict(listen, token)
    assert (finding is None) == (said is None)
    assert finding is None or (finding.status == "warn" and said in finding.message)


def test_unit_settings_add_up_and_reset_as_systemd_reads_them() -> None:
    """A later line replaces an earlier one; repeated directives add up until cleared."""
    unit = "[Unit]\nProtectSystem=no\n[Service]\nProtectSystem=full\nSystemCallFilter=@a\n"
    drop_in = "[Service]\nProtectSystem=strict\nSystemCallFilter=\nSystemCallFilter=@b\n"
    assert service_settings([unit, drop_in]) == {
        "ProtectSystem": ["strict"],
        "SystemCallFilter": ["@b"],
    }


@pytest.mark.parametrize(
    ("installed", "found"),
    [
        ({"ProtectHome": ["yes"], "RestrictAddressFamilies": ["AF_UNIX"]}, []),
        ({"ProtectHome": ["false"], "RestrictAddressFamilies": ["AF_UNIX"]},
         [Gap("ProtectHome", "false", "read-only")]),
        ({"ProtectHome": ["read-only"], "RestrictAddressFamilies": ["AF_UNIX AF_NETLINK"]},
         [Gap("RestrictAddressFamilies", "AF_UNIX AF_NETLINK", "AF_UNIX AF_INET")]),
        ({"RestrictAddressFamilies": ["AF_INET"]}, [Gap("ProtectHome", None, "read-only")]),
    ],
    ids=["stricter", "weaker-level", "more-allowed", "missing"],
)  # fmt: skip
def test_hardening_gaps(installed: dict[str, list[str]], found: list[Gap]) -> None:
    """A stricter value is no gap; a lower level, more allowed or a missing line is one."""
    packaged = {"ProtectHome": ["read-only"], "RestrictAddressFamilies": ["AF_UNIX AF_INET"]}
    assert gaps(packaged, installed) == found


def test_doctor_lines_align_and_put_the_fix_under_its_finding() -> None:
    """Status and check are aligned columns; a fix goes on the line below; a summary last."""
    lines = doctor_lines(
        [("ok", "roots", "root r: /x can be listed", None),
         ("fail", "feed", "127.0.0.1:1 is in use", "choose another")]
    )  # fmt: skip
    assert lines == [
        "ok    roots  root r: /x can be listed",
        "FAIL  feed   127.0.0.1:1 is in use",
        "  fix: choose another",
        "doctor: something needs fixing (1 ok, 0 warnings, 1 failed)",
    ]
