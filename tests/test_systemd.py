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


def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this installation's assetd."""
    exe = Path(sys.executable).parent / "assetd"
    if not exe.exists():
        pytest.skip(f"no assetd entry point beside {sys.executable}")
    text = UNIT.read_text().replace("/usr/local/bin/assetd", str(exe))
    path = tmp_path / "assetd.service"
    path.write_text(text)
    return path


def test_unit_is_notify_with_reload_and_state_directory() -> None:
    """Type=notify, ExecReload sends SIGHUP, the catalog lives in the state directory."""
    text = UNIT.read_text()
    assert re.search(r"^Type=notify$", text, re.M)
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", text, re.M)
    assert re.search(r"^StateDirectory=assetd$", text, re.M)
    assert re.search(r"^WatchdogSec=", text, re.M)


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing wrong with the unit."""
    proc = subprocess.run(
        [ANALYZE, "verify", str(local_unit(tmp_path))], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in proc.stderr.splitlines() if "assetd.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr


@needs_analyze
def test_unit_exposure_is_low(tmp_path: Path) -> None:
    """systemd-analyze security rates the unit's exposure at 2.0 or below."""
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 2.0
