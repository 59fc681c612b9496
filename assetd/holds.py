"""What the live path holds back, and until when.

A vanished file waits for its new path to be seen (a move reported in two halves); a
file just created waits a moment for its close; a file being written waits for its next
report. Each held path is looked at again when its time is due. No I/O here: the
reconciler asks what to write now, and which paths to look at again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from assetd.apply import Observation
from assetd.decide import Outcome

__all__ = ["MOVE_WINDOW_S", "NEW_GRACE_S", "REPORT_EVERY_S", "Holds"]

# How long a vanished file waits for its other half (a move's new path reported apart,
# by another root's watcher or a late event) before it is marked missing.
MOVE_WINDOW_S = 0.5
# A file being written is reported at most this often; its hash once it is complete.
REPORT_EVERY_S = 1.0
# A file just created waits this long for its close, so that a file written at once (a
# create, a write and a close microseconds apart) is one ``added`` with its hash.
NEW_GRACE_S = 0.05


class Holds:
    """The paths held back from writing, each with the time to look at it again."""

    def __init__(
        self, *, move_window_s: float = MOVE_WINDOW_S, report_every_s: float = REPORT_EVERY_S
    ) -> None:
        self.move_window_s = move_window_s
        self.report_every_s = report_every_s
        self._vanishing: dict[bytes, float] = {}  # path -> when it may be marked missing
        self._later: dict[bytes, float] = {}  # path -> when to report what was held back
        self._reported: dict[bytes, float] = {}  # path -> when its last change was written
        self._born: dict[bytes, float] = {}  # new paths held back: when first seen
        self._gone: set[bytes] = set()  # vanished paths whose wait is over
        self._taken: list[bytes] = []  # paths being looked at again
        self._prune_at = 1000  # entries of _reported before the old ones are dropped

    def empty(self) -> bool:
        return not (self._vanishing or self._later or self._taken)

    def next_due(self) -> float | None:
        dues = [*self._vanishing.values(), *self._later.values()]
        return min(dues) if dues else None

    def sort(
        self,
        observations: Sequence[Observation],
        complete: Callable[[bytes], bool],
        now: float,
        fresh_since_ns: int,
    ) -> list[Observation]:
        """The observations to write now; the others are held, each until its time."""
        out: list[Observation] = []
        for obs in observations:
            outcome = obs.decision.outcome
            if _just_created(obs, fresh_since_ns) and not complete(obs.path):
                born = self._born.setdefault(obs.path, now)
                if now - born < NEW_GRACE_S:
                    self._later.setdefault(obs.path, born + NEW_GRACE_S)
                    continue
            self._born.pop(obs.path, None)
            if outcome is Outcome.MISSING and obs.path not in self._gone:
                self._vanishing.setdefault(obs.path, now + self.move_window_s)
                continue
            if outcome is Outcome.MODIFIED:
                assert obs.state is not None
                last = self._reported.get(obs.path)
                if obs.state.needs_verify and last is not None and now - last < self.report_every_s:
                    self._later.setdefault(obs.path, last + self.report_every_s)
                    continue
            if outcome in (Outcome.NEW, Outcome.MODIFIED):
                self._reported[obs.path] = now
            out.append(obs)
        if len(self._reported) > self._prune_at:
            self._reported = {
                p: t for p, t in self._reported.items() if now - t < self.report_every_s
            }
            # Not again before it has doubled: a burst reports thousands a second.
            self._prune_at = max(1000, 2 * len(self._reported))
        return out

    def reported(self, paths: Sequence[bytes], now: float) -> None:
        """These new files were written elsewhere than :meth:`sort` saw (a new folder's
        survey): their next change is reported no sooner than any other's."""
        for path in paths:
            self._reported[path] = now

    def complete(self, path: bytes) -> None:
        """The file at ``path`` is complete: its hash reports where it ended."""
        self._later.pop(path, None)

    def take_due(self, now: float = math.inf) -> list[bytes]:
        """The paths due to be looked at again (all of them by default); a vanished one
        among them is written as missing if the look finds it still gone. Until
        :meth:`done` or :meth:`put_back`, they count as held."""
        later = [p for p, when in self._later.items() if when <= now]
        for path in later:
            # Off before the look, which may hold a path back again (a new due time).
            del self._later[path]
        gone = [p for p, when in self._vanishing.items() if when <= now]
        self._gone.update(gone)
        self._taken = later + gone
        return list(self._taken)

    def done(self) -> None:
        """The paths taken were looked at and written."""
        for path in self._gone:
            self._vanishing.pop(path, None)
        self._gone.clear()
        self._taken = []

    def put_back(self, now: float) -> None:
        """The paths taken could not be written: due again."""
        for path in self._taken:
            if path not in self._gone:
                self._later.setdefault(path, now)
        self._gone.clear()
        self._taken = []


def _just_created(obs: Observation, fresh_since_ns: int) -> bool:
    """A new file modified since ``fresh_since_ns``: it may still be being written."""
    return (
        obs.decision.outcome is Outcome.NEW
        and obs.stat is not None
        and obs.stat.mtime_ns > fresh_since_ns
    )
