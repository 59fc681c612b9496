"""/api/content: a live location's bytes, its headers, ranges, and what is never served."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from assetd.exceptions import InvalidRequestError, RangeNotSatisfiableError
from assetd.feed.content import (
    byte_range,
    content_disposition,
    etag_matches,
    served_type,
    thumb_size,
)
from tests.harness import OLD_NS, wait_for, write

# -- the rules, as tables ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("", 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=3-", 10, (3, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),  # more than the file: all of it
        ("bytes=5-100", 10, (5, 9)),  # an end past the file: to the end
        ("bytes=9-9", 10, (9, 9)),
        (" bytes = 2-3 ", 10, (2, 3)),
        ("BYTES=2-3", 10, (2, 3)),
        ("bytes=0-1,4-5", 10, None),  # several ranges: the whole file
        ("bytes=5-2", 10, None),  # backwards: ignored
        ("items=0-1", 10, None),  # another unit: ignored
        ("bytes=a-b", 10, None),
        ("bytes=-", 10, None),
        ("bytes=1", 10, None),
        ("bytes=-1-2", 10, None),
        ("bytes=+1-2", 10, None),
    ],
)
def test_byte_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    """A Range header gives (first, last), or None (the whole file) when it is ignored."""
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=-5", 0)]
)
def test_byte_range_unsatisfiable(header: str, size: int) -> None:
    """A range starting at or past the end (or empty) is unsatisfiable: a 416."""
    with pytest.raises(RangeNotSatisfiableError):
        byte_range(header, size)


@pytest.mark.parametrize(
    ("mime", "served"),
    [
        ("image/png", "image/png"),
        ("video/mp4", "video/mp4"),
        ("text/plain", "text/plain"),
        ("application/x-safetensors", "application/x-safetensors"),
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("text/html", "application/octet-stream"),
        ("TEXT/HTML; charset=utf-8", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("application/xhtml+xml", "application/octet-stream"),
        ("text/xml", "application/octet-stream"),
        ("application/xml", "application/octet-stream"),
        ("text/javascript", "application/octet-stream"),
        ("application/javascript", "application/octet-stream"),
        ("application/ecmascript", "application/octet-stream"),
        ("application/x-sh-script", "application/octet-stream"),
        ("application/pdf", "application/octet-stream"),
        ("application/wasm", "application/octet-stream"),
    ],
)
def test_served_type(mime: str | None, served: str) -> None:
    """Types a browser would run or render as a page are sent as bytes."""
    assert served_type(mime) == served


@pytest.mark.parametrize(
    ("header", "etag", "matches"),
    [
        (None, '"ab"', False),
        ('"ab"', '"ab"', True),
        ('W/"ab"', '"ab"', True),
        ('"x", "ab"', '"ab"', True),
        ("*", '"ab"', True),
        ('"abc"', '"ab"', False),
    ],
)
def test_etag_matches(header: str | None, etag: str, matches: bool) -> None:
    """If-None-Match: a list of tags, weak or strong, or *."""
    assert etag_matches(header, etag) is matches


@pytest.mark.parametrize(
    ("path", "header"),
    [
        (b"/r/a.png", "inline; filename*=UTF-8''a.png"),
        ("/r/café 1.png".encode(), "inline; filename*=UTF-8''caf%C3%A9%201.png"),
        (b'/r/bad\xff";.png', "inline; filename*=UTF-8''bad%FF%22%3B.png"),
    ],
)
def test_content_disposition(path: bytes, header: str) -> None:
    """The file name, percent-encoded whatever its bytes, never a quote or ; raw."""
    assert content_disposition(path) == header


@pytest.mark.parametrize(("value", "size"), [(None, 256), ("", 256), ("32", 32), ("1024", 1024)])
def test_thumb_size(value: str | None, size: int) -> None:
    """size= defaults to 256, from 32 to 1024."""
    assert thumb_size(value) == size


@pytest.mark.parametrize("value", ["31", "1025", "-5", "big", "1e3", "0"])
def test_thumb_size_outside(value: str) -> None:
    """A size outside 32..1024 is a request error (400) that says the bounds."""
    with pytest.raises(InvalidRequestError, match="32 to 1024"):
        thumb_size(value)


# -- against a daemon ------------------------------------------------------------------


def request(
    address: str,
    target: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def content_url(path: Path | bytes, **extra: str) -> str:
    raw = os.fsencode(path)
    query = f"path={quote(raw)}"
    for key, value in extra.items():
        query += f"&{key}={quote(value)}"
    return f"/api/content?{query}"


def live(d: Any, path: Path) -> dict[str, Any]:
    """The catalog's location at ``path``, once it is live and hashed."""

    def found() -> Any:
        rows, _ = d.catalog.list_locations()
        for row in rows:
            if row["path"] == str(path) and row["hash"] and not row["is_missing"]:
                return row
        return None

    return dict(wait_for(found, 30, f"{path} live and hashed"))


@pytest.fixture
def served(tmp_path: Path, make_daemon: Any) -> Any:
    root = tmp_path / "r"
    write(root / "a.png", b"\x89PNG0123456789", OLD_NS)
    write(root / "page.html", b"<script>alert(1)</script>", OLD_NS)
    write(root / "pic.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", OLD_NS)
    write(root / "café ünï.txt", b"bonjour", OLD_NS)
    write(root / "empty.bin", b"", OLD_NS)
    return make_daemon({"r": root}).start()


def test_a_live_file_is_served_with_its_headers(tmp_path: Path, served: Any) -> None:
    """A PNG comes as image/png, with nosniff, a sandbox, inline with its name, its hash
    as ETag, and Accept-Ranges."""
    path = tmp_path / "r" / "a.png"
    row = live(served, path)
    status, headers, body = request(served.address, content_url(path))
    assert (status, body) == (200, b"\x89PNG0123456789")
    assert headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"].startswith("sandbox")
    assert headers["Content-Disposition"] == "inline; filename*=UTF-8''a.png"
    assert headers["ETag"] == f'"{row["hash"]}"'
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Length"] == str(len(body))
    assert headers["Cache-Control"] == "private, no-cache"


def test_pages_and_scripts_are_sent_as_bytes(tmp_path: Path, served: Any) -> None:
    """An .html and an .svg file are application/octet-stream, still with nosniff."""
    for name in ("page.html", "pic.svg"):
        live(served, tmp_path / "r" / name)
        status, headers, body = request(served.address, content_url(tmp_path / "r" / name))
        assert status == 200 and body
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_non_ascii_name(tmp_path: Path, served: Any) -> None:
    """A non-ASCII name is percent-encoded UTF-8 in Content-Disposition."""
    path = tmp_path / "r" / "café ünï.txt"
    live(served, path)
    status, headers, body = request(served.address, content_url(path))
    assert (status, body) == (200, b"bonjour")
    assert headers["Content-Disposition"] == (
        "inline; filename*=UTF-8''caf%C3%A9%20%C3%BCn%C3%AF.txt"
    )
    assert headers["Content-Type"] == "text/plain"


def test_ranges(tmp_path: Path, served: Any) -> None:
    """bytes=a-b, a-, -n answer 206 with Content-Range; past the end, 416 with */SIZE;
    several ranges, the whole file; If-Range of another version, the whole file."""
    path = tmp_path / "r" / "a.png"
    row = live(served, path)
    url = content_url(path)
    data = b"\x89PNG0123456789"
    for header, part, span in [
        ("bytes=0-3", data[0:4], "0-3"),
        ("bytes=4-", data[4:], f"4-{len(data) - 1}"),
        ("bytes=-2", data[-2:], f"{len(data) - 2}-{len(data) - 1}"),
        ("bytes=10-999", data[10:], f"10-{len(data) - 1}"),
    ]:
        status, headers, body = request(served.address, url, headers={"Range": header})
        assert (status, body) == (206, part), header
        assert headers["Content-Range"] == f"bytes {span}/{len(data)}"
        assert headers["Content-Length"] == str(len(part))
    status, headers, body = request(served.address, url, headers={"Range": "bytes=99-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}" and body == b""
    status, _, body = request(served.address, url, headers={"Range": "bytes=0-1,3-4"})
    assert (status, body) == (200, data)
    etag = f'"{row["hash"]}"'
    status, _, body = request(served.address, url, headers={"Range": "bytes=0-1", "If-Range": etag})
    assert (status, body) == (206, data[:2])
    other = {"Range": "bytes=0-1", "If-Range": '"other"'}
    assert request(served.address, url, headers=other)[::2] == (200, data)
    empty = tmp_path / "r" / "empty.bin"
    live(served, empty)
    assert request(served.address, content_url(empty))[::2] == (200, b"")
    assert request(served.address, content_url(empty), headers={"Range": "bytes=0-"})[0] == 416


def test_etag_and_not_modified(tmp_path: Path, served: Any) -> None:
    """If-None-Match with the content's hash answers 304 without a body."""
    path = tmp_path / "r" / "a.png"
    row = live(served, path)
    status, headers, body = request(
        served.address, content_url(path), headers={"If-None-Match": f'"{row["hash"]}"'}
    )
    assert (status, body) == (304, b"") and headers["ETag"] == f'"{row["hash"]}"'
    assert request(served.address, content_url(path), headers={"If-None-Match": '"x"'})[0] == 200


def test_head(tmp_path: Path, served: Any) -> None:
    """HEAD: the headers of a GET, its Content-Length too, and no body."""
    path = tmp_path / "r" / "a.png"
    live(served, path)
    _, got, _ = request(served.address, content_url(path))
    status, headers, body = request(served.address, content_url(path), method="HEAD")
    assert (status, body) == (200, b"")
    for key in ("Content-Type", "Content-Length", "ETag", "Content-Disposition", "Accept-Ranges"):
        assert headers[key] == got[key], key
    status, headers, _ = request(served.address, "/healthz", method="HEAD")
    assert status == 200 and int(headers["Content-Length"]) > 0


def test_a_non_utf8_path_by_base64(tmp_path: Path, make_daemon: Any) -> None:
    """path_bytes_b64= names a file whose name is not UTF-8."""
    root = tmp_path / "r"
    root.mkdir()
    raw = os.fsencode(root) + b"/bad\xff.bin"
    with open(raw, "wb") as fh:
        fh.write(b"latin")
    os.utime(raw, ns=(OLD_NS, OLD_NS))
    d = make_daemon({"r": root}).start()
    wait_for(lambda: d.catalog.get_state(raw) is not None, 30, "the file catalogued")
    b64 = base64.b64encode(raw).decode()
    status, headers, body = request(d.address, f"/api/content?path_bytes_b64={quote(b64)}")
    assert (status, body) == (200, b"latin")
    assert headers["Content-Disposition"] == "inline; filename*=UTF-8''bad%FF.bin"
    assert request(d.address, "/api/content?path_bytes_b64=!!")[0] == 400
    assert request(d.address, "/api/content")[0] == 400
    assert request(d.address, "/api/content?path=relative")[0] == 400


def test_what_is_never_served(tmp_path: Path, make_daemon: Any) -> None:
    """404 for: a path outside every root, one with .. out of the root, a symlink to
    outside, a file replaced by a symlink after it was catalogued, a missing location,
    an excluded file, a FIFO, a file changed since it was catalogued."""
    root, outside = tmp_path / "r", tmp_path / "outside"
    write(outside / "secret.txt", b"secret", OLD_NS)
    write(root / "ok.txt", b"ok", OLD_NS)
    write(root / "swapped.txt", b"was here", OLD_NS)
    write(root / "gone.txt", b"gone", OLD_NS)
    write(root / "changed.txt", b"first", OLD_NS)
    write(root / "skip.tmp", b"excluded", OLD_NS)
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "linkdir").symlink_to(outside)
    os.mkfifo(root / "fifo")
    config = tmp_path / "assetd.toml"
    config.write_text(
        f'[daemon]\ndatabase = "sqlite:///{tmp_path / "state" / "assetd.db"}"\n'
        f'[[roots]]\nname = "r"\npath = "{root}"\nexclude = ["*.tmp"]\n'
        '[feed]\nlisten = "127.0.0.1:0"\n'
    )
    d = make_daemon({"r": root}, config=config).start()
    for name in ("ok.txt", "swapped.txt", "gone.txt", "changed.txt"):
        live(d, root / name)

    def not_served(path: Path | bytes) -> None:
        status, _, body = request(d.address, content_url(path))
        assert status == 404, path
        assert b"secret" not in body and b"excluded" not in body

    assert request(d.address, content_url(root / "ok.txt"))[::2] == (200, b"ok")
    not_served(outside / "secret.txt")
    not_served(os.fsencode(root) + b"/../outside/secret.txt")
    not_served(os.fsencode(root) + b"/sub/../../outside/secret.txt")
    not_served(root / "link.txt")
    not_served(root / "linkdir" / "secret.txt")
    not_served(root / "skip.tmp")
    not_served(root / "fifo")
    not_served(root / "nothing-here.txt")
    # Replaced by a symlink, deleted, rewritten: until the catalog has caught up, the
    # row no longer matches the file; after, the location is missing or another one.
    os.unlink(root / "swapped.txt")
    (root / "swapped.txt").symlink_to(outside / "secret.txt")
    not_served(root / "swapped.txt")
    os.unlink(root / "gone.txt")
    not_served(root / "gone.txt")
    write(root / "changed.txt", b"secret and longer", OLD_NS)
    status, _, body = request(d.address, content_url(root / "changed.txt"))
    assert status == 404 or body == b"secret and longer"  # never the old row's answer
    status, _, _ = request(d.address, content_url(root / "ok.txt"))
    assert status == 200  # the daemon is unharmed (the FIFO did not block it)


def test_token(tmp_path: Path, make_daemon: Any) -> None:
    """With a token: 401 without it; Bearer or ?token= serve the file; no Origin needed."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    root = tmp_path / "r"
    write(root / "a.txt", b"hello", OLD_NS)
    d = make_daemon({"r": root}, feed={"token_file": str(token_file)}).start()
    live(d, root / "a.txt")
    url = content_url(root / "a.txt")
    assert request(d.address, url)[0] == 401
    assert request(d.address, content_url(root / "a.txt", token="wrong"))[0] == 401
    bearer = {"Authorization": "Bearer s3cret"}
    assert request(d.address, url, headers=bearer)[::2] == (200, b"hello")
    assert request(d.address, content_url(root / "a.txt", token="s3cret"))[::2] == (200, b"hello")
    assert request(d.address, "/api/thumb?path=/x", headers={})[0] == 401


@pytest.mark.parametrize("target", ["/", "/healthz", "/api/assets", "/api/content?path=/x"])
def test_other_methods_are_not_allowed(tmp_path: Path, make_daemon: Any, target: str) -> None:
    """POST, PUT, DELETE (no body): 405 with Allow: GET, HEAD."""
    d = make_daemon().start()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = request(d.address, target, method=method)
        assert status == 405, (method, target)
        assert headers["Allow"] == "GET, HEAD"
    assert "Traceback" not in d.log_text()


def test_a_request_with_a_body(tmp_path: Path, make_daemon: Any) -> None:
    """A POST with a body is refused without a traceback, and the next request is served."""
    d = make_daemon().start()
    host, port = d.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /api/assets HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4")
    assert request(d.address, "/healthz")[0] == 200
    assert "Traceback" not in d.log_text()


# -- big bodies, slow and vanishing clients ------------------------------------------------

BIG = 200 << 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_big_file_is_streamed(tmp_path: Path, make_daemon: Any) -> None:
    """A 200 MiB file comes whole, its bytes right, while the daemon's memory grows by far
    less than the file; a range deep inside it comes too."""
    root = tmp_path / "r"
    root.mkdir()
    big = root / "model.bin"
    with open(big, "wb") as fh:
        fh.truncate(BIG)
        fh.seek(BIG - 5)
        fh.write(b"tail!")
    os.utime(big, ns=(OLD_NS, OLD_NS))
    d = make_daemon({"r": root}).start()
    live(d, big)
    assert d.proc is not None
    before = rss_kib(d.proc.pid)
    host, port = d.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", content_url(big))
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == BIG
    total, last, most = 0, b"", before
    while chunk := resp.read(1 << 20):
        total += len(chunk)
        last = (last + chunk)[-5:]
        most = max(most, rss_kib(d.proc.pid))  # the peak (VmHWM) is the hashing's mmap
    conn.close()
    assert (total, last) == (BIG, b"tail!")
    grown_mib = (most - before) / 1024
    assert grown_mib < 60, f"the daemon grew by {grown_mib:.0f} MiB serving 200 MiB"
    status, _, body = request(d.address, content_url(big), headers={"Range": f"bytes={BIG - 5}-"})
    assert (status, body) == (206, b"tail!")


def test_slow_and_vanishing_clients(tmp_path: Path, make_daemon: Any) -> None:
    """A client that reads slowly gets every byte; one that leaves mid-body costs nothing:
    the daemon logs no traceback and serves the next request."""
    root = tmp_path / "r"
    root.mkdir()
    size = 16 << 20
    data = os.urandom(1 << 16) * (size >> 16)
    write(root / "video.mp4", data, OLD_NS)
    d = make_daemon({"r": root}).start()
    live(d, root / "video.mp4")
    host, port = d.address.rsplit(":", 1)
    target = content_url(root / "video.mp4")

    def raw_get(sock: socket.socket) -> None:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())

    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    slow.connect((host, int(port)))
    raw_get(slow)
    got = b""
    began = time.monotonic()
    while chunk := slow.recv(64 << 10):
        got += chunk
        if time.monotonic() - began < 2:
            time.sleep(0.01)  # a slow reader: the server must wait for it, not buffer
    slow.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == data
    for _ in range(5):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            raw_get(sock)
            sock.recv(1 << 20)
        # closed mid-body
    assert request(d.address, "/healthz")[0] == 200
    assert request(d.address, target, headers={"Range": "bytes=0-9"})[::2] == (206, data[:10])
    d.wait_log("dropped: the client went away", timeout=20)  # logged as the server sees it
    assert "Traceback" not in d.log_text()


def test_a_silent_client_is_dropped_and_a_download_does_not_hold_up_a_stop(
    tmp_path: Path, make_daemon: Any
) -> None:
    """A client that never sends its request is closed after the request timeout; one
    that stops reading mid-download does not keep the daemon from stopping."""
    root = tmp_path / "r"
    write(root / "big.bin", os.urandom(1 << 16) * 512, OLD_NS)  # 32 MiB
    d = make_daemon({"r": root}).start()
    live(d, root / "big.bin")
    host, port = d.address.rsplit(":", 1)
    silent = socket.create_connection((host, int(port)), timeout=30)
    began = time.monotonic()
    assert silent.recv(1024) == b""  # closed by the server, nothing sent
    assert 5 < time.monotonic() - began < 25
    silent.close()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    stalled.connect((host, int(port)))
    target = content_url(root / "big.bin")
    stalled.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert stalled.recv(100).startswith(b"HTTP/1.1 200")
    began = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - began < 15
    stalled.close()
