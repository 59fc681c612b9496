"""What the command line prints: JSON lines, the ``ls`` line, the scan summary."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any, BinaryIO

__all__ = ["error", "ls_line", "print_json", "scan_summary", "write_location"]

SUMMARY_KEYS = ("scanned", "total", "created", "skipped", "hashed", "marked_missing", "restored")


def print_json(value: Any) -> None:
    """One JSON value on one line of stdout, flushed (a reader may be following)."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def error(exc: BaseException) -> None:
    """The one line on stderr that says why a command failed."""
    print(f"assetd: {exc}", file=sys.stderr)


def write_location(out: BinaryIO, item: dict[str, Any], as_json: bool) -> None:
    """One location of ``ls``, as JSON or as the line a person reads."""
    if as_json:
        out.write(json.dumps(item, ensure_ascii=False).encode() + b"\n")
    else:
        out.write(ls_line(item) + b"\n")


def ls_line(item: dict[str, Any]) -> bytes:
    """``PATH<TAB>[MISSING ]ROOT SIZE DIGEST [TAGS]``, the path as its own bytes."""
    path = (
        base64.b64decode(item["path_bytes_b64"])
        if "path_bytes_b64" in item
        else item["path"].encode()
    )
    digest = (item["hash"] or "unhashed").removeprefix("blake3:")[:12]
    flag = "MISSING " if item["is_missing"] else ""
    meta = f"{flag}{item['root']} {item['size']} {digest} [{','.join(item['tags'])}]"
    return path + b"\t" + meta.encode()


def scan_summary(progress: dict[str, Any], errors: int | None) -> dict[str, Any]:
    """The last line of ``scan``; ``errors`` only when the pass ran here and counted them."""
    summary = {key: progress.get(key, 0) for key in SUMMARY_KEYS}
    summary["modified"] = progress.get("modified", 0)
    if errors is not None:
        summary["errors"] = errors
    return summary
