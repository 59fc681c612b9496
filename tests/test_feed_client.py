"""One feed client's ordered queue and backpressure, against a fake transport."""

from __future__ import annotations

import json
from typing import Any

from websockets.frames import Frame
from websockets.streams import StreamReader

from assetd.db import Change
from assetd.feed.client import Batch, Client, Replay
from assetd.feed.frames import Message


class FakeTransport:
    """Keeps what is written; ``unread`` bytes of it count as still buffered."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.unread = 0

    def write(self, data: bytes) -> None:
        self.data += data

    def get_write_buffer_size(self) -> int:
        return min(self.unread, len(self.data))

    def messages(self) -> list[dict[str, Any]]:
        reader = StreamReader()
        reader.feed_data(bytes(self.data))
        found = []
        while reader.buffer:
            parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
            try:
                next(parser)
            except StopIteration as done:
                found.append(json.loads(done.value.data))
        return found


def change(seq: int, root: str = "r") -> Change:
    body = json.dumps({"op": "added", "location": {"root": root, "path": f"/{root}/{seq}"}})
    return Change(seq, root, body.encode())


def live(*seqs: int, root: str = "r") -> list[Message]:
    return [Message.of_change(change(s, root)) for s in seqs]


def seqs(transport: FakeTransport) -> list[int]:
    return [m["seq"] for m in transport.messages() if m["type"] == "change"]


def subscribed(transport: FakeTransport, limit: int = 100, **kwargs: Any) -> Client:
    client = Client(transport, limit, **kwargs)
    client.subscribed = True
    return client


def pump(client: Client, log: list[Change]) -> None:
    """What the server's pump does, the log read from ``log``, one page."""
    while not client.queue.empty():
        item = client.queue.get_nowait()
        if isinstance(item, Replay):
            client.cursor = item.since
            client.replay([c for c in log if c.seq > item.since])
        else:
            client.deliver(item)


def test_messages_are_written_in_order() -> None:
    """Events, replies and changes reach the transport in the order they were sent."""
    transport = FakeTransport()
    client = subscribed(transport)
    client.push(Message.of({"type": "hello"}))
    assert client.send(Batch(live(1, 2)))
    client.push(Message.of({"type": "result", "id": 7}))
    assert client.send(Batch(live(3)))
    assert [m["type"] for m in transport.messages()] == [
        "hello", "change", "change", "result", "change",
    ]  # fmt: skip
    assert seqs(transport) == [1, 2, 3]


def test_messages_wait_in_the_queue_while_the_pump_is_busy() -> None:
    """While the pump sends, new messages queue behind it and keep their order."""
    transport = FakeTransport()
    client = subscribed(transport)
    client.busy = True
    client.send(Batch(live(1)))
    client.push(Message.of({"type": "root"}))
    client.send(Batch(live(2)))
    assert transport.data == b""
    client.busy = False
    pump(client, [])
    assert [m.get("seq", "root") for m in transport.messages()] == [1, "root", 2]


def test_a_replay_and_live_changes_overlap_without_gaps_or_repeats() -> None:
    """Live changes queued during a replay are sent only past what the replay sent."""
    transport = FakeTransport()
    client = subscribed(transport)
    log = [change(s) for s in range(1, 6)]
    client.push(Message.of({"type": "result", "id": 1}), Replay(0))
    assert client.send(Batch(live(4, 5, 6)))  # committed while the replay reads the log
    pump(client, log)
    assert transport.messages()[0]["type"] == "result"
    assert seqs(transport) == [1, 2, 3, 4, 5, 6]


def test_changes_already_sent_are_not_sent_again() -> None:
    """A flush that starts at or below the client's cursor sends only the newer changes."""
    transport = FakeTransport()
    client = subscribed(transport)
    client.cursor = 2
    assert client.send(Batch(live(1, 2, 3)))
    assert seqs(transport) == [3]


def test_root_filters_apply_to_live_changes_and_replays() -> None:
    """A client subscribed to some roots gets their changes only, replayed or live."""
    transport = FakeTransport()
    client = subscribed(transport)
    client.roots = {"a"}
    log = [change(1, "a"), change(2, "b"), change(3, "a")]
    client.push(Replay(0))
    pump(client, log)
    assert client.cursor == 3  # past b's change, though it was not sent
    assert client.send(Batch([*live(4, root="b"), *live(5, root="a")]))
    assert [(m["seq"], m["location"]["root"]) for m in transport.messages()] == [
        (1, "a"), (3, "a"), (5, "a"),
    ]  # fmt: skip


def test_unsubscribed_clients_get_events_but_no_changes() -> None:
    """Before ``subscribe``, only events reach a client."""
    transport = FakeTransport()
    client = Client(transport, 100)
    assert client.send(Batch([*live(1), Message.of({"type": "root", "root": "r"})]))
    assert [m["type"] for m in transport.messages()] == ["root"]


def test_clients_that_take_a_whole_flush_share_its_bytes() -> None:
    """A flush is joined once; every client that takes all of it writes the same bytes."""
    batch = Batch(live(1, 2, 3))
    written = []
    for _ in range(3):
        transport = FakeTransport()
        transport.write = written.append  # type: ignore[method-assign]
        assert subscribed(transport).send(batch)
    assert len(written) == 3 and written[0] is written[1] is written[2]


def test_a_client_whose_messages_stay_unread_is_too_far_behind() -> None:
    """Messages written but not taken by the kernel count; once taken, they do not."""
    transport = FakeTransport()
    transport.unread = 1 << 30  # nothing leaves the buffer
    client = subscribed(transport, limit=3)
    assert client.send(Batch(live(1, 2)))
    assert client.send(Batch(live(3)))
    assert client.behind()
    assert not client.send(Batch(live(4)))
    assert not client.push(Message.of({"type": "result"}))
    transport.unread = 0  # the client read everything
    assert not client.behind()
    assert client.send(Batch(live(4)))
    assert seqs(transport) == [1, 2, 3, 4]


def test_queued_messages_count_towards_the_limit() -> None:
    """A client whose queue holds ``limit`` messages is behind, whatever the kernel took."""
    client = subscribed(FakeTransport(), limit=3)
    client.busy = True
    assert client.send(Batch(live(1, 2, 3)))
    assert not client.send(Batch(live(4)))


def test_a_dropped_client_is_always_behind() -> None:
    """Once dropped, a client takes nothing more."""
    transport = FakeTransport()
    client = subscribed(transport)
    client.dropped = True
    assert not client.send(Batch(live(1)))
    assert transport.data == b""


def test_nothing_is_written_once_the_connection_is_closing() -> None:
    """After a close frame, no data frame may follow it."""
    transport = FakeTransport()
    client = subscribed(transport, is_open=lambda: False)
    assert client.send(Batch(live(1)))
    client.push(Message.of({"type": "result"}))
    assert transport.data == b""
