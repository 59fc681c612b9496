"""The scan's progress bar, drawn on a terminal and nowhere else."""

from __future__ import annotations

from typing import Any, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """Turns ``assets.seed.*`` events into a tqdm bar: files found, then bytes hashed.

    While registering, the total is unknown, so the bar counts files and their rate;
    while hashing, it counts bytes against the known total, with rate and ETA.
    """

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
        if kind == "assets.seed.completed":  # draw the final figures, even of a short pass
            phase = "hashing" if data.get("to_hash") else "registering"
        if phase != self._phase and phase in ("registering", "hashing"):
            self._open(phase, data)
        if self._bar is None:
            return
        if self._phase == "registering":
            self._bar.update(data["scanned"] - self._bar.n)
            self._bar.set_postfix(
                new=data["created"], missing=data["marked_missing"], refresh=False
            )
        else:
            self._bar.update(data["hashed_bytes"] - self._bar.n)
            self._bar.set_postfix(files=f"{data['hashed']}/{data['to_hash']}", refresh=False)

    def _open(self, phase: str, data: dict[str, Any]) -> None:
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: the bar is redrawn on every event
        self.close()
        self._phase = phase
        if phase == "hashing":
            self._bar = tqdm(
                total=data["to_hash_bytes"],
                desc="hashing",
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.stream,
            )
        else:
            self._bar = tqdm(desc="scanning", unit=" files", file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
