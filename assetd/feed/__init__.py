"""The WebSocket feed (``/ws``) and the read-only HTTP beside it, on one port."""

from __future__ import annotations

from assetd.feed.commands import decode_cursor, encode_cursor
from assetd.feed.frames import Message, text_frame
from assetd.feed.relay import Relay
from assetd.feed.server import PROTOCOL_VERSION, Feed

__all__ = [
    "PROTOCOL_VERSION",
    "Feed",
    "Message",
    "Relay",
    "decode_cursor",
    "encode_cursor",
    "text_frame",
]
