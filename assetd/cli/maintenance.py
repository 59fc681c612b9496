"""``doctor`` and ``backup``: looking after a setup and its catalog."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from assetd.cli import output
from assetd.cli.parser import EXIT_ERROR, EXIT_OK
from assetd.config import Config

__all__ = ["cmd_backup", "cmd_doctor", "doctor_lines"]

_SHOWN = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    """Every check, as lines a person reads or as one JSON object; 1 when one failed."""
    from assetd.doctor import run_checks

    findings = run_checks(config)
    failed = any(f.status == "fail" for f in findings)
    if args.json:
        output.print_json({"ok": not failed, "checks": [f.to_json() for f in findings]})
    else:
        for line in doctor_lines([(f.status, f.check, f.message, f.fix) for f in findings]):
            print(line)
        sys.stdout.flush()
    return EXIT_ERROR if failed else EXIT_OK


def doctor_lines(findings: Sequence[tuple[str, str, str, str | None]]) -> list[str]:
    """``STATUS CHECK MESSAGE`` lines, the fix indented under its finding, a summary last."""
    width = max((len(check) for _, check, _, _ in findings), default=0)
    lines = []
    for status, check, message, fix in findings:
        lines.append(f"{_SHOWN[status]:<4}  {check:<{width}}  {output.escape(message)}")
        if fix:
            lines.append(f"  fix: {output.escape(fix)}")
    counts = {s: sum(1 for f in findings if f[0] == s) for s in _SHOWN}
    verdict = "something needs fixing" if counts["fail"] else "all is well"
    lines.append(
        f"doctor: {verdict} ({counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed)"
    )
    return lines


def cmd_backup(args: argparse.Namespace, config: Config) -> int:
    """A checked copy of the SQLite catalog at FILE; one JSON line says what it holds."""
    from assetd.backup import backup_catalog

    sys.stdout.write(json.dumps(backup_catalog(config.database, args.file)) + "\n")
    return EXIT_OK
