"""What a check finds, and where assetd's shipped systemd files are."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["Finding", "Status", "fail", "ok", "shipped", "warn"]

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    """One thing a check found: ``fix`` says what to do about it (None when all is well)."""

    check: str
    status: Status
    message: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ok(check: str, message: str) -> Finding:
    return Finding(check, "ok", message)


def warn(check: str, message: str, fix: str | None) -> Finding:
    return Finding(check, "warn", message, fix)


def fail(check: str, message: str, fix: str | None) -> Finding:
    return Finding(check, "fail", message, fix)


def shipped(name: str) -> str | None:
    """A file of assetd's ``systemd/`` folder: in a checkout, or where pip installed it."""
    for folder in (
        Path(__file__).resolve().parents[2] / "systemd",
        Path(sys.prefix) / "share" / "assetd" / "systemd",
    ):
        if (folder / name).is_file():
            return str(folder / name)
    return None
