"""Verify: re-hash files whose stat says nothing changed, to catch what stat cannot.

A file replaced by one of the same size and mtime (a copy tool that keeps times, a
disk that rots) looks unchanged to every pass. ``verify`` reads such files again, all
of them or a random sample, at a bounded rate so that it can run beside real work; a
file whose content differs is logged ``modified`` and joins the asset of its new
content, exactly as if a pass had seen it change. Tags stay with the old content's
asset, as they do for every modification.

The cycle is left to the operator's scheduler (``systemd/assetd-verify.timer`` runs a
sample daily), not to a timer inside the daemon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from assetd.apply import Tally, apply_hashes
from assetd.catalog import Catalog
from assetd.catalog.sql import CHUNK
from assetd.config import Config
from assetd.exceptions import VerifyBusyError
from assetd.hashing import HashOutcome, hash_file, hash_one

__all__ = ["VerifySummary", "apply_verified", "verify", "verify_roots"]

MB = 1_000_000


@dataclass
class VerifySummary:
    verified: int = 0  # files read and hashed again
    mismatched: int = 0  # same size and mtime, other content: now logged ``modified``
    bytes: int = 0
    gone: int = 0  # vanished since the catalog saw them: marked missing
    errors: int = 0  # could not be read; left as they were
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def apply_verified(catalog: Catalog, outcomes: Sequence[HashOutcome], tally: Tally) -> None:
    """Write one batch of re-hashes: a silent content change is logged ``modified`` first."""
    with catalog.write():
        for item in outcomes:
            if _silently_changed(item):
                catalog.changes.log("modified", item.state.id)
                tally.modified += 1
        apply_hashes(catalog, outcomes, tally)


def _silently_changed(item: HashOutcome) -> bool:
    """Other content although size and mtime are what the catalog has."""
    result, state = item.result, item.state
    return result is not None and result.hash != state.hash and result.stat[:2] == state.stat[:2]


_running = threading.Lock()


def verify_roots(
    catalog: Catalog,
    config: Config,
    names: Sequence[str] | None,
    *,
    write: Callable[..., Any],
    sample: int | None,
    rate_bytes_s: float | None,
) -> dict[str, Any]:
    """:func:`verify` over the named roots of ``config`` (all by default), answered as
    the feed's ``verify`` answers."""
    chosen = [config.root(name) for name in names] if names else list(config.roots)
    summary = verify(
        catalog,
        [r.prefix for r in chosen],
        write=write,
        sample=sample,
        rate_bytes_s=rate_bytes_s,
        follow_symlinks=config.follow_symlinks,
    )
    return summary.as_json()


def verify(
    catalog: Catalog,
    prefixes: Sequence[bytes],
    *,
    write: Callable[..., Any],
    sample: int | None = None,
    rate_bytes_s: float | None = 50 * MB,
    follow_symlinks: bool = False,
    hasher: Callable[..., Any] = hash_file,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> VerifySummary:
    """Re-hash every live, hashed location under ``prefixes`` (or ``sample`` of them).

    ``write(fn, *args)`` runs a catalog write (on the daemon's writer thread, or right
    away); reading never holds the write lock. ``rate_bytes_s`` bounds the read rate
    (None: as fast as the disk goes). One run at a time per process.
    """
    if not _running.acquire(blocking=False):
        raise VerifyBusyError("a verify run is going on; try again when it has finished")
    try:
        return _verify(
            catalog, prefixes, write, sample, rate_bytes_s, follow_symlinks, hasher, clock, sleep
        )
    finally:
        _running.release()


def _verify(
    catalog: Catalog,
    prefixes: Sequence[bytes],
    write: Callable[..., Any],
    sample: int | None,
    rate_bytes_s: float | None,
    follow_symlinks: bool,
    hasher: Callable[..., Any],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> VerifySummary:
    summary = VerifySummary()
    tally = Tally()
    started = clock()
    for states in _batches(catalog, prefixes, sample):
        outcomes = []
        for state in states:
            outcome = hash_one(state, follow_symlinks=follow_symlinks, hasher=hasher)
            outcomes.append(outcome)
            summary.verified += outcome.result is not None
            summary.gone += outcome.gone
            summary.errors += outcome.error is not None
            summary.mismatched += _silently_changed(outcome)
            if outcome.result is not None:
                summary.bytes += outcome.result.stat.size
            if rate_bytes_s:
                ahead = summary.bytes / rate_bytes_s - (clock() - started)
                if ahead > 0:
                    sleep(ahead)  # the rate limit: keep verify's reads to its share
        write(apply_verified, catalog, outcomes, tally)
    summary.seconds = clock() - started
    return summary


def _batches(catalog: Catalog, prefixes: Sequence[bytes], sample: int | None) -> Any:
    if sample is not None:
        ids = catalog.locations.sample_ids(prefixes, sample)
        for start in range(0, len(ids), CHUNK):
            yield catalog.locations.states_by_id(ids[start : start + CHUNK])
        return
    after = 0
    while states := catalog.locations.verify_states(prefixes, after=after):
        after = states[-1].id
        yield states
