"""The host's part: roots readable, inotify limits, network file systems, the systemd unit."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from assetd.config import RootConfig
from assetd.doctor.findings import Finding, Status, fail, ok, shipped, warn
from assetd.hardening import Gap, gaps, service_settings

__all__ = [
    "UNIT",
    "UNIT_FOLDERS",
    "check_inotify",
    "check_network",
    "check_roots",
    "check_unit",
    "watch_verdict",
]

WARN_WATCH_SHARE = 0.8  # of the inotify limit: folders made later need room too
PACKAGED_WATCHES = 524288  # what systemd/90-assetd-inotify.conf sets

UNIT_FOLDERS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)
UNIT = "assetd.service"


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
    sysctl_file = shipped("90-assetd-inotify.conf") or "systemd/90-assetd-inotify.conf"
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


# -- the systemd unit -----------------------------------------------------------------


def check_unit(
    folders: Sequence[str] = UNIT_FOLDERS,
    packaged: str | None = None,
    analyze: str | None = None,
) -> list[Finding]:
    """An installed ``assetd.service`` keeps every hardening directive of the shipped one;
    with ``analyze`` (``systemd-analyze``), its exposure figure too."""
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
    if not findings:
        findings.append(
            ok("systemd", f"{installed} keeps every hardening directive of the shipped unit")
        )
    rating = _exposure(analyze, installed) if analyze else None
    if analyze and rating is not None:
        theirs = _exposure(analyze, packaged) or "?"
        said = f"systemd-analyze security rates {installed} {rating}"
        findings.append(ok("systemd", f"{said} (lower is safer; the shipped unit: {theirs})"))
    return findings


_EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def _exposure(analyze: str, unit: str) -> str | None:
    """``systemd-analyze security --offline=true``'s overall exposure of a unit file."""
    try:
        done = subprocess.run(
            [analyze, "security", "--offline=true", "--no-pager", unit],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _EXPOSURE.search(done.stdout + done.stderr)
    return found.group(1) if found else None


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
