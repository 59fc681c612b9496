"""The README's first command, run verbatim on a fresh clone, reaches the page."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.harness import REPO, wait_for

PAGE_LINE = re.compile(r"assetd: page at (http://\S+/) \(feed ws://\S+/ws\)")


def first_command() -> str:
    blocks = re.findall(r"```sh\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    return str(blocks[0].strip())


@pytest.mark.timeout(600)
def test_the_first_command_installs_starts_and_shows_the_page(tmp_path: Path) -> None:
    """On a fresh clone, the README's first command installs assetd, starts the daemon
    on the default SQLite catalog, logs the page's address, and the page answers."""
    clone = tmp_path / "assetd"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASSETD_CONFIG")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")  # the default catalog's place, kept here
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", first_command()],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the shell and the daemon it starts, stopped together
        )
    try:

        def page_line() -> re.Match[str] | None:
            if proc.poll() is not None:
                raise AssertionError(f"the command ended ({proc.returncode}):\n{log.read_text()}")
            return PAGE_LINE.search(log.read_text())

        found = wait_for(page_line, timeout=540, what="the page's address in the daemon's log")
        with urllib.request.urlopen(found.group(1), timeout=10) as reply:
            assert reply.status == 200
            assert b"<html" in reply.read().lower()
        assert (tmp_path / "data" / "assetd" / "assetd.db").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert "Traceback" not in log.read_text()
