"""What every workload shares: a row of results, and the small files it walks."""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import OLD_NS

__all__ = [
    "Row",
    "commit_times",
    "hashed_locations",
    "latest_seq",
    "make_small_files",
    "tag_every",
    "vm_hwm_mib",
]


@dataclass
class Row:
    name: str
    goal: str
    assetd: list[float] = field(default_factory=list)
    reference: dict[str, list[float]] = field(default_factory=dict)
    rss_mib: float = 0.0
    note: str = ""

    def print(self) -> None:
        a = statistics.median(self.assetd) if self.assetd else float("nan")
        parts = [f"{self.name:<14} assetd {a:8.3f}s"]
        for ref, times in self.reference.items():
            r = statistics.median(times)
            parts.append(f"{ref} {r:8.3f}s ratio {a / r:5.2f}x")
        parts.append(f"peak RSS {self.rss_mib:6.1f} MiB")
        parts.append(f"goal {self.goal}")
        print(" | ".join(parts) + (f" | {self.note}" if self.note else ""), flush=True)

    def ratio(self, reference: str, to: str) -> float:
        """The median of one reference's times over another's."""
        return statistics.median(self.reference[reference]) / statistics.median(self.reference[to])


def make_small_files(
    root: Path,
    count: int,
    folders: int,
    lo: int,
    hi: int,
    seed: int = 1,
    distinct: bool = False,
) -> int:
    """``count`` files of lo..hi random bytes; ``distinct``: each holds its own number
    instead (a few bytes, every file its own asset, as in a real tree).

    Every file gets an mtime long past, as files at rest have: a file modified within
    the last seconds is racy, and its hash is checked again by the next pass.
    """
    rnd = random.Random(seed)
    total = 0
    per = max(1, count // folders)
    for i in range(count):
        folder = root / f"d{i // per:04}"
        if i % per == 0:
            folder.mkdir(parents=True, exist_ok=True)
        content = b"%d" % i if distinct else rnd.randbytes(rnd.randint(lo, hi))
        path = folder / f"f{i:07}.bin"
        path.write_bytes(content)
        os.utime(path, ns=(OLD_NS, OLD_NS))
        total += len(content)
    return total


def tag_every(db: Path, data: Path, step: int, tag: str) -> None:
    """A user tag on every ``step``-th file, through the catalog API (no daemon runs)."""
    from assetd.catalog import Catalog

    catalog = Catalog(f"sqlite:///{db}")
    try:
        i = 0
        for folder in sorted(data.iterdir()):
            for name in sorted(os.listdir(folder)):
                if i % max(1, step) == 0:
                    catalog.change_tags(os.fsencode(folder / name), [tag])
                i += 1
    finally:
        catalog.close()


def vm_hwm_mib(pid: int) -> float:
    """A process's own peak resident memory so far (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# What a catalog file says, read beside the daemon that writes it (read-only, WAL).


def latest_seq(db: Path) -> int:
    """The catalog's latest change (0 before the first)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM sequence_counter WHERE name='change'").fetchone()
        return int(row[0]) if row else 0


def hashed_locations(db: Path) -> int:
    """Live locations whose content is hashed."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (n,) = conn.execute(
            "SELECT COUNT(*) FROM cache_state l JOIN asset a ON a.id = l.asset_id "
            "WHERE NOT l.is_missing AND a.hash IS NOT NULL"
        ).fetchone()
        return int(n)


def commit_times(db: Path, after: int) -> dict[int, float]:
    """When each change after ``after`` was committed (the change log's wall-clock ``ts``)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute('SELECT seq, ts FROM "change" WHERE seq > ?', (after,))
        return dict(rows.fetchall())
