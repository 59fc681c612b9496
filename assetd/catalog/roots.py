"""The roots a catalog knows: their prefixes, and which node of a shared catalog owns each."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import peewee as pw

from assetd.catalog.changelog import ChangeLog
from assetd.catalog.sql import Store
from assetd.exceptions import RootOwnedError

__all__ = ["Roots"]

log = logging.getLogger(__name__)


class Roots:
    """Root names, prefixes and owners, as last registered."""

    def __init__(self, store: Store, changes: ChangeLog) -> None:
        self.store = store
        self.changes = changes

    def prefixes(self) -> dict[str, bytes]:
        """Root name → prefix, as last registered by a scan."""
        rows = self.store.query("SELECT name, prefix FROM root_info")
        return {name: bytes(prefix) for name, prefix in rows}

    def register(self, roots: Iterable[tuple[str, bytes]]) -> None:
        """Remember each root's prefix (automatic tags come from it) and claim the root
        for this node.

        On a catalog shared by several nodes, a root name belongs to one node: a name
        another node holds under another path is refused, and so is a path that overlaps
        another node's root (a path is one location in the whole catalog), with
        :class:`RootOwnedError`. The same name at the same path passes to this node (a
        host renamed, or a root moved between hosts).
        """
        Root, node = self.store.models.Root, self.store.node
        wanted = list(roots)
        with self.changes.write():
            others = {
                r.name: (bytes(r.prefix), r.node)
                for r in Root.select()
                if self.store.shared and r.node is not None and r.node != node
            }
            for name, prefix in wanted:
                self._check_claim(name, prefix, others)
            for name, prefix in wanted:
                if name in others:
                    log.warning(
                        "root %r at %s passes from node %r to this node, %r",
                        name, os.fsdecode(prefix), others[name][1], node,
                    )  # fmt: skip
                self.store.upsert(Root, Root.name, name=name, prefix=prefix, node=node)

    def _check_claim(self, name: str, prefix: bytes, others: dict[str, tuple[bytes, str]]) -> None:
        node = self.store.node
        if name in others and others[name][0] != prefix:
            held, owner = others[name]
            raise RootOwnedError(
                f"root {name!r} belongs to node {owner!r} (at {os.fsdecode(held)}); "
                f"node {node!r} cannot have it at {os.fsdecode(prefix)}: "
                "give this root another name"
            )
        for other, (held, owner) in others.items():
            if other != name and (prefix.startswith(held) or held.startswith(prefix)):
                raise RootOwnedError(
                    f"root {name!r} ({os.fsdecode(prefix)}) overlaps root {other!r} of node "
                    f"{owner!r} ({os.fsdecode(held)}): on a shared catalog a path is one "
                    "location, so the roots of different nodes must not overlap"
                )

    def others(self) -> Any:
        """The names of the roots other nodes own (a subquery).

        Empty on a catalog of one machine: there every root is this daemon's, even when
        the host was renamed since it was registered.
        """
        Root = self.store.models.Root
        if not self.store.shared:
            return Root.select(Root.name).where(pw.SQL("1 = 0"))
        return Root.select(Root.name).where(
            Root.node.is_null(False) & (Root.node != self.store.node)
        )
