"""Between the kernel and watchdog's emitter: a file's events folded into its close,
and a held rename half that lets the events behind it pass (unit tests; the queue's on
a clock the test moves)."""

from __future__ import annotations

import threading

import pytest
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent

from assetd.inotify import fold_into_close
from assetd.watchgroups import PassingDelayedQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def queue() -> tuple[Clock, PassingDelayedQueue[str]]:
    clock = Clock()
    return clock, PassingDelayedQueue(0.5, clock)


def test_an_event_behind_a_held_one_passes_it() -> None:
    """A rename's first half waits for its other half; a later event goes at once."""
    clock, q = queue()
    q.put("moved_from a", delay=True)
    clock.now += 0.01
    q.put("created b")
    assert q.get() == "created b"
    clock.now += 0.5  # the held one is due
    assert q.get() == "moved_from a"


def test_a_held_event_that_is_due_goes_before_newer_ones() -> None:
    clock, q = queue()
    q.put("moved_from a", delay=True)
    clock.now += 0.6
    q.put("created b")
    q.put("created c")
    assert [q.get(), q.get(), q.get()] == ["moved_from a", "created b", "created c"]


def test_held_events_keep_their_order_and_can_be_paired() -> None:
    """watchdog pairs a rename's halves by searching the held events: they are there."""
    clock, q = queue()
    q.put("moved_from a", delay=True)
    q.put("moved_from b", delay=True)
    assert q.find(lambda e: e.endswith("b")) == "moved_from b"
    assert q.remove(lambda e: e.endswith("a")) == "moved_from a"  # its other half came
    q.put("moved a -> c")
    assert q.get() == "moved a -> c"
    clock.now += 0.5
    assert q.get() == "moved_from b"


def test_clear_drops_both_kinds_and_close_ends_a_waiting_get() -> None:
    _, q = queue()
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
    _, q = queue()
    q.put("moved_from a", delay=True)  # not due: the reader waits
    got: list[str | None] = []
    reader = threading.Thread(target=lambda: got.append(q.get()))
    reader.start()
    q.put("created b")
    reader.join(10)
    assert not reader.is_alive() and got == ["created b"]


# -- a file's events folded into its close (assetd.inotify.fold_into_close) -----------

C = InotifyConstants
KINDS = {
    "create": C.IN_CREATE,
    "modify": C.IN_MODIFY,
    "attrib": C.IN_ATTRIB,
    "close": C.IN_CLOSE_WRITE,
    "delete": C.IN_DELETE,
    "from": C.IN_MOVED_FROM,
    "to": C.IN_MOVED_TO,
    "mkdir": C.IN_CREATE | C.IN_ISDIR,
    "dirattrib": C.IN_ATTRIB | C.IN_ISDIR,
}


def events(spec: str) -> list[InotifyEvent]:
    """ "create a, close a" -> the events (one watch; names as given)."""
    out = []
    for item in spec.split(","):
        kind, name = item.split()
        out.append(InotifyEvent(1, KINDS[kind], 7, name.encode()))
    return out


def shown(folded: list[InotifyEvent]) -> str:
    names = {mask: kind for kind, mask in KINDS.items()}
    return ", ".join(f"{names[e.mask]} {e.name.decode()}" for e in folded)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        # a file written at once: its close says it all
        ("create a, modify a, close a", "close a"),
        ("create a, modify a, attrib a, close a", "close a"),
        # what comes after the close is kept (written again, times set after)
        ("create a, modify a, close a, attrib a", "close a, attrib a"),
        ("create a, close a, modify a", "close a, modify a"),
        # not closed yet: nothing to fold into
        ("create a, modify a", "create a, modify a"),
        # files apart, interleaved
        ("create a, create b, modify a, modify b, close b, close a", "close b, close a"),
        # a delete or a rename between keeps the events apart
        ("create a, delete a, create a, close a", "create a, delete a, close a"),
        ("modify a, from a, to a, close a", "modify a, from a, to a, close a"),
        # folders are never folded: watchdog watches a new one on its create
        ("mkdir d, dirattrib d, create d, close d", "mkdir d, dirattrib d, close d"),
    ],
)
def test_a_files_events_fold_into_its_close(given: str, kept: str) -> None:
    assert shown(fold_into_close(events(given))) == kept
