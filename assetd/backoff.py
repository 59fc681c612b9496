"""Waiting longer after each failure: the one exponential backoff every retry uses."""

from __future__ import annotations

__all__ = ["Backoff"]


class Backoff:
    """Delays that double from ``first`` up to ``most``; :meth:`reset` after a success.

    Not thread-safe: each retrying loop keeps its own.
    """

    def __init__(self, first: float, most: float) -> None:
        if not 0 < first <= most:
            raise ValueError(f"need 0 < first <= most, got {first} and {most}")
        self.first = first
        self.most = most
        self._next = first

    @property
    def failing(self) -> bool:
        """True once a delay has been taken since the last reset."""
        return self._next > self.first

    def delay(self) -> float:
        """The wait before the next try; the one after it doubles."""
        delay = self._next
        self._next = min(delay * 2, self.most)
        return delay

    def reset(self) -> None:
        self._next = self.first
