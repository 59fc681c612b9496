"""The survey of a tree: its walk merged with the catalog's rows, in path order.

Both streams are in byte order, so the merge holds one row and one file at a time and
yields an observation for every path whose file and row disagree. The seeder surveys
whole roots (or spans of one, in worker processes: :func:`index_span`); the reconciler
surveys the folders that hints name, and hands a burst's new folders to worker
processes (:func:`survey_new`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator
from typing import NamedTuple

from assetd.apply import Observation, Tally, observe
from assetd.catalog import Catalog
from assetd.catalog.sql import CHUNK, STORED_STAT, StateRow, state_of_row
from assetd.catalog.tags import Layer
from assetd.config import RootConfig
from assetd.decide import FileStat, Outcome, decide, unchanged
from assetd.hashing import LARGE_FILE, HashResult, hash_file
from assetd.paths import ExcludeMatcher, prefix_upper_bound
from assetd.prepare import READY_FILES, Prepared, opened, prepare
from assetd.walk import Entry, Problem, Span, Unlisted, walk_root

__all__ = ["Found", "Surveyed", "index_span", "survey", "survey_new", "survey_new_elsewhere"]

Problems = Callable[[str, bytes, str], None]  # (root name, path, message)


def survey(
    catalog: Catalog,
    root: RootConfig,
    follow_symlinks: bool,
    on_problem: Problems,
    tally: Tally,
    top: bytes | None = None,
    span: Span = (None, None),
) -> Iterator[Observation]:
    """Merge the walk of ``root`` (or of its folder ``top``) with the catalog's rows.

    Both streams are in byte order, so the merge holds one row and one file at a time.
    Unchanged files are only counted (``tally.skipped``), not yielded.
    Rows under a folder that could not be listed are left exactly as they are; rows
    under a ``top`` that no longer exists are all missing. With ``span``, only the
    paths in that byte range, on disk and in the catalog.
    """
    top = top if top is not None else os.fsencode(root.path)
    walk = walk_root(
        top,
        exclude=ExcludeMatcher(root.exclude),
        follow_symlinks=follow_symlinks,
        root_prefix=root.prefix,
        span=span if span != (None, None) else None,
    )
    rows = catalog.locations.iter_rows(top.rstrip(b"/") + b"/", span=span)
    row: StateRow | None = next(rows, None)  # raw: most are unchanged, and never built
    for item in walk:
        if isinstance(item, Problem):
            on_problem(root.name, item.path, item.message)
            continue
        key = item.path + b"/" if isinstance(item, Unlisted) and item.is_dir else item.path
        while row is not None and row[1] < key:
            yield observe(row[1], root.name, None, state_of_row(row))
            row = next(rows, None)
        if isinstance(item, Unlisted):
            on_problem(root.name, item.path, f"cannot read: {item.message}")
            end = prefix_upper_bound(key) if item.is_dir else key + b"\0"
            while row is not None and row[1] < end:
                row = next(rows, None)
            continue
        assert isinstance(item, Entry)
        tally.scanned += 1
        tally.total += 1
        if row is not None and row[1] == item.path:
            if unchanged(item.stat, row[STORED_STAT], row[9], row[10]):
                tally.skipped += 1  # the common case on a restart: nothing to write
            else:
                state = state_of_row(row)
                decision = decide(item.stat, state)
                if decision.outcome is Outcome.UNCHANGED:
                    tally.skipped += 1
                else:
                    yield Observation(item.path, root.name, item.stat, state, decision)
            row = next(rows, None)
        else:
            yield observe(item.path, root.name, item.stat, None)
    while row is not None:
        yield observe(row[1], root.name, None, state_of_row(row))
        row = next(rows, None)


class Found(NamedTuple):
    """What a worker's walk of a span sends as it goes (counts since the last one)."""

    prepared: Prepared  # the new files, ready to insert
    seen: list[Observation]  # the other paths whose file and row disagree
    counts: dict[str, int]
    problems: list[tuple[str, bytes, str]]


def index_span(
    url: str,
    layer: Layer | None,
    root: RootConfig,
    follow_symlinks: bool,
    span: Span,
    hash_small: bool,
) -> Iterator[Found]:
    """:func:`survey` over one span, in a worker process, with the new files made ready
    there (:func:`assetd.prepare.prepare`): sent a few hundred at a time, so that the
    writer has its first rows at once and never waits for a whole span."""
    catalog = opened(url, layer)
    tally = Tally()
    problems: list[tuple[str, bytes, str]] = []
    new: list[tuple[bytes, FileStat]] = []
    seen: list[Observation] = []
    sent = Tally()

    def found() -> Found:
        prepared = (
            prepare(catalog, root.name, new, follow_symlinks=follow_symlinks, hash_small=hash_small)
            if new
            else Prepared([], [])
        )
        counts = {
            "scanned": tally.scanned - sent.scanned,
            "total": tally.total - sent.total,
            "skipped": tally.skipped - sent.skipped,
        }
        sent.scanned, sent.total, sent.skipped = tally.scanned, tally.total, tally.skipped
        out = Found(prepared, list(seen), counts, list(problems))
        new.clear()
        seen.clear()
        problems.clear()
        return out

    def problem(name: str, path: bytes, message: str) -> None:
        problems.append((name, path, message))

    for obs in survey(catalog, root, follow_symlinks, problem, tally, span=span):
        if obs.decision.outcome is Outcome.NEW and obs.stat is not None:
            new.append((obs.path, obs.stat))
            if len(new) >= READY_FILES:
                yield found()
        else:
            seen.append(obs)
            if len(seen) >= CHUNK:
                yield found()
    yield found()


class Surveyed(NamedTuple):
    """What :func:`survey_new` found: the files made ready, the other paths to look at
    again (paths only: the writer looks afresh), and what could not be read."""

    prepared: Prepared
    again: list[bytes]
    problems: list[tuple[str, bytes, str]]


def survey_new(
    catalog: Catalog,
    root: RootConfig,
    top: bytes,
    follow_symlinks: bool,
    complete: Collection[bytes],
    settle_ns: int,
    hasher: Callable[..., HashResult] = hash_file,
) -> Surveyed:
    """The live path's survey of ``top``, a folder new when its hint came, with its
    complete small files made ready (:func:`assetd.prepare.prepare`, ``closed``):
    complete when in ``complete`` (closed, as hints said) or unmodified for
    ``settle_ns``. Everything else it finds is sent back, for the writer to look at
    again: it holds back files being written, as it would have here."""
    problems: list[tuple[str, bytes, str]] = []
    still_before = time.time_ns() - settle_ns
    new: list[tuple[bytes, FileStat]] = []
    again: list[bytes] = []

    def problem(name: str, path: bytes, message: str) -> None:
        problems.append((name, path, message))

    for obs in survey(catalog, root, follow_symlinks, problem, Tally(), top=top):
        stat = obs.stat
        if (
            obs.decision.outcome is Outcome.NEW
            and stat is not None
            and stat.size < LARGE_FILE
            and (stat.mtime_ns <= still_before or obs.path in complete)
        ):
            new.append((obs.path, stat))
        else:
            again.append(obs.path)
    prepared = prepare(
        catalog, root.name, new, follow_symlinks=follow_symlinks, closed=True, hasher=hasher
    )
    return Surveyed(prepared, again, problems)


def survey_new_elsewhere(
    url: str,
    layer: Layer | None,
    root: RootConfig,
    top: bytes,
    follow_symlinks: bool,
    complete: frozenset[bytes],
    settle_ns: int,
) -> Surveyed:
    """:func:`survey_new`, in a worker process, on its own connection to the catalog."""
    return survey_new(opened(url, layer), root, top, follow_symlinks, complete, settle_ns)
