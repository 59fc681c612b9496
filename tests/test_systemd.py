"""The systemd unit is valid and hardened (checked with systemd-analyze where it exists)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT = REPO / "systemd" / "assetd.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


UNITS = ["assetd.service", "assetd-verify.service"]


def local_unit(tmp_path: Path, name: str = "assetd.service") -> Path:
    """The unit with ExecStart pointing at this installation's assetd (timers beside it)."""
    exe = Path(sys.executable).parent / "assetd"
    if not exe.exists():
        pytest.skip(f"no assetd entry point beside {sys.executable}")
    for unit in (REPO / "systemd").glob("assetd*.[st]*"):
        text = unit.read_text().replace("/usr/local/bin/assetd", str(exe))
        (tmp_path / unit.name).write_text(text)
    return tmp_path / name


def test_unit_is_notify_with_reload_and_state_directory() -> None:
    """Type=notify, ExecReload sends SIGHUP, the catalog lives in the state directory."""
    text = UNIT.read_text()
    assert re.search(r"^Type=notify$", text, re.M)
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", text, re.M)
    assert re.search(r"^StateDirectory=assetd$", text, re.M)
    assert re.search(r"^WatchdogSec=", text, re.M)


@needs_analyze
@pytest.mark.parametrize("name", [*UNITS, "assetd-verify.timer"])
def test_unit_verifies(tmp_path: Path, name: str) -> None:
    """systemd-analyze verify finds nothing wrong with the unit."""
    proc = subprocess.run(
        [ANALYZE, "verify", str(local_unit(tmp_path, name))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [line for line in proc.stderr.splitlines() if "assetd" in line]
    assert proc.returncode == 0 and not problems, proc.stderr


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_unit_exposure_is_low(tmp_path: Path, name: str) -> None:
    """systemd-analyze security rates the unit's exposure at 2.0 or below."""
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(local_unit(tmp_path, name))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 2.0
