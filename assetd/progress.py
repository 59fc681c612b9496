"""The scan's progress bar, drawn on a terminal and nowhere else."""

from __future__ import annotations

from typing import Any, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """Turns ``assets.seed.*`` events into a tqdm bar: files found, then files hashed."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self._bar: Any = None
        self._phase = ""

    @classmethod
    def for_stream(cls, stream: TextIO) -> ProgressBar:
        return cls(stream if stream.isatty() else None)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if self.stream is None or kind not in ("assets.seed.progress", "assets.seed.completed"):
            return
        phase = data.get("phase", "")
        if phase != self._phase and phase in ("registering", "hashing"):
            self._open(phase, data)
        if self._bar is None:
            return
        done = data["scanned"] if self._phase == "registering" else data["hashed"]
        self._bar.update(done - self._bar.n)
        self._bar.set_postfix(
            created=data["created"], missing=data["marked_missing"], refresh=False
        )

    def _open(self, phase: str, data: dict[str, Any]) -> None:
        from tqdm import tqdm

        self.close()
        self._phase = phase
        total = data["to_hash"] if phase == "hashing" else None
        label = "hashing" if phase == "hashing" else "scanning"
        self._bar = tqdm(total=total, desc=label, unit=" files", file=self.stream, leave=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
