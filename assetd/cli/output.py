"""What the command line prints: JSON lines, the ``ls`` line, the scan summary."""

from __future__ import annotations

import base64
import json
import re
import sys
from typing import Any, BinaryIO

__all__ = [
    "error",
    "escape",
    "ls_line",
    "print_check",
    "print_json",
    "scan_summary",
    "write_location",
]

SUMMARY_KEYS = ("scanned", "total", "created", "skipped", "hashed", "marked_missing", "restored")


def print_json(value: Any) -> None:
    """One JSON value on one line of stdout, flushed (a reader may be following)."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def error(exc: BaseException, hint: str | None = None) -> None:
    """The one line on stderr that says why a command failed (and what to do)."""
    print(f"assetd: {exc}" + (f"; {hint}" if hint else ""), file=sys.stderr)


def warn(message: str) -> None:
    """One line on stderr that the command goes on after."""
    print(f"assetd: warning: {message}", file=sys.stderr)


def write_location(out: BinaryIO, item: dict[str, Any], as_json: bool) -> None:
    """One location of ``ls``, as JSON or as the line a person reads."""
    if as_json:
        out.write(json.dumps(item, ensure_ascii=False).encode() + b"\n")
    else:
        out.write(ls_line(item) + b"\n")


def ls_line(item: dict[str, Any]) -> bytes:
    """``PATH<TAB>[MISSING ]ROOT SIZE DIGEST [TAGS]``, the path and the tags escaped
    (:func:`escape`), so that the line is one location whatever the names hold."""
    if "path_bytes_b64" in item:
        path = base64.b64decode(item["path_bytes_b64"]).decode("utf-8", "surrogateescape")
    else:
        path = item["path"]
    digest = (item["hash"] or "unhashed").removeprefix("blake3:")[:12]
    flag = "MISSING " if item["is_missing"] else ""
    tags = ",".join(escape(tag) for tag in item["tags"])
    meta = f"{flag}{item['root']} {item['size']} {digest} [{tags}]"
    return f"{escape(path)}\t{meta}".encode()


# A backslash, C0 controls, DEL, C1 controls, the line and paragraph separators (which
# str.splitlines() takes as line ends), and the bytes that are not UTF-8 (carried by
# os.fsdecode as the surrogates U+DC80-U+DCFF).
_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape(name: str) -> str:
    r"""``name`` (``os.fsdecode`` style) as text that is safe on one line and is undone
    without guessing: ``\\`` is a backslash; ``\n``, ``\t``, ``\r`` are newline, tab and
    carriage return; ``\xHH`` is always the byte HH of the name, whether of a control
    character (a C1 one is its two UTF-8 bytes) or a byte that is not UTF-8."""
    return _UNSAFE.sub(_escaped, name)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    raw = char.encode("utf-8", "surrogateescape")
    return "".join(f"\\x{byte:02x}" for byte in raw)


def scan_summary(progress: dict[str, Any], errors: int | None) -> dict[str, Any]:
    """The last line of ``scan``; ``errors`` only when the pass ran here and counted them."""
    summary = {key: progress.get(key, 0) for key in SUMMARY_KEYS}
    summary["modified"] = progress.get("modified", 0)
    if errors is not None:
        summary["errors"] = errors
    return summary


def print_check(workflow: str, items: list[dict[str, Any]]) -> None:
    """A workflow's models as a person reads them: one line each, what to do beside
    the ones that are not present."""
    present = sum(1 for item in items if item["status"] == "present")
    print(f"{workflow}: {len(items)} models, {present} present")
    for item in items:
        where = {
            "present": item["path"],
            "elsewhere": "found at " + ", ".join(item["candidates"]),
            "missing": f"was at {item['path']}",
            "unknown": f"get it from {item['url']}" if item["url"] else "not in the catalog",
        }[item["status"]]
        category = item["category"] or "?"
        name = escape(item["name"])
        print(f"  {item['status']:<9} {category:<18} {name}  {escape(where)}")
