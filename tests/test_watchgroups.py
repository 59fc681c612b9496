"""The queue between watchdog's inotify reader and its emitter: a held rename half
lets the events behind it pass (unit tests on a clock the test moves)."""

from __future__ import annotations

import threading

from assetd.watchgroups import PassingDelayedQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_event_behind_a_held_one_passes_it() -> None:
    """A rename's first half waits for its other half; a later event goes at once."""
    clock = Clock()
    q: PassingDelayedQueue[str] = PassingDelayedQueue(0.5, clock)
    q.put("moved_from a", delay=True)
    clock.now += 0.01
    q.put("created b")
    assert q.get() == "created b"
    clock.now += 0.5  # the held one is due
    assert q.get() == "moved_from a"


def test_a_held_event_that_is_due_goes_before_newer_ones() -> None:
    clock = Clock()
    q: PassingDelayedQueue[str] = PassingDelayedQueue(0.5, clock)
    q.put("moved_from a", delay=True)
    clock.now += 0.6
    q.put("created b")
    q.put("created c")
    assert [q.get(), q.get(), q.get()] == ["moved_from a", "created b", "created c"]


def test_held_events_keep_their_order_and_can_be_paired() -> None:
    """watchdog pairs a rename's halves by searching the held events: they are there."""
    clock = Clock()
    q: PassingDelayedQueue[str] = PassingDelayedQueue(0.5, clock)
    q.put("moved_from a", delay=True)
    q.put("moved_from b", delay=True)
    assert q.find(lambda e: e.endswith("b")) == "moved_from b"
    assert q.remove(lambda e: e.endswith("a")) == "moved_from a"  # its other half came
    q.put("moved a -> c")
    assert q.get() == "moved a -> c"
    clock.now += 0.5
    assert q.get() == "moved_from b"


def test_clear_drops_both_kinds_and_close_ends_a_waiting_get() -> None:
    clock = Clock()
    q: PassingDelayedQueue[str] = PassingDelayedQueue(0.5, clock)
    q.put("moved_from a", delay=True)
    q.put("created b")
    q.clear()
    got: list[str | None] = []
    reader = threading.Thread(target=lambda: got.append(q.get()))
    reader.start()  # waits: nothing is queued
    q.close()
    reader.join(10)
    assert not reader.is_alive() and got == [None]


def test_a_waiting_get_wakes_for_a_new_event() -> None:
    clock = Clock()
    q: PassingDelayedQueue[str] = PassingDelayedQueue(0.5, clock)
    q.put("moved_from a", delay=True)  # not due: the reader waits
    got: list[str | None] = []
    reader = threading.Thread(target=lambda: got.append(q.get()))
    reader.start()
    q.put("created b")
    reader.join(10)
    assert not reader.is_alive() and got == ["created b"]
