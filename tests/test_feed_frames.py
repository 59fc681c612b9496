"""Feed messages as frames: websockets' own parser reads back the same message."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from assetd.db import Change
from assetd.feed.frames import Message, text_frame


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame: Frame = done.value.value
    assert not reader.buffer, "bytes left after the frame"
    return frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_text_frames_of_every_length_class_parse_back(size: int) -> None:
    """Short, 16-bit and 64-bit payload lengths all give one final text frame."""
    payload = b"x" * size
    frame = parse(text_frame(payload))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "hello", "version": 1, "catalog": "c", "seq": 0, "state": "IDLE"},
        {"type": "result", "id": [1, {"x": None}], "ok": True, "result": {"tags": ["é"]}},
        {"type": "root", "root": "r", "state": "offline", "message": "gone"},
    ],
)
def test_a_message_parses_back_to_itself(message: dict[str, Any]) -> None:
    """A message made into a frame reads back, through websockets, as the same message."""
    assert json.loads(parse(Message.of(message).frame).data) == message


def test_a_change_frame_carries_the_logged_message() -> None:
    """A change's frame is the whole message of its log row, with its seq and root."""
    body = json.dumps({"op": "moved", "location": {"root": "r"}, "old_path": "/r/a"}).encode()
    change = Change(42, "r", body)
    message = Message.of_change(change)
    assert (message.seq, message.root) == (42, "r")
    assert json.loads(parse(message.frame).data) == change.message()


def test_a_reply_echoes_any_request_id_exactly() -> None:
    """Ids that orjson would write as null (NaN, the infinities) come back as sent."""
    reply = {"type": "result", "id": [float("nan"), float("inf"), 2**70], "ok": True}
    echoed = json.loads(parse(Message.of_reply(reply).frame).data)
    assert json.dumps(echoed) == json.dumps(reply)
