"""The asset browser page in a real headless Chromium, against a real daemon."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OLD_NS, run_cli, wait_for, write
from tests.harness import listed_by_path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium)"
)

BROWSER_ARGS = [
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def row(page: Any, path: Path) -> Any:
    return page.locator(f'tr[data-path="{path}"]')


def test_page_follows_the_disk_and_tags_reach_the_catalog(
    tmp_path: Path, make_daemon: Any, page: Any
) -> None:
    """Created files appear, deleted ones turn missing, a tag added on the page is in ls --json."""
    first = write(tmp_path / "r" / "models" / "first.safetensors", "first", OLD_NS)
    d = make_daemon().start()
    page.goto(f"http://{d.address}/")
    row(page, first).wait_for()
    assert "models" in row(page, first).inner_text()
    page.locator("#conn.live").wait_for()

    created = write(tmp_path / "r" / "new.png", "made while the page was open")
    row(page, created).wait_for()

    page.check("#missing")
    first.unlink()
    page.locator(f'tr.missing[data-path="{first}"]').wait_for()
    assert "missing" in row(page, first).inner_text()
    page.uncheck("#missing")
    row(page, first).wait_for(state="detached")

    target = row(page, created)
    target.locator(".tag-input").fill("favourite")
    target.locator(".tag-add").click()
    page.locator(f'tr[data-path="{created}"] .tag[data-tag="favourite"]').wait_for()
    listed = listed_by_path(run_cli("ls", "--json", *d.args()).stdout)
    assert "favourite" in listed[str(created)]["tags"]

    assert page.locator(f'tr[data-path="{created}"] .tag[data-tag="r"] .tag-remove').count() == 0
    assert page.locator(f'tr[data-path="{created}"] .tag.auto[data-tag="r"]').count() == 1
    page.locator(f'tr[data-path="{created}"] .tag[data-tag="favourite"] .tag-remove').click()
    page.locator(f'tr[data-path="{created}"] .tag[data-tag="favourite"]').wait_for(state="detached")

    page.fill("#tag", "models")
    row(page, created).wait_for(state="detached")


def test_page_reconnects_and_misses_nothing(tmp_path: Path, make_daemon: Any, page: Any) -> None:
    """The daemon restarts; the page reconnects by itself with since and shows what it missed."""
    port = free_port()
    d = make_daemon()
    d.feed_listen = f"127.0.0.1:{port}"
    write(tmp_path / "r" / "before.bin", "before", OLD_NS)
    d.start()
    page.goto(f"http://127.0.0.1:{port}/")
    row(page, tmp_path / "r" / "before.bin").wait_for()
    page.locator("#conn.live").wait_for()
    assert d.stop() == 0
    page.locator("#conn:not(.live)").wait_for()
    while_down = write(tmp_path / "r" / "while-down.bin", "made while the daemon was down", OLD_NS)
    d.start()
    row(page, while_down).wait_for()
    later = write(tmp_path / "r" / "later.bin", "after the restart")
    row(page, later).wait_for()
    hashes = page.locator(f'tr[data-path="{later}"] td.hash')
    wait_for(lambda: hashes.inner_text() not in ("—", "hashing…"), 20, "hash shown")
    assert os.path.exists(while_down)
