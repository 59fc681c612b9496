"""``assetd doctor``: the checks of what most often goes wrong, each finding with its fix.

Every check reads and never writes: no catalog, folder or runtime file is made, the
catalog is opened read-only, and the feed's address is bound only to be closed at once.
The verdicts (how many watches is too many, how little space is too little, which
listen address is exposed) are pure functions; the checks around them do the reading,
through the seams named in their parameters.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assetd.config import Config
from assetd.doctor.catalog import (
    GiB,
    MiB,
    check_catalog,
    check_disk,
    check_state_dir,
    schema_verdict,
    space_verdict,
)
from assetd.doctor.feed import check_feed, exposure_verdict
from assetd.doctor.findings import Finding, Status, ok, shipped
from assetd.doctor.host import (
    UNIT,
    UNIT_FOLDERS,
    check_inotify,
    check_network,
    check_roots,
    check_unit,
    watch_verdict,
)
from assetd.exceptions import AssetdError

__all__ = [
    "UNIT_FOLDERS",
    "Finding",
    "GiB",
    "MiB",
    "Probes",
    "Status",
    "check_catalog",
    "check_disk",
    "check_feed",
    "check_inotify",
    "check_network",
    "check_roots",
    "check_state_dir",
    "check_unit",
    "exposure_verdict",
    "run_checks",
    "schema_verdict",
    "space_verdict",
    "watch_verdict",
]


@dataclass(frozen=True)
class Probes:
    """Where the checks look; tests point these at files and functions of their own."""

    inotify_limits: str = "/proc/sys/fs/inotify"
    mountinfo: str = "/proc/self/mountinfo"
    unit_folders: Sequence[str] = UNIT_FOLDERS
    packaged_unit: str | None = field(default_factory=lambda: shipped(UNIT))
    scandir: Callable[[str], Any] = os.scandir
    access: Callable[[str, int], bool] = os.access
    statvfs: Callable[[str], os.statvfs_result] = os.statvfs
    systemd_analyze: str | None = field(default_factory=lambda: shutil.which("systemd-analyze"))


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
        ("systemd", lambda: check_unit(p.unit_folders, p.packaged_unit, p.systemd_analyze)),
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
