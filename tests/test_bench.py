"""The benchmark suite keeps working: a CI-sized run completes (no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.timeout(600)
def test_quick_benchmarks_run() -> None:
    """`python -m bench --quick` runs every workload and prints a row for each."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "| goal " in line]
    names = [row.split(" assetd ")[0].strip() for row in rows]
    assert [n.split()[0] for n in names] == [
        "cold",
        "cold",
        "warm",
        "one",
        "one",
        "one",
        "move",
        "download",
        "live",
        "burst",
        "fan-out",
        "scale",
        "scale",
        "scale-out",
        "scale-out",
        "check",
        "comfy",
        "page",
        "page",
    ], proc.stdout
