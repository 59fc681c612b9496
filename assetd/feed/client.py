"""One feed client: its subscription, its ordered queue, and what it has not yet read.

Frames are written straight to the client's transport when nothing waits before them
(the queue is empty and the pump is not sending); otherwise they wait in the queue,
in order, for the server's pump. A client is behind when ``limit`` messages are still
unsent: in the queue, or written but not yet taken by the kernel. One commit's messages
go together (a renamed folder can be thousands), so a client holds at most ``limit``
plus one commit's worth.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from assetd.catalog import Change
from assetd.feed.frames import Message

__all__ = ["Batch", "Client", "Replay", "Transport"]


class Transport(Protocol):
    """What a client needs of its connection's transport."""

    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Replay:
    """A queued request to replay the change log after ``since``."""

    since: int


class Batch:
    """What one flush sends, in commit order; joined once for all who take all of it."""

    __slots__ = ("_blob", "first_seq", "has_changes", "last_seq", "messages")

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        seqs = [m.seq for m in messages if m.seq]
        self.has_changes = bool(seqs)
        self.first_seq = seqs[0] if seqs else 0
        self.last_seq = seqs[-1] if seqs else 0
        self._blob: bytes | None = None

    @property
    def blob(self) -> bytes:
        if self._blob is None:
            self._blob = b"".join(m.frame for m in self.messages)
        return self._blob


class Client:
    """A connection's side of the feed; ``is_open`` says whether frames may still be
    written (not once a close frame has gone)."""

    def __init__(
        self, transport: Transport, limit: int, *, is_open: Callable[[], bool] = lambda: True
    ) -> None:
        self.transport = transport
        self.limit = limit
        self.is_open = is_open
        self.queue: asyncio.Queue[Message | Replay] = asyncio.Queue()
        self.busy = False  # the pump is between taking an item and having written it
        self.subscribed = False
        self.roots: set[str] | None = None
        self.cursor = 0  # the highest change sequence number sent (or skipped as known)
        self.dropped = False
        self.written = 0  # bytes written to the transport, ever
        # Where each counted write ends in the transport's stream, and its messages.
        self.writes: collections.deque[tuple[int, int]] = collections.deque()
        self.in_flight = 0  # messages in ``writes``

    def wants(self, message: Message) -> bool:
        """Events and replies always; changes when subscribed to their root."""
        if not message.seq:
            return True
        return self.subscribed and (self.roots is None or message.root in self.roots)

    def behind(self) -> bool:
        """Whether ``limit`` messages or more are still unsent."""
        if self.dropped:
            return True
        taken = self.written - self.transport.get_write_buffer_size()
        writes = self.writes
        while writes and writes[0][0] <= taken:
            self.in_flight -= writes.popleft()[1]
        return self.queue.qsize() + self.in_flight >= self.limit

    def send(self, batch: Batch) -> bool:
        """Send a flush's messages this client wants; False when it is too far behind."""
        takes_all = (not batch.has_changes or (self.subscribed and self.roots is None)) and (
            batch.first_seq == 0 or batch.first_seq > self.cursor
        )
        if not takes_all or self.busy or not self.queue.empty():
            return self.push(*[m for m in batch.messages if self.wants(m)])
        if self.behind():
            return False
        self.cursor = max(self.cursor, batch.last_seq)
        self.write(batch.blob, len(batch.messages))
        return True

    def push(self, *items: Message | Replay) -> bool:
        """Send or queue messages, in order; False when the client is too far behind.

        A replay needs the pump, and so does everything after it."""
        if self.behind():
            return False
        if self.busy or not self.queue.empty():
            for item in items:
                self.queue.put_nowait(item)
            return True
        frames = []
        for index, item in enumerate(items):
            if isinstance(item, Replay):
                for rest in items[index:]:
                    self.queue.put_nowait(rest)
                break
            if item.seq:
                if item.seq <= self.cursor:
                    continue
                self.cursor = item.seq
            frames.append(item.frame)
        self.write(b"".join(frames), len(frames))
        return True

    def deliver(self, message: Message) -> None:
        """Write one message the pump took from the queue, unless a replay sent it."""
        if not message.seq or message.seq > self.cursor:
            self.cursor = max(self.cursor, message.seq)
            self.write(message.frame, 1)

    def replay(self, changes: Sequence[Change]) -> None:
        """Write a page of the change log, those of this client's roots.

        Its frames do not count towards being behind: the replay waits for the
        transport to drain after each page, so it never piles up unsent."""
        frames = []
        for change in changes:
            self.cursor = change.seq
            if self.roots is None or change.root in self.roots:
                frames.append(Message.of_change(change).frame)
        self.write(b"".join(frames), 0)

    def write(self, data: bytes, messages: int) -> None:
        if not data or not self.is_open():
            return
        self.written += len(data)
        if messages:
            self.writes.append((self.written, messages))
            self.in_flight += messages
        self.transport.write(data)
