"""``assetd run``: the live daemon's parts wired together, its signals, and systemd.

The main thread runs one asyncio loop: signals and the feed. watchdog
observers enqueue hints, the reconciler thread writes, the seeder thread runs full
passes through the reconciler. SIGHUP re-reads the configuration and resyncs;
SIGTERM and SIGINT finish the batch in hand and exit 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from assetd.backoff import Backoff
from assetd.catalog import Catalog, shown_url
from assetd.config import Config, RootConfig, runtime_file, state_directory
from assetd.exceptions import ConfigError
from assetd.feed import Feed, Relay
from assetd.hashpool import HashPool
from assetd.listen import bind_feed, bind_listener
from assetd.locks import NodeLock, RuntimeLock
from assetd.reconciler import Reconciler
from assetd.seeder import PARALLEL_MIN, AssetSeeder
from assetd.service import Service
from assetd.systemd import sd_notify
from assetd.thumbs import Thumbnailer
from assetd.watcher import WatchSet

if TYPE_CHECKING:
    import socket

    from assetd.comfyui.api import ComfyApi

__all__ = ["Daemon"]

log = logging.getLogger(__name__)

RETRY_PASS_FIRST_S, RETRY_PASS_MAX_S = 1.0, 30.0  # a pass stopped by an unreachable catalog


class Daemon:
    """The running daemon. ``run()`` blocks until SIGTERM or SIGINT."""

    def __init__(
        self,
        config: Config,
        *,
        reload: Callable[[], Config] | None = None,
        settle_s: float = 1.0,
        root_check_s: float = 1.0,
    ) -> None:
        self.config = config
        self.reload = reload or (lambda: config)
        self.settle_s = settle_s
        self.root_check_s = root_check_s
        self.errors: list[str] = []
        self._pending: set[str] | None = None  # roots of one more pass, queued while busy
        self._pending_prune = False
        self._next_config: Config | None = None
        self._runtime: RuntimeLock | None = None
        self._token: str | None = None
        self.passes = 0  # passes asked for: startup, SIGHUP, lost events, roots back
        self._pass_backoff = Backoff(RETRY_PASS_FIRST_S, RETRY_PASS_MAX_S)
        self.relay: Relay | None = None
        self.comfy_api: ComfyApi | None = None  # when [comfyui] listen is set
        self._feed_sock: socket.socket | None = None
        self._comfy_sock: socket.socket | None = None
        self._lock = threading.RLock()
        self._stop: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        lock_path = runtime_file(self.config.database)
        lock = RuntimeLock(lock_path) if lock_path else None
        self._token = self.config.feed.token()  # a bad token file stops us before anything runs
        # So does an address in use.
        self._feed_sock = bind_feed(self.config.feed.listen)
        if self.config.comfyui.listen:
            self._comfy_sock = bind_listener(
                self.config.comfyui.listen,
                serves="ComfyUI's asset API",
                setting="[comfyui] listen",
            )
        if lock is not None:
            lock.acquire({"pid": os.getpid(), "listen": self.config.feed.listen})
        self._runtime = lock
        node_lock: NodeLock | None = None
        try:
            self.catalog = Catalog(
                self.config.database, node=self.config.node, layer=self.config.install
            )
            try:
                if self.catalog.shared:
                    node_lock = NodeLock(self.catalog.url, self.config.node)
                # Another node's root, or one overlapping it, stops us here (exit 2).
                self.catalog.register_roots([(r.name, r.prefix) for r in self.config.roots])
                feed = self.config.feed
                self.catalog.retention = (feed.keep_changes, feed.keep_days * 86400.0)
                return asyncio.run(self._main())
            finally:
                self.catalog.close()
        finally:
            if node_lock is not None:
                node_lock.release()
            if lock is not None:
                lock.release()
            for sock in (self._feed_sock, self._comfy_sock):
                if sock is not None:
                    sock.close()

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._build(self.config)
        self.thumbnailer = Thumbnailer(
            state_directory(self.config.database, os.environ) / "thumbs",
            max_bytes=self.config.feed.thumb_cache_mb << 20,
        )
        self.reconciler.start()
        await self._start_feed()
        await self._start_comfy_api()
        self.watchers.start()  # armed before the scan, so nothing during it is lost
        self.request_pass(None, prune_first=True)
        sd_notify("READY=1\nSTATUS=startup scan running")
        log.info("serving %d roots on %s", len(self.config.roots), shown_url(self.config.database))
        log.info("page at http://%s/ (feed ws://%s/ws)", self.feed.address, self.feed.address)
        watchdog = asyncio.create_task(self._watchdog_pings())
        try:
            await self._stop.wait()
        finally:
            watchdog.cancel()
            sd_notify("STOPPING=1")
            log.info("stopping")
            await self.feed.close()
            if self.comfy_api is not None:
                await self.comfy_api.close()
            await asyncio.to_thread(self._teardown)
            await asyncio.to_thread(self.thumbnailer.shutdown)
            # Closing the loop puts the default action back on these signals; one more
            # SIGTERM or SIGINT in the last steps of an exit already under way would then
            # kill the daemon instead of letting it finish with 0.
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)
        return 0

    async def _start_feed(self) -> None:
        host, _, port = self.config.feed.listen.rpartition(":")
        host = host.strip("[]")
        if self._token is None and host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "THE FEED LISTENS ON %s WITHOUT A TOKEN: anyone who can reach this address can "
                "read and change the catalog. Set [feed] token_file.",
                self.config.feed.listen,
            )
        self.service = Service(
            self.catalog,
            config=lambda: self.config,
            seeder=lambda: self.seeder,
            reconciler=lambda: self.reconciler,
            start_pass=self._start_requested_pass,
            watch_states=lambda: self.watchers.snapshot(),
            watch=self._watch_status,
            catalog_status=self._catalog_status,
            feed=self._feed_status,
        )
        self.feed = Feed(
            self.service,
            host=host,
            port=int(port),
            sock=self._feed_sock,
            token=self._token,
            allowed_origins=self.config.feed.allowed_origins,
            queue_limit=self.config.feed.client_queue,
            thumbnailer=self.thumbnailer,
        )
        await self.feed.start()
        publish = lambda changes: self.feed.threadsafe(self.feed.publish_changes, changes)  # noqa: E731
        if self.catalog.shared:
            # Several nodes write: every change, this node's too, reaches the feed from
            # the shared log in sequence order.
            self.relay = Relay(self.catalog, publish, since=self.catalog.latest_seq())
            self.relay.start()
        else:
            self.catalog.listeners.append(publish)
        if self._runtime is not None:
            self._runtime.update({"pid": os.getpid(), "listen": self.feed.address})

    async def _start_comfy_api(self) -> None:
        if self._comfy_sock is None:
            return
        from assetd.comfyui.api import ComfyApi

        self.comfy_api = ComfyApi(
            self.service,
            sock=self._comfy_sock,
            config=lambda: self.config,
            token=self._token,
            allowed_origins=self.config.feed.allowed_origins,
        )
        await self.comfy_api.start()
        log.info("ComfyUI asset API at http://%s/api/assets", self.comfy_api.address)
        if self._runtime is not None:
            self._runtime.update(
                {"pid": os.getpid(), "listen": self.feed.address, **self._comfy_address()}
            )

    def _comfy_address(self) -> dict[str, str]:
        return {"comfyui_api": self.comfy_api.address} if self.comfy_api is not None else {}

    def _feed_status(self) -> dict[str, Any]:
        """The ``feed`` part of the status: its clients, and the ComfyUI API's address."""
        return {**self.feed.counts(), **self._comfy_address()}

    def _watch_status(self) -> dict[str, Any]:
        return {
            "overflows": self.watchers.overflows + self.reconciler.overflows,
            "hints": self.reconciler.hints_seen,
            "passes": self.passes,
            # What the live path did since the daemon started (passes report their own).
            "moved": self.reconciler.tally.moved,
            "hashed": self.reconciler.tally.hashed,
            "hashed_bytes": self.reconciler.tally.hashed_bytes,
        }

    def _catalog_status(self) -> dict[str, Any]:
        return {
            "writable": self.reconciler.catalog_error is None,
            "error": self.reconciler.catalog_error,
            "node": self.config.node,
            "shared": self.catalog.shared,
            **({"relay_connected": self.relay.connected} if self.relay else {}),
        }

    def _start_requested_pass(
        self, roots: list[str] | None, prune_first: bool, hashes: bool
    ) -> bool:
        with self._lock:
            self._apply_next_config()
            return self.seeder.start(roots, prune_first=prune_first, compute_hashes=hashes)

    def _build(self, config: Config) -> None:
        roots = config.roots
        # One set of hashing workers for the live path and the passes alike.
        self.hash_pool = HashPool(follow_symlinks=config.follow_symlinks)
        if (
            self.catalog.locations.max_location_id() >= PARALLEL_MIN
        ):  # the startup pass walks in parallel
            self.hash_pool.warm_for_walks()
        self.reconciler = Reconciler(
            self.catalog,
            roots,
            follow_symlinks=config.follow_symlinks,
            hash_pool=self.hash_pool,
            settle_s=self.settle_s,
            on_overflow=lambda: self.request_pass(None),
        )
        self.seeder = AssetSeeder(
            self.catalog,
            roots,
            follow_symlinks=config.follow_symlinks,
            on_event=self._on_seed_event,
            submit=self.reconciler.submit,
            hash_pool=self.hash_pool,
        )
        self.watchers = self._watch_set(config)

    def _watch_set(self, config: Config) -> WatchSet:
        return WatchSet(
            config.roots,
            self.reconciler.put,
            on_state=self._on_root_state,
            on_rescan=lambda name: self.request_pass([name]),
            on_offline=self._on_root_offline,
            follow_symlinks=config.follow_symlinks,
            check_interval=self.root_check_s,
        )

    def _teardown(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        self.watchers.stop()
        self.seeder.shutdown()
        self.reconciler.stop()
        self.hash_pool.close()

    async def _watchdog_pings(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if not usec:
            return
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(usec / 2e6)

    # -- passes: startup, SIGHUP, rescans -------------------------------------------

    def request_pass(self, roots: list[str] | None, prune_first: bool = False) -> None:
        """Start a pass over ``roots`` (None: all), or queue one more if one is running."""
        with self._lock:
            self.passes += 1
            self._apply_next_config()
            if self.seeder.start(roots, prune_first=prune_first):
                return
            if self._pending is None or roots is None:
                self._pending = set(roots) if roots is not None else set()
            else:
                self._pending.update(roots)
            self._pending_prune = self._pending_prune or prune_first

    def _start_pending(self) -> None:
        with self._lock:
            if self._pending is None:
                return
            self._apply_next_config()
            names = sorted(self._pending) or None
            if self.seeder.start(names, prune_first=self._pending_prune):
                self._pending, self._pending_prune = None, False

    def _on_sighup(self) -> None:
        threading.Thread(target=self._reload, name="assetd-reload", daemon=True).start()

    def _reload(self) -> None:
        """Re-read the configuration; the next pass applies it, pruning first."""
        try:
            config = self.reload()
        except ConfigError as exc:
            log.error("SIGHUP: configuration not reloaded, keeping the old one: %s", exc)
            return
        log.info("SIGHUP: configuration reloaded; resyncing")
        with self._lock:
            self._next_config = config
        self.request_pass(None, prune_first=True)

    def _apply_next_config(self) -> None:
        """Swap in a reloaded configuration; only between passes (the caller holds the lock)."""
        config = self._next_config
        if config is None or self.seeder.get_status()["state"] != "IDLE":
            return
        self._next_config = None
        # Re-arm every root, changed or not: a root polled since the watch limit was
        # reached goes back to inotify once the limit has been raised.
        self.watchers.stop()
        self.catalog.set_layer(config.install)  # the pass that follows retags by it
        self.reconciler.set_roots(config.roots)
        self.seeder.roots = config.roots
        self.watchers = self._watch_set(config)
        self.watchers.start()
        self.config = config

    # -- callbacks from the parts ---------------------------------------------------

    def _on_seed_event(self, kind: str, data: dict[str, Any]) -> None:
        self.feed.threadsafe(self.feed.publish_event, {"type": kind, "data": data})
        if self.comfy_api is not None:
            self.comfy_api.seed_event(kind, data)
        if kind == "assets.seed.started":
            log.info("assets.seed.started %s", json.dumps(data))
        elif kind == "assets.seed.progress":
            sd_notify(
                f"STATUS={data.get('phase', '')}: {data.get('scanned', 0)} files, "
                f"{data.get('hashed', 0)}/{data.get('to_hash', 0)} hashed"
            )
        else:
            summary = {k: data.get(k) for k in ("total", "created", "hashed", "marked_missing")}
            log.info("%s %s", kind, json.dumps(summary))
            sd_notify(f"STATUS=idle, {data.get('total', 0)} files in the last pass")
            if data.get("catalog_unavailable"):
                self._retry_pass_later()
            elif kind == "assets.seed.completed":
                self._pass_backoff.reset()
            threading.Thread(target=self._after_pass, name="assetd-next-pass", daemon=True).start()

    def _retry_pass_later(self) -> None:
        """A pass stopped because the catalog could not be reached (a database restarting,
        a network gone): resync in full once it is back, trying again with backoff."""
        delay = self._pass_backoff.delay()
        log.warning("the catalog cannot be reached; a full pass again in %.0f s", delay)
        timer = threading.Timer(delay, lambda: self.request_pass(None, prune_first=True))
        timer.daemon = True
        timer.start()

    def _after_pass(self) -> None:
        self.seeder.wait(30)  # the end event comes just before the seeder is IDLE
        self._start_pending()

    def _on_root_state(self, root: RootConfig, state: str, message: str | None) -> None:
        event: dict[str, Any] = {"type": "root", "root": root.name, "state": state}
        if message:
            event["message"] = message
        self.feed.threadsafe(self.feed.publish_event, event)
        level = logging.INFO if state in ("online", "polling") and not message else logging.WARNING
        log.log(level, "root %s: %s%s", root.name, state, f" ({message})" if message else "")

    def _on_root_offline(self, root: RootConfig) -> None:
        marked = self.reconciler.call(self.catalog.mark_missing_under, root.prefix)
        log.warning("root %s offline: %d locations marked missing", root.name, marked)
