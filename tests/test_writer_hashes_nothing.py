"""The writer thread runs SQL and never hashes: every hash is taken in the shared pool."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import assetd.hashing
from assetd.catalog import Catalog
from assetd.config import RootConfig
from assetd.hints import Hint, HintKind
from assetd.reconciler import Reconciler
from tests.conftest import OLD_NS, wait_for, write


def test_no_hash_is_taken_on_the_writer_thread(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files closed, renamed in and changed (small and large) are hashed by other threads."""
    hashed_on: list[str] = []
    digest = assetd.hashing._digest

    def recording(fd: int, size: int, **how: bool) -> str:
        hashed_on.append(threading.current_thread().name)
        return digest(fd, size, **how)

    monkeypatch.setattr(assetd.hashing, "_digest", recording)
    root = RootConfig("r", str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    catalog = Catalog(db_url)
    catalog.register_roots([(root.name, root.prefix)])
    rec = Reconciler(catalog, [root], settle_s=0.05)
    rec.start()
    try:
        small = write(tmp_path / "r" / "small.txt", b"small", OLD_NS)
        large = write(tmp_path / "r" / "large.bin", os.urandom(3 << 20), OLD_NS)
        outside = write(tmp_path / "incoming.bin", b"renamed in", OLD_NS)
        moved = tmp_path / "r" / "renamed.bin"
        rec.put(Hint(HintKind.CLOSED, os.fsencode(small)))
        rec.put(Hint(HintKind.CLOSED, os.fsencode(large)))
        outside.rename(moved)
        rec.put(Hint(HintKind.MOVED, os.fsencode(outside), os.fsencode(moved)))

        def hashes() -> dict[str, str | None]:
            items, _ = catalog.list_locations()
            return {i["path"]: i["hash"] for i in items}

        wait_for(lambda: rec.idle() and len(hashes()) == 3 and all(hashes().values()), 20)
        first = hashes()[str(small)]
        write(small, b"changed", OLD_NS + 1)
        rec.put(Hint(HintKind.CHANGED, os.fsencode(small)))
        wait_for(lambda: rec.idle() and hashes()[str(small)] not in (None, first), 20)
    finally:
        rec.stop()
        catalog.close()
    assert len(hashed_on) >= 4, hashed_on  # each file at least once, the changed one twice
    assert "assetd-reconciler" not in hashed_on, hashed_on
