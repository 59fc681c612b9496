"""On a catalog shared by several nodes: every node's changes, in order, to this feed.

Each writing transaction on PostgreSQL ends with ``NOTIFY assetd_change``. The relay
LISTENs on a connection of its own and, on each notification, reads the change log
after the last sequence number it passed on: the log is the truth and notifications
are only the cue to read it, so one lost or merged changes nothing. Writers take the
catalog's one writer lock, so changes commit in sequence order and a read never sees
a later one before an earlier. When the connection drops, the relay reconnects with
backoff and catches up from the log before it listens again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from assetd.backoff import Backoff
from assetd.catalog import CHANGE_CHANNEL, Catalog, Change
from assetd.exceptions import CatalogError

__all__ = ["Relay"]

log = logging.getLogger(__name__)

PAGE = 1000
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 5.0


class Relay:
    """A thread that passes every committed change after ``since`` to ``publish``."""

    def __init__(
        self, catalog: Catalog, publish: Callable[[list[Change]], None], *, since: int
    ) -> None:
        self.catalog = catalog
        self.publish = publish
        self.seq = since  # the last change passed on
        self.connected = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="assetd-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg

        backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.catalog.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANGE_CHANNEL}")
                    if not self.connected and backoff.failing:
                        log.warning("the change relay is connected again; catching up")
                    self.connected = True
                    backoff.reset()
                    self._catch_up()  # what committed before we listened, or while away
                    while not self._stop.is_set():
                        # Wake at least twice a second to notice a stop request.
                        if any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                            self._catch_up()
            except (psycopg.Error, CatalogError) as exc:
                if self.connected:
                    said = " ".join(str(exc).split())
                    log.warning("the change relay lost the catalog (%s); reconnecting", said)
                self.connected = False
                self._stop.wait(backoff.delay())

    def _catch_up(self) -> None:
        while True:
            changes = self.catalog.change_rows_since(self.seq, PAGE)
            if changes:
                self.publish(changes)
                self.seq = changes[-1].seq
            if len(changes) < PAGE:
                return
