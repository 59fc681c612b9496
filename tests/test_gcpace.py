"""Every assetd process, command line and worker alike, runs the collector at its pace."""

from __future__ import annotations

from pathlib import Path

from assetd.gcpace import YOUNG
from tests.conftest import python


def test_a_command_runs_with_the_young_generation_paced(tmp_path: Path) -> None:
    args = ["ls", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--root", f"r={tmp_path}"]
    code = (
        "import gc\n"
        "from assetd.cli import main\n"
        "before = gc.get_threshold()\n"
        f"assert main({args!r}) == 0\n"  # an empty catalog: it lists nothing
        "print(before[0], *gc.get_threshold())\n"
    )
    before, young, middle, oldest = map(int, python(code).split())
    assert before != YOUNG  # CPython's own pace until the command starts
    assert young == YOUNG
    assert (middle, oldest) == (10, 10)  # the older generations keep CPython's ratios


def test_a_worker_process_runs_with_the_young_generation_paced() -> None:
    code = (
        "import gc\n"
        "from assetd.procs import Processes\n"
        "procs = Processes(1)\n"
        f"print(gc.get_threshold()[0] == {YOUNG}, procs.call('assetd.gcpace:paced'))\n"
        "procs.close()\n"
    )
    assert python(code) == "False True"  # paced there, though its parent never was
