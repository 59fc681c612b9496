"""The asset browser page in a real headless Chromium, against a real daemon."""

from __future__ import annotations

import os
import shutil
import socket
import urllib.request
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

# The entries drawn, in the order the page shows them, as file names.
SHOWN_NAMES = """() => [...document.querySelectorAll('.entry')]
    .sort((a, b) => a._index - b._index)
    .map((e) => e.dataset.path.slice(e.dataset.path.lastIndexOf('/') + 1))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def entry(page: Any, path: Path, extra: str = "") -> Any:
    return page.locator(f'.entry{extra}[data-path="{path}"]')


def shown_names(page: Any) -> list[str]:
    return list(page.evaluate(SHOWN_NAMES))


def wait_names(page: Any, expected: list[str]) -> None:
    wait_for(lambda: shown_names(page) == expected, 20, f"the page to show {expected}")


def caught_up(page: Any, daemon: Any) -> None:
    """Wait until the page's data-seq is the daemon's latest change."""

    def same() -> bool:
        return page.evaluate("document.body.dataset.seq") == str(daemon.catalog.latest_seq())

    wait_for(same, 20, "data-seq to reach the daemon's latest seq")


def test_page_follows_the_disk(tmp_path: Path, make_daemon: Any, page: Any) -> None:
    """Entries appear; a created file appears live, a deleted one turns missing and comes
    back restored; data-seq is the daemon's latest seq after the changes."""
    first = write(tmp_path / "r" / "models" / "first.safetensors", "first", OLD_NS)
    d = make_daemon().start()
    page.goto(f"http://{d.address}/")
    entry(page, first).wait_for()
    assert "models" in entry(page, first).inner_text()
    page.locator("#conn.live").wait_for()
    assert page.inner_text("#progress-text") == "up to date: 1 file, 1 hashed (5 B)"

    created = write(tmp_path / "r" / "new.png", "made while the page was open")
    entry(page, created).wait_for()
    page.select_option("#missing", "show")
    entry(page, created).wait_for()
    first.unlink()
    entry(page, first, ".missing").wait_for()
    assert "missing" in entry(page, first).inner_text()
    write(first, "first", OLD_NS)
    entry(page, first, ":not(.missing)").wait_for()
    caught_up(page, d)
    assert [c["op"] for c in d.catalog.changes_since(0, limit=100)][-1] == "restored"

    page.select_option("#missing", "hide")
    first.unlink()
    entry(page, first).wait_for(state="detached")
    caught_up(page, d)


def test_search_sort_and_filters_change_what_is_shown(
    tmp_path: Path, make_daemon: Any, page: Any
) -> None:
    """Search by name, sort by name/date/size both ways, filter by root and tag: the
    page shows the server's answer in its order, and a live file lands in its place."""
    sizes = {"bravo.png": 300, "alpha.bin": 100, "charlie.txt": 200}
    for i, (name, size) in enumerate(sizes.items()):
        write(tmp_path / "r" / "sub" / name, b"x" * size, OLD_NS + i * 10**9)
    write(tmp_path / "other" / "delta.bin", "in the other root", OLD_NS - 10**9)
    d = make_daemon({"r": tmp_path / "r", "other": tmp_path / "other"}).start()
    page.goto(f"http://{d.address}/")
    page.click("#view-list")
    page.locator("#conn.live").wait_for()
    wait_names(page, ["delta.bin", "alpha.bin", "bravo.png", "charlie.txt"])  # path order

    page.select_option("#sort", "name")
    wait_names(page, ["alpha.bin", "bravo.png", "charlie.txt", "delta.bin"])
    page.click("#order")
    wait_names(page, ["delta.bin", "charlie.txt", "bravo.png", "alpha.bin"])
    page.select_option("#sort", "size")
    wait_names(page, ["bravo.png", "charlie.txt", "alpha.bin", "delta.bin"])
    page.select_option("#sort", "mtime")
    page.click("#order")  # oldest first
    wait_names(page, ["delta.bin", "bravo.png", "alpha.bin", "charlie.txt"])

    page.select_option("#sort", "name")
    write(tmp_path / "r" / "sub" / "becky.bin", "live, sorted into its place")
    wait_names(page, ["alpha.bin", "becky.bin", "bravo.png", "charlie.txt", "delta.bin"])

    page.fill("#q", "ALP")
    wait_names(page, ["alpha.bin"])
    page.fill("#q", ".bin")
    wait_names(page, ["alpha.bin", "becky.bin", "delta.bin"])
    write(tmp_path / "r" / "sub" / "echo.png", "does not match the search")
    write(tmp_path / "r" / "sub" / "aaron.bin", "matches the search")
    wait_names(page, ["aaron.bin", "alpha.bin", "becky.bin", "delta.bin"])
    caught_up(page, d)

    page.fill("#q", "")
    page.select_option("#root", "other")
    wait_names(page, ["delta.bin"])
    page.select_option("#root", "")
    page.fill("#tag", "sub")
    wait_names(
        page, ["aaron.bin", "alpha.bin", "becky.bin", "bravo.png", "charlie.txt", "echo.png"]
    )


def test_thumbnails_load_and_others_get_an_icon(
    tmp_path: Path, make_daemon: Any, page: Any
) -> None:
    """A PNG's tile shows a thumbnail the browser decoded; a model file shows a type icon."""
    from PIL import Image

    picture = tmp_path / "r" / "sunset.png"
    picture.parent.mkdir(parents=True)
    Image.linear_gradient("L").resize((400, 300)).convert("RGB").save(picture)
    model = write(tmp_path / "r" / "model.safetensors", "weights", OLD_NS)
    d = make_daemon().start()
    page.goto(f"http://{d.address}/")
    img = entry(page, picture).locator("img")
    img.wait_for()
    assert img.get_attribute("alt") == "sunset.png"
    wait_for(lambda: img.evaluate("i => i.complete && i.naturalWidth") > 0, 20, "a thumbnail")
    assert entry(page, model).locator(".icon.k-model").count() == 1

    entry(page, picture).click()
    big = page.locator("#pv-media img")
    wait_for(lambda: big.evaluate("i => i.complete && i.naturalWidth") > 0, 20, "a preview")
    href = page.get_attribute("#pv-open", "href")
    assert href is not None
    with urllib.request.urlopen(f"http://{d.address}{href}") as res:
        assert res.read() == picture.read_bytes()


def test_tags_round_trip_from_the_preview_and_the_list(
    tmp_path: Path, make_daemon: Any, page: Any
) -> None:
    """The preview lists every location of the content; a tag added there is in `assetd
    ls --json`; removed in the list, it is gone there too; an automatic tag has no
    remove control."""
    made = write(tmp_path / "r" / "art" / "cat.png", "a cat", OLD_NS)
    copy = write(tmp_path / "r" / "copies" / "cat.png", "a cat", OLD_NS)
    d = make_daemon().start()
    page.goto(f"http://{d.address}/")
    entry(page, made).click()
    page.locator("#pv-locations li").nth(1).wait_for()
    assert page.locator("#pv-locations li").all_inner_texts() == [str(made), str(copy)]
    page.fill("#pv-tag-input", "favourite")
    page.press("#pv-tag-input", "Enter")
    page.locator('#pv-tags .tag[data-tag="favourite"]').wait_for()
    wait_for(
        lambda: (
            "favourite"
            in listed_by_path(run_cli("ls", "--json", *d.args()).stdout)[str(made)]["tags"]
        ),
        20,
        "the tag in the catalog",
    )
    assert page.locator('#pv-auto .tag[data-tag="art"]').count() == 1
    assert page.locator('#pv-auto .tag[data-tag="art"] .tag-remove').count() == 0

    page.click("#view-list")
    row = entry(page, made)
    row.locator('.tag[data-tag="favourite"]').wait_for()
    assert row.locator('.tag[data-tag="art"] .tag-remove').count() == 0
    assert row.locator('.tag[data-tag="r"] .tag-remove').count() == 0
    row.locator('.tag[data-tag="favourite"] .tag-remove').click()
    row.locator('.tag[data-tag="favourite"]').wait_for(state="detached")
    page.locator('#pv-tags .tag[data-tag="favourite"]').wait_for(state="detached")
    listed = listed_by_path(run_cli("ls", "--json", *d.args()).stdout)
    assert "favourite" not in listed[str(made)]["tags"]

    row.locator(".tag-add-btn").click()
    row.locator(".tag-inline").fill("keeper")
    row.locator(".tag-inline").press("Enter")
    row.locator('.tag[data-tag="keeper"]').wait_for()
    listed = listed_by_path(run_cli("ls", "--json", *d.args()).stdout)
    assert "keeper" in listed[str(made)]["tags"]


def test_the_page_asks_for_the_token_once(tmp_path: Path, make_daemon: Any, page: Any) -> None:
    """With a token configured the page asks for it in a form, then lists and follows
    the feed; a reload in the same tab does not ask again."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    first = write(tmp_path / "r" / "one.bin", "one", OLD_NS)
    d = make_daemon(feed={"token_file": str(token_file)}).start()
    page.goto(f"http://{d.address}/")
    page.locator("#login:not([hidden])").wait_for()
    page.fill("#login-token", "wrong")
    page.press("#login-token", "Enter")
    page.locator("#login:not([hidden])").wait_for()
    assert "refused" in page.inner_text("#login-why")
    page.fill("#login-token", "s3cret-token")
    page.press("#login-token", "Enter")
    entry(page, first).wait_for()
    page.locator("#conn.live").wait_for()
    later = write(tmp_path / "r" / "two.bin", "two")
    entry(page, later).wait_for()
    page.reload()
    entry(page, later).wait_for()
    assert page.locator("#login").is_hidden()


def test_virtual_scrolling_keeps_the_dom_small(tmp_path: Path, make_daemon: Any, page: Any) -> None:
    """5,000 locations: fewer than 300 entries exist in the DOM at any time, and the
    last one is reached by scrolling."""
    for i in range(5000):
        path = tmp_path / "r" / f"d{i // 500:02}" / f"f{i:05}.bin"
        if i % 500 == 0:
            path.parent.mkdir(parents=True)
        path.write_bytes(b"%d" % i)
    d = make_daemon().start(wait=False)
    d.wait_started(timeout=120)
    page.goto(f"http://{d.address}/")
    page.click("#view-list")
    entry(page, tmp_path / "r" / "d00" / "f00000.bin").wait_for()
    last = entry(page, tmp_path / "r" / "d09" / "f04999.bin")
    most = 0
    while last.count() == 0:
        most = max(most, page.locator(".entry").count())
        page.locator("#scroller").evaluate("s => { s.scrollTop = s.scrollHeight; }")
        page.wait_for_function("() => !window.assetdPage.view.fetching")
    last.wait_for()
    assert 0 < most < 300 and page.locator(".entry").count() < 300
    assert "5,000 files" in page.inner_text("#count")
    page.keyboard.press("Home")
    entry(page, tmp_path / "r" / "d00" / "f00000.bin").wait_for()


def test_page_reconnects_and_misses_nothing(tmp_path: Path, make_daemon: Any, page: Any) -> None:
    """The daemon restarts; the page reconnects by itself with since and shows what it missed."""
    port = free_port()
    d = make_daemon()
    d.feed_listen = f"127.0.0.1:{port}"
    write(tmp_path / "r" / "before.bin", "before", OLD_NS)
    d.start()
    page.goto(f"http://127.0.0.1:{port}/")
    entry(page, tmp_path / "r" / "before.bin").wait_for()
    page.locator("#conn.live").wait_for()
    assert d.stop() == 0
    page.locator("#conn:not(.live)").wait_for()
    while_down = write(tmp_path / "r" / "while-down.bin", "made while the daemon was down", OLD_NS)
    d.start()
    entry(page, while_down).wait_for()
    later = write(tmp_path / "r" / "later.bin", "after the restart")
    entry(page, later).wait_for()
    caught_up(page, d)
    assert os.path.exists(while_down)


def test_the_page_loads_its_files_and_nothing_else(
    tmp_path: Path, make_daemon: Any, page: Any
) -> None:
    """The page's script, style and icon come from the daemon (no 404, nothing from
    elsewhere) under a policy that runs no inline script."""
    d = make_daemon().start()
    asked: list[tuple[str, int]] = []
    page.on("response", lambda r: asked.append((r.url, r.status)))
    page.goto(f"http://{d.address}/")
    page.locator("#conn.live").wait_for()
    page.wait_for_function("() => document.body.dataset.seq !== ''")
    base = f"http://{d.address}/"
    assert all(url.startswith(base) for url, _ in asked), asked
    assert all(status < 400 for _, status in asked), asked
    with urllib.request.urlopen(base + "favicon.ico") as res:
        assert res.headers["Content-Type"] == "image/svg+xml"
    with urllib.request.urlopen(base) as res:
        policy = res.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    for name in ("page.js.map", "static/index.html", "../setup.cfg"):
        try:
            urllib.request.urlopen(base + name)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        else:
            raise AssertionError(f"{name} was served")


def test_far_behind_the_page_lists_afresh_and_misses_nothing(
    tmp_path: Path, make_daemon: Any, page: Any
) -> None:
    """With its threshold lowered (``?far_behind=1``), a burst puts the page far behind:
    it lists afresh, and ends with every file shown and data-seq at the daemon's latest."""
    write(tmp_path / "r" / "first.bin", "first", OLD_NS)
    d = make_daemon().start()
    page.goto(f"http://{d.address}/?far_behind=1&sort=name")
    entry(page, tmp_path / "r" / "first.bin").wait_for()
    page.locator("#conn.live").wait_for()
    made = [write(tmp_path / "r" / "burst" / f"b{i:03}.bin", f"burst {i}") for i in range(200)]
    for path in made:
        d.until(path, "hashed", lambda i: i["hash"] is not None)
    caught_up(page, d)
    assert page.evaluate("window.assetdPage.feed.afresh") >= 1
    entry(page, made[0]).wait_for()
    page.wait_for_function("() => document.getElementById('count').textContent === '201 files'")
