"""``assetd doctor``: the checks of what most often goes wrong, each finding with its fix.

Every check reads and never writes: no catalog, folder or runtime file is made, the
catalog is opened read-only, and the feed's address is bound only to be closed at once.
The verdicts (how many watches is too many, how little space is too little, which
listen address is exposed) are pure functions; the checks around them do the reading,
through the seams named in their parameters.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from assetd.catalog.readonly import (
    count_locations,
    open_read_only,
    problems,
    recovery,
    stored_schema_version,
)
from assetd.config import Config, RootConfig, runtime_file
from assetd.drivers import sqlite_file
from assetd.exceptions import AssetdError
from assetd.hardening import Gap, gaps

__all__ = [
    "UNIT_FOLDERS",
    "Finding",
    "Probes",
    "check_catalog",
    "check_disk",
    "check_feed",
    "check_inotify",
    "check_network",
    "check_roots",
    "check_state_dir",
    "check_unit",
    "run_checks",
    "schema_verdict",
    "space_verdict",
    "watch_verdict",
]

Status = Literal["ok", "warn", "fail"]

MiB = 1 << 20
GiB = 1 << 30
FAIL_FREE_BYTES = 100 * MiB  # below this, a burst of changes can fill the disk
WARN_FREE_BYTES = 1 * GiB
WARN_WATCH_SHARE = 0.8  # of the inotify limit: folders made later need room too
PACKAGED_WATCHES = 524288  # what systemd/90-assetd-inotify.conf sets

UNIT_FOLDERS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)
UNIT = "assetd.service"


@dataclass(frozen=True)
class Finding:
    """One thing a check found: ``fix`` says what to do about it (None when all is well)."""

    check: str
    status: Status
    message: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ok(check: str, message: str) -> Finding:
    return Finding(check, "ok", message)


def warn(check: str, message: str, fix: str | None) -> Finding:
    return Finding(check, "warn", message, fix)


def fail(check: str, message: str, fix: str | None) -> Finding:
    return Finding(check, "fail", message, fix)


def _shipped(name: str) -> str | None:
    """A file of assetd's ``systemd/`` folder: in a checkout, or where pip installed it."""
    for folder in (
        Path(__file__).resolve().parent.parent / "systemd",
        Path(sys.prefix) / "share" / "assetd" / "systemd",
    ):
        if (folder / name).is_file():
            return str(folder / name)
    return None


@dataclass(frozen=True)
class Probes:
    """Where the checks look; tests point these at files and functions of their own."""

    inotify_limits: str = "/proc/sys/fs/inotify"
    mountinfo: str = "/proc/self/mountinfo"
    unit_folders: Sequence[str] = UNIT_FOLDERS
    packaged_unit: str | None = field(default_factory=lambda: _shipped(UNIT))
    scandir: Callable[[str], Any] = os.scandir
    access: Callable[[str, int], bool] = os.access
    statvfs: Callable[[str], os.statvfs_result] = os.statvfs


def run_checks(config: Config, probes: Probes | None = None) -> list[Finding]:
    """Every check, in the order a person reads them; a check that fails unexpectedly
    (an ``OSError`` it did not foresee) is that check's failure, not the end of the rest."""
    p = probes or Probes()
    roots = config.roots
    checks: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("config", lambda: [_config_finding(config)]),
        ("roots", lambda: check_roots(roots, scandir=p.scandir, access=p.access)),
        (
            "inotify",
            lambda: check_inotify(roots, p.inotify_limits, p.mountinfo, config.follow_symlinks),
        ),
        ("network", lambda: check_network(roots, p.mountinfo)),
        ("catalog", lambda: check_catalog(config.database)),
        ("disk", lambda: check_disk(config.database, statvfs=p.statvfs)),
        ("state-dir", lambda: check_state_dir(config.database, access=p.access)),
        ("feed", lambda: check_feed(config)),
        ("systemd", lambda: check_unit(p.unit_folders, p.packaged_unit)),
    ]
    findings: list[Finding] = []
    for name, check in checks:
        try:
            findings += check()
        except (OSError, AssetdError, sqlite3.Error) as exc:
            findings.append(Finding(name, "fail", f"the check could not run: {exc}", None))
    return findings


def _config_finding(config: Config) -> Finding:
    from assetd.catalog.engine import shown_url

    where = f"configuration {config.source}" if config.source else "no configuration file"
    return ok("config", f"{where}; catalog {shown_url(config.database)}")


# -- roots ----------------------------------------------------------------------------

_PERMISSION_FIX = (
    "let the user assetd runs as read it (e.g. setfacl -R -m u:assetd:rX {path}); under "
    "systemd, make sure the unit does not hide it: add ReadOnlyPaths={path} (or "
    "ReadWritePaths={path} for a root uploads are written to) and check "
    "InaccessiblePaths=, ProtectHome="
)


def check_roots(
    roots: Sequence[RootConfig],
    *,
    scandir: Callable[[str], Any] = os.scandir,
    access: Callable[[str, int], bool] = os.access,
) -> list[Finding]:
    """Each root exists, is a folder, can be listed and entered."""
    if not roots:
        return [
            warn(
                "roots",
                "no roots configured: there is nothing to catalog",
                "pass --root NAME=PATH, or add [[roots]] to the configuration",
            )
        ]
    return [_root_finding(root, scandir, access) for root in roots]


def _root_finding(
    root: RootConfig, scandir: Callable[[str], Any], access: Callable[[str, int], bool]
) -> Finding:
    label = f"root {root.name}: {root.path}"
    try:
        with scandir(root.path) as entries:
            next(iter(entries), None)
    except FileNotFoundError:
        return warn(
            "roots",
            f"{label} does not exist; it is offline until it appears",
            "mount or create it, or fix the path in the configuration",
        )
    except NotADirectoryError:
        return fail(
            "roots",
            f"{label} is not a folder",
            "give the folder that holds the files as the root's path",
        )
    except PermissionError:
        return fail(
            "roots",
            f"{label} cannot be listed (permission denied)",
            _PERMISSION_FIX.format(path=root.path),
        )
    if not access(root.path, os.R_OK | os.X_OK):
        return fail(
            "roots",
            f"{label} can be listed but not entered",
            _PERMISSION_FIX.format(path=root.path),
        )
    return ok("roots", f"{label} can be listed")


# -- inotify --------------------------------------------------------------------------


def watch_verdict(needed: int, limit: int, counted_all: bool, sysctl_file: str) -> Finding:
    """The roots' watches (one per folder) against ``fs.inotify.max_user_watches``;
    ``counted_all`` False: counting stopped early, ``needed`` is a floor."""
    amount = f"{needed}" if counted_all else f"more than {needed - 1}"
    suggest = max(2 * needed, PACKAGED_WATCHES)
    keep = (
        f"install {sysctl_file} as /etc/sysctl.d/90-assetd-inotify.conf"
        + ("" if suggest <= PACKAGED_WATCHES else f" with the value raised to {suggest}")
        + " and run sysctl --system"
    )
    fix = (
        f"sysctl fs.inotify.max_user_watches={suggest} now; to keep it after a reboot, "
        f"{keep}; then systemctl reload assetd (SIGHUP) to go back to inotify"
    )
    if needed > limit:
        return fail(
            "inotify",
            f"the inotify-watched roots need {amount} watches "
            f"(one per folder), past fs.inotify.max_user_watches = {limit}: the "
            "roots that do not fit are polled instead",
            fix,
        )
    if needed > WARN_WATCH_SHARE * limit:
        return warn(
            "inotify",
            f"the inotify-watched roots need {needed} of the "
            f"{limit} watches allowed (fs.inotify.max_user_watches); new folders "
            "will soon go past it",
            fix,
        )
    return ok("inotify", f"the inotify-watched roots need {needed} of the {limit} watches allowed")


def check_inotify(
    roots: Sequence[RootConfig],
    limits: str = "/proc/sys/fs/inotify",
    mountinfo: str = "/proc/self/mountinfo",
    follow_symlinks: bool = False,
) -> list[Finding]:
    """Watches and inotify instances (one per root) the roots watched with inotify need."""
    from assetd.inotify import count_folders, read_int
    from assetd.watcher import wants_polling

    watched = [r for r in roots if os.path.isdir(r.path) and not wants_polling(r, mountinfo)]
    if not watched:
        return [ok("inotify", "no root is watched with inotify")]
    limit = read_int(os.path.join(limits, "max_user_watches"))
    if limit is None:
        return [warn("inotify", f"cannot read {limits}/max_user_watches", None)]
    most = 2 * limit  # well past the limit, the exact figure no longer matters
    needed = 0
    for root in watched:
        needed += count_folders(root.path, follow_symlinks, most=most - needed)
        if needed > most:
            break
    sysctl_file = _shipped("90-assetd-inotify.conf") or "systemd/90-assetd-inotify.conf"
    findings = [watch_verdict(needed, limit, needed <= most, sysctl_file)]
    instances = read_int(os.path.join(limits, "max_user_instances"))
    if instances is not None and len(watched) > WARN_WATCH_SHARE * instances:
        status: Status = "fail" if len(watched) > instances else "warn"
        findings.append(
            Finding(
                "inotify",
                status,
                f"{len(watched)} roots watched with inotify "
                f"take one instance each, of fs.inotify.max_user_instances = "
                f"{instances}",
                f"sysctl fs.inotify.max_user_instances="
                f"{2 * len(watched)}, and add it to /etc/sysctl.d/"
                "90-assetd-inotify.conf",
            )
        )
    return findings


# -- network file systems -------------------------------------------------------------


def check_network(
    roots: Sequence[RootConfig], mountinfo: str = "/proc/self/mountinfo"
) -> list[Finding]:
    """Roots on network (or FUSE) file systems, which ``watch = "auto"`` polls."""
    from assetd.watcher import filesystem_type, is_network_fs

    findings = []
    for root in roots:
        if not os.path.isdir(root.path):
            continue
        kind = filesystem_type(root.path, mountinfo)
        if not is_network_fs(kind):
            continue
        label = f"root {root.name}: {root.path} is on {kind}"
        if root.watch == "auto":
            findings.append(
                warn(
                    "network",
                    f"{label}, so it is polled (watch = "
                    '"auto"): a change is seen within a second or so, and its folders are '
                    "listed again every second, which costs the server I/O",
                    'keep polling (watch = "polling" says so); set watch = "inotify" for '
                    "this root only if every change to its files is made from this host: "
                    "inotify does not see other clients' changes",
                )
            )
        elif root.watch == "inotify":
            findings.append(
                ok(
                    "network",
                    f"{label} and watched with inotify, as "
                    "configured: changes made by other hosts are not seen",
                )
            )
    return findings or [ok("network", "no root is polled for being on a network file system")]


# -- the catalog ----------------------------------------------------------------------


def schema_verdict(version: int, known: int) -> Finding:
    """The schema version a catalog records, against the one this assetd writes."""
    if version > known:
        return fail(
            "catalog",
            f"schema version {version}: made by a newer assetd "
            f"(this one knows {known}) and cannot be opened by it",
            "upgrade assetd (pip install --upgrade assetd) or use another catalog (--db)",
        )
    if version == 0:
        return ok("catalog", "no tables yet: set up on next start")
    if version < known:
        return ok(
            "catalog",
            f"schema version {version}: upgraded to {known} on "
            "next start (assetd backup FILE first keeps a way back)",
        )
    return ok("catalog", f"schema version {version}, this assetd's")


def check_catalog(url: str) -> list[Finding]:
    """The catalog can be read, passes ``PRAGMA quick_check``, and has a schema this
    assetd can use."""
    from assetd.catalog.schema import SCHEMA_VERSION

    path = sqlite_file(url)
    if path is None:
        return _check_other_catalog(url, SCHEMA_VERSION)
    if not os.path.exists(path):
        return [ok("catalog", f"{path} not made yet; assetd run or scan makes it")]
    try:
        conn = open_read_only(path)
        try:
            found = problems(conn)
            version = stored_schema_version(conn) if not found else 0
            locations = count_locations(conn) if not found else 0
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) not in (
            sqlite3.SQLITE_CORRUPT,
            sqlite3.SQLITE_NOTADB,
        ):
            return [
                fail(
                    "catalog",
                    f"cannot read {path}: {exc}",
                    "run doctor as the user assetd runs as; that user must be able "
                    "to read and write the file and its folder",
                )
            ]
        found = [str(exc)]
    if found:
        return [fail("catalog", f"{path} is damaged: {'; '.join(found)}", recovery(path))]
    return [
        ok("catalog", f"{path} passes quick_check ({locations} locations)"),
        schema_verdict(version, SCHEMA_VERSION),
    ]


def _check_other_catalog(url: str, known: int) -> list[Finding]:
    """A PostgreSQL catalog: reachable, and its schema version (the server checks its
    own files)."""
    from assetd.catalog.engine import said, shown_url

    if not url.startswith(("postgres:", "postgresql:")):
        return [ok("catalog", f"{shown_url(url)}: not checked (not SQLite or PostgreSQL)")]
    try:
        info = _postgres_info(url)
    except ImportError:
        return [
            fail(
                "catalog",
                "PostgreSQL needs the psycopg driver",
                "pip install 'assetd[postgres]'",
            )
        ]
    except Exception as exc:  # psycopg's errors (and libpq's) share no base with ours
        return [
            fail(
                "catalog",
                f"cannot reach {shown_url(url)}: {said(exc)}",
                "check that the server runs and the URL's user, password, host, "
                "port and database (pg_isready -d URL)",
            )
        ]
    if info is None:
        return [ok("catalog", f"{shown_url(url)} has no catalog yet; assetd run or scan makes it")]
    return [
        ok("catalog", f"{shown_url(url)} answers"),
        schema_verdict(int(info.get("schema_version", 0)), known),
    ]


def _postgres_info(url: str) -> dict[str, str] | None:
    """The catalog's ``catalog_info`` rows, read in a read-only session; None without one."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        if conn.execute("SELECT to_regclass('catalog_info')").fetchone() == (None,):
            return None
        return {k: v for k, v in conn.execute("SELECT key, value FROM catalog_info")}


def space_verdict(folder: str, free: int, catalog_bytes: int) -> Finding:
    """Free space where the catalog lives: an upgrade or a big pass may need its size again."""
    said = (
        f"{free / GiB:.2f} GiB free in {folder} (the catalog takes {catalog_bytes / MiB:.1f} MiB)"
    )
    fix = (
        "free space there, or move the catalog: stop assetd, move the file, point "
        "[daemon] database (or --db) at it, start"
    )
    if free < FAIL_FREE_BYTES:
        return fail("disk", f"only {said}: writes to the catalog will fail", fix)
    if free < WARN_FREE_BYTES or free < 2 * catalog_bytes:
        return warn("disk", f"only {said}", fix)
    return ok("disk", said)


def check_disk(
    url: str, *, statvfs: Callable[[str], os.statvfs_result] = os.statvfs
) -> list[Finding]:
    path = sqlite_file(url)
    if path is None:
        return []
    folder = _existing(os.path.dirname(path))
    st = statvfs(folder)
    size = sum(os.path.getsize(f) for f in (path, path + "-wal") if os.path.isfile(f))
    return [space_verdict(folder, st.f_bavail * st.f_frsize, size)]


def _existing(path: str) -> str:
    """``path``, or its nearest folder that exists."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def check_state_dir(url: str, *, access: Callable[[str, int], bool] = os.access) -> list[Finding]:
    """The catalog's folder can be written (the catalog, its WAL, the runtime file), or made."""
    path = sqlite_file(url)
    if path is None:
        return []
    folder = os.path.dirname(path)
    fix = (
        f"make it the assetd user's: mkdir -p {folder} && chown assetd: {folder} (under "
        "systemd, StateDirectory=assetd does this for /var/lib/assetd), or choose another "
        "--db"
    )
    if os.path.isdir(folder):
        if not access(folder, os.W_OK | os.X_OK):
            return [fail("state-dir", f"{folder} cannot be written by this user", fix)]
        if os.path.exists(path) and not access(path, os.R_OK | os.W_OK):
            return [fail("state-dir", f"{path} cannot be written by this user", fix)]
        return [ok("state-dir", f"{folder} is writable")]
    if os.path.exists(folder):
        return [fail("state-dir", f"{folder} is not a folder", fix)]
    parent = _existing(folder)
    if os.path.isdir(parent) and access(parent, os.W_OK | os.X_OK):
        return [ok("state-dir", f"{folder} does not exist yet; assetd makes it on first start")]
    return [
        fail(
            "state-dir",
            f"{folder} does not exist and {parent} cannot be written by this user",
            fix,
        )
    ]


# -- the feed -------------------------------------------------------------------------

_LISTEN_FIX = "choose another address with --listen HOST:PORT or [feed] listen"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_verdict(listen: str, token: bool) -> Finding | None:
    """What a listen address off loopback exposes, with or without a token."""
    from assetd.listen import split_listen

    if is_loopback(split_listen(listen)[0]):
        return None
    if token:
        return warn(
            "feed",
            f"{listen} is reachable from the network, and the "
            "token travels in clear text (ws://, http://)",
            "put a TLS proxy in front of it, or listen on 127.0.0.1 (docs/security.md)",
        )
    return warn(
        "feed",
        f"{listen} is reachable from the network with no token: "
        "anyone who reaches it can list the catalog, read its files and change "
        "tags",
        "set [feed] token_file, or listen on 127.0.0.1 (docs/security.md)",
    )


def check_feed(config: Config, *, bind: Callable[[str], Any] | None = None) -> list[Finding]:
    """A daemon serving this catalog, or else the address free to serve it; and what the
    address exposes."""
    from assetd.client import runtime_info
    from assetd.listen import bind_feed

    listen = config.feed.listen
    findings = []
    path = runtime_file(config.database)
    info = runtime_info(path) if path is not None else None
    if info is not None:
        address = info.get("listen") or listen
        findings.append(
            ok(
                "feed",
                f"a daemon (pid {info.get('pid', '?')}) serves "
                f"this catalog; its page is at http://{address}/",
            )
        )
    else:
        try:
            (bind or bind_feed)(listen).close()
        except AssetdError as exc:
            cause = exc.__cause__
            in_use = isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
            findings.append(
                _taken(config, listen) if in_use else fail("feed", str(exc), _LISTEN_FIX)
            )
        else:
            findings.append(ok("feed", f"{listen} is free for the feed and the page"))
    token = bool(config.feed.token_file) and config.feed.token() is not None
    exposed = exposure_verdict(listen, token)
    return findings + ([exposed] if exposed else [])


def _taken(config: Config, listen: str) -> Finding:
    """The address is in use: by a daemon of this (shared) catalog, or by something else."""
    if runtime_file(config.database) is None and _serves_here(config, listen):
        return ok("feed", f"a daemon serves this catalog; its page is at http://{listen}/")
    port = listen.rpartition(":")[2]
    return fail(
        "feed",
        f"{listen} is in use by another program (no daemon of this catalog holds it)",
        f"{_LISTEN_FIX}; see what holds it with ss -ltnp 'sport = :{port}'",
    )


def _serves_here(config: Config, listen: str) -> bool:
    """Whether the daemon at ``listen`` names this (PostgreSQL) catalog in its hello; the
    catalog's id is read without the catalog's code, which would set up its tables."""
    from assetd.client import DaemonClient

    try:
        with DaemonClient(listen, config.feed.token(), timeout=2) as client:
            theirs = client.hello.get("catalog")
        info = _postgres_info(config.database)
    except Exception:  # whatever stops the comparison: then it is not this catalog's
        return False
    return info is not None and theirs == info.get("catalog_id")


# -- the systemd unit -----------------------------------------------------------------


def check_unit(folders: Sequence[str] = UNIT_FOLDERS, packaged: str | None = None) -> list[Finding]:
    """An installed ``assetd.service`` keeps every hardening directive of the shipped one."""
    from assetd.hardening import service_settings

    installed = next(
        (os.path.join(f, UNIT) for f in folders if os.path.isfile(os.path.join(f, UNIT))), None
    )
    if installed is None:
        return [ok("systemd", f"{UNIT} is not installed (see docs/operations.md)")]
    if packaged is None:
        return [
            warn(
                "systemd",
                f"{installed} is installed, but the unit assetd "
                "ships was not found to compare it with",
                None,
            )
        ]
    texts = [_read(installed), *(_read(p) for p in _drop_ins(folders))]
    have = service_settings(texts)
    want = service_settings([_read(packaged)])
    fix = (
        f"copy the line from {packaged} into {installed} (or a drop-in: systemctl edit "
        "assetd), then systemctl daemon-reload && systemctl restart assetd"
    )
    findings = [_gap_finding(installed, gap, fix) for gap in gaps(want, have)]
    return findings or [
        ok("systemd", f"{installed} keeps every hardening directive of the shipped unit")
    ]


def _gap_finding(installed: str, gap: Gap, fix: str) -> Finding:
    shipped = f"(the shipped unit has {gap.key}={gap.packaged})"
    if gap.installed is None:
        return warn("systemd", f"{installed}: no {gap.key}= {shipped}", fix)
    said = f"{installed}: {gap.key}={gap.installed} is weaker {shipped}"
    return warn("systemd", said, fix)


def _drop_ins(folders: Iterable[str]) -> list[str]:
    """The unit's drop-in files, in the order systemd applies them (by file name)."""
    found: dict[str, str] = {}
    for folder in folders:
        d = os.path.join(folder, UNIT + ".d")
        if os.path.isdir(d):
            for name in os.listdir(d):
                if name.endswith(".conf"):
                    found.setdefault(name, os.path.join(d, name))  # the first folder wins
    return [found[name] for name in sorted(found)]


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()
