"""Feed messages as WebSocket text frames, serialised once however many clients get them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from websockets.frames import Frame, Opcode

from assetd.catalog import Change
from assetd.jsontext import dumps

__all__ = ["Message", "text_frame"]


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unfragmented text frame, unmasked as server frames are, so the
    same bytes suit every client."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


@dataclass(frozen=True, slots=True)
class Message:
    """A message as a finished frame, however many clients it goes to.

    ``seq`` and ``root`` are set for changes: the first deduplicates against a replay,
    the second filters by the client's roots. Other messages (events, replies) have
    ``seq`` 0 and go to whoever they are for.
    """

    frame: bytes
    seq: int = 0
    root: str | None = None

    @classmethod
    def of(cls, message: dict[str, Any]) -> Message:
        return cls(text_frame(dumps(message)))

    @classmethod
    def of_reply(cls, message: dict[str, Any]) -> Message:
        """A message for one client (a reply, the hello): written by ``json`` itself, as
        a reply echoes the request's id exactly, where orjson would write NaN and the
        infinities as null."""
        return cls(text_frame(json.dumps(message).encode()))

    @classmethod
    def of_change(cls, change: Change) -> Message:
        """A change from the log, live or replayed alike: its stored JSON, not re-encoded."""
        return cls(text_frame(change.json()), change.seq, change.root)
